/**
 * The market's records in a node's log: one typed body per record type and
 * side, written and read in this one file (OrbitDB's habit: a payload's
 * writer sits beside its reader, and nothing reads a body through `any`).
 *
 * Writers take the signed messages a step produced and append them; readers
 * parse a stored record back into its typed body (schema-checked; signatures
 * were verified when the record was appended, so they are not re-checked,
 * and freshness is not asked of old evidence). {@link readJobHistory} folds
 * one job's requester records into what a restarted requester needs.
 */
import { z } from 'zod'
import type { Signed } from '../../crypto/index.js'
import type { Ledger, LedgerRecord } from '../../ledger/index.js'
import { ENGINES, type Engine } from '../../engines.js'
import { DOMAIN, MAX_JOB_NAME } from '../constants.js'
import { constraintsSchema, labelsSchema, type Constraint, type Labels } from '../../labels.js'
import {
  acceptSchema, awardSchema, bidSchema, declineSchema, offerSchema, receiptSchema, resultSchema,
  type Accept, type Award, type Bid, type Decline, type DeclineReason, type JobSpecWire, type Offer, type Receipt, type Result
} from './messages.js'

const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, { message: 'bytes' })

/** A stored signed message of one kind: envelope and payload shape (no signature or freshness check). */
function stored<K extends keyof typeof DOMAIN, P extends z.ZodType> (kind: K, payload: P): z.ZodType<Signed<z.infer<P>>> {
  return z.object({ domain: z.literal(DOMAIN[kind]), signer: z.string(), payload, sig: bytes }) as unknown as z.ZodType<Signed<z.infer<P>>>
}

const signedOffer = stored('offer', offerSchema)
const signedBid = stored('bid', bidSchema)
const signedDecline = stored('decline', declineSchema)
const signedAward = stored('award', awardSchema)
const signedAccept = stored('accept', acceptSchema)
const signedResult = stored('result', resultSchema)
const signedReceipt = stored('receipt', receiptSchema)

const jobId = z.string()

export { MAX_JOB_NAME }

/** What a user says of a job besides its spec (kept by the requester, not sent to providers, except the constraints in the offer). */
export interface JobMeta { name?: string, labels?: Labels, constraints?: Constraint[] }

/** How far a requester trusted the provider it awarded (requester/trust.ts names them). */
export const TRUST_LEVELS = ['proven', 'unproven', 'doubtful'] as const
export type TrustLevel = typeof TRUST_LEVELS[number]
const requesterSide = z.literal('requester')
const providerSide = z.literal('provider')

export const JOB_RECORD_STATUSES = ['submitted', 'failed', 'no-bids', 'cancelled'] as const
export type JobRecordStatus = typeof JOB_RECORD_STATUSES[number]

const declineNote = z.object({ provider: z.string(), reason: z.string(), detail: z.string().optional() }).loose()

/** Every market record body, by type and side. */
const BODIES = {
  job: z.object({
    jobId,
    side: requesterSide,
    status: z.enum(JOB_RECORD_STATUSES),
    spec: z.record(z.string(), z.unknown()).optional(),
    maxPrice: z.number().optional(),
    replicas: z.number().optional(),
    reason: z.string().optional(),
    declines: z.array(declineNote).optional(),
    /** when the job was submitted (on `submitted`) or ended (otherwise); absent in older logs */
    createdAt: z.number().optional(),
    /** on `submitted`: the user's name and labels for the job, and its placement constraints */
    name: z.string().max(MAX_JOB_NAME).optional(),
    labels: labelsSchema.optional(),
    constraints: constraintsSchema.optional(),
    completedAt: z.number().optional(),
    /** on `submitted`: when the job's queue time ends (absent: it never queues) */
    queueUntil: z.number().optional()
  }),
  /** `invited`: the providers the offer was sent to (absent: an open call on the jobs topic) */
  offer: z.object({ jobId, side: requesterSide, offer: signedOffer, invited: z.array(z.string()).max(64).optional() }),
  bid: z.union([
    z.object({ jobId, side: requesterSide, offerId: z.string(), bids: z.array(signedBid) }),
    z.object({ jobId, side: providerSide, offerId: z.string(), requester: z.string(), bid: signedBid })
  ]),
  decline: z.object({ jobId, side: requesterSide, offerId: z.string(), declines: z.array(signedDecline) }),
  award: z.union([
    z.object({ jobId, side: requesterSide, award: signedAward, eligible: z.array(z.string()).optional(), trust: z.enum(TRUST_LEVELS).optional() }),
    z.object({ jobId, side: providerSide, offer: signedOffer, bid: signedBid.optional(), award: signedAward })
  ]),
  accept: z.object({ jobId, side: z.enum(['requester', 'provider']), accept: signedAccept }),
  // `at`: when the requester saw the attempt end (absent in older logs)
  handover: z.object({ jobId, side: requesterSide, from: z.string(), to: z.string().nullable(), reason: z.string(), attempt: z.number(), awardId: z.string(), at: z.number().optional() }),
  result: z.object({ jobId, side: z.enum(['requester', 'provider']), result: signedResult, at: z.number().optional() }),
  receipt: z.object({ jobId, side: z.enum(['requester', 'provider']), receipt: signedReceipt }),
  mismatch: z.object({ jobId, side: requesterSide, provider: z.string(), result: signedResult, majorityHash: z.string(), agreeing: z.array(z.string()) })
} as const

