/**
 * What happens next to a job: the requester's one decision function.
 *
 * PURE: no network, no log, no clock of its own. The driver (`index.ts`)
 * feeds it the job as it stands and the event that just happened, and runs
 * the step it returns: announce, award these bids, settle on this hash,
 * fail with this reason, withdraw these awards, ask these providers for
 * status, or wait. Every rule about retries lives here, once:
 *
 * - **Attempts.** A job is announced at most `maxAttempts` times
 *   ({@link canAnnounce}; announcements from the queue do not count), and
 *   awarded at most `maxAttempts × replicas` times (plus one per extra run).
 * - **Queue.** A round that closes with no bid it could award and nothing in
 *   flight queues the job while its queue time lasts (`queueUntil`);
 *   after it, a job never awarded ends `no-bids`.
 * - **Runner-up first.** When an award ends (refused, lost) the best
 *   untried bidder of the round gets it; only when none is left and nothing
 *   is in flight is the job announced again, or failed at the limit.
 * - **Trust** (`trust.ts`). Only eligible bids may win: while a proven
 *   provider still bids, an unproven one gets at most one (probation)
 *   attempt per job; the price is the uniform price over the eligible bids.
 * - **Checked probation.** A probation attempt runs beside the best proven
 *   bidder (a check run), and its result settles the job only with a proven
 *   provider agreeing ({@link needsProvenAgreement}): a key costs nothing,
 *   and an unchecked result made any key proven after one job, paid for
 *   whatever it answered, winning every later job at price 0.
 * - **Quorum.** A majority of `replicas` agreeing on a result hash settles
 *   the job; disagreement with nothing in flight buys an extra run, up to
 *   `maxExtraRuns`.
 * - **Liveness.** Silence makes a provider suspect, then lost; a deadline
 *   makes it lost whatever its heartbeats say.
 */
import type { RankedBid } from '../protocol/rules.js'
import { rankBids, settlementPrice } from '../protocol/rules.js'
import { TERMINAL, type AttemptView, type JobStatus } from '../types.js'
import { eligibleBids, type Trust } from './trust.js'

export { attemptDeadline } from './trust.js'

export type AttemptState = AttemptView['state']

/** Attempt states in which the provider holds the job now. */
const IN_FLIGHT: ReadonlySet<AttemptState> = new Set(['offered', 'accepted', 'running'])

export function isInFlight (state: AttemptState): boolean {
  return IN_FLIGHT.has(state)
}

export interface PlanConfig {
  /** announcements per job, and awards per replica */
  maxAttempts: number
  /** extra runs when replica results disagree */
  maxExtraRuns: number
}

export interface PlanAttempt {
  provider: string
  state: AttemptState
  /** the provider's trust when it was awarded (an attempt on a non-proven one is the job's probation) */
  trust: Trust
}

/** The job as the planner sees it. */
export interface PlanJob<B extends RankedBid = RankedBid> {
  id: string
  status: JobStatus
  replicas: number
  maxPrice: number
  /** announcements made so far, less one (the first is round 0) */
  round: number
  extraRuns: number
  /** this round's bids */
  bids: Iterable<B>
  /** this round went to invitees only (not an open call on the jobs topic) */
  invitedRound?: boolean
  /** providers lost on this job: never awarded again */
  excluded: ReadonlySet<string>
  attempts: readonly PlanAttempt[]
  /** counted results: provider → result hash */
  results: ReadonlyMap<string, string>
  /** the settled result's hash, once the job is settled */
  finalHash?: string
  /** how far the requester trusts a provider now (trust.ts) */
  trustOf: (provider: string) => Trust
  /** when the job's queue time ends (0: it never queues) */
  queueUntil?: number
  /** announcements made from the queue (not counted toward maxAttempts) */
  requeues?: number
  /** the time the planner is asked at */
  now?: number
}

export type PlanEvent =
  /** the bid window closed */
  | { type: 'closed' }
  /** an award ended without a counted result (refused or lost): its slot is free */
  | { type: 'ended' }
  /** a result was counted */
  | { type: 'result' }
  | { type: 'cancel' }
  /** rebuilt from the log after a restart */
  | { type: 'recovered' }

