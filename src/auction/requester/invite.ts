/**
 * Whom to offer a job to: the planner's invitation rule. PURE (the caller
 * passes the book's entries, the standing of each provider and a random
 * source).
 *
 * A job needs `need = max(minBids, replicas)` bids and gets
 * `seats = need + INVITE_EXTRA` invitations, from the book's fresh entries
 * that can run it (engine, limits within the advert's caps, base ask within
 * maxPrice, advertised labels meeting the job's constraints, not lost on this
 * job, not flagged):
 *
 * - the cheapest **proven** providers first (price discovery: the cheapest
 *   capable ones we trust are always asked; a swarm of fresh keys never
 *   takes their seats);
 * - the seats left, and at least INVITE_UNPROVEN, to the cheapest
 *   providers **without standing** with us ('unproven' before 'doubtful'):
 *   a newcomer that asks less than the others is invited to its first job
 *   at once;
 * - INVITE_EXPLORE more at random among the rest, so a provider the book
 *   ranks badly is still asked now and then.
 *
 * A provider that declined a moment ago for want of a free slot (BOOK_FULL_MS)
 * is still invited but takes no seat: the next cheapest is asked too (at most
 * twice the seats). A provider's latest bid ranks it in place of its
 * advertised ask (BOOK_OBSERVED_MS): see book.ts.
 *
 * When fewer than `seats` providers of the book can run the job, the book is
 * too thin: the offer goes out as an **open call** on the jobs topic, as
 * before the book existed. Ties in ask are broken by a hash of the job id
 * and the provider, so equal providers share the work.
 */
import { createHash } from 'node:crypto'
import { INVITE_EXPLORE, INVITE_EXTRA, INVITE_UNPROVEN } from '../constants.js'
import { matches, type Constraint } from '../../labels.js'
import type { JobSpecWire } from '../protocol/messages.js'
import { askFloor, effectiveAsk, isFull, type BookEntry } from './book.js'
import type { Trust } from './trust.js'

export interface InviteJob {
  id: string
  spec: JobSpecWire
  maxPrice: number
  need: number
  /** providers lost on this job */
  excluded: ReadonlySet<string>
  /** placement: only providers whose advertised labels meet them are invited */
  constraints?: readonly Constraint[]
}

export type Invitation =
  | { mode: 'invite', peers: string[], explored: number }
  /** `capable`: the providers of the book that can run the job (a thin book), offered it directly as well */
  | { mode: 'open', reason: string, capable?: string[] }

export interface InviteInput {
  entries: readonly BookEntry[]
  trustOf: (provider: string) => Trust
  isFlagged?: (provider: string) => boolean
  /** uniform in [0, 1) */
  random?: () => number
  now?: number
}

/** Can this advert's provider run the job at this price? */
export function canRun (e: BookEntry, job: InviteJob): boolean {
  const a = e.advert
  const l = job.spec.limits
  return a.engines.includes(job.spec.engine) && a.ask <= job.maxPrice &&
    l.timeoutMs <= a.caps.timeoutMs && l.memoryMb <= a.caps.memoryMb && l.outputBytes <= a.caps.outputBytes &&
    inputsFit(a.inputs, job.spec.inputs) && matches(a.labels, job.constraints)
}

/** The job's input files within an advert's input limits (sizes the spec names; an advert without limits: unknown, so yes). */
function inputsFit (limits: { files: number, fileBytes: number, totalBytes: number } | undefined, inputs: ReadonlyArray<{ size?: number }> | undefined): boolean {
  if (limits == null || inputs == null || inputs.length === 0) return true
  if (inputs.length > limits.files) return false
  let total = 0
  for (const i of inputs) {
    if ((i.size ?? 0) > limits.fileBytes) return false
    total += i.size ?? 0
  }
  return total <= limits.totalBytes
}

function tieBreak (jobId: string, provider: string): string {
  return createHash('sha256').update(jobId).update('\0').update(provider).digest('hex')
}

function cheapestFirst (jobId: string, entries: BookEntry[], now: number): BookEntry[] {
  const keyed = entries.map(e => ({ e, ask: effectiveAsk(e, now), k: tieBreak(jobId, e.advert.provider) }))
  keyed.sort((x, y) => x.ask - y.ask || (x.k < y.k ? -1 : x.k > y.k ? 1 : 0))
  return keyed.map(x => x.e)
}

/**
 * The first `seats` of `sorted` that have room; a provider that just said it was full is invited
 * too (it may have room again) but takes no seat: the next one is asked as well. At most 2 × seats.
 */