export type MarketRecordType = keyof typeof BODIES
export const MARKET_RECORD_TYPES = Object.keys(BODIES) as MarketRecordType[]
export type BodyOf<T extends MarketRecordType> = z.infer<typeof BODIES[T]>

/** A market record read back: its type, its typed body, and when it was written. */
export type MarketRecord = { [T in MarketRecordType]: { type: T, body: BodyOf<T>, ts: number, seq: number } }[MarketRecordType]

/** Parse a stored record's body; undefined for records that are not the market's or do not match their shape. */
export function readRecord (r: LedgerRecord): MarketRecord | undefined {
  const schema = (BODIES as Record<string, z.ZodType>)[r.type]
  if (schema == null) return undefined
  const parsed = schema.safeParse(r.body)
  if (!parsed.success) return undefined
  return { type: r.type, body: parsed.data, ts: r.ts, seq: r.seq } as MarketRecord
}

/** Only the records of one type. */
export function recordsOf<T extends MarketRecordType> (records: MarketRecord[], type: T): Array<Extract<MarketRecord, { type: T }>> {
  return records.filter((r): r is Extract<MarketRecord, { type: T }> => r.type === type)
}

// ---------------------------------------------------------------- writers

/** The market's writes to a node's log, one method per record. */
export class Journal {
  private readonly ledger: Ledger
  constructor (ledger: Ledger) { this.ledger = ledger }

  private async write<T extends MarketRecordType> (type: T, body: BodyOf<T>): Promise<void> {
    await this.ledger.append(type, body as Record<string, unknown>)
  }

  // requester side
  submitted (jobId: string, spec: JobSpecWire, maxPrice: number, replicas: number, createdAt: number, meta: JobMeta = {}, queueUntil = 0): Promise<void> {
    // absent fields stay absent (the canonical encoding has no `undefined`)
    const extra: JobMeta & { queueUntil?: number } = {}
    if (meta.name != null) extra.name = meta.name
    if (meta.labels != null && Object.keys(meta.labels).length > 0) extra.labels = meta.labels
    if (meta.constraints != null && meta.constraints.length > 0) extra.constraints = meta.constraints
    if (queueUntil > 0) extra.queueUntil = queueUntil
    return this.write('job', { jobId, side: 'requester', status: 'submitted', spec: specSummary(spec), maxPrice, replicas, createdAt, ...extra })
  }

  ended (jobId: string, status: Exclude<JobRecordStatus, 'submitted'>, completedAt: number, extra: { reason?: string, declines?: Array<{ provider: string, reason: DeclineReason, detail?: string }> } = {}): Promise<void> {
    return this.write('job', { jobId, side: 'requester', status, ...extra, completedAt })
  }

  /** an offer, and whom it was sent to when it was not an open call */
  offer (offer: Signed<Offer>, invited?: string[]): Promise<void> {
    return this.write('offer', invited == null ? { jobId: offer.payload.jobId, side: 'requester', offer } : { jobId: offer.payload.jobId, side: 'requester', offer, invited })
  }

