/**
 * The requester's queue: jobs that found no acceptable bid wait here, in the
 * `queued` state, instead of ending `no-bids` at once.
 *
 * - **Re-announced with backoff.** A queued job is announced again after
 *   QUEUE_BACKOFF_MS, doubling up to QUEUE_BACKOFF_MAX_MS, each wait
 *   ±QUEUE_JITTER. It keeps the `queued` state through those rounds.
 * - **Woken at once.** An advert in the provider book that shows a capable
 *   provider with a free slot (a provider that joined, or that freed a slot
 *   after turning offers away) wakes the oldest matching queued jobs, at most
 *   as many as it has free slots (and QUEUE_WAKE_PER_ADVERT); a job is never
 *   announced more than once per QUEUE_MIN_INTERVAL_MS, wakes included, and
 *   all queued jobs together at most QUEUE_ANNOUNCE_RATE times a second.
 * - **Ends.** When `queueUntil` (submission + queueTimeoutMs) passes, the job
 *   ends `no-bids` with the latest decline of each provider over its rounds.
 * - **Bounded.** At most `maxQueuedJobs` jobs wait; a job whose round finds
 *   the queue full ends `no-bids` at once (and `submit` refuses a job that may
 *   queue with QueueFullError, 429). A queued round writes nothing to the log
 *   unless it gets a bid (then its offer and answers are logged before the
 *   award, bidding.ts); its declines go into the job's end record.
 * - **Restart.** The job record holds `queueUntil`: a restarted requester
 *   announces the job again and queues it for the time left.
 */
import {
  MAX_QUEUED_JOBS, QUEUE_ANNOUNCE_BURST, QUEUE_ANNOUNCE_RATE, QUEUE_BACKOFF_MAX_MS, QUEUE_BACKOFF_MS, QUEUE_JITTER, QUEUE_MAX_DECLINES,
  QUEUE_MIN_INTERVAL_MS, QUEUE_WAKE_PER_ADVERT
} from '../constants.js'
import { KeyedRateLimit } from '../protocol/gossip.js'
import type { Advert } from '../protocol/messages.js'
import { canRun } from './invite.js'
import type { RequesterContext, RequesterJob } from './job.js'

/** The wait before a queued job's next announcement, and the backoff after it. PURE (`random` in [0, 1)). */
export function queueDelay (backoffMs: number, random: number): { delayMs: number, nextBackoffMs: number } {
  const base = Math.min(QUEUE_BACKOFF_MAX_MS, Math.max(QUEUE_BACKOFF_MS, backoffMs))
  const jittered = Math.round(base * (1 - QUEUE_JITTER + 2 * QUEUE_JITTER * random))
  return { delayMs: Math.max(QUEUE_MIN_INTERVAL_MS, jittered), nextBackoffMs: Math.min(QUEUE_BACKOFF_MAX_MS, base * 2) }
}

export class JobQueue {
  private readonly ctx: RequesterContext
  /** queued jobs, in the order they were queued (the oldest is woken first) */
  private readonly jobs = new Set<RequesterJob>()
  private readonly announce: (job: RequesterJob) => Promise<void>
  /** announcements from the queue, all jobs together */
  private readonly rate = new KeyedRateLimit(QUEUE_ANNOUNCE_RATE, QUEUE_ANNOUNCE_BURST, 1)
  readonly counts = { queued: 0, woken: 0, requeued: 0, expired: 0, full: 0, deferred: 0 }

  constructor (ctx: RequesterContext, announce: (job: RequesterJob) => Promise<void>) {
    this.ctx = ctx
    this.announce = announce
  }

  get size (): number { return this.jobs.size }
  get cap (): number { return this.ctx.cfg.maxQueuedJobs ?? MAX_QUEUED_JOBS }
  full (): boolean { return this.jobs.size >= this.cap }

