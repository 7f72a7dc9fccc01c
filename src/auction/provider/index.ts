/**
 * The provider role: hear offers, decide with a reason, bid (sealed, peer to
 * peer), accept awards, fetch the module, run it in the executor with
 * heartbeats, return a signed result, keep it for a while.
 *
 * `bidding.ts` turns offers into answers (the strategy chain is
 * `strategy.ts`); `run.ts` takes an award from its first frame to the
 * receipt; `status.ts` answers a restarted requester. This file wires them
 * to the network and holds the numbers they share (slots, queue, the ask).
 */
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { messageId, type Signed } from '../../crypto/index.js'
import { SeenSet, type GossipItem } from '../protocol/gossip.js'
import { asBackend, type Engine } from '../../executor/index.js'
import { logger, type Logger } from '../../logger.js'
import { MessageTooLargeError, type MessageChannel, type Network } from '../../p2p/index.js'
import {
  AWARD_PROTOCOL, ENGINE_KEY_PREFIX, MAX_CHANNEL_BYTES, MAX_OFFER_BYTES, OFFER_PROTOCOL, OFFER_STREAM_IDLE_MS, OFFER_STREAM_PROTOCOL, STATUS_PROTOCOL
} from '../constants.js'
import { nextWithin } from '../streams.js'
import { Journal } from '../protocol/journal.js'
import { countInto, decodeSigned, RefusedMessageError, type Offer, type Receipt, type RefusalReason } from '../protocol/messages.js'
import { encodeStatusReply, MAX_STATUS_REQUEST_BYTES } from '../protocol/frames.js'
import { Advertiser } from './advert.js'
import { ProviderBidding } from './bidding.js'
import { onAwardChannel } from './run.js'
import { statusFor, sweep } from './status.js'
import { dropJobOffers, MAX_KNOWN_OFFERS, UnpaidResults, type ProviderContext, type ProviderDeps, type RunningProviderConfig } from './state.js'

export type { ProviderConfig, ProviderDeps } from './state.js'
export { decide, CHECKS, type Decision, type StrategyContext } from './strategy.js'

/** ask increase per job waiting ahead (0.5 = +50 % of the base price each) */
const SURGE = 0.5

export class Provider {
  readonly refused: Map<RefusalReason, number>
  private readonly deps: ProviderDeps
  private readonly cfg: RunningProviderConfig
  private readonly log: Logger
  private readonly network: Network
  private readonly ctx: ProviderContext
  private readonly bidding: ProviderBidding
  readonly advertiser: Advertiser
  private sweeper?: NodeJS.Timeout
  private warmedUp = false

  /** the folder this provider made for jobs' files when the config names none (removed at stop) */
  private readonly scratch?: string

  constructor (deps: ProviderDeps) {
    this.deps = deps
    this.refused = deps.refused ?? new Map()
    // a node names folders in its data dir; without them (an embedder, a test) the files go in a
    // folder of this provider's own in the OS temp dir, made on first use and removed at stop
    const { inputsDir, outputsDir } = deps.config
    if (inputsDir == null || outputsDir == null) this.scratch = join(tmpdir(), `mercato-provider-${process.pid}-${randomBytes(4).toString('hex')}`)
    this.cfg = { ...deps.config, inputsDir: inputsDir ?? join(this.scratch as string, 'inputs'), outputsDir: outputsDir ?? join(this.scratch as string, 'outputs') }
    this.network = deps.network
    this.log = logger('auction:provider', { peerId: deps.signer.peerId })
    this.ctx = {
      peerId: deps.signer.peerId,
      deps,
      cfg: this.cfg,
      log: this.log,
      journal: new Journal(deps.ledger),
      network: deps.network,
      backend: asBackend(deps.executor),
      count: countInto(this.refused),
      slots: () => this.slots,
      queue: () => this.queue,
      ask: () => this.ask(),
      engines: () => this.engines(),
      turnedAway: (requester) => { this.advertiser.turnedAway(requester) },
      slotFreed: () => { this.advertiser.slotFreed() },
      // we pay ourselves: our own requester's answers are always logged
      state: { running: 0, avgRunMs: 50, offers: new Map(), offersBy: new Map(), paidBy: new Set([deps.signer.peerId]), unpaid: new UnpaidResults(), seenAwards: new SeenSet(MAX_KNOWN_OFFERS), held: new Map() }
    }
    this.bidding = new ProviderBidding(this.ctx)
    this.advertiser = new Advertiser(this.ctx, (requester, advert) => { this.bidding.send(requester, advert) })
  }

