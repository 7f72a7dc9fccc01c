/**
 * The provider's bidding desk: offers in, sealed answers out.
 *
 * Offers arrive on the jobs topic (a batch per gossip message, every item
 * checked once by the topic's gate, `protocol/gossip.ts`) or directly on
 * `/mercato/offer/1.0.0`.
 * Each new offer runs the strategy chain (`strategy.ts`); the answer, a
 * signed Bid or a signed Decline with its reason, goes to the requester on
 * one long-lived bid stream per requester (answers of one turn in one
 * frame), or as one request each when no stream can be had. Our own
 * requester is reached the same way, through the loopback.
 */
import { messageId, type Signed } from '../../crypto/index.js'
import type { MessageChannel } from '../../p2p/index.js'
import { Batcher } from '../batcher.js'
import { LruCache } from '../../lru.js'
import {
  ANSWER_DIAL_BACKOFF_MS, ANSWER_DIAL_TIMEOUT_MS, BID_PROTOCOL, BID_STREAM_PROTOCOL, BID_TTL_MS, MAX_ANSWER_DIALS, MAX_ANSWER_HINTS, MAX_BATCH_BYTES, MAX_BATCH_ITEMS,
  MAX_BID_BYTES, MAX_HINTED_REQUESTERS, MAX_BLOB_BYTES, UNPROVEN_BID_RECORDS_BURST, UNPROVEN_BID_RECORDS_PER_SEC
} from '../constants.js'
import { fingerprint, KeyedRateLimit } from '../protocol/gossip.js'
import { decodeBatch, encodeBatch, encodeSigned, sign, type Offer } from '../protocol/messages.js'
import { labelsFor } from '../../labels.js'
import { decide, type Decision, type StrategyContext } from './strategy.js'
import { dropJobOffers, inputLimits, keepOffer, MAX_KNOWN_OFFERS, type ProviderContext } from './state.js'

export class ProviderBidding {
  private readonly ctx: ProviderContext
  /**
   * The offer we answered last for each job: by the {@link fingerprint} of its requester and job id,
   * the fingerprint of the offer's id and its timestamp (numbers: this map holds the last
   * MAX_KNOWN_OFFERS jobs). A job announced again (a queued job's rounds, a failover) replaces its
   * entry, and its earlier offer is dropped from the offers we bid on: re-announcements of one job
   * hold one entry, not one each.
   */
  private readonly answered = new Map<number, { id: number, ts: number }>()
  /** one long-lived bid stream per requester */
  private readonly bidChannels = new Map<string, Promise<MessageChannel>>()
  /** answers produced in one turn for one requester go out as one frame on its bid stream */
  private readonly bidBatches = new Map<string, Batcher<Signed>>()
  /** standalone bid records for requesters that never paid us: a small shared budget */
  private readonly unprovenRecords = new KeyedRateLimit(UNPROVEN_BID_RECORDS_PER_SEC, UNPROVEN_BID_RECORDS_BURST, 1)
  /** answer dials in flight, and requesters we could not dial lately (until when) */
  private readonly dialing = new Map<string, Promise<boolean>>()
  private readonly dialFailed = new Map<string, number>()
  /** the addresses each requester's latest offer named (dial hints: only relay circuits we can use safely) */
  private readonly namedAddrs = new LruCache<readonly string[]>(MAX_HINTED_REQUESTERS)
  /** answers dropped because the requester could not be reached (no connection, no dial allowed or possible) */
  unreachable = 0

  constructor (ctx: ProviderContext) {
    this.ctx = ctx
  }

  stop (): void {
    for (const ch of this.bidChannels.values()) void ch.then(c => { void c.close() }, () => {})
    this.bidChannels.clear()
  }

  /** Decide on an offer and answer the requester with a signed bid or decline. */
  onOffer (offer: Signed<Offer>, id?: string): void {
    const offerId = id ?? messageId(offer)
    const o = offer.payload
    const key = fingerprint(`${o.requester} ${o.jobId}`)
    const fp = fingerprint(offerId)
    const prev = this.answered.get(key)
    // the same offer again (gossip and the direct path), or an older round of a job we saw announced since
    if (prev != null && (prev.id === fp || o.ts <= prev.ts)) return
    if (prev != null) {
      this.answered.delete(key) // re-inserted below: the map stays ordered by last offer
      dropJobOffers(this.ctx.state, o.requester, o.jobId)
    }
    this.answered.set(key, { id: fp, ts: o.ts })
    if (this.answered.size > MAX_KNOWN_OFFERS) this.answered.delete(this.answered.keys().next().value as number)
    void this.answer(offer, offerId, prev != null).catch(err => { this.ctx.log.debug({ err, jobId: offer.payload.jobId }, 'could not answer offer') })
  }

