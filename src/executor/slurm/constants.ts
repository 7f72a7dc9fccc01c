/**
 * Slurm backend defaults. `config/default.json` ("executor.slurm") holds the
 * same values for a provider.
 */

/** How often the cluster's state (our jobs, free CPUs) is read with squeue/sinfo: each read is a round trip to slurmctld. */
export const POLL_MS = 500
/** How often the stage dirs of jobs in flight are checked for `started`/`result.cbor` (a stat each: cheap, and the fast path to a result). */
export const RESULT_POLL_MS = 25
/** A job still PENDING this long is cancelled and fails over: we only bid with free CPUs, so someone else took them. */
export const MAX_PENDING_MS = 30_000
/** Memory asked for beyond the job's own cap: the Node process and its sandbox worker on the compute node. */
export const MEM_OVERHEAD_MB = 512
/** Time limit asked for beyond the job's own: starting Node and the sandbox on the compute node. */
export const START_ALLOWANCE_MS = 60_000
/** A Slurm command that takes longer than this is killed (a hung controller must not hang the provider). */
export const COMMAND_TIMEOUT_MS = 10_000
/** After Slurm says a job ended, how long its result may take to appear in the shared dir (NFS attribute caches). */
export const RESULT_GRACE_MS = 2_000
/** Polls in a row that do not find a job we submitted before it counts as vanished. */
export const VANISHED_AFTER_POLLS = 4
/** Slurm job states after which no result will come. */
export const FAILED_STATES = new Set(['FAILED', 'CANCELLED', 'TIMEOUT', 'PREEMPTED', 'NODE_FAIL', 'OUT_OF_MEMORY', 'BOOT_FAIL', 'DEADLINE', 'REVOKED', 'SPECIAL_EXIT'])
/** States in which the job's program runs (or is being set up or torn down). */
export const RUNNING_STATES = new Set(['RUNNING', 'CONFIGURING', 'COMPLETING', 'STAGE_OUT', 'SIGNALING', 'RESIZING'])