  get peerId (): string { return this.deps.signer.peerId }
  get enabled (): boolean { return this.cfg.enabled }
  /** jobs we may have in flight: the configured number, or what the backend has room for now (a cluster's free CPUs) */
  get slots (): number { return this.cfg.slots > 0 ? this.cfg.slots : this.ctx.backend.capacity().slots }
  /** awarded jobs that may wait for a slot (the executor's queue) */
  get queue (): number { return this.cfg.queue ?? 0 }
  get busy (): number { return this.ctx.state.running }

  /**
   * Our ask now: the configured price while a slot is free; each job that would wait ahead of
   * this one adds SURGE of it, so under load the work spreads to idle providers instead of
   * queueing behind the cheapest one.
   */
  ask (): number {
    const waiting = this.ctx.state.running - this.slots + 1
    return waiting <= 0 ? this.cfg.price : Math.round(this.cfg.price * (1 + SURGE * waiting) * 100) / 100
  }

  engines (): Engine[] {
    const have = new Set(this.ctx.backend.engines())
    return this.cfg.engines.filter(e => have.has(e))
  }

  async start (): Promise<void> {
    const { network } = this
    // status answers even when not providing: we may hold results from before
    await network.handle(STATUS_PROTOCOL, async (data, ctx) => encodeStatusReply(await statusFor(this.ctx, data, ctx.from)), { maxRequestBytes: MAX_STATUS_REQUEST_BYTES })
    this.sweeper = setInterval(() => { sweep(this.ctx) }, 60_000)
    this.sweeper.unref()
    if (!this.cfg.enabled) return
    // gossiped offers arrive through the market's jobs-topic subscription (every node relays it)
    await network.handle(OFFER_PROTOCOL, async (data, ctx) => {
      this.onDirectOffer(data, ctx.from)
      return new Uint8Array(0)
    }, { maxRequestBytes: MAX_OFFER_BYTES })
    // the same offers as frames on one long-lived stream per requester: no stream set-up per invitation
    await network.handleChannel(OFFER_STREAM_PROTOCOL, async (channel) => { await this.readOfferStream(channel) }, { maxMessageBytes: MAX_OFFER_BYTES, maxInboundStreams: 4 })
    await network.handleChannel(AWARD_PROTOCOL, async (channel) => { await onAwardChannel(this.ctx, channel) }, { maxMessageBytes: MAX_CHANNEL_BYTES, maxInboundStreams: 1024 })
    // our capacity advert: requesters' books invite us to the jobs we can win
    this.advertiser.start()
    // advertise our engines in the DHT so requesters beyond our gossip mesh find us
    for (const engine of this.engines()) {
      void network.provide(ENGINE_KEY_PREFIX + engine, { signal: AbortSignal.timeout(30_000) }).catch(err => { this.log.debug({ err, engine }, 'DHT provide failed (will work once we have peers)') })
    }
  }

  async stop (): Promise<void> {
    clearInterval(this.sweeper)
    this.advertiser.stop()
    this.bidding.stop()
    const { network } = this
    if (this.cfg.enabled) {
      await network.unhandle(OFFER_PROTOCOL).catch(() => {})
      await network.unhandle(OFFER_STREAM_PROTOCOL).catch(() => {})
      await network.unhandle(AWARD_PROTOCOL).catch(() => {})
    }
    await network.unhandle(STATUS_PROTOCOL).catch(() => {})
    if (this.scratch != null) await rm(this.scratch, { recursive: true, force: true }).catch(err => { this.log.warn({ err, dir: this.scratch }, 'could not remove the provider\'s temp folder') })
  }