export type Step<B extends RankedBid = RankedBid> =
  | { kind: 'wait' }
  /** announce again as `round`; `extraRun`: count one more extra run first */
  | { kind: 'announce', round: number, extraRun: boolean }
  /** award these bids at these prices; `eligible`: the bids the winner rule ran over */
  | { kind: 'award', awards: Array<{ bid: B, price: number, trust: Trust, eligible: B[] }>, extraRun: boolean }
  /** the quorum agrees on `hash`: pay `agreeing`, record a mismatch for `outvoted` */
  | { kind: 'settle', hash: string, agreeing: string[], outvoted: string[] }
  | { kind: 'fail', status: 'failed' | 'no-bids', reason: string }
  /** withdraw the awards at these indexes and end the job cancelled */
  | { kind: 'cancel', withdraw: number[] }
  /** after a restart: ask the providers of these attempts for status */
  | { kind: 'poll', attempts: number[] }
  /** the event does not apply in this state (e.g. cancel a finished job) */
  | { kind: 'refuse', reason: string }
  /** no bid to award and nothing in flight, with queue time left: wait in the queue (queue.ts) */
  | { kind: 'queue' }

/** The one rule about announcing again: at most `maxAttempts` announcements per job, those from the queue not counted. */
export function canAnnounce (job: Pick<PlanJob, 'round' | 'requeues'>, cfg: PlanConfig): boolean {
  return job.round - (job.requeues ?? 0) + 1 < cfg.maxAttempts
}

/** Is there queue time left? */
export function mayQueue (job: Pick<PlanJob, 'queueUntil' | 'now'>): boolean {
  return (job.queueUntil ?? 0) > (job.now ?? Date.now())
}

/** Majority of the replicas. */
export function quorumOf (replicas: number): number {
  return Math.floor(replicas / 2) + 1
}

/** This round's bids in award order, less the providers lost on this job. */
export function rankedBids<B extends RankedBid> (job: PlanJob<B>): B[] {
  return rankBids(job.id, [...job.bids]).filter(b => !job.excluded.has(b.provider))
}

function inFlightCount (job: PlanJob<any>): number {
  let n = 0
  for (const a of job.attempts) if (IN_FLIGHT.has(a.state)) n++
  return n
}

/** What to do next, given the job and what just happened. */
export function next<B extends RankedBid> (job: PlanJob<B>, event: PlanEvent, cfg: PlanConfig): Step<B> {
  if (event.type === 'cancel') return cancel(job)
  if (TERMINAL.has(job.status)) return { kind: 'wait' }
  switch (event.type) {
    case 'closed': return afterWindow(job, cfg)
    case 'ended': return afterEnded(job, cfg)
    case 'result': return tally(job, cfg)
    case 'recovered': return recovered(job)
  }
}

function cancel (job: PlanJob<any>): Step<any> {
  if (TERMINAL.has(job.status)) return { kind: 'refuse', reason: `job ${job.id} is already ${job.status}` }
  const withdraw: number[] = []
  job.attempts.forEach((a, i) => { if (IN_FLIGHT.has(a.state)) withdraw.push(i) })
  return { kind: 'cancel', withdraw }
}

/**
 * Must the settling hash have a proven provider among its agreeing? When the job had a probation
 * attempt and a proven provider can still check it: one runs, has answered, or bid and was not
 * tried yet. With nobody proven left (a new network, every proven provider busy, or the check
 * lost with no proven runner-up) a probation result settles as before: a job never stalls.
 */
export function needsProvenAgreement (job: PlanJob<any>): boolean {
  if (!job.attempts.some(a => a.trust !== 'proven')) return false
  if (provenCheckUnderWay(job)) return true
  const tried = new Set(job.attempts.map(a => a.provider))
  return rankedBids(job).some(b => !tried.has(b.provider) && job.trustOf(b.provider) === 'proven')
}

/** A run on a proven provider is in flight or has answered. */
function provenCheckUnderWay (job: PlanJob<any>): boolean {
  return job.attempts.some(a => a.trust === 'proven' && (IN_FLIGHT.has(a.state) || job.results.has(a.provider)))
}

/** The providers of the job's attempts on proven providers. */
function provenRuns (job: PlanJob<any>): Set<string> {
  return new Set(job.attempts.filter(a => a.trust === 'proven').map(a => a.provider))
}

