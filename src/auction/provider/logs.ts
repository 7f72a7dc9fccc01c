/**
 * The provider's side of live logs (see ../live-logs.ts): collects what the
 * executor reports while a job runs, cuts it to the job's rate and total,
 * and sends it as `log` frames every LIVE_LOG_FLUSH_MS, one send at a time
 * (a slow channel holds back at most what the budget let in, never more).
 */
import { LIVE_LOG_FLUSH_MS, LIVE_LOG_FRAME_BYTES } from '../constants.js'
import { RateBudget, type LiveLogLimits } from '../live-logs.js'
import type { Frame } from '../protocol/frames.js'

export class LiveLogSender {
  private readonly budget: RateBudget
  private readonly send: (f: Frame) => Promise<void>
  /** chunks let in and not yet sent, per fd, in order */
  private readonly pending: Array<{ fd: 1 | 2, data: Uint8Array }> = []
  /** bytes left out (over the rate or the total) since the last frame */
  private dropped = 0
  private flushing?: Promise<void>
  private readonly timer: NodeJS.Timeout

  constructor (limits: LiveLogLimits, send: (f: Frame) => Promise<void>) {
    this.budget = new RateBudget(limits.bytesPerSec, limits.maxBytes)
    this.send = send
    this.timer = setInterval(() => { void this.flush() }, LIVE_LOG_FLUSH_MS)
    this.timer.unref()
  }

  /** The executor's live output listener. */
  readonly push = (fd: 1 | 2, data: Uint8Array): void => {
    const n = this.budget.take(data.length)
    if (n > 0) {
      const last = this.pending[this.pending.length - 1]
      const keep = data.subarray(0, n)
      if (last?.fd === fd && last.data.length + n <= LIVE_LOG_FRAME_BYTES) {
        const joined = new Uint8Array(last.data.length + n)
        joined.set(last.data)
        joined.set(keep, last.data.length)
        last.data = joined
      } else {
        this.pending.push({ fd, data: keep.slice() })
      }
    }
    this.dropped += data.length - n
  }

  /** Send what waits (one flush at a time). */
  async flush (): Promise<void> {
    if (this.flushing != null) { await this.flushing; return }
    this.flushing = (async () => {
      while (this.pending.length > 0) {
        const c = this.pending.shift() as { fd: 1 | 2, data: Uint8Array }
        for (let i = 0; i < c.data.length; i += LIVE_LOG_FRAME_BYTES) {
          const dropped = this.dropped
          this.dropped = 0
          await this.send({ t: 'log', fd: c.fd, data: c.data.subarray(i, i + LIVE_LOG_FRAME_BYTES), dropped })
        }
      }
      // what was cut at the end is said too (an empty chunk)
      if (this.dropped > 0) {
        const dropped = this.dropped
        this.dropped = 0
        await this.send({ t: 'log', fd: 1, data: new Uint8Array(0), dropped })
      }
    })()
    try { await this.flushing } finally { this.flushing = undefined }
  }

  /** The job is over: send the rest (before the result, so logs come first) and stop. */
  async close (): Promise<void> {
    clearInterval(this.timer)
    await this.flush()
    // a flush that was running when close was called may have left chunks it did not see
    if (this.pending.length > 0 || this.dropped > 0) await this.flush()
  }
}
