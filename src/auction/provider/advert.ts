/**
 * The provider's capacity advert on `mercato/adverts/1`: engines, base ask,
 * slots, the largest limits it takes, its labels. Requesters keep it in their book and
 * invite the providers that can plausibly win a job (requester/invite.ts).
 *
 * Sent on start and again at ADVERT_START_DELAYS_MS (the mesh is still
 * forming), then every ADVERT_REFRESH_MS (± ADVERT_REFRESH_JITTER), and on hearing an open call (a
 * requester whose book is thin), at most every ADVERT_ECHO_MS. The cost is a few small gossip messages per
 * provider per minute, independent of the job rate.
 *
 * And when a slot frees after we turned an offer away for want of one (`no-slot`, or a surge ask
 * over the job's maxPrice): the requester has likely queued that job, and our advert (with `free`
 * slots) wakes it at once. That advert goes only to the requesters we turned away since our last
 * advert with a free slot (at most MAX_WAKE_REQUESTERS, the latest), as a message on our bid
 * stream to each, not on the topic: gossiped, each one cost every node of the mesh a delivery
 * and a signature check to wake one or two requesters. Every advert we send, on the topic or directly, is counted against the
 * per-key rate every node enforces on adverts (ADVERT_RATE_PER_KEY, burst ADVERT_BURST_PER_KEY);
 * a capacity advert waits until it fits rather than be dropped, so under steady load it costs at
 * most one advert per 1 / ADVERT_RATE_PER_KEY seconds, whatever the job rate.
 */
import { ADVERT_BURST_PER_KEY, ADVERT_ECHO_MS, ADVERT_RATE_PER_KEY, ADVERT_REFRESH_JITTER, ADVERT_REFRESH_MS, ADVERT_START_DELAYS_MS, ADVERT_TTL_MS, ADVERTS_TOPIC, MAX_ADVERT_ADDRS } from '../constants.js'
import { KeyedRateLimit } from '../protocol/gossip.js'
import { encodeBatch, sign, type Advert } from '../protocol/messages.js'
import type { Signed } from '../../crypto/index.js'
import { inputLimits, type ProviderContext } from './state.js'

/** How long until the next refresh: ADVERT_REFRESH_MS ± ADVERT_REFRESH_JITTER, uniform. PURE (given `random`). */
export function advertRefreshDelay (random: () => number = Math.random): number {
  return Math.round(ADVERT_REFRESH_MS * (1 - ADVERT_REFRESH_JITTER + 2 * ADVERT_REFRESH_JITTER * random()))
}

/** The requesters a capacity advert goes to at most (the latest we turned away). */
export const MAX_WAKE_REQUESTERS = 64

/** The schema's ceilings (limitsSchema): a provider configured above them advertises the ceiling. */
const CAP_CEILING = { timeoutMs: 24 * 3600_000, memoryMb: 65536, outputBytes: 64 * 1024 * 1024 }

export class Advertiser {
  private readonly ctx: ProviderContext
  /** pending one-shot timers (`later`): each leaves the set when it fires */
  private readonly timers = new Set<NodeJS.Timeout>()
  private seq = 0
  private lastSent = 0
  /** our adverts, under the rate our neighbours' gates allow a key */
  private readonly budget = new KeyedRateLimit(ADVERT_RATE_PER_KEY, ADVERT_BURST_PER_KEY, 1)
  /** the requesters we turned away for want of a slot since our last advert with a free one (oldest first) */
  private readonly waiting = new Set<string>()
  private pending?: NodeJS.Timeout
  /** sends a signed message on our bid stream to a requester */
  private readonly direct: (requester: string, advert: Signed<Advert>) => void

  constructor (ctx: ProviderContext, direct: (requester: string, advert: Signed<Advert>) => void) {
    this.ctx = ctx
    this.direct = direct
  }

  start (): void {
    this.send()
    for (const ms of ADVERT_START_DELAYS_MS) this.later(ms, () => { this.send() })
    this.scheduleRefresh()
  }

