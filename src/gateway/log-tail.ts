/**
 * The last few live-log events of each running job (bounded by bytes per job
 * and by jobs), so a page or `mercato logs -f` opened mid-run starts with
 * recent output. Fed by the market's `log` events. A job's tail is kept
 * LOG_TAIL_LINGER_MS after the job ends, so that a client that subscribes as
 * a short job finishes (`mercato submit --wait` opens its stream after the
 * submit returns) still sees its live output among its steps; then dropped.
 * At the cap, tails of ended jobs go before those of running ones.
 */
import type { JobEvent, Market, LogEvent } from '../auction/index.js'
import { LOG_TAIL_BYTES, LOG_TAIL_JOBS, LOG_TAIL_LINGER_MS } from './constants.js'

/** a kept log event and how many of its job's events (steps) there were when it came */
interface Kept { e: LogEvent, after: number }
interface Tail { events: Kept[], bytes: number, ended?: NodeJS.Timeout }

export class LogTails {
  private readonly market: Market
  private readonly tails = new Map<string, Tail>()
  private readonly maxBytes: number
  private readonly maxJobs: number
  private readonly lingerMs: number
  private readonly onLog = (e: LogEvent): void => { this.add(e) }
  private readonly onDone = (id: string): void => {
    const t = this.tails.get(id)
    if (t == null || t.ended != null) return
    t.ended = setTimeout(() => { if (this.tails.get(id) === t) this.tails.delete(id) }, this.lingerMs)
    t.ended.unref()
  }

  constructor (market: Market, opts: { maxBytes?: number, maxJobs?: number, lingerMs?: number } = {}) {
    this.market = market
    this.lingerMs = opts.lingerMs ?? LOG_TAIL_LINGER_MS
    this.maxBytes = opts.maxBytes ?? LOG_TAIL_BYTES
    this.maxJobs = opts.maxJobs ?? LOG_TAIL_JOBS
  }

  start (): void {
    this.market.events.on('log', this.onLog)
    this.market.events.on('done', this.onDone)
  }

  stop (): void {
    this.market.events.off('log', this.onLog)
    this.market.events.off('done', this.onDone)
    for (const t of this.tails.values()) clearTimeout(t.ended)
    this.tails.clear()
  }

  /** The kept events of a job, oldest first. */
  get (jobId: string): LogEvent[] {
    return (this.tails.get(jobId)?.events ?? []).map(k => k.e)
  }

  /**
   * A job's steps (its held events, read in the same turn) with its kept log events among them,
   * each where it came: by the steps there were when it arrived, not by its timestamp (a log and
   * the result that followed it on the award channel often share a millisecond).
   */
  replay (jobId: string, steps: JobEvent[]): Array<JobEvent | LogEvent> {
    const logs = this.tails.get(jobId)?.events ?? []
    const out: Array<JobEvent | LogEvent> = []
    let l = 0
    for (let i = 0; i < steps.length; i++) {
      while (l < logs.length && logs[l].after <= i) out.push(logs[l++].e)
      out.push(steps[i])
    }
    while (l < logs.length) out.push(logs[l++].e)
    return out
  }

  /** How many jobs have a tail, and their bytes (tests, metrics). */
  size (): { jobs: number, bytes: number } {
    let bytes = 0
    for (const t of this.tails.values()) bytes += t.bytes
    return { jobs: this.tails.size, bytes }
  }

  private add (e: LogEvent): void {
    if (this.market.isTerminal(e.jobId)) return
    let t = this.tails.get(e.jobId)
    if (t == null) {
      if (this.tails.size >= this.maxJobs) this.evictOne()
      t = { events: [], bytes: 0 }
      this.tails.set(e.jobId, t)
    }
    // a single event larger than the tail keeps only its end
    const text = e.text.length > this.maxBytes ? e.text.slice(e.text.length - this.maxBytes) : e.text
    const kept = text === e.text ? e : { ...e, text }
    t.events.push({ e: kept, after: this.market.heldEventCount(e.jobId) })
    t.bytes += kept.text.length
    while (t.bytes > this.maxBytes && t.events.length > 1) t.bytes -= (t.events.shift() as Kept).e.text.length
  }

  /** Make room for one more: the oldest tail of an ended job, or else the oldest. */
  private evictOne (): void {
    let victim: string | undefined
    for (const [id, t] of this.tails) if (t.ended != null) { victim = id; break }
    victim ??= this.tails.keys().next().value as string
    clearTimeout(this.tails.get(victim)?.ended)
    this.tails.delete(victim)
  }
}