  strategyContext (): StrategyContext {
    const { ctx } = this
    const inputs = inputLimits(ctx.cfg)
    return {
      enabled: ctx.cfg.enabled,
      engines: ctx.engines(),
      labels: ctx.cfg.labels ?? {},
      price: ctx.ask(),
      maxTimeoutMs: ctx.cfg.maxTimeoutMs,
      maxMemoryMb: ctx.cfg.maxMemoryMb,
      maxOutputBytes: ctx.cfg.maxOutputBytes,
      maxModuleBytes: MAX_BLOB_BYTES,
      inputsSupported: ctx.backend.name !== 'slurm',
      maxInputFiles: inputs.maxFiles,
      maxInputFileBytes: inputs.maxFileBytes,
      maxInputTotalBytes: inputs.maxTotalBytes,
      // a job beyond the running slots waits in the executor's queue; only a full queue says no
      freeSlots: ctx.slots() + ctx.queue() - ctx.state.running,
      isFlagged: ctx.deps.isFlagged ?? (() => false),
      owes: (requester) => requester === ctx.peerId ? undefined : ctx.state.unpaid.refusal(requester, ctx.state.paidBy)
    }
  }

  /** `again`: a later round of a job we answered before (its standalone bid record, if any, was written then) */
  private async answer (offer: Signed<Offer>, offerId: string, again: boolean): Promise<void> {
    const { ctx } = this
    const o = offer.payload
    const decision: Decision = decide(o, this.strategyContext())
    const now = Date.now()
    let msg: Signed
    if (decision.bid) {
      const slots = ctx.slots()
      const running = ctx.state.running
      const bid = sign(ctx.deps.signer, 'bid', {
        v: 1,
        jobId: o.jobId,
        offerId,
        provider: ctx.peerId,
        price: ctx.ask(),
        // waiting jobs ahead of this one, times what a job has been taking, plus the backend's own start-up (a cluster's)
        estStartMs: (running >= slots ? Math.round((running - slots + 1) * ctx.state.avgRunMs / Math.max(1, slots)) : 0) + ctx.backend.capacity().startMs,
        // a constrained job: sign what we are on the keys it looks at (the requester matches that, not a guess)
        ...(o.constraints != null ? { labels: labelsFor(ctx.cfg.labels ?? {}, o.constraints) } : {}),
        ts: now,
        expires: now + BID_TTL_MS
      })
      // only offers we bid on can be awarded to us: keep those with our bid (bounded), not every offer heard
      keepOffer(ctx.state, offerId, { offer, bid, bidId: messageId(bid), price: bid.payload.price, requester: o.requester })
      msg = bid
      // our signed bid, naming the offer by id; the offer and the bid are logged with the award when
      // we win (the requester's log holds every offer and every bid in full). Anyone can sign offers,
      // so an answer costs us a record of its own only for a requester that paid us before (or
      // ourselves), or from a small shared budget for the others; and once per job: a job announced
      // again (a queued job's rounds) costs no record per round. Declines are logged by the requester only.
      if (!again && (ctx.state.paidBy.has(o.requester) || this.unprovenRecords.take('unproven', 1))) {
        void ctx.journal.bid(offerId, o.requester, bid).catch(err => { ctx.log.error({ err }, 'ledger append failed') })
      }
    } else {
      // turned away for want of a slot (or a surge ask): when one frees, our advert wakes the requester's queued job
      if (decision.reason === 'no-slot' || (decision.reason === 'price' && ctx.cfg.price <= o.maxPrice)) ctx.turnedAway(o.requester)
      msg = sign(ctx.deps.signer, 'decline', { v: 1, jobId: o.jobId, offerId, provider: ctx.peerId, reason: decision.reason, detail: decision.detail, ts: now })
    }
    // the offer's relay circuits to its requester, in case the connection is gone when the answer
    // leaves (at most MAX_ANSWER_HINTS of them, for the last MAX_HINTED_REQUESTERS requesters)
    const circuits = o.addrs.filter(a => a.includes('/p2p-circuit/p2p/') && a.endsWith(o.requester)).slice(0, MAX_ANSWER_HINTS)
    if (circuits.length > 0) this.namedAddrs.set(o.requester, circuits)
    else this.namedAddrs.delete(o.requester)
    this.send(o.requester, msg)
  }

  /**
   * Queue an answer (or our capacity advert, advert.ts) for our long-lived bid stream to this
   * requester (opened on first use); answers of one turn leave as one frame.
   */
  send (requester: string, msg: Signed): void {
    let batch = this.bidBatches.get(requester)
    if (batch == null) {
      batch = new Batcher<Signed>((items) => {
        void this.flush(requester, items).catch(err => { this.ctx.log.debug({ err, requester }, 'could not deliver answers') })
      // answers are schema-bounded (a few hundred bytes): count each at the cap rather than encode it to measure
      }, { maxItems: MAX_BATCH_ITEMS, maxBytes: MAX_BID_BYTES * MAX_BATCH_ITEMS, sizeOf: () => MAX_BID_BYTES })
      this.bidBatches.set(requester, batch)
      if (this.bidBatches.size > 1024) this.bidBatches.delete(this.bidBatches.keys().next().value as string)
    }
    batch.add(msg)
  }

