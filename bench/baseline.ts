/**
 * Raw figures a benchmark prints beside its own, measured in the same run, so
 * runs on machines (or hours) of different speed can be compared by ratio.
 */
import { randomSigner } from '../src/crypto/index.js'

/** Ed25519 signatures per second on this thread (about 1 s of signing 200-byte messages). */
export function ed25519SignsPerSec (): number {
  const signer = randomSigner()
  const msg = new Uint8Array(200)
  let n = 0
  const t0 = performance.now()
  while (performance.now() - t0 < 1000) { signer.sign(msg); n++ }
  return Math.round(n / ((performance.now() - t0) / 1000))
}