/** A hash a quorum agrees on (with a proven provider among them when needed): the settle step. */
function quorumStep (job: PlanJob<any>): Step<any> | undefined {
  const byHash = new Map<string, string[]>()
  for (const [provider, hash] of job.results) {
    const list = byHash.get(hash) ?? []
    list.push(provider)
    byHash.set(hash, list)
  }
  const quorum = quorumOf(job.replicas)
  const proven = needsProvenAgreement(job) ? provenRuns(job) : undefined
  for (const [hash, agreeing] of byHash) {
    if (agreeing.length < quorum) continue
    if (proven != null && !agreeing.some(p => proven.has(p))) continue
    const outvoted = [...job.results].filter(([, h]) => h !== hash).map(([p]) => p)
    return { kind: 'settle', hash, agreeing, outvoted }
  }
  return undefined
}

/** A probation result waits for a proven run to agree and none is in flight or done: one is wanted, whatever the replica count says. */
function awaitsCheck (job: PlanJob<any>): boolean {
  return needsProvenAgreement(job) && !provenCheckUnderWay(job)
}

/** An award ended without a counted result: its slot goes to the runner-up, unless a run still in flight covers it. */
function afterEnded<B extends RankedBid> (job: PlanJob<B>, cfg: PlanConfig): Step<B> {
  const wanted = job.replicas + job.extraRuns - job.results.size - inFlightCount(job)
  if (wanted <= 0 && !awaitsCheck(job)) return { kind: 'wait' }
  return award(job, cfg, Math.max(1, wanted), false)
}

/** The window closed: award one run per replica still wanted, queue the job, or end the round. */
function afterWindow<B extends RankedBid> (job: PlanJob<B>, cfg: PlanConfig): Step<B> {
  const noBid = job.attempts.length === 0 && rankedBids(job).length === 0
  // nobody the book named bid (stale adverts, a loaded mesh): call the whole mesh at once, before
  // queueing or giving up, so a thin or wrong book never turns into a wait or no-bids
  if (noBid && job.invitedRound === true && canAnnounce(job, cfg)) return { kind: 'announce', round: job.round + 1, extraRun: false }
  // nothing this round could win and nothing running: wait in the queue while its time lasts
  if (inFlightCount(job) === 0 && job.results.size === 0 && !hasCandidate(job) && mayQueue(job)) return { kind: 'queue' }
  if (noBid) return { kind: 'fail', status: 'no-bids', reason: (job.queueUntil ?? 0) > 0 ? 'no provider bid before the queue timeout' : 'no provider bid' }
  const wanted = job.replicas + job.extraRuns - job.results.size - inFlightCount(job)
  if (wanted <= 0) return { kind: 'wait' }
  return award(job, cfg, wanted, false)
}

/** Has this round an eligible bidder not tried yet? */
function hasCandidate<B extends RankedBid> (job: PlanJob<B>): boolean {
  const tried = new Set(job.attempts.map(a => a.provider))
  const probationUsed = job.attempts.some(a => a.trust !== 'proven')
  return eligibleBids(rankedBids(job), job.trustOf, tried, probationUsed).some(b => !tried.has(b.provider))
}

/**
 * Award up to `count` of the best untried bidders. With none left and nothing in flight: announce
 * again, or fail at the limit. `extraRun` counts one more extra run (it raises the award cap).
 */
