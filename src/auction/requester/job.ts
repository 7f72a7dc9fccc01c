/**
 * A job on the requester's side: its books (bids, declines, awards, results)
 * and the context every requester file works in. The planner reads a job
 * through {@link planView}; only the driver and the step runners change it.
 */
import type { EventEmitter } from 'node:events'
import { canonicalEncode, messageId, type Signed, type Signer } from '../../crypto/index.js'
import { InvalidInputError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import type { Network, MessageChannel } from '../../p2p/index.js'
import { MAX_BODY_DEPTH, type Ledger } from '../../ledger/index.js'
import type { BlobStore } from '../blobs.js'
import type { Reputation } from '../reputation.js'
import type { Journal } from '../protocol/journal.js'
import { specSchema, type Advert, type Bid, type Decline, type JobSpecWire, type Offer, type RefusalReason, type Result } from '../protocol/messages.js'
import { DEFAULT_LIMITS, MAX_BLOB_BYTES, MAX_INPUT_BLOB_BYTES } from '../constants.js'
import { TERMINAL, type JobEvent, type JobEventType, type JobStatus, type SubmitSpec } from '../types.js'
import type { PlanConfig, PlanEvent, PlanJob, WatchedAttempt } from './plan.js'
import type { Trust } from './trust.js'
import type { ProviderBook } from './book.js'
import type { RecentPublishers } from './settle.js'
import type { Constraint, Labels } from '../../labels.js'

export interface RequesterConfig {
  bidWindowMs: number
  minBids: number
  maxAttempts: number
  heartbeatMs: number
  suspectAfterMs: number
  lostAfterMs: number
  defaultMaxPrice: number
  minReputation: number
  /** bad marks in the reputation halve in this time (see reputation.ts); read by createMarket */
  forgiveHalfLifeMs?: number
  /** close a provider's bid stream after this long without a frame (default BID_STREAM_IDLE_MS) */
  bidStreamIdleMs?: number
  /** refused answers a peer may send (default BID_STREAM_REFUSALS_PER_SEC / _BURST; tests) */
  bidRefusals?: { perSec: number, burst: number }
  /** invite providers from the book (default true); false: every offer is an open call on the jobs topic */
  invitations?: boolean
  /** finished jobs held in memory, at most (default FINISHED_JOBS_IN_MEMORY); older ones are read from the log */
  finishedJobsInMemory?: number
  /** approximate bytes the finished jobs in memory may hold (default FINISHED_JOB_BYTES_IN_MEMORY) */
  finishedJobBytesInMemory?: number
  /** live logs taken from one attempt: bytes per second and in total (defaults LIVE_LOG_ACCEPT_*); the rest is dropped */
  liveLogBytesPerSec?: number
  liveLogMaxBytes?: number
  /** how long a job with no acceptable bid waits for one when its spec does not say (ms); absent or 0: no-bids at once */
  queueTimeoutMs?: number
  /** jobs queued at once, at most (default MAX_QUEUED_JOBS) */
  maxQueuedJobs?: number
}

export interface RequesterDeps {
  network: Network
  signer: Signer
  ledger: Ledger
  blobs: BlobStore
  reputation: Reputation
  config: RequesterConfig
  isFlagged?: (peerId: string) => boolean
  /** the provider book (adverts heard on the adverts topic); without one every offer is an open call */
  book?: ProviderBook
  /** a provider's advert that came on its bid stream (it freed a slot after turning us away), signer checked: into the book */
  directAdvert?: (advert: Signed<Advert>) => void
  /** the requesters heard publishing receipts lately: ours are gathered for longer the more there are */
  receiptPublishers?: RecentPublishers
}

export interface BidEntry { id: string, signed: Signed<Bid>, provider: string, price: number, estStartMs: number }

export interface Attempt extends WatchedAttempt {
  awardId: string
  price: number
  attempt: number
  channel?: MessageChannel
  endedAt?: number
  reason?: string
  resultHash?: string
  /** its provider pushed (or pushes) the output files: another replica's push is refused */
  pushed?: boolean
}

export interface RequesterJob {
  id: string
  spec: JobSpecWire
  /** placement: the labels a provider must carry (in the offer; every bid is matched against them) */
  constraints?: Constraint[]
  /** the user's name and labels for the job: kept here and in the job record, never sent to providers */
  name?: string
  labels?: Labels
  maxPrice: number
  replicas: number
  minBids: number
  bidWindowMs: number
  status: JobStatus
  createdAt: number
  completedAt?: number
  round: number
  offer?: Signed<Offer>
  offerId?: string
  /** encoded size of the offer (its spec, inline source and input) */
  offerBytes?: number
  bids: Map<string, BidEntry>
  /** bids from proven providers this round (they count toward minBids) */
  provenBids: number
  declines: Map<string, { reason: Decline['reason'], detail?: string, signed?: Signed<Decline> }>
  attempts: Attempt[]
  excluded: Set<string>
  results: Map<string, { signed: Signed<Result>, id: string }>
  /** a provider of the job is pushing its output files (push.ts): settles when that push is over */
  push?: Promise<void>
  final?: { result: Signed<Result>, providers: string[], price: number }
  events: JobEvent[]
  closeBidding?: () => void
  biddingTimer?: NodeJS.Timeout
  windowElapsed?: boolean
  /** this round's invitees; undefined when the round is an open call on the jobs topic */
  invited?: Set<string>
  /** an open call's providers from the book that can run the job: offered it directly, waited for like the topic's peers */
  called?: Set<string>
  /** the next round is an open call: an invited round heard from nobody */
  openNext?: boolean
  /** invitees that answered this job, in any round, late answers included */
  heardFrom: Set<string>
  /** the window was extended for an invitee that advertised less than the best bid (up to INVITE_CHEAPER_WAIT_MS) */
  extended?: boolean
  /** this round may wait for cheaper invitees never heard bid (it took one of INVITE_UNHEARD_WAIT_BURST) */
  unheardWait?: boolean
  extraRuns: number
  handovers: number
  error?: string
  /** the job record's append, awaited before the auction closes */
  logged?: Promise<unknown>
  /** finished, its end logged, and counted among the finished jobs held (memory.ts) */
  retired?: boolean
  /** when its queue time ends (createdAt + queueTimeoutMs); 0: the job never queues */
  queueUntil: number
  /** announcements made from the queue (they do not count toward maxAttempts) */
  requeues: number
  /** the next re-announcement's backoff (queue.ts) */
  queueBackoffMs: number
  /** the queued job's next re-announcement (or its expiry) */
  queueTimer?: NodeJS.Timeout
  /** when the job was last announced */
  announcedAt: number
  /** the current round's offer is in the log (a queued round's offer is logged only when it gets a bid) */
  offerLogged: boolean
  /** the latest decline of each provider over the job's earlier rounds (at most QUEUE_MAX_DECLINES) */
  pastDeclines: Map<string, { reason: Decline['reason'], detail?: string }>
}

/** What every requester file works with: the node's parts, the jobs, and the driver. */
export interface RequesterContext {
  readonly peerId: string
  readonly deps: RequesterDeps
  readonly cfg: RequesterConfig
  readonly log: Logger
  readonly journal: Journal
  readonly planConfig: PlanConfig
  readonly network: Network
  readonly events: EventEmitter
  readonly jobs: Map<string, RequesterJob>
  /**
   * providers with a probation attempt (awarded while not proven) that may still be in flight: such
   * a provider waits like a doubtful one until it delivers or is lost (one probation at a time)
   */
  readonly probations: Map<string, Attempt[]>
  readonly stopped: () => boolean
  emit (job: RequesterJob, type: JobEventType, data?: Record<string, unknown>): void
  /** change the job's state; a terminal one stamps `completedAt` (`at`, or now) */
  setStatus (job: RequesterJob, status: JobStatus, at?: number): void
  count (reason: RefusalReason): void
  /** how far we trust a provider, from our own firsthand standing of it (trust.ts) */
  trust (provider: string): Trust
  /** the trust the planner awards by: `trust`, with a provider whose probation is in flight as doubtful */
  awardTrust (provider: string): Trust
  /** ask the planner what to do after `event`, and do it */
  drive (job: RequesterJob, event: PlanEvent): Promise<void>
  /** end the job as failed (or no-bids) with a reason, logged */
  fail (job: RequesterJob, reason: string, status?: 'failed' | 'no-bids'): Promise<void>
  /** run a job step in the background; a failure fails the job instead of the process */
  background (job: RequesterJob, p: Promise<unknown>): void
  /** the job has ended and its end is in the log: it may leave memory (memory.ts) */
  retire (job: RequesterJob): void
  /** a provider bid `price` on a job of `engine`: remembered for the provider list (views.ts) */
  noteBid (provider: string, price: number, engine: string): void
}

/** A checked bid enters the job's books, and its bidder's ask is remembered for the provider list. */
export function addBid (ctx: RequesterContext, job: RequesterJob, bid: Signed<Bid>): void {
  job.bids.set(bid.signer, { id: messageId(bid), signed: bid, provider: bid.signer, price: bid.payload.price, estStartMs: bid.payload.estStartMs })
  ctx.noteBid(bid.signer, bid.payload.price, job.spec.engine)
}

/** A job in the bidding state with empty books. */
export function newJob (fields: Pick<RequesterJob, 'id' | 'spec' | 'maxPrice' | 'replicas' | 'minBids' | 'bidWindowMs' | 'createdAt' | 'round'> & Partial<Pick<RequesterJob, 'offer' | 'offerId' | 'constraints' | 'name' | 'labels' | 'queueUntil'>>): RequesterJob {
  return {
    queueUntil: 0,
    ...fields,
    requeues: 0,
    queueBackoffMs: 0,
    announcedAt: 0,
    offerLogged: false,
    pastDeclines: new Map(),
    status: 'bidding',
    bids: new Map(),
    provenBids: 0,
    declines: new Map(),
    attempts: [],
    excluded: new Set(),
    heardFrom: new Set(),
    results: new Map(),
    events: [],
    extraRuns: 0,
    handovers: 0
  }
}

/** The job as the planner reads it. */
export function planView (job: RequesterJob, trustOf: (provider: string) => Trust, now = Date.now()): PlanJob<BidEntry> {
  const results = new Map<string, string>()
  for (const [provider, r] of job.results) results.set(provider, r.signed.payload.resultHash)
  return {
    id: job.id,
    status: job.status,
    replicas: job.replicas,
    maxPrice: job.maxPrice,
    round: job.round,
    extraRuns: job.extraRuns,
    bids: [...job.bids.values()],
    invitedRound: job.invited != null,
    excluded: job.excluded,
    attempts: job.attempts,
    results,
    finalHash: job.final?.result.payload.resultHash,
    trustOf,
    queueUntil: job.queueUntil,
    requeues: job.requeues,
    now
  }
}

/** Every decline reason the job collected: the latest of each provider, this round's over earlier ones. */
export function declinesOf (job: RequesterJob): Array<{ provider: string, reason: Decline['reason'], detail?: string }> {
  const all = new Map(job.pastDeclines)
  for (const [provider, d] of job.declines) { all.delete(provider); all.set(provider, { reason: d.reason, detail: d.detail }) }
  return [...all].map(([provider, d]) => ({ provider, reason: d.reason, detail: d.detail }))
}

export function isTerminal (job: RequesterJob): boolean {
  return TERMINAL.has(job.status)
}

/**
 * Where a job's `input` sits in the deepest record body that carries it: a provider's award record
 * holds the signed offer, `body.offer.payload.spec.input` (a requester's offer record holds it no
 * deeper). The ledger refuses a value deeper than MAX_BODY_DEPTH in a body.
 */
const INPUT_PATH_IN_RECORD = ['offer', 'payload', 'spec', 'input'] as const

/**
 * Deepest `input` a job may have (a scalar, `[]` or `{}`: 0; `[1]`: 1): deeper, its records would be
 * refused by the ledger (verifyEmbedded) when the job is awarded, and the job would always fail. Refused at submit.
 */
export const MAX_INPUT_DEPTH = MAX_BODY_DEPTH - INPUT_PATH_IN_RECORD.length

/** True when some value in `value` sits more than `levels` arrays or objects down (recursing at most `levels + 1` deep). */
function nestsDeeperThan (value: unknown, levels: number): boolean {
  if (value == null || typeof value !== 'object') return false
  const children = Array.isArray(value) ? value : Object.values(value)
  if (children.length === 0) return false
  if (levels === 0) return true
  return children.some(v => nestsDeeperThan(v, levels - 1))
}

/** A submitted spec as it goes on the wire: defaults filled, the module looked up, checked and encodable. */
export async function buildSpec (input: SubmitSpec, blobs: Pick<BlobStore, 'get' | 'size'>): Promise<JobSpecWire> {
  const spec: Record<string, unknown> = { engine: input.engine, args: input.args ?? [], env: input.env ?? {}, limits: { ...DEFAULT_LIMITS, ...(input.limits ?? {}) } }
  if (input.stdin != null && input.stdin.length > 0) spec.stdin = input.stdin
  if (input.input !== undefined) spec.input = input.input
  if (input.inputs != null && input.inputs.length > 0) {
    const inputs: unknown[] = []
    for (const i of input.inputs) {
      if ('cid' in i && typeof i.cid === 'string') {
        const size = await blobs.size(i.cid)
        if (size == null) throw new InvalidInputError(`input ${i.path}: blob ${i.cid} is not in this node's blob store; upload it first (POST /v1/blobs)`, 'unknown-input')
        if (size > MAX_INPUT_BLOB_BYTES) throw new InvalidInputError(`input ${i.path}: blob ${i.cid} is ${size} bytes; an input file is at most ${MAX_INPUT_BLOB_BYTES}`, 'invalid-spec')
        inputs.push({ path: i.path, cid: i.cid, size })
      } else {
        inputs.push(i)
      }
    }
    spec.inputs = inputs
  }
  if (input.engine === 'wasm') {
    if (input.module == null) throw new InvalidInputError('a wasm job needs "module": the CID of an uploaded module', 'invalid-spec')
    // an upload may be far larger than a module: refuse it by its size before reading it whole
    const size = await blobs.size(input.module)
    if (size != null && size > MAX_BLOB_BYTES) throw new InvalidInputError(`module ${input.module} is ${size} bytes; a module is at most ${MAX_BLOB_BYTES}`, 'invalid-spec')
    const bytes = await blobs.get(input.module)
    if (bytes == null) throw new InvalidInputError(`module ${input.module} is not in this node's blob store; upload it first (POST /v1/blobs)`, 'unknown-module')
    spec.module = { cid: input.module, size: bytes.length }
  } else if (input.engine === 'js') {
    if (input.source == null && input.module == null) throw new InvalidInputError('a js job needs "source" (or "module": the CID of uploaded source)', 'invalid-spec')
    if (input.source != null) spec.source = input.source
    else {
      const bytes = await blobs.get(input.module as string)
      if (bytes == null) throw new InvalidInputError(`module ${input.module} is not in this node's blob store`, 'unknown-module')
      spec.source = new TextDecoder().decode(bytes)
    }
  }
  const parsed = specSchema.safeParse(spec)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new InvalidInputError(`${issue.path.join('.') || 'spec'}: ${issue.message}`, 'invalid-spec')
  }
  if (nestsDeeperThan(parsed.data.input, MAX_INPUT_DEPTH)) {
    throw new InvalidInputError(`input: nests deeper than ${MAX_INPUT_DEPTH} levels (arrays and objects within each other); the signed log takes no deeper`, 'invalid-spec')
  }
  try {
    canonicalEncode(parsed.data)
  } catch (err: any) {
    throw new InvalidInputError(`input: cannot be encoded (${err.message})`, 'invalid-spec')
  }
  return parsed.data
}