function takeSeats (sorted: BookEntry[], seats: number, now: number): BookEntry[] {
  const out: BookEntry[] = []
  let room = 0
  for (const e of sorted) {
    if (room >= seats || out.length >= 2 * seats) break
    out.push(e)
    if (!isFull(e, now)) room++
  }
  return out
}

export function chooseInvitees (job: InviteJob, input: InviteInput): Invitation {
  const random = input.random ?? Math.random
  const now = input.now ?? Date.now()
  const capable = input.entries.filter(e => canRun(e, job) && !job.excluded.has(e.advert.provider) && input.isFlagged?.(e.advert.provider) !== true)
  const seats = job.need + INVITE_EXTRA
  if (capable.length < seats) {
    return { mode: 'open', reason: `the book has ${capable.length} provider(s) that can run this job; ${seats} wanted`, capable: capable.map(e => e.advert.provider) }
  }
  const proven = takeSeats(cheapestFirst(job.id, capable.filter(e => input.trustOf(e.advert.provider) === 'proven'), now), seats, now)
  const rank = (e: BookEntry): number => input.trustOf(e.advert.provider) === 'unproven' ? 0 : 1
  const others = cheapestFirst(job.id, capable.filter(e => input.trustOf(e.advert.provider) !== 'proven'), now)
    .sort((x, y) => rank(x) - rank(y)) // stable: cheapest first within each standing
  const othersTaken = takeSeats(others, Math.max(INVITE_UNPROVEN, seats - proven.filter(e => !isFull(e, now)).length), now)
  const chosen = [...proven, ...othersTaken]
  const taken = new Set(chosen.map(e => e.advert.provider))
  const rest = capable.filter(e => !taken.has(e.advert.provider))
  let explored = 0
  for (let i = 0; i < INVITE_EXPLORE && rest.length > 0; i++) {
    const [pick] = rest.splice(Math.floor(random() * rest.length), 1)
    chosen.push(pick)
    explored++
  }
  return { mode: 'invite', peers: chosen.map(e => e.advert.provider), explored }
}

/** What `roundDecided` reads of an invited round. */
export interface RoundState {
  /** this round's bids from providers that can still win the job (none of its earlier attempts) */
  bids: ReadonlyArray<{ provider: string, price: number }>
  /** invitees that have not answered */
  silent: Iterable<string>
  /** minBids of the job (at least its replicas) */
  minBids: number
  replicas: number
  /** an earlier attempt of this job went to a provider that was not proven (trust.ts) */
  probationUsed: boolean
  trustOf: (provider: string) => Trust
  /** the book's entry of a provider, if any */
  entryOf: (provider: string) => BookEntry | undefined
  now?: number
}

/**
 * Can an invited round close before every invitee answered? Only when no answer still to come
 * can change what the round decides: who wins, the uniform price, the runners-up that failover
 * falls back on. PURE. That holds when
 * - a proven provider has bid: which bids are eligible (trust.ts) no longer depends on who else
 *   answers, only on each bidder's own standing;
 * - the round holds `m = max(minBids, replicas + 1)` eligible bids; with more than one replica,
 *   the m cheapest are all proven (a probation pick would narrow the eligible set between picks);
 * - every silent invitee that could be eligible has a floor (`askFloor`: the least it bids as it
 *   advertised) above the m-th cheapest eligible bid (an equal ask could still win the tie-break).
 *
 * Before, an invited round waited for its slowest invitee, a handful of processes woken on a
 * loaded machine, while the cheapest had answered long before. An invitee that lies low in its
 * advert is still waited for (its floor is low), and is ranked by its bid after (book.ts).
 */
export function roundDecided (r: RoundState): boolean {
  const m = Math.max(r.minBids, r.replicas + 1)
  if (r.bids.length < m || !r.bids.some(b => r.trustOf(b.provider) === 'proven')) return false
  const mayWin = (p: string): boolean => {
    const t = r.trustOf(p)
    return t === 'proven' || (t === 'unproven' && !r.probationUsed)
  }
  const top = r.bids.filter(b => mayWin(b.provider)).sort((x, y) => x.price - y.price).slice(0, m)
  if (top.length < m) return false
  if (r.replicas > 1 && top.some(b => r.trustOf(b.provider) !== 'proven')) return false
  const bound = top[m - 1].price
  const now = r.now ?? Date.now()
  for (const p of r.silent) {
    if (!mayWin(p)) continue
    const e = r.entryOf(p)
    if (e == null || askFloor(e, now) <= bound) return false
  }
  return true
}
