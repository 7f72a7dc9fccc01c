/**
 * The market: Mercato's job life on a mesh with no central server.
 *
 * 1. **Announce.** The requester signs an Offer (spec; modules by CID) and
 *    gossips it on `mercato/jobs/1`; providers found in the DHT outside the
 *    mesh get it directly over `/mercato/offer/1.0.0`.
 * 2. **Bid.** Each provider runs its strategy chain and sends a signed Bid or
 *    a signed Decline with a reason, sealed, over `/mercato/bid/1.0.0`.
 * 3. **Pick.** The window closes at the first of `minBids`, the bid window,
 *    or every known capable provider answered. Lowest price wins; ties by
 *    earliest start, then hash(jobId, peerId). Uniform (second) price.
 * 4. **Award.** A signed Award listing every bid's digest opens a channel on
 *    `/mercato/award/1.0.0`; the provider accepts or refuses, heartbeats
 *    while it runs, and sends a signed Result.
 * 5. **Settle.** The requester re-checks the result hash (and the quorum with
 *    replicas), signs a Receipt, appends it, gossips it on
 *    `mercato/receipts/1`.
 * A provider that goes silent is suspect; one whose connection drops or that
 * stays silent is lost: a Handover record, and the runner-up is awarded.
 *
 * Two roles over one protocol: `requester/` (a pure planner, `plan.ts`, and
 * the driver that runs its steps) and `provider/`, which import nothing from
 * each other; `protocol/` holds what both speak (messages, the journal of
 * record bodies, the market's rules). A node reaches its own provider through
 * the network like any peer (`withLoopback`). This file builds both roles
 * and is the facade the gateway and the node use.
 */
import type { EventEmitter } from 'node:events'
import { messageId, type Signed, type Signer } from '../crypto/index.js'
import { withLoopback, type Network } from '../p2p/index.js'
import type { Ledger } from '../ledger/index.js'
import type { Engine, Executor } from '../executor/index.js'
import { logger } from '../logger.js'
import type { BlobStoreStatus } from './blob-gc.js'
export type { BlobStoreStatus, PinReason } from './blob-gc.js'
import { BlobStore, type BlobStats } from './blobs.js'
import {
  ADVERT_BURST_PER_KEY, ADVERT_RATE_PER_KEY, ADVERTS_TOPIC, MAX_ADVERT_BYTES,
  BLOB_KEY_PREFIX, BLOB_PROTOCOL, BLOB_STREAM_PROTOCOL, JOBS_TOPIC, MAX_BATCH_BYTES, MAX_BATCH_ITEMS, MAX_RATE_KEYS, MAX_SEEN_ITEMS,
  OFFER_BURST_PER_KEY, OFFER_RATE_PER_KEY, RECEIPT_BURST_PER_KEY, RECEIPT_RATE_PER_KEY, RECEIPTS_TOPIC
} from './constants.js'
import { GossipGate, gossipSourceBudget } from './protocol/gossip.js'
import { readRecord, readStanding, readStandingRecords } from './protocol/journal.js'
import { countInto, type Advert, type Receipt, type RefusalReason } from './protocol/messages.js'
import { Provider, type ProviderConfig } from './provider/index.js'
import { Reputation, type PeerStanding } from './reputation.js'
import { Requester, type HeldJobs, type KnownProvider, type ListOptions, type PushStats, type RequesterConfig } from './requester/index.js'
import { ProviderBook } from './requester/book.js'
import { RecentPublishers } from './requester/settle.js'
import type { JobEvent, JobStatus, JobView, ResultView, SubmitSpec } from './types.js'

export * from './types.js'
export * from './constants.js'
export { rankBids, settlementPrice, tieBreak } from './protocol/rules.js'
export { decide, CHECKS } from './provider/strategy.js'
export { BlobStore, BlobTooLargeError, BlockMismatchError, InvalidBlobError } from './blobs.js'
export { Reputation, type PeerStanding } from './reputation.js'
export { trustOf, eligibleBids, attemptDeadline, type Trust } from './requester/trust.js'
export { JobStateError } from '../errors.js'
export { GossipGate, SeenSet, KeyedRateLimit } from './protocol/gossip.js'
export { RefusedMessageError, DECLINE_REASONS, type DeclineReason, type Offer, type Bid, type Award, type Result, type Receipt, type RefusalReason } from './protocol/messages.js'
export type { HeldJobs, KnownProvider, ListOptions, PushStats, RequesterConfig } from './requester/index.js'
export { MAX_JOB_NAME } from './protocol/journal.js'
export type { ProviderConfig } from './provider/index.js'