  /** Offers the jobs topic's gate accepted (ours too, through the loopback). */
  onGossipOffers (items: Array<GossipItem<Offer>>): void {
    if (!this.cfg.enabled) return
    // an offer called to the whole mesh: its requester's book lacks providers, so tell it about us
    if (items.some(({ m }) => m.signer !== this.peerId)) this.advertiser.echo()
    for (const { id, m } of items) this.bidding.onOffer(m, id)
  }

  /**
   * Receipts the receipts topic's gate accepted: a job paid (or its answer refused) is settled, so
   * the offers we bid on for it and lost can no longer be awarded and are dropped now rather than
   * when the cache fills or their bid expires.
   */
  onGossipReceipts (items: Array<GossipItem<Receipt>>): void {
    for (const { m } of items) {
      const r = m.payload
      if (m.signer === r.requester && (r.status === 'paid' || r.status === 'failed')) {
        dropJobOffers(this.ctx.state, r.requester, r.jobId)
        // ours, in gossip (a requester that collected the result after a restart pays this way too)
        if (r.provider === this.peerId) this.ctx.state.unpaid.settled(r.requester, r.jobId)
      }
    }
  }

  /** answers that could not be delivered (the requester was not reachable) */
  get unreachable (): number { return this.bidding.unreachable }

  /**
   * Run the offer → answer path once on a made-up offer (no network, no log), so the first real
   * offer after start does not pay for schema compilation and cold code: a bid window is only
   * tens of milliseconds. Called once the node has started (Market.warmUp); nothing when not providing.
   */
  warmUp (): void {
    if (!this.cfg.enabled || this.warmedUp) return
    this.warmedUp = true
    try {
      this.bidding.warmUp()
    } catch (err) {
      this.log.debug({ err }, 'warm-up failed (harmless)')
    }
  }

  /** An offer sent to us directly (request or offer stream): checked, then the same replay and per-key rate checks as the jobs topic's gate. */
  private onDirectOffer (data: Uint8Array, from?: string): void {
    const offer = this.checkOffer(data, from)
    const id = messageId(offer)
    if (this.deps.offerGate != null && !this.deps.offerGate.admit(offer.signer, id)) return
    this.bidding.onOffer(offer, id)
  }

  /**
   * A requester's offer stream: each frame one signed offer. A frame that is not one (bad encoding,
   * schema or signature; the size is capped by the channel) closes the stream, as does silence for
   * OFFER_STREAM_IDLE_MS (the requester opens a new one with its next invitation).
   */
  private async readOfferStream (channel: MessageChannel): Promise<void> {
    const it = channel[Symbol.asyncIterator]()
    try {
      while (true) {
        const next = await nextWithin(it, OFFER_STREAM_IDLE_MS)
        if (next === 'idle') { await channel.close(); return }
        if (next.done === true) return
        try {
          this.onDirectOffer(next.value, channel.remotePeer)
        } catch (err: any) {
          channel.abort(new Error(`refused offer: ${err?.reason ?? err?.message ?? 'bad offer'}`))
          return
        }
      }
    } catch (err) {
      // the stream failed under us: reset, or a frame over MAX_OFFER_BYTES
      if (err instanceof MessageTooLargeError) this.ctx.count('too-large')
      this.log.debug({ err, from: channel.remotePeer }, 'offer stream ended')
    }
  }

  private checkOffer (data: Uint8Array, from?: string): Signed<Offer> {
    try {
      return decodeSigned(data, 'offer', MAX_OFFER_BYTES)
    } catch (err: any) {
      this.ctx.count(err instanceof RefusedMessageError ? err.reason : 'bad-schema')
      this.log.debug({ err: err.message, from }, 'refused offer')
      throw err
    }
  }
}
