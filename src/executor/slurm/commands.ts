/**
 * The Slurm commands the backend uses, each run with a timeout and bounded
 * output, never through a shell: sbatch (submit), squeue (job states and
 * pending demand), sinfo (free CPUs), scancel (withdrawal).
 */
import { execFile } from 'node:child_process'
import { SlurmUnavailableError } from './errors.js'
import { COMMAND_TIMEOUT_MS } from './constants.js'

/** Largest output read from one command (a squeue of many jobs is a few KiB). */
const MAX_COMMAND_OUTPUT = 4 * 1024 * 1024

export interface SlurmCommandsInit {
  /** SLURM_CONF for the commands (unset: the system's). */
  conf?: string
  /** Limit sinfo/squeue/sbatch to this partition. */
  partition?: string
}

export interface JobState { id: string, state: string, reason: string }

export class SlurmCommands {
  private readonly env: NodeJS.ProcessEnv
  private readonly partition?: string

  constructor (init: SlurmCommandsInit) {
    this.env = { ...process.env }
    if (init.conf != null && init.conf !== '') this.env.SLURM_CONF = init.conf
    this.partition = init.partition != null && init.partition !== '' ? init.partition : undefined
  }

  async run (cmd: string, args: string[], opts: { allowFailure?: RegExp } = {}): Promise<string> {
    return await new Promise((resolve, reject) => {
      execFile(cmd, args, { env: this.env, timeout: COMMAND_TIMEOUT_MS, maxBuffer: MAX_COMMAND_OUTPUT, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
        if (err == null) { resolve(stdout); return }
        const text = `${String(stderr).trim()}`
        if (opts.allowFailure?.test(text) === true) { resolve(''); return }
        const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${cmd} is not installed (or not on PATH)` : `${cmd} failed: ${text.split('\n')[0] || err.message}`
        reject(new SlurmUnavailableError(why.slice(0, 500), err))
      })
    })
  }

  private partitionArgs (): string[] { return this.partition != null ? ['-p', this.partition] : [] }

  /** Submit a batch script; returns the Slurm job id. */
  async sbatch (script: string, args: string[]): Promise<string> {
    const out = await this.run('sbatch', ['--parsable', ...this.partitionArgs(), ...args, script])
    const id = out.trim().split(';')[0]
    if (!/^\d+$/.test(id)) throw new SlurmUnavailableError(`sbatch printed no job id: ${out.slice(0, 200)}`)
    return id
  }

  /** States of the given jobs (all states, finished ones included while the controller remembers them). */
  async states (ids: string[]): Promise<Map<string, JobState>> {
    const out = new Map<string, JobState>()
    for (let i = 0; i < ids.length; i += 200) {
      const chunk = ids.slice(i, i + 200)
      // every id unknown: squeue exits 1 with "Invalid job id specified"
      const text = await this.run('squeue', ['-h', '-t', 'all', '-o', '%i|%T|%r', '-j', chunk.join(',')], { allowFailure: /Invalid job id/i })
      for (const line of text.split('\n')) {
        const [id, state, reason] = line.trim().split('|')
        if (id != null && state != null && /^\d+$/.test(id)) out.set(id, { id, state, reason: reason ?? '' })
      }
    }
    return out
  }

  /**
   * CPUs idle now on the nodes of our partition (the one named in config, or
   * the cluster's default, marked `*` by sinfo), counted once per node, and
   * CPUs asked for by anyone's pending jobs in that partition.
   */
  async freeCpus (): Promise<{ idle: number, total: number, pending: number }> {
    // pending first, then idle: a job that starts in between is then counted twice as busy (once
    // pending, once allocated), never twice as free (not pending yet still idle)
    const queue = await this.run('squeue', ['-h', '-t', 'PENDING', '-o', '%P|%C'])
    const info = await this.run('sinfo', ['-h', '-N', '-o', '%N|%P|%C'])
    const ours = (p: string): boolean => this.partition != null ? p.replace(/\*$/, '') === this.partition : p.endsWith('*')
    let partition = this.partition
    const nodes = new Map<string, { idle: number, total: number }>()
    for (const line of info.split('\n')) {
      const [node, part, cpus] = line.trim().split('|')
      const m = /^(\d+)\/(\d+)\/(\d+)\/(\d+)$/.exec(cpus ?? '')
      if (node == null || part == null || m == null || !ours(part)) continue
      partition ??= part.replace(/\*$/, '')
      nodes.set(node, { idle: Number(m[2]), total: Number(m[4]) })
    }
    let idle = 0
    let total = 0
    for (const n of nodes.values()) { idle += n.idle; total += n.total }
    let pending = 0
    for (const line of queue.split('\n')) {
      const [part, cpus] = line.trim().split('|')
      const n = Number(cpus)
      // a job may name several partitions ("a,b"): count it against ours if ours is among them
      if (part != null && partition != null && part.split(',').includes(partition) && Number.isFinite(n)) pending += n
    }
    return { idle, total, pending }
  }

  async scancel (id: string): Promise<void> {
    await this.run('scancel', [id], { allowFailure: /Invalid job id|already completing or completed/i })
  }
}