export interface MarketInit {
  network: Network
  signer: Signer
  ledger: Ledger
  executor: Executor
  blobsDir?: string
  /** the block store's collector (config `blobs`); defaults in blob-gc.ts */
  blobs?: { cacheMaxBytes: number, outputRetentionMs: number, collectIntervalMs: number, collectGraceMs: number }
  requester: RequesterConfig
  provider: ProviderConfig
  isFlagged?: (peerId: string) => boolean
  corruptResults?: boolean
  withholdOutputs?: boolean
  /** true: start() leaves the provider's warm-up to warmUp() (the node calls it once its start is over) */
  deferWarmUp?: boolean
  /** gossip items each forwarding peer may make us check (GOSSIP_VERIFY_PER_SOURCE_PER_SEC / _BURST unless set; tests) */
  gossipPerSource?: { perSec: number, burst: number }
}

/** A provider as listed by `GET /v1/providers`. */
export type ProviderListing = KnownProvider

export interface Market {
  readonly reputation: Reputation
  /**
   * `job` (JobEvent): every step of every job, kept with the job while it is held; `done` (job id):
   * a job ended; `log` (LogEvent): live output of a running job, not kept (see requester/logs.ts)
   */
  readonly events: EventEmitter
  start (): Promise<void>
  /** Run a provider's offer → answer path once, off the record, so the first real offer finds it warm (start() does, unless `deferWarmUp`); once. */
  warmUp (): void
  stop (): Promise<void>
  uploadBlob (bytes: Uint8Array): Promise<string>
  /** import a byte stream as a UnixFS file (streamed into blocks, never held whole); BlobTooLargeError past `maxBytes` */
  uploadBlobStream (source: AsyncIterable<Uint8Array>, opts?: { maxBytes?: number, signal?: AbortSignal }): Promise<{ cid: string, size: number }>
  /**
   * A blob's bytes, held here or not: one not held is fetched from `from` (PeerIds or multiaddrs)
   * or else from the holders the DHT names, each block verified and stored, at most `maxBytes`
   * (a held one is not limited), and streamed as its blocks arrive. Resolves with the size once
   * the blob's root is here.
   */
  streamBlob (cid: string, opts: { from?: string[], maxBytes: number, signal?: AbortSignal }): Promise<{ size: number, content: AsyncIterable<Uint8Array> }>
  /**
   * Stop keeping a blob the user uploaded (or a result's output file): it becomes cache, removed
   * once the store is past `blobs.cacheMaxBytes` (blob-gc.ts). False when it was not pinned.
   */
  unpinBlob (cid: string): boolean
  /** the block store's size, pins and last collection, and the blocks it fetched, served and was pushed (`GET /v1/node` `blobs`) */
  blobStatus (): BlobStoreStatus & { blocks: BlobStats }
  /** a held blob's bytes as a stream (a range with `offset`, `length`); undefined when not held whole */
  catBlob (cid: string, opts?: { offset?: number, length?: number, signal?: AbortSignal }): Promise<{ size: number, content: AsyncIterable<Uint8Array> } | undefined>
  /** a blob held here (undefined when not); `cache: false` reads it without keeping it in memory */
  getBlob (cid: string, opts?: { cache?: boolean }): Promise<Uint8Array | undefined>
  submit (spec: SubmitSpec): Promise<JobView>
  /**
   * A job: from memory while held (unfinished, or among the recent finished ones), else rebuilt
   * from this node's log (a NotFoundError for an id it has no job of)
   */
  get (id: string): Promise<JobView>
  /** the jobs held in memory, newest first (older ones are read by id with `get`) */
  list (opts?: ListOptions): JobView[]
  /** jobs held in memory by state, every state present */
  statusCounts (): Map<JobStatus, number>
  /** is the job held in memory and over? */
  isTerminal (id: string): boolean
  cancel (id: string): Promise<JobView>
  /** a finished job's result, from memory or from the log */
  result (id: string): Promise<ResultView>
  /** a job's events: empty for a finished job no longer held (the log keeps its records, not its events) */
  jobEvents (id: string): Promise<JobEvent[]>
  /** a job's events while it is held in memory (undefined when not): what a live stream starts from */
  heldEvents (id: string): JobEvent[] | undefined
  /** how many events a held job has had so far (0 when not held): where a live-log event falls among them */
  heldEventCount (id: string): number
  /** jobs held in memory, finished ones among them, and the finished ones' approximate bytes */
  held (): HeldJobs
  /** resolves with the job once it is completed, failed, no-bids or cancelled */
  waitFor (id: string, opts?: { signal?: AbortSignal }): Promise<JobView>
  /** providers this node knows of (itself included when it provides) */
  providers (): ProviderListing[]
  /** this node as a provider: its slots, how many are busy, its engines */
  capacity (): { enabled: boolean, slots: number, busy: number, engines: Engine[] }
  /** answers this node's provider could not deliver (requester not reachable, no dial allowed) */
  answersUndelivered (): number
  /** messages refused from the network, by role and reason */
  refusals (): { requester: ReadonlyMap<RefusalReason, number>, provider: ReadonlyMap<RefusalReason, number> }
  /** output files our providers pushed to us while they imported them (requester/push.ts): pushes taken, refused, bytes stored */
  outputPushes (): PushStats
  balance (): { peerId: string, earned: number, spent: number, balance: number }
  standings (): PeerStanding[]
}