  /** A round closed with nothing to award: queue the job (or end it when the queue is full) and plan its next announcement. */
  async park (job: RequesterJob): Promise<void> {
    const { ctx } = this
    // this round's declines are kept for the job's end; the next round starts with empty books
    for (const [provider, d] of job.declines) {
      job.pastDeclines.delete(provider)
      job.pastDeclines.set(provider, { reason: d.reason, detail: d.detail })
      if (job.pastDeclines.size > QUEUE_MAX_DECLINES) job.pastDeclines.delete(job.pastDeclines.keys().next().value as string)
    }
    if (!this.jobs.has(job)) {
      if (this.full()) {
        this.counts.full++
        await ctx.fail(job, `no provider bid, and the queue is full (${this.cap} jobs queued; auction.maxQueuedJobs)`, 'no-bids')
        return
      }
      this.jobs.add(job)
      this.counts.queued++
    }
    ctx.setStatus(job, 'queued')
    const now = Date.now()
    const { delayMs, nextBackoffMs } = queueDelay(job.queueBackoffMs, Math.random())
    job.queueBackoffMs = nextBackoffMs
    const at = Math.max(now, job.announcedAt + delayMs)
    this.schedule(job, at)
    // one 'queued' event stands for a run of queued rounds: a job queued for hours holds one, not thousands
    const event = { round: job.round, until: job.queueUntil, next: Math.min(at, job.queueUntil), declines: job.pastDeclines.size }
    const last = job.events.at(-1)
    if (last?.type === 'queued') job.events.pop()
    ctx.emit(job, 'queued', event)
  }

  /** The job left the queued state (awarded, ended, cancelled). */
  remove (job: RequesterJob): void {
    clearTimeout(job.queueTimer)
    job.queueTimer = undefined
    this.jobs.delete(job)
  }

  stop (): void {
    for (const job of this.jobs) clearTimeout(job.queueTimer)
  }

  /**
   * A new advert in the book (a provider joined, or re-advertised): wake the oldest queued jobs it
   * can run, as many as it has free slots (QUEUE_WAKE_PER_ADVERT at most). An advert without
   * `free` (an older provider) counts as one free slot.
   */
  wake (advert: Advert, entry: { advert: Advert, benchedUntil: number }): number {
    if (this.jobs.size === 0) return 0
    const now = Date.now()
    if (entry.benchedUntil > now || advert.expires < now || this.ctx.deps.isFlagged?.(advert.provider) === true) return 0
    const max = Math.min(QUEUE_WAKE_PER_ADVERT, advert.free ?? 1)
    let woken = 0
    for (const job of this.jobs) {
      if (woken >= max) break
      if (job.closeBidding != null || job.excluded.has(advert.provider)) continue // a round is open, or it lost this provider
      if (!canRun({ advert, at: now, strikes: 0, benchedUntil: 0 }, { id: job.id, spec: job.spec, maxPrice: job.maxPrice, need: 1, excluded: job.excluded })) continue
      woken++
      this.counts.woken++
      this.schedule(job, Math.max(now, job.announcedAt + QUEUE_MIN_INTERVAL_MS))
    }
    return woken
  }

  /** The next announcement at `at`, or the job's end when its queue time is over by then. */
  private schedule (job: RequesterJob, at: number): void {
    clearTimeout(job.queueTimer)
    const expire = at >= job.queueUntil
    const delay = Math.max(0, (expire ? job.queueUntil : at) - Date.now())
    job.queueTimer = setTimeout(() => {
      job.queueTimer = undefined
      if (expire) void this.expire(job)
      else void this.requeue(job)
    }, delay)
    job.queueTimer.unref()
  }

  private async requeue (job: RequesterJob): Promise<void> {
    const { ctx } = this
    if (ctx.stopped() || job.status !== 'queued' || job.closeBidding != null) return
    if (Date.now() >= job.queueUntil) { await this.expire(job); return }
    if (!this.rate.take('queue', 1)) {
      // the queue's announcement budget is spent this second: a little later, spread out
      this.counts.deferred++
      this.schedule(job, Date.now() + Math.ceil((1 + Math.random()) * 1000 * QUEUE_ANNOUNCE_BURST / QUEUE_ANNOUNCE_RATE / 2))
      return
    }
    this.counts.requeued++
    job.requeues++
    job.round++
    try {
      await this.announce(job)
    } catch (err: any) {
      await ctx.fail(job, `not announced again: ${err?.message ?? err}`).catch(() => {})
    }
  }

  private async expire (job: RequesterJob): Promise<void> {
    if (this.ctx.stopped() || job.status !== 'queued') return
    if (job.closeBidding != null) return // a round is open: its close decides (the planner sees the time is over)
    // a timer may fire a millisecond before Date.now() reaches its mark: the job never ends early
    if (Date.now() < job.queueUntil) { this.schedule(job, job.queueUntil); return }
    this.counts.expired++
    const secs = Math.round((job.queueUntil - job.createdAt) / 1000)
    await this.ctx.fail(job, `no provider bid within the queue timeout (${secs} s)`, 'no-bids')
  }
}