  /** every bid of one auction round in one record, and every decline in another */
  async answers (jobId: string, offerId: string, bids: Array<Signed<Bid>>, declines: Array<Signed<Decline>>): Promise<void> {
    const writes: Array<Promise<void>> = []
    if (bids.length > 0) writes.push(this.write('bid', { jobId, side: 'requester', offerId, bids }))
    if (declines.length > 0) writes.push(this.write('decline', { jobId, side: 'requester', offerId, declines }))
    await Promise.all(writes)
  }

  /** an award, with the ids of the bids the winner rule ran over and the winner's trust */
  award (award: Signed<Award>, eligible: string[], trust: TrustLevel): Promise<void> {
    return this.write('award', { jobId: award.payload.jobId, side: 'requester', award, eligible, trust })
  }

  handover (jobId: string, h: { from: string, to: string | null, reason: string, attempt: number, awardId: string, at: number }): Promise<void> {
    return this.write('handover', { jobId, side: 'requester', ...h })
  }

  mismatch (jobId: string, provider: string, result: Signed<Result>, majorityHash: string, agreeing: string[]): Promise<void> {
    return this.write('mismatch', { jobId, side: 'requester', provider, result, majorityHash, agreeing: [...agreeing] })
  }

  // provider side
  bid (offerId: string, requester: string, bid: Signed<Bid>): Promise<void> {
    return this.write('bid', { jobId: bid.payload.jobId, side: 'provider', offerId, requester, bid })
  }

  /** an award we took: the requester's signed offer and award, and our own signed bid */
  awarded (offer: Signed<Offer>, bid: Signed<Bid>, award: Signed<Award>): Promise<void> {
    return this.write('award', { jobId: award.payload.jobId, side: 'provider', offer, bid, award })
  }

  // both sides
  accept (side: 'requester' | 'provider', accept: Signed<Accept>): Promise<void> {
    return this.write('accept', { jobId: accept.payload.jobId, side, accept })
  }

  /** a result; `at` (the requester's) is when it arrived */
  result (side: 'requester' | 'provider', result: Signed<Result>, at?: number): Promise<void> {
    return this.write('result', { jobId: result.payload.jobId, side, result, ...(at !== undefined ? { at } : {}) })
  }

  receipt (side: 'requester' | 'provider', receipt: Signed<Receipt>): Promise<void> {
    return this.write('receipt', { jobId: receipt.payload.jobId, side, receipt })
  }
}

/** What the `job` record keeps of a spec: no inline source or input, only their shape. */
function specSummary (spec: JobSpecWire): Record<string, unknown> {
  const summary: Record<string, unknown> = { engine: spec.engine, args: spec.args.length, limits: spec.limits }
  if (spec.module !== undefined) summary.module = spec.module
  if (spec.source !== undefined) summary.sourceBytes = spec.source.length
  return summary
}

// ---------------------------------------------------------------- readers

/** The name, labels and constraints a `submitted` job record holds (only the fields present). */
function metaOf (body: BodyOf<'job'> | undefined): JobMeta {
  const out: JobMeta = {}
  if (body?.name != null) out.name = body.name
  if (body?.labels != null) out.labels = body.labels
  if (body?.constraints != null) out.constraints = body.constraints as Constraint[]
  return out
}

/** One award as the requester's log remembers it. */
export interface AwardHistory {
  award: Signed<Award>
  /** the winner's trust as logged with the award (absent in logs from before trust) */
  trust?: TrustLevel
  awardId: string
  ts: number
  accepted: boolean
  handedOver: boolean
}

/** What a restarted requester needs of one job: its last offer, that round's bids, its awards. */
export interface JobHistory extends JobMeta {
  jobId: string
  createdAt: number
  /** when the job's queue time ends (0: it never queues) */
  queueUntil: number
  /** ended without payment (failed, no-bids, cancelled) or paid */
  finished: boolean
  offer: Signed<Offer>
  bids: Array<Signed<Bid>>
  awards: AwardHistory[]
}

/**
 * Fold one job's requester-side records (oldest first) into its history; undefined when the job
 * has no job record or no offer. `idOf` names a signed message (its CID).
 */
