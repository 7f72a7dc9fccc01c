import { canonicalEncode, sha256, toHex } from '../crypto/index.js'

/**
 * The hash a result carries: hex sha256 of canonicalEncode({ jobId, exitCode,
 * stdout, stderr, output }). Anyone holding the job id and the result can
 * recompute it; two providers that ran the same job agree on it.
 */
export function computeResultHash (jobId: string, r: { exitCode: number, stdout: Uint8Array, stderr: Uint8Array, output?: unknown }): string {
  let encoded: Uint8Array
  try {
    encoded = canonicalEncode({ jobId, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, output: r.output })
  } catch {
    // values DAG-CBOR cannot carry (e.g. integers beyond 64 bits): hash the output's JSON text instead
    encoded = canonicalEncode({ jobId, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, output: JSON.stringify(r.output) })
  }
  return toHex(sha256(encoded))
}