function award<B extends RankedBid> (job: PlanJob<B>, cfg: PlanConfig, count: number, extraRun: boolean): Step<B> {
  const busy = inFlightCount(job) > 0
  const ranked = rankedBids(job)
  const trustCache = new Map<string, Trust>()
  const trustOf = (p: string): Trust => { let t = trustCache.get(p); if (t == null) { t = job.trustOf(p); trustCache.set(p, t) } return t }
  // picked one by one: each pick is tried, and a non-proven pick uses up the job's probation
  const tried = new Set(job.attempts.map(a => a.provider))
  let probationUsed = job.attempts.some(a => a.trust !== 'proven')
  const cap = cfg.maxAttempts * job.replicas + job.extraRuns + (extraRun ? 1 : 0)
  const awards: Array<{ bid: B, price: number, trust: Trust, eligible: B[] }> = []
  while (awards.length < count) {
    const eligible = eligibleBids(ranked, trustOf, tried, probationUsed)
    const winner = eligible.find(b => !tried.has(b.provider))
    if (winner == null) break
    if (job.attempts.length + awards.length >= cap) {
      if (awards.length > 0) break
      return busy ? { kind: 'wait' } : { kind: 'fail', status: 'failed', reason: `gave up after ${job.attempts.length} attempts` }
    }
    // uniform price among the eligible bidders: the (k+1)-th ask, capped at maxPrice
    const index = Math.min(eligible.indexOf(winner), eligible.length - 1)
    const price = settlementPrice(eligible, Math.min(job.replicas, eligible.length), index, job.maxPrice)
    const trust = trustOf(winner.provider)
    awards.push({ bid: winner, price, trust, eligible })
    tried.add(winner.provider)
    if (trust !== 'proven') probationUsed = true
  }
  // a probation pick runs beside the best proven bidder, unless a proven run is under way or done
  if (awards.some(a => a.trust !== 'proven') && !awards.some(a => a.trust === 'proven') && !provenCheckUnderWay(job)) {
    const eligible = eligibleBids(ranked, trustOf, tried, true)
    const check = eligible.find(b => !tried.has(b.provider) && trustOf(b.provider) === 'proven')
    if (check != null && job.attempts.length + awards.length < cap) {
      const index = Math.min(eligible.indexOf(check), eligible.length - 1)
      awards.push({ bid: check, price: settlementPrice(eligible, Math.min(job.replicas, eligible.length), index, job.maxPrice), trust: 'proven', eligible })
    }
  }
  if (awards.length > 0) return { kind: 'award', awards, extraRun }
  if (busy) return { kind: 'wait' }
  if (canAnnounce(job, cfg)) return { kind: 'announce', round: job.round + 1, extraRun }
  return { kind: 'fail', status: 'failed', reason: `no provider left to run the job after ${job.round + 1} announcements` }
}

/** A result was counted: settle once a quorum agrees; otherwise run more, or give up. */
function tally<B extends RankedBid> (job: PlanJob<B>, cfg: PlanConfig): Step<B> {
  if (job.finalHash != null) return { kind: 'wait' }
  const settle = quorumStep(job)
  if (settle != null) return settle
  // a probation result and no proven run left to check it: one more (not an extra run)
  if (awaitsCheck(job)) {
    const step = award(job, cfg, 1, false)
    if (step.kind !== 'fail') return step
    return { kind: 'fail', status: 'failed', reason: 'no proven provider left to check a new provider\'s result' }
  }
  if (inFlightCount(job) > 0) return { kind: 'wait' }
  if (job.results.size >= job.replicas) {
    // every replica answered and they disagree: one more run, up to the cap
    if (job.extraRuns >= cfg.maxExtraRuns) return { kind: 'fail', status: 'failed', reason: 'replica results disagree and the extra-run cap is reached' }
    return award(job, cfg, 1, true)
  }
  // fewer results than replicas and nobody running (too few bidders): award more, or ask again
  const step = award(job, cfg, 1, false)
  if (step.kind === 'fail') return { kind: 'fail', status: 'failed', reason: `only ${job.results.size} of ${job.replicas} replicas could be run` }
  return step
}

/** After a restart: awards still live are asked for status; with none, the job is announced again. */
function recovered (job: PlanJob<any>): Step<any> {
  const live: number[] = []
  job.attempts.forEach((a, i) => { if (a.state === 'offered' || a.state === 'accepted') live.push(i) })
  if (live.length === 0) return { kind: 'announce', round: job.round + 1, extraRun: false }
  return { kind: 'poll', attempts: live }
}

// ---------------------------------------------------------------- results

/** How to treat a valid result from an attempt. */
export type ResultTreatment =
  /** the job was cancelled: log it, pay nothing */
  | 'cancelled'
  /** count it towards the quorum */
  | 'count'
  /** a replica that finished after the quorum, with the same answer: pay it */
  | 'late-paid'
  /** a replica that finished after the quorum, outvoted: mismatch */
  | 'late-mismatch'
  /** its award was handed over (or the job already settled): record, never pay */
  | 'superseded'