export function readJobHistory (records: MarketRecord[], idOf: (m: Signed) => string): JobHistory | undefined {
  const mine = records.filter(r => r.body.side === 'requester')
  const job = recordsOf(mine, 'job')
  const offer = recordsOf(mine, 'offer').at(-1)?.body.offer
  if (job.length === 0 || offer == null) return undefined
  const finished = job.some(r => r.body.status !== 'submitted') ||
    recordsOf(mine, 'receipt').some(r => r.body.receipt.payload.status === 'paid')
  const offerId = idOf(offer)
  const bids: Array<Signed<Bid>> = []
  const awards: AwardHistory[] = []
  for (const r of mine) {
    if (r.type === 'bid' && r.body.side === 'requester' && r.body.offerId === offerId) bids.push(...r.body.bids)
    else if (r.type === 'award' && r.body.side === 'requester') awards.push({ award: r.body.award, trust: r.body.trust, awardId: idOf(r.body.award), ts: r.ts, accepted: false, handedOver: false })
    else if (r.type === 'accept') {
      const a = awards.find(a => a.awardId === r.body.accept.payload.awardId)
      if (a != null) a.accepted = true
    } else if (r.type === 'handover') {
      const a = awards.find(a => a.awardId === r.body.awardId)
      if (a != null) a.handedOver = true
    }
  }
  return { jobId: job[0].body.jobId, createdAt: job[0].body.createdAt ?? job[0].ts, queueUntil: job[0].body.queueUntil ?? 0, finished, offer, bids, awards, ...metaOf(job.find(r => r.body.status === 'submitted')?.body) }
}

/** One award of a finished job, and what the requester's log says became of it. */
export interface FinishedAward {
  award: Signed<Award>
  awardId: string
  /** the provider's signed accept was logged */
  accepted: boolean
  /** handed over (the provider was lost): why, and when (absent in older logs) */
  lost?: { reason: string, at?: number }
  /** the result it delivered, when it arrived (absent in older logs), and its receipt's status (none: counted, never receipted) */
  result?: { signed: Signed<Result>, at?: number, receipt?: Receipt['status'] }
}

/** A job this node submitted and that has ended, as its requester-side records tell it. */
export interface FinishedJob extends JobMeta {
  jobId: string
  status: Exclude<JobRecordStatus, 'submitted'> | 'completed'
  engine: Engine
  maxPrice: number
  replicas: number
  createdAt: number
  completedAt: number
  /** why it failed (failed, no-bids) */
  error?: string
  /** the last round's offer, bids and declines (absent when the job ended before its offer was logged) */
  offer?: Signed<Offer>
  bids: Array<Signed<Bid>>
  declines: Array<Signed<Decline>>
  /** when its queue time ended (absent: it never queued) */
  queueUntil?: number
  /** the decline reasons the job's end record names (a queued job's: the latest of each provider over its rounds) */
  endDeclines?: Array<{ provider: string, reason: string, detail?: string }>
  /** every award, oldest first */
  awards: FinishedAward[]
  /** the `paid` receipts, in log order: who was paid, and how much */
  paid: Array<Signed<Receipt>>
  /** the result the job settled on (the first paid receipt's) */
  result?: Signed<Result>
}

/**
 * Fold one job's records (oldest first) into the finished job they describe; undefined when
 * the log does not show a job this node submitted and ended (no requester `job` record, no end
 * yet, or too little to name its engine and price). `idOf` names a signed message (its CID).
 * What the log does not hold: the job's event stream, why a provider refused an award, and
 * whether an accepted replica was still running when the job settled.
 */
