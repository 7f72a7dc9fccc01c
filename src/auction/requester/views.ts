/**
 * What the gateway shows of the requester's jobs: views built from a job's
 * books, never the books themselves; or, for a finished job no longer held
 * in memory, from what the log keeps of it (journal.ts `readFinishedJob`):
 * the same fields, as far as the log holds them (see {@link viewFromLog}).
 */
import { messageId, type Signed } from '../../crypto/index.js'
import { JobStateError } from '../../errors.js'
import type { FinishedAward, FinishedJob } from '../protocol/journal.js'
import { DECLINE_REASONS, type DeclineReason, type Result } from '../protocol/messages.js'
import { rankBids } from '../protocol/rules.js'
import { JOB_STATUSES, type AttemptView, type JobStatus, type JobView, type ResultView } from '../types.js'
import { isInFlight } from './plan.js'
import { declinesOf, isTerminal, type RequesterJob } from './job.js'
import type { BookEntry } from './book.js'
import type { Labels } from '../../labels.js'

export function view (job: RequesterJob): JobView {
  const holding = job.attempts.filter(a => isInFlight(a.state))
  return {
    id: job.id,
    ...(job.name != null ? { name: job.name } : {}),
    labels: job.labels ?? {},
    constraints: job.constraints ?? [],
    status: job.status,
    engine: job.spec.engine,
    provider: job.final?.providers[0] ?? holding[0]?.provider ?? null,
    providers: job.final?.providers ?? holding.map(a => a.provider),
    price: job.final?.price ?? holding[0]?.price ?? null,
    maxPrice: job.maxPrice,
    replicas: job.replicas,
    bids: rankBids(job.id, [...job.bids.values()]).map(b => ({ provider: b.provider, price: b.price, estStartMs: b.estStartMs, id: b.id })),
    attempts: job.attempts.map(a => ({ provider: a.provider, price: a.price, attempt: a.attempt, state: a.state, awardedAt: a.awardedAt, endedAt: a.endedAt, ...(isInFlight(a.state) ? { lastSeen: a.lastSeen } : {}), reason: a.reason })),
    declines: declinesOf(job),
    createdAt: job.createdAt,
    completedAt: job.completedAt ?? null,
    latencyMs: job.completedAt != null ? job.completedAt - job.createdAt : null,
    error: job.error,
    ...(job.queueUntil > 0 ? { queueUntil: job.queueUntil } : {})
  }
}

const isDeclineReason = (r: string): r is DeclineReason => (DECLINE_REASONS as readonly string[]).includes(r)

export interface ListOptions {
  status?: JobStatus
  limit?: number
  /** only jobs carrying every one of these labels (`{ project: 'atlas' }`) */
  labels?: Readonly<Labels>
}

/** Newest first, optionally one status only, optionally only jobs with these labels. */
export function list (jobs: ReadonlyMap<string, RequesterJob>, opts: ListOptions = {}): JobView[] {
  const out: JobView[] = []
  const wanted = opts.labels != null ? Object.entries(opts.labels) : []
  for (const job of [...jobs.values()].reverse()) {
    if (opts.status != null && job.status !== opts.status) continue
    if (wanted.length > 0 && !wanted.every(([k, v]) => job.labels != null && Object.hasOwn(job.labels, k) && job.labels[k] === v)) continue
    out.push(view(job))
    if (out.length >= (opts.limit ?? 100)) break
  }
  return out
}

/** Jobs by state, every state present. */
export function statusCounts (jobs: ReadonlyMap<string, RequesterJob>): Map<JobStatus, number> {
  const counts = new Map<JobStatus, number>(JOB_STATUSES.map(s => [s, 0]))
  for (const job of jobs.values()) counts.set(job.status, (counts.get(job.status) ?? 0) + 1)
  return counts
}

export function result (job: RequesterJob): ResultView {
  if (job.final == null) throw new JobStateError(`job ${job.id} is ${job.status}; no result yet`)
  return resultView(job.id, job.final.result, job.final.providers, job.final.price)
}

function resultView (jobId: string, result: Signed<Result>, providers: string[], price: number): ResultView {
  const r = result.payload
  const dec = new TextDecoder()
  return {
    jobId,
    exitCode: r.exitCode,
    stdout: dec.decode(r.stdout),
    stderr: dec.decode(r.stderr),
    output: r.output,
    outputs: (r.outputs ?? []).map(o => ({ path: o.path, cid: o.cid, size: o.size })),
    truncated: r.truncated,
    error: r.error,
    resultHash: r.resultHash,
    provider: providers[0],
    providers,
    price,
    usage: r.usage
  }
}

/** What the book holds of a provider: its advert, and how it answered our invitations. */
export interface AdvertView { ask: number, slots: number, caps: { timeoutMs: number, memoryMb: number, outputBytes: number }, inputs?: { files: number, fileBytes: number, totalBytes: number }, labels: Labels, expires: number, strikes: number, benchedUntil: number | null }

/**
 * A finished job's view rebuilt from the log: status, engine, provider(s), price, bids, declines,
 * times and error as the in-memory view had them. Each attempt's state and end are what the log
 * shows (see {@link attemptFromLog}).
 */