export function createMarket (init: MarketInit): Market {
  const log = logger('auction', { peerId: init.signer.peerId })
  // both roles talk over the network only; the loopback lets each reach the other on this node
  const network = withLoopback(init.network)
  const blobs = new BlobStore(init.blobsDir)
  const reputation = new Reputation({ forgiveHalfLifeMs: init.requester.forgiveHalfLifeMs })
  // the provider book: every node hears adverts, its requester invites from them
  const book = new ProviderBook()
  // a checked advert into the book; a new one (a provider joined, or freed a slot) wakes the queued jobs it can run
  const takeAdvert = (m: Signed<Advert>): void => { if (book.add(m)) requester.onAdvert(m.payload) }
  // an advert a provider sent us directly (it freed a slot after turning our offers away) passes
  // the adverts topic's replay and per-key rate checks too
  const directAdvert = (m: Signed<Advert>): void => { if (advertGate.admit(m.signer, messageId(m))) takeAdvert(m) }
  // the requesters heard publishing receipts: ours wait for longer the more share the topic
  const receiptPublishers = new RecentPublishers()
  const requester = new Requester({ network, signer: init.signer, ledger: init.ledger, blobs, reputation, config: init.requester, isFlagged: init.isFlagged, book, directAdvert, receiptPublishers })
  // callers of waitFor, by job (an HTTP long poll each, say): one listener on 'done' for all of
  // them, so a job's end wakes its own waiters, not every one
  const doneWaiters = new Map<string, Set<() => void>>()
  requester.events.on('done', (id: string) => {
    const waiters = doneWaiters.get(id)
    if (waiters == null) return
    doneWaiters.delete(id)
    for (const wake of waiters) wake()
  })
  const providerRefused = new Map<RefusalReason, number>()
  // every node checks and relays both batched topics (replays, per-key rates); only providers act on offers
  // what each forwarding peer may make us verify, all topics together
  const perSource = gossipSourceBudget(init.gossipPerSource)
  const offerGate = new GossipGate('offer', MAX_BATCH_BYTES, MAX_BATCH_ITEMS, {
    maxSeen: MAX_SEEN_ITEMS,
    perSource,
    rate: { perSec: OFFER_RATE_PER_KEY, burst: OFFER_BURST_PER_KEY, maxKeys: MAX_RATE_KEYS },
    count: countInto(providerRefused),
    self: init.signer.peerId
  })
  const advertGate = new GossipGate('advert', MAX_ADVERT_BYTES, 1, {
    maxSeen: MAX_SEEN_ITEMS,
    perSource,
    rate: { perSec: ADVERT_RATE_PER_KEY, burst: ADVERT_BURST_PER_KEY, maxKeys: MAX_RATE_KEYS },
    count: countInto(requester.refused),
    self: init.signer.peerId
  })
  const receiptGate = new GossipGate('receipt', MAX_BATCH_BYTES, MAX_BATCH_ITEMS, {
    maxSeen: MAX_SEEN_ITEMS,
    perSource,
    rate: { perSec: RECEIPT_RATE_PER_KEY, burst: RECEIPT_BURST_PER_KEY, maxKeys: MAX_RATE_KEYS },
    count: countInto(requester.refused),
    self: init.signer.peerId
  })
  const provider = new Provider({
    network,
    refused: providerRefused,
    offerGate,
    signer: init.signer,
    ledger: init.ledger,
    executor: init.executor,
    blobs,
    config: init.provider,
    isFlagged: init.isFlagged,
    onReceipt: (receipt) => { reputation.applyReceipt(receipt) },
    corruptResults: init.corruptResults,
    withholdOutputs: init.withholdOutputs
  })

  const market: Market = {
    reputation,
    events: requester.events,
    async start () {
      await blobs.start()
      if (init.blobs != null) {
        const b = init.blobs
        blobs.gc.start({ maxBytes: b.cacheMaxBytes, intervalMs: b.collectIntervalMs, graceMs: b.collectGraceMs, outputRetentionMs: b.outputRetentionMs })
      } else {
        blobs.gc.start()
      }
      // standing from our own log: receipts we signed or got, losses and mismatches we saw
      for (const r of await readStandingRecords(init.ledger)) {
        const m = readRecord(r)
        const s = m != null ? readStanding(m) : undefined
        if (s?.kind === 'receipt') reputation.applyReceipt(s.receipt)
        else if (s != null) reputation.record(s.provider, s.kind)
      }
      // receipts and offers arrive in batches ({ b: [...] }); the gate checks every new item once
      // (replays of known items are neither verified nor delivered again), the handler applies them
      network.subscribe(RECEIPTS_TOPIC, (msg) => receiptGate.decode(msg), (msg) => {
        for (const r of msg.value) {
          receiptPublishers.heard(r.m.signer)
          reputation.applyReceipt(r.m, false, r.id)
        }
        provider.onGossipReceipts(msg.value)
      })
      // every node relays the jobs topic, providing or not: a requester-only node between two parts
      // of the mesh must not split job gossip. A provider hears its own offers too (through the
      // loopback); a node that does not provide only relays, so it is not a topic peer to itself.
      const jobsNetwork = provider.enabled ? network : init.network
      jobsNetwork.subscribe(JOBS_TOPIC, (msg) => offerGate.decode(msg), (msg) => { provider.onGossipOffers(msg.value) })
      // capacity adverts (one per message): into the book; our own, through the loopback, too
      network.subscribe(ADVERTS_TOPIC, (msg) => advertGate.decode(msg), (msg) => { for (const { m } of msg.value) takeAdvert(m) })
      await blobs.serve(network)
      await requester.start()
      await provider.start()
      if (init.deferWarmUp !== true) provider.warmUp()
      const resumed = await requester.recover()
      if (resumed > 0) log.info({ resumed }, 'resumed unfinished jobs from the ledger')
    },
    warmUp () { provider.warmUp() },
    async stop () {
      await provider.stop()
      await requester.stop()
      network.unsubscribe(RECEIPTS_TOPIC)
      network.unsubscribe(JOBS_TOPIC)
      network.unsubscribe(ADVERTS_TOPIC)
      await network.unhandle(BLOB_PROTOCOL).catch(() => {})
      await network.unhandle(BLOB_STREAM_PROTOCOL).catch(() => {})
      await blobs.gc.stop()
      await blobs.blocks.close()
    },
    async uploadBlob (bytes) {
      const cid = await blobs.put(bytes)
      blobs.gc.pin(cid, 'upload')
      void network.provide(BLOB_KEY_PREFIX + cid, { signal: AbortSignal.timeout(30_000) }).catch(() => {})
      return cid
    },
    async uploadBlobStream (source, opts = {}) {
      // the size as the bytes pass, not a walk of the DAG just written
      let size = 0
      async function * counted (): AsyncGenerator<Uint8Array> {
        for await (const chunk of source) { size += chunk.length; yield chunk }
      }
      const cid = await blobs.putStream(counted(), opts)
      blobs.gc.pin(cid, 'upload')
      void network.provide(BLOB_KEY_PREFIX + cid, { signal: AbortSignal.timeout(30_000) }).catch(() => {})
      return { cid, size }
    },
    getBlob: async (cid, opts) => await blobs.get(cid, opts),
    async streamBlob (cid, opts) {
      const size = await blobs.size(cid)
      if (size != null) return { size, content: blobs.cat(cid, { signal: opts.signal }) }
      const peers = opts.from != null && opts.from.length > 0
        ? opts.from
        : await network.findProviders(BLOB_KEY_PREFIX + cid, { signal: AbortSignal.timeout(3000), limit: 5 }).catch(() => [])
      return await blobs.pullStream(network, cid, peers, { maxBytes: opts.maxBytes, signal: opts.signal })
    },
    blobStatus: () => ({ ...blobs.gc.status(), blocks: blobs.stats() }),
    unpinBlob (cid) {
      const had = blobs.gc.unpin(cid)
      if (had) blobs.gc.collectSoon()
      return had
    },
    async catBlob (cid, opts = {}) {
      const size = await blobs.size(cid)
      if (size == null) return undefined
      return { size, content: blobs.cat(cid, opts) }
    },
    submit: async (spec) => await requester.submit(spec),
    get: async (id) => await requester.get(id),
    list: (opts) => requester.list(opts),
    statusCounts: () => requester.statusCounts(),
    isTerminal: (id) => requester.isTerminal(id),
    cancel: async (id) => await requester.cancel(id),
    result: async (id) => await requester.result(id),
    jobEvents: async (id) => await requester.jobEvents(id),
    heldEvents: (id) => requester.heldEvents(id),
    heldEventCount: (id) => requester.heldEventCount(id),
    held: () => requester.held(),
    async waitFor (id, opts = {}) {
      const held = requester.peek(id)
      // not held: finished (read from the log) or unknown (NotFoundError)
      if (held == null) return await requester.get(id)
      if (requester.isTerminal(id)) return held
      const view = await new Promise<JobView | undefined>((resolve, reject) => {
        const set = doneWaiters.get(id) ?? new Set<() => void>()
        doneWaiters.set(id, set)
        const cleanup = (): void => {
          set.delete(onDone)
          if (set.size === 0 && doneWaiters.get(id) === set) doneWaiters.delete(id)
          opts.signal?.removeEventListener('abort', onAbort)
        }
        // 'done' is emitted while the job is still held: its view is taken then
        const onDone = (): void => { cleanup(); resolve(requester.peek(id)) }
        const onAbort = (): void => { cleanup(); reject(opts.signal?.reason ?? new Error('aborted')) }
        set.add(onDone)
        opts.signal?.addEventListener('abort', onAbort)
      })
      return view ?? await requester.get(id)
    },
    providers () {
      const list = requester.knownProviderList()
      if (!provider.enabled) return list
      // this node as a provider: its engines from itself, not from what the DHT says of it
      const self = list.find(p => p.self)
      const engines = provider.engines()
      if (self == null) return [...list, { peerId: init.signer.peerId, engines: [...engines].sort(), lastAsk: null, self: true }]
      self.engines = [...new Set([...self.engines, ...engines])].sort()
      return list
    },
    capacity: () => ({ enabled: provider.enabled, slots: provider.slots, busy: provider.busy, engines: provider.engines() }),
    refusals: () => ({ requester: requester.refused, provider: provider.refused }),
    outputPushes: () => requester.pushStats(),
    answersUndelivered: () => provider.unreachable,
    balance () {
      const me = reputation.get(init.signer.peerId)
      return { peerId: init.signer.peerId, earned: me.earned, spent: me.spent, balance: me.earned - me.spent }
    },
    standings: () => reputation.all()
  }
  return market
}

export type { Signed, Receipt as ReceiptPayload }
