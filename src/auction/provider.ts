/**
 * The provider side of the market: hear offers, decide with a reason, bid
 * (sealed, peer to peer), accept awards, fetch the module, run it in the
 * executor with heartbeats, return a signed result, keep it for a while.
 */
import { canonicalEncode, messageId, type Signed, type Signer } from '../crypto/index.js'
import { logger, type Logger } from '../logger.js'
import type { MessageChannel, Network, RawTopicMessage, TopicVerdict } from '../p2p/index.js'
import type { Ledger } from '../ledger/index.js'
import { computeResultHash, type Engine, type Executor, type ExecJob, type ExecResult } from '../executor/index.js'
import type { BlobStore } from './blobs.js'
import {
  AWARD_PROTOCOL, BID_PROTOCOL, BID_STREAM_PROTOCOL, BID_TTL_MS, BLOB_KEY_PREFIX, MAX_BID_BYTES, ENGINE_KEY_PREFIX, JOBS_TOPIC, MAX_BLOB_BYTES, MAX_CHANNEL_BYTES,
  MAX_BATCH_BYTES, MAX_BATCH_ITEMS, MAX_OFFER_BYTES, OFFER_PROTOCOL, STATUS_PROTOCOL
} from './constants.js'
import { MAX_STATUS_REQUEST_BYTES } from './protocol/messages.js'
import { Batcher } from './batcher.js'
import {
  decodeBatch, decodeFrame, decodeSigned, decodeStatusRequest, encodeBatch, encodeFrame, encodeSigned, encodeStatusReply, RefusedMessageError, sign,
  type Award, type Frame, type Offer, type Receipt, type RefusalReason, type Result, type StatusReply
} from './protocol/messages.js'
import { decide, type Decision, type StrategyContext } from './strategy.js'

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
  /** deliver a bid to this node's own requester */
  localRequester?: { onBidMessage: (data: Uint8Array, from: string) => Promise<void> }
  /** a receipt paying us arrived on the award channel (firsthand: it moves our balance) */
  onReceipt?: (receipt: Signed<Receipt>) => void
  /** test-only: corrupt every result (to test replica quorum) */
  corruptResults?: boolean
}

interface HeldJob {
  jobId: string
  awardId: string
  requester: string
  state: 'fetching' | 'queued' | 'running' | 'done'
  result?: Signed<Result>
  doneAt?: number
}

const MAX_KNOWN_OFFERS = 10_000
/** offers we bid on, kept to check awards against (each up to MAX_OFFER_BYTES) */
const MAX_BID_OFFERS = 1_000
/** ask increase per job waiting ahead (0.5 = +50 % of the base price each) */
const SURGE = 0.5
/** executor errors that say nothing about the job: the award is dropped and the requester fails over */
const TRANSIENT_EXEC_ERRORS = new Set(['queue-full', 'aborted', 'executor-stopped'])

export class Provider {
  readonly refused = new Map<RefusalReason, number>()
  private readonly deps: ProviderDeps
  private readonly cfg: ProviderConfig
  private readonly log: Logger
  /** offers we bid on, by id (an award must name one of them) */
  private readonly offers = new Map<string, { offer: Signed<Offer>, bidId: string, price: number }>()
  /** ids of offers already answered (duplicates over gossip and the direct path are dropped) */
  private readonly answered = new Set<string>()
  private readonly seenAwards = new Set<string>()
  private readonly held = new Map<string, HeldJob>()
  /** one long-lived bid stream per requester */
  private readonly bidChannels = new Map<string, Promise<MessageChannel>>()
  /** answers produced in one turn for one requester go out as one frame on its bid stream */
  private readonly bidBatches = new Map<string, Batcher<Signed>>()
  private running = 0
  private sweeper?: NodeJS.Timeout
  private readonly avgRunMs = { value: 50 }

  constructor (deps: ProviderDeps) {
    this.deps = deps
    this.cfg = deps.config
    this.log = logger('auction:provider', { peerId: deps.signer.peerId })
  }

