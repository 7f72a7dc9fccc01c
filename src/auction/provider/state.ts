/**
 * What the provider's files share: the node's parts, its configuration, and
 * the little state a provider keeps (offers it bid on, awards seen, jobs it
 * holds, how busy it is).
 */
import type { Labels } from '../../labels.js'
import type { Signed, Signer } from '../../crypto/index.js'
import type { Engine, Executor, ExecutorBackend } from '../../executor/index.js'
import type { Ledger } from '../../ledger/index.js'
import type { Logger } from '../../logger.js'
import type { Network } from '../../p2p/index.js'
import type { BlobStore } from '../blobs.js'
import {
  BLOB_KEY_PREFIX, INPUT_MAX_FILE_BYTES, INPUT_MAX_TOTAL_BYTES, INPUT_URL_TIMEOUT_MS, MAX_BID_OFFERS, MAX_UNPAID_REQUESTERS, MAX_UNPAID_RESULTS_PER_REQUESTER,
  MAX_UNPAID_RESULTS_PAYING, MAX_UNPAID_RESULTS_UNPROVEN, UNPAID_RESULTS_MEMORY_MS
} from '../constants.js'
import { MAX_JOB_INPUTS } from '../../executor/constants.js'
import type { Journal } from '../protocol/journal.js'
import type { Bid, Offer, Receipt, RefusalReason, Result } from '../protocol/messages.js'
import type { GossipGate, SeenSet } from '../protocol/gossip.js'

export interface ProviderConfig {
  enabled: boolean
  price: number
  slots: number
  /** awarded jobs allowed to wait for a free slot (default 0: only bid with a free slot) */
  queue?: number
  engines: Engine[]
  /** what this provider says of itself (`region: 'eu'`), checked (src/labels.ts); signed into adverts and bids */
  labels?: Labels
  maxTimeoutMs: number
  maxMemoryMb: number
  maxOutputBytes: number
  heartbeatMs: number
  resultRetentionMs: number
  /**
   * May answers to a requester we are not connected to dial its loopback / private addresses?
   * Off by default: a signed offer must not make providers probe their own network. Devnets
   * and tests on one machine turn it on.
   */
  dialPrivateAddresses?: boolean
  /** live logs sent per job: bytes per second (one second of burst) and in total (defaults LIVE_LOG_BYTES_PER_SEC, LIVE_LOG_MAX_BYTES) */
  liveLogBytesPerSec?: number
  liveLogMaxBytes?: number
  /** input file limits (defaults in constants.ts INPUT_*): advertised, checked when bidding and while fetching */
  inputs?: Partial<InputLimits>
  /** where a job's input files are staged while it runs (default: a folder of the provider's own in the OS temp dir, removed at stop) */
  inputsDir?: string
  /** where a job's output files are written while it runs, until they are stored as blobs (default: as inputsDir) */
  outputsDir?: string
}

/** A provider's input file limits: how many files, bytes per file and in total, and how long one URL may take. */
export interface InputLimits { maxFiles: number, maxFileBytes: number, maxTotalBytes: number, urlTimeoutMs: number }

/** The configured input limits over the defaults. */
export function inputLimits (cfg: ProviderConfig): InputLimits {
  const i = cfg.inputs ?? {}
  return {
    maxFiles: Math.min(i.maxFiles ?? MAX_JOB_INPUTS, MAX_JOB_INPUTS),
    maxFileBytes: i.maxFileBytes ?? INPUT_MAX_FILE_BYTES,
    maxTotalBytes: i.maxTotalBytes ?? INPUT_MAX_TOTAL_BYTES,
    urlTimeoutMs: i.urlTimeoutMs ?? INPUT_URL_TIMEOUT_MS
  }
}

export interface ProviderDeps {
  network: Network
  signer: Signer
  ledger: Ledger
  executor: Executor
  blobs: BlobStore
  config: ProviderConfig
  isFlagged?: (peerId: string) => boolean
  /** the jobs topic's gate (replays and per-key rates), shared with the topic's decoder */
  offerGate?: GossipGate<'offer'>
  /** where refusals are counted (shared with the jobs topic's gate) */
  refused?: Map<RefusalReason, number>
  /** a receipt paying us arrived on the award channel (firsthand: it moves our balance) */
  onReceipt?: (receipt: Signed<Receipt>) => void
  /** test-only: corrupt every result (to test replica quorum) */
  corruptResults?: boolean
  /** test-only: name output files in results without storing them (a provider that does not serve its outputs) */
  withholdOutputs?: boolean
}

