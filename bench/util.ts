/**
 * What the process benchmarks share: percentiles, and the raw figures a
 * benchmark prints beside its own, measured in the same run, so runs on
 * machines (or hours) of different speed can be compared by ratio.
 */
import { readFileSync } from 'node:fs'
import { randomSigner } from '../src/crypto/index.js'

const CLK_TCK = 100 // Linux USER_HZ

/** CPU ms (user + system) a process has used so far, from `/proc/PID/stat`; 0 when it is gone. */
export function processCpuMs (pid: number | undefined): number {
  if (pid == null) return 0
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 1000 / CLK_TCK
  } catch {
    return 0
  }
}

/** Ed25519 signatures per second on this thread (about 1 s of signing 200-byte messages). */
export function ed25519SignsPerSec (): number {
  const signer = randomSigner()
  const msg = new Uint8Array(200)
  let n = 0
  const t0 = performance.now()
  while (performance.now() - t0 < 1000) { signer.sign(msg); n++ }
  return Math.round(n / ((performance.now() - t0) / 1000))
}

/** The p-th percentile (0–100) of `xs`, to 0.1; NaN (null in JSON) when there is none. */
export function pct (xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return Math.round(s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] * 10) / 10
}
