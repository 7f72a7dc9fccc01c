/**
 * What the provider's files share: the node's parts, its configuration, and
 * the little state a provider keeps (offers it bid on, awards seen, jobs it
 * holds, how busy it is).
 */
import type { Signed, Signer } from '../../crypto/index.js'
import type { Engine, Executor } from '../../executor/index.js'
import type { Ledger } from '../../ledger/index.js'
import type { Logger } from '../../logger.js'
import type { Network } from '../../p2p/index.js'
import type { BlobStore } from '../blobs.js'
import type { Journal } from '../protocol/journal.js'
import type { Offer, Receipt, RefusalReason, Result } from '../protocol/messages.js'

export interface ProviderConfig {
  enabled: boolean
  price: number
  slots: number
  /** awarded jobs allowed to wait for a free slot (default 0: only bid with a free slot) */
  queue?: number
  engines: Engine[]
  maxTimeoutMs: number
  maxMemoryMb: number
  maxOutputBytes: number
  heartbeatMs: number
  resultRetentionMs: number
}

export interface ProviderDeps {
  network: Network
  signer: Signer
  ledger: Ledger
  executor: Executor
  blobs: BlobStore
  config: ProviderConfig
  isFlagged?: (peerId: string) => boolean
  /** a receipt paying us arrived on the award channel (firsthand: it moves our balance) */
  onReceipt?: (receipt: Signed<Receipt>) => void
  /** test-only: corrupt every result (to test replica quorum) */
  corruptResults?: boolean
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
/** Offers we bid on, kept to check awards against (each up to MAX_OFFER_BYTES). */
export const MAX_BID_OFFERS = 1_000

export interface ProviderContext {
  readonly peerId: string
  readonly deps: ProviderDeps
  readonly cfg: ProviderConfig
  readonly log: Logger
  readonly journal: Journal
  readonly network: Network
  count (reason: RefusalReason): void
  /** running slots (configured, or the executor's pool size) */
  slots (): number
  /** awarded jobs that may wait for a slot (the executor's queue) */
  queue (): number
  /** our ask now (surge pricing under load) */
  ask (): number
  engines (): Engine[]
  readonly state: {
    /** jobs accepted and not finished (running or waiting for a slot) */
    running: number
    /** what a job has been taking, smoothed */
    avgRunMs: number
    /** offers we bid on, by id (an award must name one of them) */
    readonly offers: Map<string, { offer: Signed<Offer>, bidId: string, price: number }>
    readonly seenAwards: Set<string>
    readonly held: Map<string, HeldJob>
  }
}
