import { canonicalEncode, sha256, toHex } from '../crypto/index.js'

/** An output file as a result names it: path, CID (CIDv1 raw sha2-256 of its bytes) and size. */
export interface OutputRef { path: string, cid: string, size: number }

/**
 * How a result carries its output files, and what its hash covers: `{ outputs }`, each file's
 * path, CID and size (not its bytes), when the job wrote any; `{}` when it wrote none.
 */
export function outputsField (outputs: OutputRef[] | undefined): { outputs?: OutputRef[] } {
  return outputs != null && outputs.length > 0 ? { outputs: outputs.map(o => ({ path: o.path, cid: o.cid, size: o.size })) } : {}
}

/**
 * The hash a result carries: hex sha256 of canonicalEncode({ jobId, exitCode,
 * stdout, stderr, output, outputs }), where `outputs` (present only when the
 * job wrote files) lists each file's { path, cid, size } in path order. Anyone
 * holding the job id and the result can recompute it; two providers that ran
 * the same job agree on it, output files included (their CIDs cover every byte).
 */
export function computeResultHash (jobId: string, r: { exitCode: number, stdout: Uint8Array, stderr: Uint8Array, output?: unknown, outputs?: OutputRef[] }): string {
  const files = outputsField(r.outputs)
  let encoded: Uint8Array
  try {
    encoded = canonicalEncode({ jobId, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, output: r.output, ...files })
  } catch {
    // values DAG-CBOR cannot carry (e.g. integers beyond 64 bits): hash the output's JSON text instead
    encoded = canonicalEncode({ jobId, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, output: JSON.stringify(r.output), ...files })
  }
  return toHex(sha256(encoded))
}

/**
 * A job failure that produced no output (a refusal at run time, a crash): exit code -1, empty
 * streams, zero usage, and the result hash of exactly that, so every provider reports it alike.
 */
export function emptyFailure (jobId: string, error: { name: string, message: string }, fuelLimited = false): {
  exitCode: number, stdout: Uint8Array, stderr: Uint8Array, truncated: boolean, resultHash: string,
  usage: { wallMs: number, memoryBytes: number, outputBytes: number, fuel?: number }, error: { name: string, message: string }
} {
  const empty = new Uint8Array(0)
  return {
    exitCode: -1,
    stdout: empty,
    stderr: empty,
    truncated: false,
    resultHash: computeResultHash(jobId, { exitCode: -1, stdout: empty, stderr: empty }),
    usage: fuelLimited ? { wallMs: 0, memoryBytes: 0, outputBytes: 0, fuel: 0 } : { wallMs: 0, memoryBytes: 0, outputBytes: 0 },
    error
  }
}