/** A job we were awarded: where it is, and its result once done (kept for status requests). */
export interface HeldJob {
  jobId: string
  awardId: string
  requester: string
  state: 'fetching' | 'queued' | 'running' | 'done'
  result?: Signed<Result>
  doneAt?: number
}

/** Offers we answered (duplicates over gossip and the direct path are dropped). */
export const MAX_KNOWN_OFFERS = 10_000
/**
 * Finished jobs whose signed result stays in memory (besides `resultRetentionMs`): past this the
 * oldest are answered from the log instead. Without a count cap a busy provider held every
 * result of the last hour (about 1.4 KB each for a trivial job).
 */
export const MAX_HELD_RESULTS = 256
/** requesters remembered as having paid us (their answers are always logged) */
export const MAX_PAYING_REQUESTERS = 4096

/**
 * Results we sent that no receipt has answered yet, per requester, for UNPAID_RESULTS_MEMORY_MS
 * (see MAX_UNPAID_RESULTS_PER_REQUESTER). Bounded: MAX_UNPAID_REQUESTERS requesters, and no more
 * results each than the highest limit needs.
 */
export class UnpaidResults {
  /** requester → job → when its result was sent; least recently touched requester first */
  private readonly byRequester = new Map<string, Map<string, number>>()

  /** We sent `requester` the result of `jobId`. */
  sent (requester: string, jobId: string, now = Date.now()): void {
    const jobs = this.byRequester.get(requester) ?? new Map<string, number>()
    this.byRequester.delete(requester)
    this.byRequester.set(requester, jobs)
    jobs.set(jobId, now)
    if (jobs.size > MAX_UNPAID_RESULTS_PAYING) jobs.delete(jobs.keys().next().value as string)
    if (this.byRequester.size > MAX_UNPAID_REQUESTERS) this.byRequester.delete(this.byRequester.keys().next().value as string)
  }

  /** A receipt for `jobId` came from `requester` (paid or failed: either way it answered). */
  settled (requester: string, jobId: string): void {
    const jobs = this.byRequester.get(requester)
    if (jobs == null) return
    jobs.delete(jobId)
    if (jobs.size === 0) this.byRequester.delete(requester)
  }

  /** Results `requester` owes us now (older ones forgotten). */
  owed (requester: string, now = Date.now()): number {
    const jobs = this.byRequester.get(requester)
    if (jobs == null) return 0
    for (const [job, at] of jobs) if (at < now - UNPAID_RESULTS_MEMORY_MS) jobs.delete(job)
    if (jobs.size === 0) this.byRequester.delete(requester)
    return jobs.size
  }

  /** Results owed by requesters that never paid us, together. */
  owedUnproven (paidBy: ReadonlySet<string>, now = Date.now()): number {
    let n = 0
    for (const requester of [...this.byRequester.keys()]) if (!paidBy.has(requester)) n += this.owed(requester, now)
    return n
  }

  /** Why `requester` gets no bid from us, or undefined. */
  refusal (requester: string, paidBy: ReadonlySet<string>, now = Date.now()): string | undefined {
    const owed = this.owed(requester, now)
    const paying = paidBy.has(requester)
    if (owed >= (paying ? MAX_UNPAID_RESULTS_PAYING : MAX_UNPAID_RESULTS_PER_REQUESTER)) return `${owed} of our results to this requester are unpaid (no receipt)`
    if (!paying && this.owedUnproven(paidBy, now) >= MAX_UNPAID_RESULTS_UNPROVEN) return `requesters that never paid us owe ${MAX_UNPAID_RESULTS_UNPROVEN} results`
    return undefined
  }
}

/** An offer we bid on, with our bid: an award must name it. */
export interface BidOffer { offer: Signed<Offer>, bid: Signed<Bid>, bidId: string, price: number, requester: string }

/** The config as a provider runs with it: the folders for jobs' files are always named (see Provider). */
export type RunningProviderConfig = ProviderConfig & { inputsDir: string, outputsDir: string }