export function readFinishedJob (records: MarketRecord[], idOf: (m: Signed) => string): FinishedJob | undefined {
  const mine = records.filter(r => r.body.side === 'requester')
  const jobRecords = recordsOf(mine, 'job')
  const submitted = jobRecords.find(r => r.body.status === 'submitted')
  if (submitted == null) return undefined
  const ended = jobRecords.find(r => r.body.status !== 'submitted')
  const receipts = recordsOf(mine, 'receipt').map(r => r.body.receipt)
  const paid = receipts.filter(r => r.payload.status === 'paid')
  const firstPaidSeq = recordsOf(mine, 'receipt').find(r => r.body.receipt.payload.status === 'paid')?.seq
  // the job's end: its first terminal record (a job ends once)
  let status: FinishedJob['status']
  let completedAt: number
  let error: string | undefined
  let endDeclines: FinishedJob['endDeclines']
  if (ended != null && (firstPaidSeq == null || ended.seq < firstPaidSeq)) {
    status = ended.body.status as FinishedJob['status']
    completedAt = ended.body.completedAt ?? ended.ts
    error = ended.body.reason
    endDeclines = ended.body.declines?.map(d => ({ provider: d.provider, reason: d.reason, detail: d.detail }))
  } else if (paid.length > 0) {
    status = 'completed'
    completedAt = paid[0].payload.ts
  } else return undefined
  const offer = recordsOf(mine, 'offer').at(-1)?.body.offer
  const summaryEngine = submitted.body.spec?.engine
  const engine = offer?.payload.spec.engine ?? ENGINES.find(e => e === summaryEngine)
  const maxPrice = submitted.body.maxPrice ?? offer?.payload.maxPrice
  const replicas = submitted.body.replicas ?? offer?.payload.replicas
  if (engine == null || maxPrice == null || replicas == null) return undefined
  const offerId = offer != null ? idOf(offer) : undefined
  const bids: Array<Signed<Bid>> = []
  const declines: Array<Signed<Decline>> = []
  const awards: FinishedAward[] = []
  const byAward = new Map<string, FinishedAward>()
  const receiptOf = new Map(receipts.map(r => [r.payload.resultId, r.payload.status]))
  let result: Signed<Result> | undefined
  for (const r of mine) {
    if (r.type === 'bid' && r.body.side === 'requester' && r.body.offerId === offerId) bids.push(...r.body.bids)
    else if (r.type === 'decline' && r.body.offerId === offerId) declines.push(...r.body.declines)
    else if (r.type === 'award' && r.body.side === 'requester') {
      const a: FinishedAward = { award: r.body.award, awardId: idOf(r.body.award), accepted: false }
      awards.push(a)
      byAward.set(a.awardId, a)
    } else if (r.type === 'accept') {
      const a = byAward.get(r.body.accept.payload.awardId)
      if (a != null) a.accepted = true
    } else if (r.type === 'handover') {
      const a = byAward.get(r.body.awardId)
      if (a != null) a.lost = { reason: r.body.reason, at: r.body.at }
    } else if (r.type === 'result') {
      const id = idOf(r.body.result)
      if (paid.length > 0 && id === paid[0].payload.resultId) result = r.body.result
      const a = byAward.get(r.body.result.payload.awardId)
      if (a != null && a.result == null) a.result = { signed: r.body.result, at: r.body.at, receipt: receiptOf.get(id) }
    }
  }
  return { jobId: submitted.body.jobId, status, engine, maxPrice, replicas, createdAt: submitted.body.createdAt ?? submitted.ts, completedAt, error, offer, bids, declines, endDeclines, awards, paid, result, ...metaOf(submitted.body), ...(submitted.body.queueUntil != null ? { queueUntil: submitted.body.queueUntil } : {}) }
}

/** A provider's own record of an award it took and the result it signed (for status after a restart). */
export function readProviderResult (records: MarketRecord[]): { requester: string, result: Signed<Result> } | undefined {
  const award = records.find(r => r.type === 'award' && r.body.side === 'provider')
  const result = records.findLast(r => r.type === 'result' && r.body.side === 'provider')
  if (award?.type !== 'award' || result?.type !== 'result') return undefined
  return { requester: award.body.award.signer, result: result.body.result }
}

/** The parts of a log that decide standing: receipts, handovers (losses) and mismatches. */
export type StandingEvent =
  | { kind: 'receipt', receipt: Signed<Receipt> }
  | { kind: 'lost', provider: string }
  | { kind: 'mismatched', provider: string }

export function readStanding (r: MarketRecord): StandingEvent | undefined {
  if (r.type === 'receipt') return { kind: 'receipt', receipt: r.body.receipt }
  if (r.type === 'handover') return { kind: 'lost', provider: r.body.from }
  if (r.type === 'mismatch') return { kind: 'mismatched', provider: r.body.provider }
  return undefined
}

/** The records that decide standing (receipts, handovers, mismatches), in log order, read through the type index. */
export async function readStandingRecords (ledger: Pick<Ledger, 'ofType'>): Promise<LedgerRecord[]> {
  const out: LedgerRecord[] = []
  for (const type of ['receipt', 'handover', 'mismatch'] as const) {
    for await (const r of ledger.ofType(type)) out.push(r)
  }
  return out.sort((a, b) => a.seq - b.seq)
}
