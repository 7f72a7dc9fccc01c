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
  limits?: { timeoutMs?: number, memoryMb?: number, outputBytes?: number }
  maxPrice?: number
  replicas?: number
  minBids?: number
  bidWindowMs?: number
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
