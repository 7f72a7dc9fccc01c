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
 */
import type { EventEmitter } from 'node:events'
import type { Signer } from '../crypto/index.js'
import type { Network, TopicVerdict } from '../p2p/index.js'
import type { Ledger, LedgerRecord } from '../ledger/index.js'
import type { Executor } from '../executor/index.js'
import { logger } from '../logger.js'
import { BlobStore } from './blobs.js'
import { BLOB_KEY_PREFIX, BLOB_PROTOCOL, MAX_BATCH_BYTES, MAX_BATCH_ITEMS, RECEIPTS_TOPIC, AWARD_PROTOCOL } from './constants.js'
import { decodeBatch, type Receipt } from './protocol/messages.js'
import { Provider, type ProviderConfig } from './provider.js'
import { Reputation, type PeerStanding } from './reputation.js'
import { Requester, type RequesterConfig } from './requester.js'
import { localChannelPair } from './local-channel.js'
import type { JobEvent, JobStatus, JobView, ResultView, SubmitSpec } from './types.js'
import type { Signed } from '../crypto/index.js'

export * from './types.js'
export * from './constants.js'
export { rankBids, settlementPrice, tieBreak } from './protocol/rules.js'
export { decide, CHECKS } from './strategy.js'
export { BlobStore } from './blobs.js'
export { Reputation, type PeerStanding } from './reputation.js'
export { JobStateError } from '../errors.js'
export { RefusedMessageError, DECLINE_REASONS, type DeclineReason, type Offer, type Bid, type Award, type Result, type Receipt } from './protocol/messages.js'

export interface MarketInit {
  network: Network
  signer: Signer
  ledger: Ledger
  executor: Executor
  blobsDir?: string
  requester: RequesterConfig
  provider: ProviderConfig
  isFlagged?: (peerId: string) => boolean
  corruptResults?: boolean
}

export interface Market {
  readonly requester: Requester
  readonly provider: Provider
  readonly reputation: Reputation
  readonly blobs: BlobStore
  readonly events: EventEmitter
  start (): Promise<void>
  stop (): Promise<void>
  uploadBlob (bytes: Uint8Array): Promise<string>
  submit (spec: SubmitSpec): Promise<JobView>
  get (id: string): JobView
  list (opts?: { status?: JobStatus, limit?: number }): JobView[]
  /** jobs by state, every state present */
  statusCounts (): Map<JobStatus, number>
  cancel (id: string): Promise<JobView>
  result (id: string): ResultView
  jobEvents (id: string): JobEvent[]
  /** resolves with the job once it is completed, failed, no-bids or cancelled */
  waitFor (id: string, opts?: { signal?: AbortSignal }): Promise<JobView>
  balance (): { peerId: string, earned: number, spent: number, balance: number }
  standings (): PeerStanding[]
}