  /** Send on the bid stream; if that stream cannot be had, one request per answer. */
  private async flush (requester: string, items: Signed[]): Promise<void> {
    const { network } = this.ctx
    // only over a connection we have or were allowed to make: opening a stream to a peer we are
    // not connected to would make libp2p dial whatever addresses it holds for it
    if (!await this.reach(requester)) { this.unreachable += items.length; return }
    let channel = this.bidChannels.get(requester)
    if (channel == null) {
      channel = network.openChannel(requester, BID_STREAM_PROTOCOL, { maxMessageBytes: MAX_BID_BYTES, signal: AbortSignal.timeout(3000) })
      this.bidChannels.set(requester, channel)
      channel.then(async (ch) => {
        // the requester never writes; the loop ends when the stream does
        try { for await (const _ of ch) { /* nothing */ } } catch {}
        if (this.bidChannels.get(requester) === channel) this.bidChannels.delete(requester)
      }, () => { if (this.bidChannels.get(requester) === channel) this.bidChannels.delete(requester) })
    }
    try {
      await (await channel).send(encodeBatch(items))
    } catch {
      // no stream: one request per answer on the request/response protocol
      if (this.bidChannels.get(requester) === channel) this.bidChannels.delete(requester)
      for (const m of items) {
        if (!network.isConnected(requester)) { this.unreachable++; continue }
        await network.request(requester, BID_PROTOCOL, encodeSigned(m), { timeoutMs: 5000, maxResponseBytes: 1024 })
      }
    }
  }

  /**
   * Can we deliver answers to this requester? Yes over a connection we have (the requester is a
   * gossip neighbour, sent us the offer directly, or is ourselves). Otherwise we dial its PeerId,
   * never the hosts and ports its offer names (anyone can sign an offer naming any host and port):
   * libp2p uses what the peer said of itself over identify, or the DHT, and only public IP
   * addresses unless `dialPrivateAddresses` is on; of the offer's addresses only relay circuits
   * through a relay we are connected to are used, on our connection to it (a requester behind NAT
   * that the DHT does not know yet: its bids were lost). A dial that fails while the requester
   * connects to us counts as reached. Bounded: MAX_ANSWER_DIALS at once, one per requester, and a
   * requester we failed to dial is not dialled again for ANSWER_DIAL_BACKOFF_MS.
   */
  private async reach (peer: string): Promise<boolean> {
    const { network } = this.ctx
    if (network.isConnected(peer)) return true
    const pending = this.dialing.get(peer)
    if (pending != null) return await pending
    const failedAt = this.dialFailed.get(peer)
    if (failedAt != null && Date.now() - failedAt < ANSWER_DIAL_BACKOFF_MS) return false
    if (this.dialing.size >= MAX_ANSWER_DIALS) return false
    const hints = this.namedAddrs.get(peer)
    const dial = network.dial(peer, { signal: AbortSignal.timeout(ANSWER_DIAL_TIMEOUT_MS), publicOnly: this.ctx.cfg.dialPrivateAddresses !== true, hints })
      .then(() => { this.dialFailed.delete(peer); return true }, (err) => {
        // the requester may have connected to us while we dialled (it dials providers it discovers)
        if (network.isConnected(peer)) return true
        this.ctx.log.debug({ err, peer }, 'could not reach requester to answer')
        this.dialFailed.set(peer, Date.now())
        if (this.dialFailed.size > MAX_KNOWN_OFFERS) this.dialFailed.delete(this.dialFailed.keys().next().value as string)
        return false
      })
      .finally(() => { this.dialing.delete(peer) })
    this.dialing.set(peer, dial)
    return await dial
  }

  /** Run the offer → answer path once on a made-up offer (no network, no log): see Provider.warmUp. */
  warmUp (): void {
    const { ctx } = this
    const now = Date.now()
    const offer = sign(ctx.deps.signer, 'offer', {
      v: 1, jobId: 'bafyreiwarmupwarmupwarmupwarmupwarmupwarmupwarmupwarmupwa', requester: ctx.peerId, addrs: [],
      spec: { engine: 'js', source: 'function main () {}', args: [], env: {}, limits: { timeoutMs: 1000, memoryMb: 16, outputBytes: 1024 } },
      maxPrice: 1, replicas: 1, bidWindowMs: 50, ts: now, expires: now + 60_000, round: 0
    })
    const [checked] = decodeBatch(encodeBatch([offer]), 'offer', MAX_BATCH_BYTES, MAX_BATCH_ITEMS)
    decide(checked.payload, this.strategyContext())
    const bid = sign(ctx.deps.signer, 'bid', { v: 1, jobId: checked.payload.jobId, offerId: messageId(checked), provider: ctx.peerId, price: 1, estStartMs: 0, ts: now, expires: now + 60_000 })
    decodeBatch(encodeBatch([bid]), 'bid', MAX_BATCH_BYTES, MAX_BATCH_ITEMS)
  }
}