export function viewFromLog (f: FinishedJob): JobView {
  const attempts = f.awards.map(a => attemptFromLog(a, f))
  const holding = attempts.filter(a => isInFlight(a.state))
  const paid = f.paid.length > 0 ? { providers: f.paid.map(r => r.payload.provider), price: paidPrice(f) } : undefined
  const bids = f.bids.map(b => ({ id: messageId(b), provider: b.signer, price: b.payload.price, estStartMs: b.payload.estStartMs }))
  return {
    id: f.jobId,
    ...(f.name != null ? { name: f.name } : {}),
    labels: f.labels ?? {},
    constraints: f.constraints ?? f.offer?.payload.constraints ?? [],
    status: f.status,
    engine: f.engine,
    provider: paid?.providers[0] ?? holding[0]?.provider ?? null,
    providers: paid?.providers ?? holding.map(a => a.provider),
    price: paid?.price ?? holding[0]?.price ?? null,
    maxPrice: f.maxPrice,
    replicas: f.replicas,
    bids: rankBids(f.jobId, bids).map(b => ({ provider: b.provider, price: b.price, estStartMs: b.estStartMs, id: b.id })),
    attempts,
    // a no-bids job's end record names every decline it collected (a queued job's rounds are not logged one by one)
    declines: f.status === 'no-bids' && f.endDeclines != null
      ? f.endDeclines.flatMap(d => isDeclineReason(d.reason) ? [{ provider: d.provider, reason: d.reason, detail: d.detail }] : [])
      : f.declines.map(d => ({ provider: d.signer, reason: d.payload.reason, detail: d.payload.detail })),
    createdAt: f.createdAt,
    completedAt: f.completedAt,
    latencyMs: f.completedAt - f.createdAt,
    error: f.error,
    ...(f.queueUntil != null ? { queueUntil: f.queueUntil } : {})
  }
}

/**
 * An attempt as the log tells it: a paid, superseded or failed receipt (completed, superseded,
 * mismatch), a handover (lost, with its reason), a result never receipted (completed, or
 * cancelled in a cancelled job); with no end logged, cancelled in a cancelled job, else
 * `accepted` when the provider's accept was logged (it may have been running), else `refused`
 * (a refusal's reason and time are not logged).
 */
function attemptFromLog (a: FinishedAward, f: FinishedJob): AttemptView {
  const aw = a.award.payload
  const base = { provider: aw.provider, price: aw.price, attempt: aw.attempt, awardedAt: aw.ts }
  if (a.lost != null) return { ...base, state: 'lost', endedAt: a.lost.at, reason: a.lost.reason }
  if (a.result != null) {
    const state = a.result.receipt === 'paid'
      ? 'completed'
      : a.result.receipt === 'superseded' ? 'superseded' : a.result.receipt === 'failed' ? 'mismatch' : f.status === 'cancelled' ? 'cancelled' : 'completed'
    return { ...base, state, endedAt: a.result.at }
  }
  if (f.status === 'cancelled') return { ...base, state: 'cancelled', endedAt: f.completedAt }
  return { ...base, state: a.accepted ? 'accepted' : 'refused' }
}

function paidPrice (f: FinishedJob): number {
  return f.paid.reduce((sum, r) => sum + r.payload.price, 0)
}

/** A finished job's result from the log: the result its first paid receipt names, who was paid, and how much. */
export function resultFromLog (f: FinishedJob): ResultView {
  if (f.result == null) throw new JobStateError(`job ${f.jobId} is ${f.status}; no result yet`)
  return resultView(f.jobId, f.result, f.paid.map(r => r.payload.provider), paidPrice(f))
}

export interface KnownProvider { peerId: string, engines: string[], lastAsk: number | null, self: boolean }

export interface KnownProvider { peerId: string, engines: string[], lastAsk: number | null, self: boolean, advert?: AdvertView | null, labels?: Labels }

/** What a requester remembers of a provider that bid on its jobs. */
export interface KnownBidder { lastAsk: number, engines: Set<string> }

type Known = { peerId: string, engines: Set<string>, lastAsk: number | null, self: boolean, advert: AdvertView | null }

/** Providers this node knows of: the jobs-topic mesh, DHT engine providers, the book's adverts, and the bidders remembered (their last ask). */
export function knownProviders (self: string, topicPeers: string[], engineMap: ReadonlyMap<string, { peers: string[] }>, bidders: Iterable<[string, KnownBidder]>, book: readonly BookEntry[] = []): KnownProvider[] {
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
    e.advert = { ask: a.ask, slots: a.slots, caps: a.caps, ...(a.inputs != null ? { inputs: a.inputs } : {}), labels: a.labels ?? {}, expires: a.expires, strikes: b.strikes, benchedUntil: b.benchedUntil > Date.now() ? b.benchedUntil : null }
  }
  for (const p of topicPeers) get(p)
  for (const [engine, { peers }] of engineMap) for (const p of peers) get(p).engines.add(engine)
  for (const [provider, b] of bidders) { const e = get(provider); e.lastAsk = b.lastAsk; for (const engine of b.engines) e.engines.add(engine) }
  // `labels`: what its advert says of it (absent when we hold no advert of it)
  return [...out.values()].map(e => ({ ...e, engines: [...e.engines].sort(), ...(e.advert != null ? { labels: e.advert.labels } : {}) }))
}

export { isTerminal }
