import type { Engine } from '../engines.js'
import type { DeclineReason } from './protocol/messages.js'

/** Every state a job can be in, in the order a job moves through them. */
export const JOB_STATUSES = ['bidding', 'awarded', 'running', 'completed', 'failed', 'no-bids', 'cancelled'] as const
export type JobStatus = typeof JOB_STATUSES[number]
export const TERMINAL: ReadonlySet<JobStatus> = new Set(['completed', 'failed', 'no-bids', 'cancelled'])

export type JobEventType = 'announced' | 'bid' | 'decline' | 'awarded' | 'accepted' | 'refused' | 'running' | 'suspect' | 'handover' | 'result' | 'superseded' | 'mismatch' | 'settled' | 'failed' | 'no-bids' | 'cancelled'

export interface JobEvent {
  type: JobEventType
  ts: number
  jobId: string
  [k: string]: unknown
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
  limits?: { timeoutMs?: number, memoryMb?: number, outputBytes?: number }
  maxPrice?: number
  replicas?: number
  minBids?: number
  bidWindowMs?: number
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
  reason?: string
}

export interface JobView {
  id: string
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
}

export interface ResultView {
  jobId: string
  exitCode: number
  stdout: string
  stderr: string
  output?: unknown
  truncated: boolean
  error?: { name: string, message: string }
  resultHash: string
  provider: string
  providers: string[]
  price: number
  usage: { wallMs: number, memoryBytes: number, outputBytes: number, fuel?: number }
}
