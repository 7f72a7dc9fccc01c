/**
 * The market's rules, as pure functions anyone can re-run.
 *
 * Winner rule: lowest price; ties by earliest estimated start; then by
 * sha256(jobId || providerPeerId) so the order is deterministic and no
 * provider can buy a better place in ties.
 *
 * Settlement is uniform-price (second price for one replica): with k
 * winners, each is paid the (k+1)-th lowest ask, capped at maxPrice; when
 * there is no (k+1)-th ask, each winner is paid its own ask.
 */
import { sha256, toHex } from '../../crypto/index.js'

export interface RankedBid {
  provider: string
  price: number
  estStartMs: number
  /** digest of the signed bid */
  id: string
}

export function tieBreak (jobId: string, provider: string): string {
  return toHex(sha256(new TextEncoder().encode(`${jobId}\u0000${provider}`)))
}

/** Bids in award order (best first), one per provider (its lowest ask). */
export function rankBids<T extends RankedBid> (jobId: string, bids: T[]): T[] {
  const best = new Map<string, T>()
  for (const b of bids) {
    const cur = best.get(b.provider)
    if (cur == null || compare(jobId, b, cur) < 0) best.set(b.provider, b)
  }
  return [...best.values()].sort((a, b) => compare(jobId, a, b))
}

function compare (jobId: string, a: RankedBid, b: RankedBid): number {
  if (a.price !== b.price) return a.price - b.price
  if (a.estStartMs !== b.estStartMs) return a.estStartMs - b.estStartMs
  const ta = tieBreak(jobId, a.provider)
  const tb = tieBreak(jobId, b.provider)
  return ta < tb ? -1 : ta > tb ? 1 : 0
}

/** What the i-th winner (0-based) of k is paid, given the ranked bids. */
export function settlementPrice (ranked: RankedBid[], k: number, index: number, maxPrice: number): number {
  const winner = ranked[index]
  if (winner == null) throw new RangeError('no such winner')
  const clearing = ranked[k]
  const price = clearing != null ? clearing.price : winner.price
  return Math.min(Math.max(price, winner.price), maxPrice)
}
