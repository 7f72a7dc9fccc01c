/**
 * What the gateway shows of the requester's jobs: views built from a job's
 * books, never the books themselves.
 */
import { JobStateError, NotFoundError } from '../../errors.js'
import { rankBids } from '../protocol/rules.js'
import { JOB_STATUSES, type JobEvent, type JobStatus, type JobView, type ResultView } from '../types.js'
import { isInFlight } from './plan.js'
import { isTerminal, type RequesterJob } from './job.js'
import type { BookEntry } from './book.js'

export function jobOf (jobs: ReadonlyMap<string, RequesterJob>, id: string): RequesterJob {
  const job = jobs.get(id)
  if (job == null) throw new NotFoundError(`no job ${id}`, 'job-not-found')
  return job
}

export function view (job: RequesterJob): JobView {
  const holding = job.attempts.filter(a => isInFlight(a.state))
  return {
    id: job.id,
    status: job.status,
    engine: job.spec.engine,
    provider: job.final?.providers[0] ?? holding[0]?.provider ?? null,
    providers: job.final?.providers ?? holding.map(a => a.provider),
    price: job.final?.price ?? holding[0]?.price ?? null,
    maxPrice: job.maxPrice,
    replicas: job.replicas,
    bids: rankBids(job.id, [...job.bids.values()]).map(b => ({ provider: b.provider, price: b.price, estStartMs: b.estStartMs, id: b.id })),
    attempts: job.attempts.map(a => ({ provider: a.provider, price: a.price, attempt: a.attempt, state: a.state, awardedAt: a.awardedAt, endedAt: a.endedAt, reason: a.reason })),
    declines: [...job.declines].map(([p, d]) => ({ provider: p, reason: d.reason, detail: d.detail })),
    createdAt: job.createdAt,
    completedAt: job.completedAt ?? null,
    latencyMs: job.completedAt != null ? job.completedAt - job.createdAt : null,
    error: job.error
  }
}

/** Newest first, optionally one status only. */
export function list (jobs: ReadonlyMap<string, RequesterJob>, opts: { status?: JobStatus, limit?: number } = {}): JobView[] {
  const out: JobView[] = []
  for (const job of [...jobs.values()].reverse()) {
    if (opts.status != null && job.status !== opts.status) continue
    out.push(view(job))
    if (out.length >= (opts.limit ?? 100)) break
  }
  return out
}

export function events (jobs: ReadonlyMap<string, RequesterJob>, id: string): JobEvent[] {
  return [...jobOf(jobs, id).events]
}

/** Jobs by state, every state present. */
export function statusCounts (jobs: ReadonlyMap<string, RequesterJob>): Map<JobStatus, number> {
  const counts = new Map<JobStatus, number>(JOB_STATUSES.map(s => [s, 0]))
  for (const job of jobs.values()) counts.set(job.status, (counts.get(job.status) ?? 0) + 1)
  return counts
}

export function result (jobs: ReadonlyMap<string, RequesterJob>, id: string): ResultView {
  const job = jobOf(jobs, id)
  if (job.final == null) throw new JobStateError(`job ${id} is ${job.status}; no result yet`)
  const r = job.final.result.payload
  const dec = new TextDecoder()
  return {
    jobId: job.id,
    exitCode: r.exitCode,
    stdout: dec.decode(r.stdout),
    stderr: dec.decode(r.stderr),
    output: r.output,
    truncated: r.truncated,
    error: r.error,
    resultHash: r.resultHash,
    provider: job.final.providers[0],
    providers: job.final.providers,
    price: job.final.price,
    usage: r.usage
  }
}

/** What the book holds of a provider: its advert, and how it answered our invitations. */
export interface AdvertView { ask: number, slots: number, caps: { timeoutMs: number, memoryMb: number, outputBytes: number }, expires: number, strikes: number, benchedUntil: number | null }

export interface KnownProvider { peerId: string, engines: string[], lastAsk: number | null, self: boolean, advert?: AdvertView | null }

type Known = { peerId: string, engines: Set<string>, lastAsk: number | null, self: boolean, advert: AdvertView | null }

/** Providers this node knows of: the jobs-topic mesh, DHT engine providers, the book's adverts, and every bidder seen. */
export function knownProviders (self: string, topicPeers: string[], engineMap: ReadonlyMap<string, { peers: string[] }>, jobs: Iterable<RequesterJob>, book: readonly BookEntry[] = []): KnownProvider[] {
  const out = new Map<string, Known>()
  const get = (peerId: string): Known => {
    let e = out.get(peerId)
    if (e == null) { e = { peerId, engines: new Set(), lastAsk: null, self: peerId === self, advert: null }; out.set(peerId, e) }
    return e
  }
  for (const b of book) {
    const a = b.advert
    const e = get(a.provider)
    for (const engine of a.engines) e.engines.add(engine)
    e.advert = { ask: a.ask, slots: a.slots, caps: a.caps, expires: a.expires, strikes: b.strikes, benchedUntil: b.benchedUntil > Date.now() ? b.benchedUntil : null }
  }
  for (const p of topicPeers) get(p)
  for (const [engine, { peers }] of engineMap) for (const p of peers) get(p).engines.add(engine)
  for (const job of jobs) {
    for (const b of job.bids.values()) { const e = get(b.provider); e.lastAsk = b.price; e.engines.add(job.spec.engine) }
  }
  return [...out.values()].map(e => ({ ...e, engines: [...e.engines].sort() }))
}

export { isTerminal }