export interface ProviderContext {
  readonly peerId: string
  readonly deps: ProviderDeps
  readonly cfg: RunningProviderConfig
  readonly log: Logger
  readonly journal: Journal
  readonly network: Network
  /** where won jobs run (the local pool, or a cluster): its capacity is our slots */
  readonly backend: ExecutorBackend
  count (reason: RefusalReason): void
  /** running slots (configured, or the executor's pool size) */
  slots (): number
  /** awarded jobs that may wait for a slot (the executor's queue) */
  queue (): number
  /** our ask now (surge pricing under load) */
  ask (): number
  engines (): Engine[]
  /** we turned this requester's offer away for want of a free slot (no-slot, or a surge ask over its maxPrice) */
  turnedAway (requester: string): void
  /** a job ended and its slot is free (queued jobs of requesters we turned away may now run here) */
  slotFreed (): void
  readonly state: {
    /** jobs accepted and not finished (running or waiting for a slot) */
    running: number
    /** what a job has been taking, smoothed */
    avgRunMs: number
    /** offers we bid on, by id (an award must name one of them); bounded, with a fair share per requester */
    readonly offers: Map<string, BidOffer>
    /** ids of the offers kept per requester, oldest first */
    readonly offersBy: Map<string, Set<string>>
    /** requesters that paid us (and ourselves): every answer to them is logged */
    readonly paidBy: Set<string>
    /** results no receipt has answered yet (a requester owing too many gets no bid) */
    readonly unpaid: UnpaidResults
    /** awards we took or refused as replays (the last MAX_KNOWN_OFFERS) */
    readonly seenAwards: SeenSet
    readonly held: Map<string, HeldJob>
  }
}

/**
 * Keep an offer we bid on. When the cache is full the entry dropped is the oldest of the
 * requester holding the most (the newcomer's own oldest when it holds as many): a flood from
 * one key only ever evicts that key's offers, never another requester's pending ones.
 */
export function keepOffer (state: ProviderContext['state'], offerId: string, entry: BidOffer): void {
  if (state.offers.size >= MAX_BID_OFFERS) {
    let victim = entry.requester
    let most = state.offersBy.get(victim)?.size ?? 0
    for (const [requester, ids] of state.offersBy) if (ids.size > most) { most = ids.size; victim = requester }
    const oldest = state.offersBy.get(victim)?.values().next().value
    if (oldest != null) dropOffer(state, oldest)
  }
  state.offers.set(offerId, entry)
  let ids = state.offersBy.get(entry.requester)
  if (ids == null) { ids = new Set(); state.offersBy.set(entry.requester, ids) }
  ids.add(offerId)
}

/**
 * A held job is done: keep its result, and forget the oldest finished jobs past
 * MAX_HELD_RESULTS (their status is then read from the log). The job is moved to the end of
 * the map, so the finished ones are dropped in the order they finished.
 */
export function finishHeld (state: ProviderContext['state'], held: HeldJob, result: Signed<Result>, max = MAX_HELD_RESULTS): void {
  held.state = 'done'
  held.result = result
  held.doneAt = Date.now()
  state.held.delete(held.jobId)
  state.held.set(held.jobId, held)
  // jobs not finished (as many as `running`) stay and do not count against the cap
  let excess = state.held.size - Math.max(0, state.running) - max
  if (excess <= 0) return
  for (const [id, h] of state.held) {
    if (h.doneAt == null) continue
    if (h === held) return
    state.held.delete(id)
    if (--excess <= 0) return
  }
}

/**
 * Forget the offers we bid on for one job of `requester`: a later round replaced them, or the job
 * is settled and nobody can be awarded them any more. (A look at that requester's kept offers, at
 * most MAX_BID_OFFERS.)
 */
export function dropJobOffers (state: ProviderContext['state'], requester: string, jobId: string): void {
  const ids = state.offersBy.get(requester)
  if (ids == null) return
  for (const id of ids) if (state.offers.get(id)?.offer.payload.jobId === jobId) dropOffer(state, id)
}

export function dropOffer (state: ProviderContext['state'], offerId: string): void {
  const entry = state.offers.get(offerId)
  if (entry == null) return
  state.offers.delete(offerId)
  const ids = state.offersBy.get(entry.requester)
  ids?.delete(offerId)
  if (ids?.size === 0) state.offersBy.delete(entry.requester)
}

/**
 * A blob a job names (its module, an input), got by `get` from the job's requester, or when the
 * requester cannot serve it, from the holders the DHT names (3 s to ask).
 */
export async function fromRequesterOrHolders<T> (ctx: ProviderContext, cid: string, requester: string, get: (peers: string[]) => Promise<T>, signal?: AbortSignal): Promise<T> {
  try {
    return await get([requester])
  } catch {
    signal?.throwIfAborted()
    const holders = await ctx.network.findProviders(BLOB_KEY_PREFIX + cid, { signal: AbortSignal.timeout(3000), limit: 5 }).catch(() => [])
    return await get(holders)
  }
}