export function createMarket (init: MarketInit): Market {
  const log = logger('auction', { peerId: init.signer.peerId })
  const blobs = new BlobStore(init.blobsDir)
  const reputation = new Reputation()
  let provider!: Provider
  const requester = new Requester({
    network: init.network,
    signer: init.signer,
    ledger: init.ledger,
    blobs,
    reputation,
    config: init.requester,
    isFlagged: init.isFlagged,
    localProvider: init.provider.enabled
      ? {
          onOffer: (offer) => { provider.onOffer(offer) },
          openAward: () => {
            const [mine, theirs] = localChannelPair(init.signer.peerId, AWARD_PROTOCOL)
            provider.acceptLocal(theirs)
            return mine
          },
          status: (jobId) => provider.localStatus(jobId),
          engines: () => provider.engines()
        }
      : undefined
  })
  provider = new Provider({
    network: init.network,
    signer: init.signer,
    ledger: init.ledger,
    executor: init.executor,
    blobs,
    config: init.provider,
    isFlagged: init.isFlagged,
    localRequester: requester,
    onReceipt: (receipt) => { reputation.applyReceipt(receipt) },
    corruptResults: init.corruptResults
  })

  async function scanLedger (): Promise<LedgerRecord[]> {
    const out: LedgerRecord[] = []
    const head = init.ledger.head()
    for (let from = 0; from <= head.seq; from += 1000) {
      const page = await init.ledger.range(from, 1000)
      if (page.length === 0) break
      for (const r of page) {
        const t = r.type
        if (t === 'job' || t === 'offer' || t === 'bid' || t === 'award' || t === 'accept' || t === 'handover' || t === 'receipt' || t === 'mismatch') out.push(r)
      }
    }
    return out
  }

  const market: Market = {
    requester,
    provider,
    reputation,
    blobs,
    events: requester.events,
    async start () {
      await blobs.start()
      // standing from our own log: receipts we signed or got, losses and mismatches we saw
      const records = await scanLedger()
      for (const r of records) {
        const b = r.body as any
        if (r.type === 'receipt' && b.receipt != null) reputation.applyReceipt(b.receipt)
        else if (r.type === 'handover' && typeof b.from === 'string') reputation.record(b.from, 'lost')
        else if (r.type === 'mismatch' && typeof b.provider === 'string') reputation.record(b.provider, 'mismatched')
      }
      // receipts arrive in batches ({ b: [...] }); the validator checks every one, the handler applies them
      init.network.subscribe(RECEIPTS_TOPIC, (msg): TopicVerdict<Array<Signed<Receipt>>> => {
        try {
          const receipts = decodeBatch(msg.data, 'receipt', MAX_BATCH_BYTES, MAX_BATCH_ITEMS)
          return receipts.length > 0 ? { result: 'accept', value: receipts } : { result: 'ignore' }
        } catch { return { result: 'reject' } }
      }, (msg) => {
        for (const r of msg.value) reputation.applyReceipt(r, false)
      })
      await blobs.serve(init.network)
      await requester.start()
      await provider.start()
      const resumed = await requester.recover(records)
      if (resumed > 0) log.info({ resumed }, 'resumed unfinished jobs from the ledger')
    },
    async stop () {
      await provider.stop()
      await requester.stop()
      init.network.unsubscribe(RECEIPTS_TOPIC)
      await init.network.unhandle(BLOB_PROTOCOL).catch(() => {})
    },
    async uploadBlob (bytes) {
      const cid = await blobs.put(bytes)
      void init.network.provide(BLOB_KEY_PREFIX + cid, { signal: AbortSignal.timeout(30_000) }).catch(() => {})
      return cid
    },
    submit: async (spec) => await requester.submit(spec),
    get: (id) => requester.get(id),
    list: (opts) => requester.list(opts),
    statusCounts: () => requester.statusCounts(),
    cancel: async (id) => await requester.cancel(id),
    result: (id) => requester.result(id),
    jobEvents: (id) => requester.jobEvents(id),
    async waitFor (id, opts = {}) {
      requester.get(id) // throws if unknown
      if (requester.isTerminal(id)) return requester.get(id)
      return await new Promise<JobView>((resolve, reject) => {
        const onDone = (doneId: string): void => {
          if (doneId !== id) return
          cleanup()
          resolve(requester.get(id))
        }
        const onAbort = (): void => { cleanup(); reject(opts.signal?.reason ?? new Error('aborted')) }
        const cleanup = (): void => {
          requester.events.off('done', onDone)
          opts.signal?.removeEventListener('abort', onAbort)
        }
        requester.events.on('done', onDone)
        opts.signal?.addEventListener('abort', onAbort)
      })
    },
    balance () {
      const me = reputation.get(init.signer.peerId)
      return { peerId: init.signer.peerId, earned: me.earned, spent: me.spent, balance: me.earned - me.spent }
    },
    standings: () => reputation.all()
  }
  return market
}

export type { Signed, Receipt as ReceiptPayload }