  get peerId (): string { return this.deps.signer.peerId }
  get enabled (): boolean { return this.cfg.enabled }
  get slots (): number { return this.cfg.slots > 0 ? this.cfg.slots : this.deps.executor.stats().poolSize }
  /**
   * Our ask now: the configured price while a slot is free; each job that would wait ahead of
   * this one adds SURGE of it, so under load the work spreads to idle providers instead of
   * queueing behind the cheapest one.
   */
  ask (): number {
    const waiting = this.running - this.slots + 1
    return waiting <= 0 ? this.cfg.price : Math.round(this.cfg.price * (1 + SURGE * waiting) * 100) / 100
  }

  /** awarded jobs that may wait for a slot (the executor's queue) */
  get queue (): number { return this.cfg.queue ?? 0 }
  get busy (): number { return this.running }
  engines (): Engine[] {
    const have = new Set(this.deps.executor.engines())
    return this.cfg.engines.filter(e => have.has(e))
  }

  async start (): Promise<void> {
    const { network } = this.deps
    // status answers even when not providing: we may hold results from before
    await network.handle(STATUS_PROTOCOL, async (data, ctx) => encodeStatusReply(await this.statusFor(data, ctx.from)), { maxRequestBytes: MAX_STATUS_REQUEST_BYTES })
    this.sweeper = setInterval(() => { this.sweep() }, 60_000)
    this.sweeper.unref()
    if (!this.cfg.enabled) return
    this.warmUp()
    network.subscribe(JOBS_TOPIC, (msg) => this.decodeOffers(msg), (msg) => { this.onGossipOffers(msg.value) })
    await network.handle(OFFER_PROTOCOL, async (data, ctx) => {
      const offer = this.checkOffer(data, ctx.from)
      this.onOffer(offer)
      return new Uint8Array(0)
    }, { maxRequestBytes: MAX_OFFER_BYTES })
    await network.handleChannel(AWARD_PROTOCOL, async (channel) => { await this.onAwardChannel(channel) }, { maxMessageBytes: MAX_CHANNEL_BYTES, maxInboundStreams: 1024 })
    // advertise our engines in the DHT so requesters beyond our gossip mesh find us
    for (const engine of this.engines()) {
      void network.provide(ENGINE_KEY_PREFIX + engine, { signal: AbortSignal.timeout(30_000) }).catch(err => { this.log.debug({ err, engine }, 'DHT provide failed (will work once we have peers)') })
    }
  }

  async stop (): Promise<void> {
    clearInterval(this.sweeper)
    for (const ch of this.bidChannels.values()) void ch.then(c => { void c.close() }, () => {})
    this.bidChannels.clear()
    const { network } = this.deps
    if (this.cfg.enabled) {
      network.unsubscribe(JOBS_TOPIC)
      await network.unhandle(OFFER_PROTOCOL).catch(() => {})
      await network.unhandle(AWARD_PROTOCOL).catch(() => {})
    }
    await network.unhandle(STATUS_PROTOCOL).catch(() => {})
  }

  /**
   * Run the offer → answer path once on a made-up offer (no network, no log), so the first real
   * offer after start does not pay for schema compilation and cold code: a bid window is only
   * tens of milliseconds.
   */
  private warmUp (): void {
    try {
      const now = Date.now()
      const offer = sign(this.deps.signer, 'offer', {
        v: 1, jobId: 'bafyreiwarmupwarmupwarmupwarmupwarmupwarmupwarmupwarmupwa', requester: this.peerId, addrs: [],
        spec: { engine: 'js', source: 'function main () {}', args: [], env: {}, limits: { timeoutMs: 1000, memoryMb: 16, outputBytes: 1024 } },
        maxPrice: 1, replicas: 1, bidWindowMs: 50, ts: now, expires: now + 60_000, round: 0
      })
      const [checked] = decodeBatch(encodeBatch([offer]), 'offer', MAX_BATCH_BYTES, MAX_BATCH_ITEMS)
      decide(checked.payload, this.strategyContext())
      const bid = sign(this.deps.signer, 'bid', { v: 1, jobId: checked.payload.jobId, offerId: messageId(checked), provider: this.peerId, price: 1, estStartMs: 0, ts: now, expires: now + 60_000 })
      decodeBatch(encodeBatch([bid]), 'bid', MAX_BATCH_BYTES, MAX_BATCH_ITEMS)
    } catch (err) {
      this.log.debug({ err }, 'warm-up failed (harmless)')
    }
  }

