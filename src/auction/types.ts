import type { Engine } from '../engines.js'
import type { DeclineReason } from './protocol/messages.js'
import type { Constraint, Labels } from '../labels.js'

/**
 * Every state a job can be in, in the order a job moves through them. `queued`: no acceptable bid
 * yet; the job is announced again with backoff, and at once when a capable provider frees a slot
 * or joins, until its queue timeout (`queueTimeoutMs`) passes (then `no-bids`).
 */
export const JOB_STATUSES = ['bidding', 'queued', 'awarded', 'running', 'completed', 'failed', 'no-bids', 'cancelled'] as const
export type JobStatus = typeof JOB_STATUSES[number]
export const TERMINAL: ReadonlySet<JobStatus> = new Set(['completed', 'failed', 'no-bids', 'cancelled'])

export type JobEventType = 'announced' | 'queued' | 'bid' | 'decline' | 'awarded' | 'accepted' | 'refused' | 'running' | 'suspect' | 'rerouted' | 'handover' | 'collecting' | 'result' | 'superseded' | 'mismatch' | 'settled' | 'failed' | 'no-bids' | 'cancelled'

export interface JobEvent {
  type: JobEventType
  ts: number
  jobId: string
  [k: string]: unknown
}

/**
 * Live output of a running job (emitted as `log` on the market's emitter, not kept with the job's
 * events, never in the ledger): `text` is what attempt `attempt` (on `provider`) wrote to `stream`
 * since the last one. `dropped`: bytes left out before it (rate or size caps); `capped`: this
 * attempt's logs reached their cap, nothing more of it follows. A runner-up's logs start over with
 * its own `attempt`. The job's full stdout/stderr are in its signed result.
 */
export interface LogEvent {
  type: 'log'
  ts: number
  jobId: string
  provider: string
  attempt: number
  stream: 'stdout' | 'stderr'
  text: string
  /** the event's place among the attempt's log events (0, 1, …): a replayed tail is told from new events by it */
  seq: number
  dropped?: number
  capped?: boolean
}

/** A job as the user submits it (the gateway turns JSON into this). */
export interface SubmitSpec {
  engine: Engine
  /** CID of an uploaded wasm module */
  module?: string
  /** inline JS source */
  source?: string
  args?: string[]
  env?: Record<string, string>
  stdin?: Uint8Array
  input?: unknown
  /** input files: a blob in this node's store (`cid`; its size is looked up) or a URL pinned by sha256 */
  inputs?: Array<{ path: string, cid: string } | { path: string, url: string, sha256: string, size?: number }>
  limits?: { timeoutMs?: number, memoryMb?: number, outputBytes?: number }
  maxPrice?: number
  replicas?: number
  minBids?: number
  bidWindowMs?: number
  /** placement: only providers whose labels meet every one may run it (src/labels.ts) */
  constraints?: Constraint[]
  /** for people: a name and labels to list and filter jobs by (never sent to providers) */
  name?: string
  labels?: Labels
  /**
   * How long a job with no acceptable bid may wait in the queue, counted from submission (ms);
   * 0: end `no-bids` at once. Default: the node's `auction.queueTimeoutMs`.
   */
  queueTimeoutMs?: number
  /**
   * A client-chosen key: the job's id is derived from it (and this node's PeerId), so a second
   * submission with the same key returns the first job instead of starting another. Lets a client
   * that crashed between submitting and recording the id submit again safely.
   */
  idempotencyKey?: string
}

export interface AttemptView {
  provider: string
  price: number
  attempt: number
  state: 'offered' | 'accepted' | 'running' | 'refused' | 'lost' | 'completed' | 'superseded' | 'mismatch' | 'cancelled'
  awardedAt: number
  endedAt?: number
  /** while the attempt is in flight: when its provider was last heard from on the award channel (heartbeats, logs) */
  lastSeen?: number
  reason?: string
}

export interface JobView {
  id: string
  /** the user's name for the job, if given */
  name?: string
  /** the user's labels for the job ({} when none) */
  labels: Labels
  /** placement constraints ([] when none) */
  constraints: Constraint[]
  status: JobStatus
  engine: Engine
  /** the provider holding the job now (the first of them with replicas) */
  provider: string | null
  providers: string[]
  price: number | null
  maxPrice: number
  replicas: number
  bids: Array<{ provider: string, price: number, estStartMs: number, id: string }>
  attempts: AttemptView[]
  declines: Array<{ provider: string, reason: DeclineReason, detail?: string }>
  createdAt: number
  completedAt: number | null
  latencyMs: number | null
  error?: string
  /** when the job's queue time ends (createdAt + queueTimeoutMs); absent when it may not queue */
  queueUntil?: number
}

export interface ResultView {
  jobId: string
  exitCode: number
  stdout: string
  stderr: string
  output?: unknown
  /** the files the job wrote, by path, CID and size (fetched and checked by this node); empty when none */
  outputs: Array<{ path: string, cid: string, size: number }>
  truncated: boolean
  error?: { name: string, message: string }
  resultHash: string
  provider: string
  providers: string[]
  price: number
  usage: { wallMs: number, memoryBytes: number, outputBytes: number, fuel?: number }
}
