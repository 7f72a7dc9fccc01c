/**
 * The requester's side of live logs (see ../live-logs.ts): `log` frames from
 * an attempt's provider become `log` events on the market's emitter (event
 * name `log`, not `job`: they are not kept with the job's events, not counted
 * in metrics and never written to the ledger). Each attempt gets a byte
 * budget (rate and total) and a frame budget; what is over them is dropped
 * and said once (`capped`), so a provider that floods costs a bounded amount.
 */
import { LIVE_LOG_ACCEPT_BYTES_PER_SEC, LIVE_LOG_ACCEPT_FRAMES_PER_SEC, LIVE_LOG_ACCEPT_MAX_BYTES } from '../constants.js'
import { RateBudget } from '../live-logs.js'
import { isInFlight } from './plan.js'
import type { LogEvent } from '../types.js'
import type { Attempt, RequesterContext, RequesterJob } from './job.js'

interface AttemptLog {
  bytes: RateBudget
  frames: RateBudget
  /** per fd: a streaming UTF-8 decoder (a chunk may end inside a character) */
  decoders: [TextDecoder, TextDecoder]
  /** bytes the provider or we left out since the last event */
  dropped: number
  capped: boolean
  /** events sent for this attempt */
  seq: number
}

/** Frames a requester ever takes from one attempt: its byte total in the smallest useful chunks. */
const MAX_FRAMES_TOTAL = 100_000

export class LiveLogs {
  private readonly ctx: RequesterContext
  private readonly attempts = new WeakMap<Attempt, AttemptLog>()

  constructor (ctx: RequesterContext) {
    this.ctx = ctx
  }

  /** A `log` frame arrived on an attempt's award channel. */
  take (job: RequesterJob, attempt: Attempt, frame: { fd: 1 | 2, data: Uint8Array, dropped: number }): void {
    if (!isInFlight(attempt.state)) return
    let s = this.attempts.get(attempt)
    if (s == null) {
      const { cfg } = this.ctx
      s = {
        bytes: new RateBudget(cfg.liveLogBytesPerSec ?? LIVE_LOG_ACCEPT_BYTES_PER_SEC, cfg.liveLogMaxBytes ?? LIVE_LOG_ACCEPT_MAX_BYTES),
        frames: new RateBudget(LIVE_LOG_ACCEPT_FRAMES_PER_SEC, MAX_FRAMES_TOTAL),
        decoders: [new TextDecoder('utf-8', { fatal: false }), new TextDecoder('utf-8', { fatal: false })],
        dropped: 0,
        capped: false,
        seq: 0
      }
      this.attempts.set(attempt, s)
    }
    if (s.capped) return
    s.dropped += Math.min(frame.dropped, Number.MAX_SAFE_INTEGER - s.dropped)
    if (s.frames.take(1) === 0) { s.dropped += frame.data.length; return }
    const n = s.bytes.take(frame.data.length)
    s.dropped += frame.data.length - n
    // over the rate: dropped, and said with the next chunk that goes (an empty frame says it alone)
    if (n === 0 && !s.bytes.exhausted && (frame.data.length > 0 || s.dropped === 0)) return
    const event: LogEvent = {
      type: 'log',
      ts: Date.now(),
      jobId: job.id,
      provider: attempt.provider,
      attempt: attempt.attempt,
      stream: frame.fd === 2 ? 'stderr' : 'stdout',
      text: n > 0 ? s.decoders[frame.fd - 1].decode(frame.data.subarray(0, n), { stream: true }) : '',
      seq: s.seq++
    }
    if (s.dropped > 0) { event.dropped = s.dropped; s.dropped = 0 }
    if (s.bytes.exhausted && !s.capped) {
      // said once: nothing more from this attempt is shown
      s.capped = true
      event.capped = true
      this.ctx.log.debug({ jobId: job.id, provider: attempt.provider }, 'live logs of this attempt reached their cap')
    }
    this.ctx.events.emit('log', event)
  }

  /** The attempt's logs are over (its result came, or it was lost): say what was dropped since the last event. */
  end (job: RequesterJob, attempt: Attempt): void {
    const s = this.attempts.get(attempt)
    if (s == null || s.capped || s.dropped === 0) return
    const event: LogEvent = { type: 'log', ts: Date.now(), jobId: job.id, provider: attempt.provider, attempt: attempt.attempt, stream: 'stdout', text: '', dropped: s.dropped, seq: s.seq++ }
    s.dropped = 0
    this.ctx.events.emit('log', event)
  }
}
