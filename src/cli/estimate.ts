/**
 * `mercato submit --dry-run`: what a job would cost at the asks the node
 * knows now (`GET /v1/providers`: each provider's advertised ask, else its
 * last bid), by the auction's own price rule (protocol/rules.ts): the k
 * cheapest eligible asks win and each is paid the (k+1)-th ask, at least its
 * own and at most maxPrice. An estimate: asks move, and a provider that is
 * busy or declines does not bid.
 */
import type { JobSpec, ProviderView } from '../client/index.js'
import { settlementPrice, type RankedBid } from '../auction/protocol/rules.js'

export interface Estimate {
  engine: string
  /** providers known for the engine with an ask within maxPrice */
  providers: number
  /** their asks, cheapest first */
  asks: number[]
  replicas: number
  /** credits per job (every replica), null when no provider is known */
  perJob: number | null
  /** with --each: the jobs and their total */
  jobs?: number
  total?: number | null
}

export function estimate (spec: JobSpec, providers: ProviderView[], jobs?: number): Estimate {
  const maxPrice = spec.maxPrice ?? Number.POSITIVE_INFINITY
  const asks = providers
    .filter(p => p.engines.length === 0 || p.engines.includes(spec.engine))
    .map(p => p.advert?.ask ?? p.lastAsk)
    .filter((a): a is number => a != null && a <= maxPrice)
    .sort((a, b) => a - b)
  const replicas = spec.replicas ?? 1
  const ranked: RankedBid[] = asks.map((price, i) => ({ price, provider: String(i), estStartMs: 0, id: String(i) }))
  const k = Math.min(replicas, ranked.length)
  let perJob: number | null = null
  if (k > 0) {
    perJob = 0
    for (let i = 0; i < k; i++) perJob += settlementPrice(ranked, k, i, maxPrice)
  }
  const e: Estimate = { engine: spec.engine, providers: asks.length, asks, replicas, perJob }
  if (jobs != null) { e.jobs = jobs; e.total = perJob == null ? null : perJob * jobs }
  return e
}

export function estimateText (e: Estimate): string {
  if (e.perJob == null) return `cost: unknown: the node knows no ${e.engine} provider with an ask within maxPrice yet\n`
  const asks = e.asks.length > 8 ? `${e.asks.slice(0, 8).join(', ')}, …` : e.asks.join(', ')
  let s = `cost: ${e.perJob} credit${e.perJob === 1 ? '' : 's'} per job${e.replicas > 1 ? ` (${e.replicas} replicas)` : ''} at the current asks of ${e.providers} ${e.engine} provider${e.providers === 1 ? '' : 's'} (${asks})\n`
  if (e.jobs != null) s += `      × ${e.jobs} job${e.jobs === 1 ? '' : 's'} = ${e.total ?? '?'} credits\n`
  return s
}
