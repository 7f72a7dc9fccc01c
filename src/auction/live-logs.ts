/**
 * Live logs: what a running job writes to stdout/stderr, streamed by the
 * provider over the award channel as `log` frames while the job runs, and
 * turned into `log` job events by the requester.
 *
 * They are a view, not a result: not signed, never written to the ledger,
 * and capped on both ends. The provider sends at most a rate and a total per
 * job (the executor already caps the job's whole output); the requester takes
 * at most its own rate, total and frame count per attempt and drops the rest,
 * so a provider that floods costs it a bounded amount. Every chunk says how
 * many bytes were left out before it (`dropped`). The job's full stdout and
 * stderr stay in its signed result.
 */

/** A byte (or frame) budget: a rate with one second of burst, and a total. */
export class RateBudget {
  private readonly rate: number
  private readonly total: number
  private tokens: number
  private last: number
  private used = 0

  constructor (perSec: number, total: number, now = Date.now()) {
    this.rate = Math.max(0, perSec)
    this.total = Math.max(0, total)
    this.tokens = this.rate
    this.last = now
  }

  /** Take up to `n`: returns how many may go now (0 when over the rate or the total). */
  take (n: number, now = Date.now()): number {
    this.tokens = Math.min(this.rate, this.tokens + (now - this.last) * this.rate / 1000)
    this.last = now
    const n2 = Math.max(0, Math.min(n, Math.floor(this.tokens), this.total - this.used))
    this.tokens -= n2
    this.used += n2
    return n2
  }

  /** The total is spent: nothing more will ever go. */
  get exhausted (): boolean { return this.used >= this.total }
}

export interface LiveLogLimits {
  bytesPerSec: number
  maxBytes: number
}