  /** The next refresh, a jittered delay away (advertRefreshDelay); each one schedules the next. */
  private scheduleRefresh (): void {
    this.later(advertRefreshDelay(), () => {
      this.send()
      this.scheduleRefresh()
    })
  }

  stop (): void {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    clearTimeout(this.pending)
    this.pending = undefined
  }

  /** We declined this requester's offer for want of a slot: tell it when one frees. */
  turnedAway (requester: string): void {
    this.waiting.delete(requester) // to the end: the latest are kept
    this.waiting.add(requester)
    if (this.waiting.size > MAX_WAKE_REQUESTERS) this.waiting.delete(this.waiting.values().next().value as string)
  }

  /**
   * A slot freed: if we turned offers away since our last advert with a free slot, send our advert
   * to those requesters now, or as soon as the rate allows.
   */
  slotFreed (): void {
    if (this.waiting.size === 0 || this.pending != null || this.free() === 0) return
    if (this.budget.take('self', 1)) { this.wake(); return }
    this.pending = setTimeout(() => { this.pending = undefined; this.slotFreed() }, Math.ceil(1000 / ADVERT_RATE_PER_KEY))
    this.pending.unref()
  }

  /** slots free at our base ask now */
  private free (): number {
    return Math.max(0, this.ctx.slots() - this.ctx.state.running)
  }

  /** We heard an open call: some requester's book lacks providers. */
  echo (): void {
    if (Date.now() - this.lastSent >= ADVERT_ECHO_MS) this.send()
  }

  /** The advert as it would be signed now. */
  build (now = Date.now()): Advert {
    const { cfg } = this.ctx
    const limits = inputLimits(cfg)
    this.seq = Math.max(this.seq + 1, now) // ms-based: a restarted provider's adverts replace its old ones
    return {
      v: 1,
      provider: this.ctx.peerId,
      engines: this.ctx.engines(),
      ask: cfg.price,
      slots: Math.max(1, this.ctx.slots()),
      free: Math.min(this.free(), 100_000),
      caps: {
        timeoutMs: Math.min(cfg.maxTimeoutMs, CAP_CEILING.timeoutMs),
        memoryMb: Math.min(cfg.maxMemoryMb, CAP_CEILING.memoryMb),
        outputBytes: Math.min(cfg.maxOutputBytes, CAP_CEILING.outputBytes)
      },
      inputs: { files: limits.maxFiles, fileBytes: limits.maxFileBytes, totalBytes: limits.maxTotalBytes },
      addrs: this.ctx.network.addresses().slice(0, MAX_ADVERT_ADDRS),
      // absent rather than empty: one encoding for "no labels"
      ...(cfg.labels != null && Object.keys(cfg.labels).length > 0 ? { labels: cfg.labels } : {}),
      seq: this.seq,
      ts: now,
      expires: now + ADVERT_TTL_MS
    }
  }

  /** A scheduled advert (start, refresh, echo): counted against the rate, sent in any case (they are spaced to fit it). */
  private send (): void {
    this.budget.take('self', 1)
    this.publish()
  }

  /** Our advert on the topic: every node hears it (the requesters waiting for a slot too, if it shows one). */
  private publish (): void {
    const advert = this.signed()
    if (advert == null) return
    if ((advert.payload.free ?? 0) > 0) this.waiting.clear()
    this.lastSent = Date.now()
    void this.ctx.network.publish(ADVERTS_TOPIC, encodeBatch([advert])).catch(err => { this.ctx.log.debug({ err }, 'advert not published (no peers yet)') })
  }

  /** Our advert, with a free slot, to each requester we turned away since the last one. */
  private wake (): void {
    const advert = this.signed()
    if (advert == null) return
    for (const requester of this.waiting) this.direct(requester, advert)
    this.waiting.clear()
  }

  private signed (): Signed<Advert> | undefined {
    if (this.ctx.engines().length === 0) return undefined // nothing to run: nothing to advertise
    return sign(this.ctx.deps.signer, 'advert', this.build())
  }

  private later (ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t)
      fn()
    }, ms)
    t.unref()
    this.timers.add(t)
  }
}