  private count (reason: RefusalReason): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1)
  }

  private checkOffer (data: Uint8Array, from?: string): Signed<Offer> {
    try {
      return decodeSigned(data, 'offer', MAX_OFFER_BYTES)
    } catch (err: any) {
      this.count(err instanceof RefusedMessageError ? err.reason : 'bad-schema')
      this.log.debug({ err: err.message, from }, 'refused offer')
      throw err
    }
  }

  /** The jobs topic's decoder: a batch of offers from one requester, every one checked. */
  private decodeOffers (msg: RawTopicMessage): TopicVerdict<Array<Signed<Offer>>> {
    let offers: Array<Signed<Offer>>
    try {
      offers = decodeBatch(msg.data, 'offer', MAX_BATCH_BYTES, MAX_BATCH_ITEMS)
    } catch (err: any) {
      this.count(err instanceof RefusedMessageError ? err.reason : 'bad-schema')
      this.log.debug({ err: err.message, from: msg.from }, 'refused offer batch')
      return { result: 'reject' }
    }
    if (offers.length === 0) return { result: 'ignore' } // all expired: an honest late delivery
    if (offers.some(o => o.signer !== offers[0].signer)) { this.count('bad-schema'); return { result: 'reject' } }
    return offers[0].signer === this.peerId ? { result: 'ignore' } : { result: 'accept', value: offers }
  }

  private onGossipOffers (offers: Array<Signed<Offer>>): void {
    for (const offer of offers) {
      if (offer.signer !== this.peerId) this.onOffer(offer)
    }
  }

  /** Decide on an offer and answer the requester with a signed bid or decline. */
  onOffer (offer: Signed<Offer>): void {
    const offerId = messageId(offer)
    if (this.answered.has(offerId)) return
    this.answered.add(offerId)
    if (this.answered.size > MAX_KNOWN_OFFERS) this.answered.delete(this.answered.values().next().value as string)
    void this.answer(offer, offerId).catch(err => { this.log.debug({ err, jobId: offer.payload.jobId }, 'could not answer offer') })
  }

  private strategyContext (): StrategyContext {
    return {
      enabled: this.cfg.enabled,
      engines: this.engines(),
      price: this.ask(),
      maxTimeoutMs: this.cfg.maxTimeoutMs,
      maxMemoryMb: this.cfg.maxMemoryMb,
      maxOutputBytes: this.cfg.maxOutputBytes,
      maxModuleBytes: MAX_BLOB_BYTES,
      // a job beyond the running slots waits in the executor's queue; only a full queue says no
      freeSlots: this.slots + this.queue - this.running,
      isFlagged: this.deps.isFlagged ?? (() => false)
    }
  }

  private async answer (offer: Signed<Offer>, offerId: string): Promise<void> {
    const o = offer.payload
    const decision: Decision = decide(o, this.strategyContext())
    const now = Date.now()
    let msg: Signed
    if (decision.bid) {
      const bid = sign(this.deps.signer, 'bid', {
        v: 1,
        jobId: o.jobId,
        offerId,
        provider: this.peerId,
        price: this.ask(),
        // waiting jobs ahead of this one, times what a job has been taking
        estStartMs: this.running >= this.slots ? Math.round((this.running - this.slots + 1) * this.avgRunMs.value / this.slots) : 0,
        ts: now,
        expires: now + BID_TTL_MS
      })
      // only offers we bid on can be awarded to us: keep those with our bid (bounded), not every offer heard
      this.offers.set(offerId, { offer, bidId: messageId(bid), price: bid.payload.price })
      if (this.offers.size > MAX_BID_OFFERS) this.offers.delete(this.offers.keys().next().value as string)
      msg = bid
    } else {
      msg = sign(this.deps.signer, 'decline', { v: 1, jobId: o.jobId, offerId, provider: this.peerId, reason: decision.reason, detail: decision.detail, ts: now })
    }
    if (o.requester === this.peerId && this.deps.localRequester != null) {
      await this.deps.localRequester.onBidMessage(encodeSigned(msg), this.peerId).catch(() => {})
    } else {
      await this.sendBid(o.requester, o.addrs, msg)
    }
    // our signed bid, naming the offer by id; the offer itself is logged with the award when we win
    // (the requester's log holds every offer in full). Declines are logged by the requester only:
    // anyone can send us offers, and declining must not cost us a record each.
    if (decision.bid) {
      void this.deps.ledger.append('bid', { jobId: o.jobId, side: 'provider', offerId, requester: o.requester, bid: msg })
        .catch(err => { this.log.error({ err }, 'ledger append failed') })
    }
  }

  /**
   * Send a bid or decline on our long-lived bid stream to this requester (opened on first use);
   * if that stream cannot be had, one request on the request/response protocol.
   */
  private async sendBid (requester: string, addrs: string[], msg: Signed): Promise<void> {
    let batch = this.bidBatches.get(requester)
    if (batch == null) {
      batch = new Batcher<Signed>((items) => {
        void this.flushBids(requester, addrs, items).catch(err => { this.log.debug({ err, requester }, 'could not deliver answers') })
      // answers are schema-bounded (a few hundred bytes): count each at the cap rather than encode it to measure
      }, { maxItems: MAX_BATCH_ITEMS, maxBytes: MAX_BID_BYTES * MAX_BATCH_ITEMS, sizeOf: () => MAX_BID_BYTES })
      this.bidBatches.set(requester, batch)
      if (this.bidBatches.size > 1024) this.bidBatches.delete(this.bidBatches.keys().next().value as string)
    }
    batch.add(msg)
  }

  private async flushBids (requester: string, addrs: string[], items: Signed[]): Promise<void> {
    await this.reach(requester, addrs)
    let channel = this.bidChannels.get(requester)
    if (channel == null) {
      channel = this.deps.network.openChannel(requester, BID_STREAM_PROTOCOL, { maxMessageBytes: MAX_BID_BYTES, signal: AbortSignal.timeout(3000) })
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
      for (const m of items) await this.deps.network.request(requester, BID_PROTOCOL, encodeSigned(m), { timeoutMs: 5000, maxResponseBytes: 1024 })
    }
  }

  /** Make sure we can reach the requester (dial its announced addresses if not connected). */
  private async reach (peer: string, addrs: string[]): Promise<void> {
    if (this.deps.network.isConnected(peer)) return
    for (const addr of addrs) {
      if (!addr.endsWith(`/p2p/${peer}`)) continue
      try { await this.deps.network.dial(addr, { signal: AbortSignal.timeout(3000) }); return } catch {}
    }
  }

  // ---------------------------------------------------------------- awards

  private async onAwardChannel (channel: MessageChannel): Promise<void> {
    const it = channel[Symbol.asyncIterator]()
    const first = await Promise.race([
      it.next(),
      new Promise<never>((_resolve, reject) => setTimeout(() => { reject(new Error('no award in time')) }, 5000).unref())
    ])
    if (first.done === true) return
    let frame: Frame
    try {
      frame = decodeFrame(first.value)
    } catch (err: any) {
      this.count(err instanceof RefusedMessageError ? err.reason : 'bad-schema')
      channel.abort()
      return
    }
    if (frame.t !== 'award') { this.count('bad-schema'); channel.abort(); return }
    await this.handleAward(frame.m, channel, it)
  }

  /** A local award channel: this node awarded itself. */
  acceptLocal (channel: MessageChannel): void {
    void this.onAwardChannel(channel).catch(err => { this.log.warn({ err }, 'local award failed') })
  }

  private async handleAward (award: Signed<Award>, channel: MessageChannel, it: AsyncIterator<Uint8Array>): Promise<void> {
    const a = award.payload
    const awardId = messageId(award)
    const mine = this.offers.get(a.offerId)
    const offer = mine?.offer
    const refuse = async (reason: string): Promise<void> => {
      const refusal = sign(this.deps.signer, 'refuse', { v: 1, jobId: a.jobId, awardId, provider: this.peerId, reason, ts: Date.now() })
      await channel.send(encodeFrame({ t: 'refuse', m: refusal })).catch(() => {})
      await channel.close().catch(() => {})
    }
    if (a.provider !== this.peerId) { this.count('wrong-sender'); await refuse('award names another provider'); return }
    if (award.signer !== channel.remotePeer) { this.count('wrong-sender'); channel.abort(); return }
    if (mine == null || offer == null || offer.signer !== award.signer || offer.payload.jobId !== a.jobId) { this.count('unknown-job'); await refuse('unknown offer'); return }
    if (a.bidId !== mine.bidId || a.price < mine.price) { this.count('wrong-state'); await refuse('award does not match our bid'); return }
    if (this.deps.isFlagged?.(award.signer) === true) { this.count('wrong-state'); await refuse('requester is flagged for equivocation'); return }
    if (this.seenAwards.has(awardId)) { this.count('replay'); await refuse('award already seen'); return }
    this.seenAwards.add(awardId)
    if (this.running >= this.slots + this.queue) { await refuse('no-slot'); return }
    this.running++
    const held: HeldJob = { jobId: a.jobId, awardId, requester: award.signer, state: 'fetching' }
    this.held.set(a.jobId, held)
    let channelOpen = true
    const send = async (f: Frame): Promise<void> => {
      if (!channelOpen) return
      try { await channel.send(encodeFrame(f)) } catch { channelOpen = false }
    }
    const accept = sign(this.deps.signer, 'accept', { v: 1, jobId: a.jobId, awardId, provider: this.peerId, ts: Date.now() })
    await send({ t: 'accept', m: accept })
    void this.deps.ledger.append('award', { jobId: a.jobId, side: 'provider', offer, award })
      .then(async () => await this.deps.ledger.append('accept', { jobId: a.jobId, side: 'provider', accept }))
      .catch(err => { this.log.error({ err }, 'ledger append failed') })

    // heartbeats while we fetch and run
    const hb = setInterval(() => { void send({ t: 'hb', ts: Date.now(), state: held.state === 'done' ? 'running' : held.state }) }, this.cfg.heartbeatMs)
    // watch the channel for the receipt, and for the requester going away
    // the requester may withdraw the award (a `cancel` frame): stop the run and free the slot.
    // A channel that merely drops is not a withdrawal: a restarted requester collects the result.
    const withdrawn = new AbortController()
    const receiptP = this.readReceipt(it, a.jobId, award.signer, () => { withdrawn.abort(new Error('award withdrawn')) }).finally(() => { channelOpen = false })
    let result: Signed<Result>
    try {
      const started = Date.now()
      const job = await this.buildExecJob(offer.payload, award.signer)
      held.state = 'running'
      void send({ t: 'hb', ts: Date.now(), state: 'running' })
      let exec: ExecResult
      try {
        exec = await this.deps.executor.run(job, { signal: withdrawn.signal })
      } catch (err: any) {
        // a sandbox that cannot take the job now is our problem: let the requester fail over
        if (TRANSIENT_EXEC_ERRORS.has(err?.code)) throw err
        // deterministic refusals of the job itself (invalid module, unsupported engine) are results
        exec = failureResult(job.id, err)
      }
      this.avgRunMs.value = this.avgRunMs.value * 0.8 + (Date.now() - started) * 0.2
      result = this.signResult(a.jobId, awardId, exec)
    } catch (err: any) {
      // could not even fetch the module: let the requester fail over
      this.log.warn({ err, jobId: a.jobId }, 'could not run awarded job')
      clearInterval(hb)
      this.running--
      this.held.delete(a.jobId)
      channel.abort(err instanceof Error ? err : new Error(String(err)))
      return
    } finally {
      clearInterval(hb)
    }
    this.running--
    held.state = 'done'
    held.result = result
    held.doneAt = Date.now()
    await this.deps.ledger.append('result', { jobId: a.jobId, side: 'provider', result }).catch(err => { this.log.error({ err }, 'ledger append failed') })
    await send({ t: 'result', m: result })
    await Promise.race([receiptP, new Promise(resolve => setTimeout(resolve, 10_000).unref())])
    await channel.close().catch(() => {})
  }

  private async readReceipt (it: AsyncIterator<Uint8Array>, jobId: string, requester: string, onCancel: () => void): Promise<void> {
    try {
      while (true) {
        const next = await it.next()
        if (next.done === true) return
        let frame: Frame
        try { frame = decodeFrame(next.value) } catch (err: any) { this.count(err instanceof RefusedMessageError ? err.reason : 'bad-schema'); continue }
        if (frame.t === 'cancel') { onCancel(); return }
        if (frame.t !== 'receipt') continue
        const receipt = frame.m
        if (receipt.signer !== requester || receipt.payload.jobId !== jobId || receipt.payload.provider !== this.peerId) { this.count('wrong-sender'); continue }
        await this.deps.ledger.append('receipt', { jobId, side: 'provider', receipt })
        this.deps.onReceipt?.(receipt)
        return
      }
    } catch {
      // channel reset: the requester went away; the result stays available over the status protocol
    }
  }

  private async buildExecJob (o: Offer, requester: string): Promise<ExecJob> {
    const spec = o.spec
    const job: ExecJob = {
      id: o.jobId,
      engine: spec.engine,
      args: spec.args,
      env: spec.env,
      stdin: spec.stdin,
      input: spec.input,
      limits: spec.limits,
      seed: o.jobId
    }
    if (spec.engine === 'wasm' && spec.module != null) {
      const cid = spec.module.cid
      const maxBytes = Math.min(MAX_BLOB_BYTES, spec.module.size)
      let module: Uint8Array
      try {
        module = await this.deps.blobs.fetch(this.deps.network, cid, [requester], { maxBytes })
      } catch {
        // the requester cannot serve it: ask the DHT who holds it
        const holders = await this.deps.network.findProviders(BLOB_KEY_PREFIX + cid, { signal: AbortSignal.timeout(3000), limit: 5 }).catch(() => [])
        module = await this.deps.blobs.fetch(this.deps.network, cid, holders.filter(p => p !== this.peerId), { maxBytes })
      }
      job.module = module
      job.moduleCid = spec.module.cid
    } else if (spec.source != null) {
      job.source = spec.source
    }
    return job
  }

  private signResult (jobId: string, awardId: string, exec: ExecResult): Signed<Result> {
    let { stdout, output } = exec
    let resultHash = exec.resultHash
    if (this.deps.corruptResults === true) {
      stdout = new Uint8Array([...stdout, 0x21])
      resultHash = computeResultHash(jobId, { exitCode: exec.exitCode, stdout, stderr: exec.stderr, output })
    }
    try { canonicalEncode(output ?? null) } catch { output = JSON.stringify(output) }
    return sign(this.deps.signer, 'result', {
      v: 1,
      jobId,
      awardId,
      provider: this.peerId,
      exitCode: exec.exitCode,
      stdout,
      stderr: exec.stderr,
      output,
      truncated: exec.truncated,
      resultHash,
      usage: exec.usage,
      error: exec.error,
      ts: Date.now()
    })
  }

  private async statusFor (data: Uint8Array, from: string): Promise<StatusReply> {
    let jobId: string
    try { jobId = decodeStatusRequest(data).jobId } catch { return { state: 'unknown' } }
    const held = this.held.get(jobId)
    if (held != null) {
      if (held.requester !== from) return { state: 'unknown' }
      return held.result != null ? { state: 'done', result: held.result } : { state: held.state }
    }
    // not in memory (we restarted, or it aged out): our log still holds the signed result
    const records = await this.deps.ledger.byJob(jobId)
    const award = records.find(r => r.type === 'award' && (r.body as any).side === 'provider')
    const result = records.findLast(r => r.type === 'result' && (r.body as any).side === 'provider')
    if (award == null || (award.body as any).award?.signer !== from || result == null) return { state: 'unknown' }
    return { state: 'done', result: (result.body as any).result as Signed<Result> }
  }

  /** Status for this node's own requester (local awards). */
  localStatus (jobId: string): StatusReply | undefined {
    const held = this.held.get(jobId)
    if (held == null) return undefined
    return held.result != null ? { state: 'done', result: held.result } : { state: held.state }
  }

  private sweep (): void {
    const cutoff = Date.now() - this.cfg.resultRetentionMs
    for (const [id, h] of this.held) if (h.doneAt != null && h.doneAt < cutoff) this.held.delete(id)
    if (this.seenAwards.size > MAX_KNOWN_OFFERS) this.seenAwards.clear()
  }
}

function failureResult (jobId: string, err: any): ExecResult {
  const stderr = new TextEncoder().encode(`${err?.code ?? 'error'}: ${err?.message ?? err}`)
  const stdout = new Uint8Array(0)
  return {
    exitCode: 3,
    stdout,
    stderr,
    truncated: false,
    resultHash: computeResultHash(jobId, { exitCode: 3, stdout, stderr }),
    usage: { wallMs: 0, memoryBytes: 0, outputBytes: stderr.length },
    error: { name: typeof err?.code === 'string' ? err.code : 'trap', message: String(err?.message ?? err).slice(0, 1000) } as ExecResult['error']
  }
}

