/**
 * The market over the last 15 minutes, for the dashboard's charts: asks of
 * known providers (sampled) and every finished job's price, latency and bid
 * count (from the market's `done` events). Bounded by time and by count; the
 * page reads it once (`GET /v1/market/history`) and follows live from there.
 */
import type { Market } from '../auction/index.js'
import { logger } from '../logger.js'
import { MARKET_HISTORY_JOBS, MARKET_HISTORY_PROVIDERS, MARKET_HISTORY_SAMPLE_MS, MARKET_HISTORY_WINDOW_MS } from './constants.js'

export interface AskSample { t: number, asks: Record<string, number> }
export interface JobPoint { id: string, status: string, completedAt: number, price: number | null, latencyMs: number | null, bids: number }
export interface MarketHistoryView { windowMs: number, asks: AskSample[], jobs: JobPoint[] }

const log = logger('gateway:history')

export class MarketHistory {
  private readonly market: Market
  private readonly asks: AskSample[] = []
  private readonly jobs: JobPoint[] = []
  private timer?: NodeJS.Timeout
  private readonly onDone = (id: string): void => {
    this.market.get(id).then(j => {
      if (j.completedAt == null) return
      this.jobs.push({ id: j.id, status: j.status, completedAt: j.completedAt, price: j.price, latencyMs: j.latencyMs, bids: j.bids.length })
      if (this.jobs.length > MARKET_HISTORY_JOBS) this.jobs.splice(0, this.jobs.length - MARKET_HISTORY_JOBS)
      this.sample()
    }, (err: unknown) => { log.debug({ err, jobId: id }, 'finished job not readable for the history') })
  }

  constructor (market: Market) {
    this.market = market
  }

  start (): void {
    this.market.events.on('done', this.onDone)
    this.sample()
    this.timer = setInterval(() => { this.sample() }, MARKET_HISTORY_SAMPLE_MS)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.market.events.off('done', this.onDone)
  }

  /** The asks known now, as one sample (the same asks a moment apart make one sample). */
  sample (now = Date.now()): void {
    const asks: Record<string, number> = {}
    let n = 0
    for (const p of this.market.providers()) {
      if (p.lastAsk == null || n >= MARKET_HISTORY_PROVIDERS) continue
      asks[p.peerId] = p.lastAsk
      n++
    }
    const last = this.asks[this.asks.length - 1]
    if (last != null && now - last.t < 1000 && JSON.stringify(last.asks) === JSON.stringify(asks)) return
    this.asks.push({ t: now, asks })
    this.prune(now)
  }

  view (now = Date.now()): MarketHistoryView {
    this.prune(now)
    return { windowMs: MARKET_HISTORY_WINDOW_MS, asks: [...this.asks], jobs: [...this.jobs] }
  }

  private prune (now: number): void {
    const from = now - MARKET_HISTORY_WINDOW_MS
    let i = 0
    while (i < this.asks.length && this.asks[i].t < from) i++
    if (i > 0) this.asks.splice(0, i)
    let k = 0
    while (k < this.jobs.length && this.jobs[k].completedAt < from) k++
    if (k > 0) this.jobs.splice(0, k)
  }
}
