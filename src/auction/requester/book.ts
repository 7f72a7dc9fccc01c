/**
 * The requester's provider book: the freshest capacity advert of each
 * provider heard on `mercato/adverts/1`, and how each one answered our
 * invitations. The planner's invitation rule (`invite.ts`) reads it to
 * offer a job to the handful of providers that can plausibly win it.
 *
 * Bounded: at most MAX_BOOK_ENTRIES providers (the one heard from least
 * recently goes first), one advert each (a newer `seq` replaces it, an older
 * one is ignored), expired adverts dropped when read. A provider invited and
 * silent BOOK_STRIKES_OUT times in a row is benched for BOOK_BENCH_MS; an
 * answer clears its strikes. The price a provider last bid is kept beside its
 * advert, and for BOOK_OBSERVED_MS it ranks the provider instead of the
 * advertised ask: a provider that advertises a low ask and bids high (a liar,
 * or one surging while busy) loses its cheap seat after one answer, not never. Nothing here is logged: an advert costs a map
 * entry, not a record.
 */
import type { Signed } from '../../crypto/index.js'
import { BOOK_BENCH_MS, BOOK_FULL_MS, BOOK_OBSERVED_MS, BOOK_STRIKES_OUT, MAX_BOOK_ENTRIES } from '../constants.js'
import type { Advert } from '../protocol/messages.js'

export interface BookEntry {
  advert: Advert
  /** when we heard it */
  at: number
  /** invitations left unanswered in a row */
  strikes: number
  /** not invited before this time */
  benchedUntil: number
  /** the price of its latest bid to us, and when */
  observed?: { price: number, at: number }
  /** it declined for want of a free slot: invited after the others until then */
  fullUntil?: number
}

/** Did it say it was full a moment ago? */
export function isFull (e: BookEntry, now = Date.now()): boolean {
  return e.fullUntil != null && e.fullUntil > now
}

/** The price to rank a provider by: its latest bid while fresh, else its advertised ask. */
export function effectiveAsk (e: BookEntry, now = Date.now()): number {
  return e.observed != null && now - e.observed.at < BOOK_OBSERVED_MS ? e.observed.price : e.advert.ask
}

/**
 * The least this provider can bid now, if it bids as it advertised: its base ask (a bid adds
 * surge to it, never takes from it), or its latest bid while fresh when that was lower. The
 * early close of an invited round (invite.ts `roundDecided`) waits for every silent invitee
 * whose floor could still beat the bids in hand.
 */
export function askFloor (e: BookEntry, now = Date.now()): number {
  return Math.min(e.advert.ask, effectiveAsk(e, now))
}

export class ProviderBook {
  private readonly entries = new Map<string, BookEntry>()
  readonly counts = { added: 0, replaced: 0, stale: 0, evicted: 0, benched: 0 }

  constructor (private readonly max = MAX_BOOK_ENTRIES) {}

  get size (): number { return this.entries.size }

  /** Take a checked advert; false when we hold a newer one of that provider. */
  add (signed: Signed<Advert>, now = Date.now()): boolean {
    const a = signed.payload
    const held = this.entries.get(a.provider)
    if (held != null && held.advert.seq >= a.seq) { this.counts.stale++; return false }
    if (held != null) {
      this.entries.delete(a.provider) // re-inserted: the map stays ordered by last heard
      this.counts.replaced++
    } else {
      this.counts.added++
    }
    this.entries.set(a.provider, { advert: a, at: now, strikes: held?.strikes ?? 0, benchedUntil: held?.benchedUntil ?? 0, observed: held?.observed, fullUntil: held?.fullUntil })
    if (this.entries.size > this.max) {
      this.entries.delete(this.entries.keys().next().value as string)
      this.counts.evicted++
    }
    return true
  }

  get (provider: string): BookEntry | undefined { return this.entries.get(provider) }

  /** Every entry held, benched ones too (for views). */
  all (): BookEntry[] { return [...this.entries.values()] }

  /** Fresh, not benched entries (expired ones are dropped on the way). */
  current (now = Date.now()): BookEntry[] {
    const out: BookEntry[] = []
    for (const [p, e] of this.entries) {
      if (e.advert.expires < now) { this.entries.delete(p); continue }
      if (e.benchedUntil > now) continue
      out.push(e)
    }
    return out
  }

  /** An invited provider did not answer in the window. */
  strike (provider: string, now = Date.now()): void {
    const e = this.entries.get(provider)
    if (e == null) return
    e.strikes++
    if (e.strikes >= BOOK_STRIKES_OUT) {
      e.strikes = 0
      e.benchedUntil = now + BOOK_BENCH_MS
      this.counts.benched++
    }
  }

  /** An invited provider answered (a bid or a decline). */
  answered (provider: string): void {
    const e = this.entries.get(provider)
    if (e != null) e.strikes = 0
  }

  /** A provider bid this price (any bid, invited or not). */
  observe (provider: string, price: number, now = Date.now()): void {
    const e = this.entries.get(provider)
    if (e == null) return
    e.observed = { price, at: now }
    e.fullUntil = undefined
  }

  /** It declined: every slot busy. For BOOK_FULL_MS the providers with room are invited before it. */
  full (provider: string, now = Date.now()): void {
    const e = this.entries.get(provider)
    if (e != null) e.fullUntil = now + BOOK_FULL_MS
  }

  /** A provider that took an award and dropped it is benched at once. */
  bench (provider: string, now = Date.now()): void {
    const e = this.entries.get(provider)
    if (e == null) return
    e.strikes = 0
    e.benchedUntil = now + BOOK_BENCH_MS
    this.counts.benched++
  }
}