export function treatResult (job: Pick<PlanJob<any>, 'status' | 'replicas' | 'finalHash'>, attempt: PlanAttempt, hash: string): ResultTreatment {
  if (job.status === 'cancelled') return 'cancelled'
  const lost = attempt.state === 'lost'
  if (job.finalHash != null) {
    // a replica, or a probation run whose proven check finished first: judged by the settled hash
    if ((job.replicas > 1 || attempt.trust !== 'proven') && !lost) return hash === job.finalHash ? 'late-paid' : 'late-mismatch'
    return 'superseded'
  }
  // with replicas, a lost attempt's slot went to a runner-up: counting it too would pay two for one
  if (lost && job.replicas > 1) return 'superseded'
  // one replica: the first valid result wins, even from a provider we had given up on
  return 'count'
}

// ---------------------------------------------------------------- liveness

export interface LivenessConfig {
  suspectAfterMs: number
  lostAfterMs: number
}

export interface WatchedAttempt extends PlanAttempt {
  lastSeen: number
  suspect: boolean
  awardedAt: number
  deadline: number
  /** recovered after a restart: watched by status polls (with their own grace), not heartbeats */
  polled?: boolean
  /**
   * its award channel is still opening (the open has its own time limit, and the provider cannot
   * speak before the award is sent): its silence is not counted yet, the run deadline is
   */
  opening?: boolean
  /**
   * its result is in and its output files are being fetched: the provider sends no heartbeats
   * after its result, and the fetch has its own time budget (settle.ts), so neither silence nor
   * the run deadline applies
   */
  collecting?: boolean
}

/**
 * How long this node could not have heard anyone before a watchdog check at `now` that was due at
 * `last + everyMs`: its own event loop was held (a long task, a collection, a starved or paused
 * process). Frames that came meanwhile wait in the socket and are read only after the check's timer
 * has run, so that time is not the provider's silence. A check late by less than one interval is
 * jitter: 0.
 */
export function deafMs (last: number, now: number, everyMs: number): number {
  const late = now - last - everyMs
  return late > everyMs ? late : 0
}

export type Liveness = { kind: 'ok' } | { kind: 'suspect', silentMs: number } | { kind: 'lost', reason: string }

/** Is the provider of an in-flight attempt still with us at `now`? */
export function liveness (a: WatchedAttempt, now: number, cfg: LivenessConfig): Liveness {
  if (!IN_FLIGHT.has(a.state)) return { kind: 'ok' }
  if (a.collecting === true) return { kind: 'ok' }
  // heartbeats alone do not buy a provider unlimited time
  if (now > a.deadline) return { kind: 'lost', reason: `no result by the deadline (${Math.round((a.deadline - a.awardedAt) / 1000)} s after the award)` }
  if (a.polled === true || a.opening === true) return { kind: 'ok' }
  const silent = now - a.lastSeen
  if (silent > cfg.lostAfterMs) return { kind: 'lost', reason: `silent for ${silent} ms` }
  if (silent > cfg.suspectAfterMs && !a.suspect) return { kind: 'suspect', silentMs: silent }
  return { kind: 'ok' }
}

// ---------------------------------------------------------------- status after a restart

export type StatusOutcome =
  | { kind: 'result' }
  | { kind: 'running' }
  | { kind: 'waiting' }
  | { kind: 'lost', reason: string }
  | { kind: 'retry' }

/**
 * What a status poll means. `reply` is the provider's answer, or an error when it could not be
 * asked; `failures` counts consecutive failures since `firstFailure` (ms), `graceMs` is how long
 * an unreachable provider is given while the mesh re-forms after our restart.
 */
export function afterStatus (
  reply: { state: string, hasResult: boolean } | { error: string, refused: boolean },
  failures: { count: number, since: number },
  now: number,
  graceMs: number
): StatusOutcome {
  if ('error' in reply) {
    if (reply.refused) return { kind: 'lost', reason: reply.error }
    if (failures.count >= 3 && now - failures.since > graceMs) return { kind: 'lost', reason: `provider unreachable for ${Math.round((now - failures.since) / 1000)} s: ${reply.error}` }
    return { kind: 'retry' }
  }
  if (reply.state === 'unknown') return { kind: 'lost', reason: 'provider does not know the job' }
  if (reply.hasResult) return { kind: 'result' }
  if (reply.state === 'running') return { kind: 'running' }
  return { kind: 'waiting' }
}
