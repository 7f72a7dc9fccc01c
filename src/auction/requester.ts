/**
 * The requester side of the market: announce, collect sealed bids, pick,
 * award, watch, fail over, verify, settle.
 *
 * One {@link RequesterJob} per submitted job holds its bids, award attempts
 * and results. Every step is appended to the ledger (the counter-party's
 * signed message embedded), so the log alone can rebuild a job after a
 * restart ({@link Requester.recover}).
 */
import { EventEmitter } from 'node:events'
import { z } from 'zod'
import { canonicalDecode, canonicalEncode, cidOfValue, messageId, messageIdOfEncoded, type Signed, type Signer } from '../crypto/index.js'
import { InvalidInputError, JobStateError, NotFoundError } from '../errors.js'
import { logger, type Logger } from '../logger.js'
import type { Network, MessageChannel } from '../p2p/index.js'
import type { Ledger, LedgerRecord } from '../ledger/index.js'
import { computeResultHash } from '../executor/index.js'
import type { BlobStore } from './blobs.js'
import {
  AWARD_PROTOCOL, BID_PROTOCOL, DOMAIN, BID_STREAM_PROTOCOL, BID_TTL_MS, DEFAULT_LIMITS, ENGINE_KEY_PREFIX, FAILOVER_BACKOFF_MS, JOBS_TOPIC, MAX_BID_BYTES,
  MAX_BATCH_BYTES, MAX_BATCH_ITEMS, MAX_CHANNEL_BYTES, OFFER_BATCH_DELAY_MS, RECEIPT_GOSSIP_DELAY_MS, MAX_EXTRA_RUNS, NO_BID_GRACE_MS, RECOVERY_GRACE_MS, MAX_JOBS_IN_MEMORY, MAX_OFFER_BYTES, OFFER_PROTOCOL, OFFER_TTL_MS, RECEIPTS_TOPIC, STATUS_PROTOCOL
} from './constants.js'
import {
  decodeAnswer, decodeAnswers, decodeFrame, decodeStatusReply, encodeBatch, encodeFrame, encodeSigned, encodeStatusRequest, RefusedMessageError, sign, specSchema,
  type Answer, type Bid, type Decline, type Frame, type JobSpecWire, type Offer, type Receipt, type RefusalReason, type Result, type StatusReply
} from './protocol/messages.js'
import { rankBids, settlementPrice } from './protocol/rules.js'
import { Batcher } from './batcher.js'
import { JOB_STATUSES, TERMINAL, type AttemptView, type JobEvent, type JobEventType, type JobStatus, type JobView, type ResultView, type SubmitSpec } from './types.js'
import type { Reputation } from './reputation.js'

export interface RequesterConfig {
  bidWindowMs: number
  minBids: number
  maxAttempts: number
  heartbeatMs: number
  suspectAfterMs: number
  lostAfterMs: number
  defaultMaxPrice: number
  minReputation: number
}

export interface RequesterDeps {
  network: Network
  signer: Signer
  ledger: Ledger
  blobs: BlobStore
  reputation: Reputation
  config: RequesterConfig
  /** deliver an offer to this node's own provider (a node may bid on its own jobs) */
  localProvider?: {
    onOffer: (offer: Signed<Offer>) => void
    openAward: () => MessageChannel
    status: (jobId: string) => StatusReply | undefined
    engines: () => string[]
  }
  isFlagged?: (peerId: string) => boolean
}

interface BidEntry { id: string, signed: Signed<Bid>, provider: string, price: number, estStartMs: number }

interface Attempt {
  provider: string
  awardId: string
  price: number
  attempt: number
  state: AttemptView['state']
  channel?: MessageChannel
  lastSeen: number
  suspect: boolean
  awardedAt: number
  endedAt?: number
  reason?: string
  resultHash?: string
  /** when the job must have a result: award + estimated start + job timeout + a margin */
  deadline: number
  /** recovered after a restart: watched by status polls, not heartbeats */
  polled?: boolean
}

interface RequesterJob {
  id: string
  spec: JobSpecWire
  maxPrice: number
  replicas: number
  minBids: number
  bidWindowMs: number
  status: JobStatus
  createdAt: number
  completedAt?: number
  round: number
  offer?: Signed<Offer>
  offerId?: string
  bids: Map<string, BidEntry>
  declines: Map<string, { reason: Decline['reason'], detail?: string, signed?: Signed<Decline> }>
  attempts: Attempt[]
  excluded: Set<string>
  results: Map<string, { signed: Signed<Result>, id: string }>
  final?: { result: Signed<Result>, providers: string[], price: number }
  events: JobEvent[]
  closeBidding?: () => void
  biddingTimer?: NodeJS.Timeout
  windowElapsed?: boolean
  extraRuns: number
  handovers: number
  error?: string
  /** the job record's append, awaited before the auction closes */
  logged?: Promise<unknown>
}

export class Requester {
  readonly events = new EventEmitter()
  readonly refused = new Map<RefusalReason, number>()
  private readonly jobs = new Map<string, RequesterJob>()
  private readonly deps: RequesterDeps
  private readonly cfg: RequesterConfig
  private readonly log: Logger
  private readonly engineProviders = new Map<string, { peers: string[], at: number }>()
  private watchdog?: NodeJS.Timeout
  /** encoded size of each offer we signed (measured once, for batching) */
  private readonly encodedSize = new WeakMap<object, number>()
  /** auctions announced and not yet closed */
  private openAuctions = 0
  private stopped = false

  /** offers announced in one turn go out as one gossip message */
  private readonly offerBatch: Batcher<Signed<Offer>>
  /** receipts signed in one turn go out as one gossip message */
  private readonly receiptBatch: Batcher<Signed<Receipt>>

  constructor (deps: RequesterDeps) {
    const gossipBatch = <T extends Signed>(topic: string, delayMs: number | (() => number)): Batcher<T> => new Batcher<T>((items) => {
      void deps.network.publish(topic, encodeBatch(items)).catch(err => { this.log.warn({ err, topic }, 'publish failed') })
    }, { maxItems: MAX_BATCH_ITEMS, maxBytes: MAX_BATCH_BYTES, sizeOf: (m) => this.encodedSize.get(m) ?? MAX_BID_BYTES, delayMs })
    // an offer alone goes out at once; while other auctions are open (we are busy), offers wait
    // a few ms so that one gossip round carries many
    this.offerBatch = gossipBatch(JOBS_TOPIC, () => this.openAuctions > 0 ? OFFER_BATCH_DELAY_MS : 0)
    // nobody waits on the public copy of a receipt (the provider gets its own on the award
    // channel): gather them for a moment, one gossip round for many jobs
    this.receiptBatch = gossipBatch(RECEIPTS_TOPIC, RECEIPT_GOSSIP_DELAY_MS)
    this.deps = deps
    this.cfg = deps.config
    this.log = logger('auction:requester', { peerId: deps.signer.peerId })
    this.events.setMaxListeners(0)
  }

  get peerId (): string { return this.deps.signer.peerId }

  async start (): Promise<void> {
    const { network } = this.deps
    await network.handle(BID_PROTOCOL, async (data, ctx) => {
      await this.onBidMessage(data, ctx.from)
      return new Uint8Array(0)
    }, { maxRequestBytes: MAX_BID_BYTES, maxInboundStreams: 1024 })
    // the same answers over one long-lived stream per provider: no stream set-up per bid
    await network.handleChannel(BID_STREAM_PROTOCOL, async (channel) => {
      for await (const data of channel) {
        // one frame carries the answers a provider produced in one turn: { b: [signed, ...] }
        let items: Array<Answer | RefusedMessageError>
        try {
          items = decodeAnswers(data)
        } catch {
          this.count('bad-encoding')
          continue
        }
        for (const item of items) {
          if (item instanceof RefusedMessageError) { this.count(item.reason); continue }
          try { this.onAnswer(item, channel.remotePeer) } catch { /* refused and counted */ }
        }
      }
    }, { maxMessageBytes: MAX_BID_BYTES * MAX_BATCH_ITEMS, maxInboundStreams: 4 })
    this.watchdog = setInterval(() => { this.checkHeartbeats() }, Math.max(10, Math.floor(this.cfg.heartbeatMs / 2)))
    this.watchdog.unref()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.watchdog)
    for (const job of this.jobs.values()) {
      clearTimeout(job.biddingTimer)
      for (const a of job.attempts) a.channel?.abort(new Error('requester stopping'))
    }
    await this.deps.network.unhandle(BID_PROTOCOL).catch(() => {})
    await this.deps.network.unhandle(BID_STREAM_PROTOCOL).catch(() => {})
  }

  // ---------------------------------------------------------------- submit

  /** Validate a spec, log the job, announce it. Resolves once announced. */
  async submit (input: SubmitSpec): Promise<JobView> {
    const spec = await this.buildSpec(input)
    const maxPrice = input.maxPrice ?? this.cfg.defaultMaxPrice
    if (!Number.isFinite(maxPrice) || maxPrice < 0) throw new InvalidInputError('maxPrice must be a number ≥ 0', 'invalid-spec')
    const replicas = input.replicas ?? 1
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 15) throw new InvalidInputError('replicas must be an integer from 1 to 15', 'invalid-spec')
    const nonce = new Uint8Array(16)
    globalThis.crypto.getRandomValues(nonce)
    const createdAt = Date.now()
    const id = cidOfValue({ requester: this.peerId, nonce, ts: createdAt })
    const job = newJob({
      id,
      spec,
      maxPrice,
      replicas,
      minBids: Math.max(input.minBids ?? this.cfg.minBids, replicas),
      bidWindowMs: input.bidWindowMs ?? this.cfg.bidWindowMs,
      createdAt,
      round: 0
    })
    this.remember(job)
    // queued, not awaited: the offer record follows it in the same group commit, and the auction
    // does not close before both are written (see announce)
    job.logged = this.deps.ledger.append('job', { jobId: id, side: 'requester', status: 'submitted', spec: specSummary(spec), maxPrice, replicas })
    await this.announce(job)
    return this.view(job)
  }

  private async buildSpec (input: SubmitSpec): Promise<JobSpecWire> {
    const limits = { ...DEFAULT_LIMITS, ...(input.limits ?? {}) }
    const spec: any = {
      engine: input.engine,
      args: input.args ?? [],
      env: input.env ?? {},
      limits
    }
    if (input.stdin != null && input.stdin.length > 0) spec.stdin = input.stdin
    if (input.input !== undefined) spec.input = input.input
    if (input.engine === 'wasm') {
      if (input.module == null) throw new InvalidInputError('a wasm job needs "module": the CID of an uploaded module', 'invalid-spec')
      const bytes = await this.deps.blobs.get(input.module)
      if (bytes == null) throw new InvalidInputError(`module ${input.module} is not in this node's blob store; upload it first (POST /v1/blobs)`, 'unknown-module')
      spec.module = { cid: input.module, size: bytes.length }
    } else if (input.engine === 'js') {
      if (input.source == null && input.module == null) throw new InvalidInputError('a js job needs "source" (or "module": the CID of uploaded source)', 'invalid-spec')
      if (input.source != null) spec.source = input.source
      else {
        const bytes = await this.deps.blobs.get(input.module as string)
        if (bytes == null) throw new InvalidInputError(`module ${input.module} is not in this node's blob store`, 'unknown-module')
        spec.source = new TextDecoder().decode(bytes)
      }
    }
    const parsed = specSchema.safeParse(spec)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      throw new InvalidInputError(`${issue.path.join('.') || 'spec'}: ${issue.message}`, 'invalid-spec')
    }
    try {
      canonicalEncode(parsed.data)
    } catch (err: any) {
      throw new InvalidInputError(`input: cannot be encoded (${err.message})`, 'invalid-spec')
    }
    return parsed.data
  }

  private remember (job: RequesterJob): void {
    this.jobs.set(job.id, job)
    if (this.jobs.size > MAX_JOBS_IN_MEMORY) {
      for (const [id, j] of this.jobs) {
        if (TERMINAL.has(j.status)) { this.jobs.delete(id); break }
      }
    }
  }

  private emit (job: RequesterJob, type: JobEventType, data: Record<string, unknown> = {}): void {
    const event: JobEvent = { type, ts: Date.now(), jobId: job.id, ...data }
    job.events.push(event)
    this.events.emit('job', event)
  }

  private setStatus (job: RequesterJob, status: JobStatus): void {
    if (job.status === status) return
    job.status = status
    if (TERMINAL.has(status)) {
      job.completedAt = Date.now()
      clearTimeout(job.biddingTimer)
      this.events.emit('done', job.id)
    }
  }

  // ---------------------------------------------------------------- announce and bid

  private async announce (job: RequesterJob): Promise<void> {
    const now = Date.now()
    const payload: Offer = {
      v: 1,
      jobId: job.id,
      requester: this.peerId,
      addrs: this.deps.network.addresses().slice(0, 16),
      spec: job.spec,
      maxPrice: job.maxPrice,
      replicas: job.replicas,
      bidWindowMs: job.bidWindowMs,
      ts: now,
      expires: now + OFFER_TTL_MS,
      round: job.round
    }
    const offer = sign(this.deps.signer, 'offer', payload)
    const bytes = encodeSigned(offer)
    if (bytes.length > MAX_OFFER_BYTES) throw new InvalidInputError(`the job offer is ${bytes.length} bytes; the limit is ${MAX_OFFER_BYTES} (upload large inputs as blobs)`, 'offer-too-large')
    this.encodedSize.set(offer, bytes.length)
    job.offer = offer
    job.offerId = messageIdOfEncoded(bytes) // the encoding is at hand: no second encode
    job.bids.clear()
    job.declines.clear()
    this.setStatus(job, 'bidding')
    // log and announce at once: the records are written in the time it takes providers to answer,
    // and nothing is awarded before they are
    const offerLogged = this.deps.ledger.append('offer', { jobId: job.id, side: 'requester', offer })
    const logged = Promise.all([job.logged, offerLogged])
    logged.catch(() => {}) // awaited below, before the auction closes
    job.windowElapsed = false
    const closed = new Promise<void>((resolve) => {
      job.closeBidding = resolve
      job.biddingTimer = setTimeout(() => {
        // the window is over; with no bid yet and providers still silent, wait a little
        // longer for the first one rather than declare no-bids on a slow network
        if (job.bids.size > 0 || this.allAnswered(job)) { resolve(); return }
        job.windowElapsed = true
        job.biddingTimer = setTimeout(resolve, Math.max(NO_BID_GRACE_MS, job.bidWindowMs))
      }, job.bidWindowMs)
    })
    const known = this.knownProviders(job)
    this.emit(job, 'announced', { round: job.round, knownProviders: known.size })
    // gossip to the mesh, direct to DHT-found providers outside it, and to ourselves
    const topicPeers = new Set(this.deps.network.topicPeers(JOBS_TOPIC))
    this.offerBatch.add(offer)
    this.openAuctions++
    for (const peer of known) {
      if (peer === this.peerId || topicPeers.has(peer)) continue
      void this.deps.network.request(peer, OFFER_PROTOCOL, bytes, { timeoutMs: 2000 }).catch(() => {})
    }
    this.deps.localProvider?.onOffer(offer)
    void closed.then(async () => {
      this.openAuctions--
      await logged
      job.closeBidding = undefined
      clearTimeout(job.biddingTimer)
      if (job.status !== 'bidding') return // cancelled meanwhile
      // queued before the award's record, and the ledger writes in order: the award is never
      // logged without the bids it lists
      this.logAnswers(job).catch(err => { this.log.error({ err, jobId: job.id }, 'logging the answers failed') })
      await this.closeAuction(job)
    }).catch(async (err) => {
      this.log.error({ err, jobId: job.id }, 'auction failed')
      await this.fail(job, `auction failed: ${err?.message ?? err}`).catch(() => {})
    })
  }

  /**
   * Log the sealed answers of one auction round: one `bid` record holding every signed bid
   * considered (what the award's digests refer to) and one `decline` record holding every signed
   * decline. One record per round instead of one per provider keeps the log and its signing cost
   * proportional to jobs, not to the size of the mesh.
   */
  private async logAnswers (job: RequesterJob): Promise<void> {
    const bids = [...job.bids.values()].map(b => b.signed)
    const declines = [...job.declines.values()].flatMap(d => d.signed != null ? [d.signed] : [])
    const writes: Array<Promise<unknown>> = []
    if (bids.length > 0) writes.push(this.deps.ledger.append('bid', { jobId: job.id, side: 'requester', offerId: job.offerId, bids }))
    if (declines.length > 0) writes.push(this.deps.ledger.append('decline', { jobId: job.id, side: 'requester', offerId: job.offerId, declines }))
    await Promise.all(writes)
  }

  /** Providers we know can answer: the jobs-topic mesh, DHT engine providers, ourselves. */
  private knownProviders (job: RequesterJob): Set<string> {
    const set = new Set(this.deps.network.topicPeers(JOBS_TOPIC))
    const dht = this.engineProviders.get(job.spec.engine)
    if (dht != null) for (const p of dht.peers) set.add(p)
    if (dht == null || Date.now() - dht.at > 30_000) void this.refreshEngineProviders(job.spec.engine)
    if (this.deps.localProvider != null && this.deps.localProvider.engines().includes(job.spec.engine)) set.add(this.peerId)
    return set
  }

  private async refreshEngineProviders (engine: string): Promise<void> {
    this.engineProviders.set(engine, { peers: this.engineProviders.get(engine)?.peers ?? [], at: Date.now() })
    try {
      const peers = await this.deps.network.findProviders(ENGINE_KEY_PREFIX + engine, { signal: AbortSignal.timeout(5000), limit: 100 })
      this.engineProviders.set(engine, { peers, at: Date.now() })
    } catch (err) {
      this.log.debug({ err, engine }, 'DHT provider lookup failed')
    }
  }

  private count (reason: RefusalReason): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1)
  }

  private refuse (reason: RefusalReason, detail: string, from: string): never {
    this.count(reason)
    this.log.debug({ reason, from, detail }, 'refused message')
    throw new RefusedMessageError(reason, detail)
  }

  /** A bid or decline arrived from `from` (authenticated PeerId, or ourselves). */
  async onBidMessage (data: Uint8Array, from: string): Promise<void> {
    let msg: Answer
    try {
      msg = decodeAnswer(data)
    } catch (err: any) {
      this.refuse(err instanceof RefusedMessageError ? err.reason : 'bad-schema', err.message, from)
    }
    this.onAnswer(msg, from)
  }

  /** A checked bid or decline: sender, job, state. */
  onAnswer (msg: Answer, from: string): void {
    const kind = msg.domain === DOMAIN.decline ? 'decline' : 'bid'
    if (msg.signer !== from) this.refuse('wrong-sender', `${kind} signed by ${msg.signer} but sent by ${from}`, from)
    const job = this.jobs.get(msg.payload.jobId)
    if (job == null) this.refuse('unknown-job', `no job ${msg.payload.jobId}`, from)
    const provider = msg.signer
    if (job.bids.has(provider) || job.declines.has(provider)) this.refuse('replay', `second ${kind} from ${provider}`, from)
    if (msg.payload.offerId !== job.offerId) this.refuse('wrong-state', 'bid for an older offer', from)
    if (job.status !== 'bidding') this.refuse('wrong-state', `job is ${job.status}`, from)
    if (kind === 'decline') {
      const d = msg.payload as Decline
      job.declines.set(provider, { reason: d.reason, detail: d.detail, signed: msg as Signed<Decline> })
      this.emit(job, 'decline', { provider, reason: d.reason, detail: d.detail })
    } else {
      const b = msg.payload as Bid
      if (b.price > job.maxPrice) this.refuse('wrong-state', `ask ${b.price} over maxPrice ${job.maxPrice}`, from)
      if (this.deps.isFlagged?.(provider) === true) this.refuse('wrong-state', 'provider is flagged for equivocation', from)
      if (this.deps.reputation.score(provider) < this.cfg.minReputation) this.refuse('wrong-state', 'provider reputation below the floor', from)
      const id = messageId(msg)
      job.bids.set(provider, { id, signed: msg as Signed<Bid>, provider, price: b.price, estStartMs: b.estStartMs })
      this.emit(job, 'bid', { provider, price: b.price, bids: job.bids.size })
    }
    // close early: enough bids, every known capable provider answered, or the first bid after the window
    if (job.bids.size >= job.minBids || this.allAnswered(job) || (job.windowElapsed && job.bids.size > 0)) job.closeBidding?.()
  }

  private allAnswered (job: RequesterJob): boolean {
    if (job.bids.size + job.declines.size === 0) return false
    const known = this.knownProviders(job)
    if (known.size === 0) return false
    for (const p of known) if (!job.bids.has(p) && !job.declines.has(p)) return false
    return true
  }

  // ---------------------------------------------------------------- pick and award

  private ranked (job: RequesterJob): BidEntry[] {
    return rankBids(job.id, [...job.bids.values()]).filter(b => !job.excluded.has(b.provider))
  }

  private async closeAuction (job: RequesterJob): Promise<void> {
    const ranked = this.ranked(job)
    if (ranked.length === 0) {
      if (job.attempts.length > 0 && job.round < this.cfg.maxAttempts) {
        // a failover found no runner-up: announce again
        job.round++
        await this.announce(job)
        return
      }
      const declines = [...job.declines].map(([provider, d]) => ({ provider, ...d }))
      this.setStatus(job, job.attempts.length > 0 ? 'failed' : 'no-bids')
      job.error = job.attempts.length > 0 ? 'no provider left to run the job' : 'no provider bid'
      this.emit(job, job.status === 'no-bids' ? 'no-bids' : 'failed', { declines })
      await this.deps.ledger.append('job', { jobId: job.id, side: 'requester', status: job.status, declines })
      return
    }
    const need = this.runsWanted(job)
    for (let i = 0; i < need; i++) this.background(job, this.awardNext(job))
  }

  /** attempts whose provider holds the job now */
  private inFlight (job: RequesterJob): Attempt[] {
    return job.attempts.filter(a => a.state === 'offered' || a.state === 'accepted' || a.state === 'running')
  }

  /** runs still wanted: one per replica (plus extra runs after a disagreement), less results in and runs in flight */
  private runsWanted (job: RequesterJob): number {
    return Math.max(0, job.replicas + job.extraRuns - job.results.size - this.inFlight(job).length)
  }

  /** Award the best bidder not yet tried. */
  private async awardNext (job: RequesterJob): Promise<void> {
    if (TERMINAL.has(job.status) || this.stopped) return
    const tried = new Set(job.attempts.map(a => a.provider))
    const ranked = this.ranked(job)
    const candidates = ranked.filter(b => !tried.has(b.provider))
    const winner = candidates[0]
    if (winner == null) {
      if (!job.attempts.some(a => a.state === 'offered' || a.state === 'accepted' || a.state === 'running')) {
        if (job.round + 1 >= this.cfg.maxAttempts) {
          await this.fail(job, 'every bidder failed or refused and the attempt limit is reached')
        } else {
          job.round++
          await this.announce(job)
        }
      }
      return
    }
    if (job.attempts.length >= this.cfg.maxAttempts * job.replicas + job.extraRuns) {
      if (this.inFlight(job).length === 0) await this.fail(job, `gave up after ${job.attempts.length} attempts`)
      return
    }
    // uniform price among the remaining bidders: the (k+1)-th ask, capped at maxPrice
    const index = ranked.indexOf(winner)
    const price = settlementPrice(ranked, Math.min(job.replicas, ranked.length), Math.min(index, ranked.length - 1), job.maxPrice)
    const now = Date.now()
    const award = sign(this.deps.signer, 'award', {
      v: 1,
      jobId: job.id,
      offerId: job.offerId as string,
      requester: this.peerId,
      provider: winner.provider,
      bidId: winner.id,
      bids: [...job.bids.values()].map(b => b.id).sort(),
      price,
      attempt: job.attempts.length,
      ts: now,
      expires: now + BID_TTL_MS
    })
    const awardId = messageId(award)
    const attempt: Attempt = { provider: winner.provider, awardId, price, attempt: job.attempts.length, state: 'offered', lastSeen: now, suspect: false, awardedAt: now, deadline: attemptDeadline(now, winner.estStartMs, job.spec.limits.timeoutMs) }
    job.attempts.push(attempt)
    if (job.status === 'bidding') this.setStatus(job, 'awarded')
    // the award is logged before it is sent; the channel opens while the record is written
    const awardLogged = this.deps.ledger.append('award', { jobId: job.id, side: 'requester', award })
    awardLogged.catch(() => {}) // awaited below
    let channel: MessageChannel
    try {
      const opening: Promise<MessageChannel> = winner.provider === this.peerId && this.deps.localProvider != null
        ? Promise.resolve(this.deps.localProvider.openAward())
        : this.deps.network.openChannel(winner.provider, AWARD_PROTOCOL, { maxMessageBytes: MAX_CHANNEL_BYTES, signal: AbortSignal.timeout(3000) })
      opening.catch(() => {}) // awaited below
      await awardLogged
      if (isCancelled(job)) {
        attempt.state = 'cancelled'
        attempt.endedAt = Date.now()
        void opening.then(ch => { ch.abort(new Error('cancelled')) }, () => {})
        return
      }
      this.emit(job, 'awarded', { provider: winner.provider, price, attempt: attempt.attempt })
      channel = await opening
      if (attempt.state !== 'offered') {
        // the watchdog gave up on this award while the stream was opening: never send it
        channel.abort(new Error('award withdrawn'))
        return
      }
      attempt.channel = channel
      if (isCancelled(job)) { attempt.state = 'cancelled'; attempt.endedAt = Date.now(); channel.abort(new Error('cancelled')); return }
      await channel.send(encodeFrame({ t: 'award', m: award }))
    } catch (err: any) {
      await this.lose(job, attempt, `could not reach provider: ${err?.message ?? err}`)
      return
    }
    this.background(job, this.watch(job, attempt, channel))
  }

  /** Read the award channel until a result, a refusal or a loss. */
  private async watch (job: RequesterJob, attempt: Attempt, channel: MessageChannel): Promise<void> {
    try {
      for await (const data of channel) {
        attempt.lastSeen = Date.now()
        if (attempt.suspect) attempt.suspect = false
        let frame: Frame
        try {
          frame = decodeFrame(data)
        } catch (err: any) {
          this.count(err.reason ?? 'bad-encoding')
          // a well-formed frame carrying a bad signed message ends the award; garbage is skipped
          if (err.inner === true) throw err
          continue
        }
        if (frame.t === 'accept') {
          const accept = frame.m
          if (accept.signer !== attempt.provider || accept.payload.awardId !== attempt.awardId) throw new RefusedMessageError('wrong-sender', 'accept does not match the award')
          if (attempt.state === 'offered') attempt.state = 'accepted'
          this.emit(job, 'accepted', { provider: attempt.provider, attempt: attempt.attempt })
          void this.deps.ledger.append('accept', { jobId: job.id, side: 'requester', accept }).catch(err => { this.log.error({ err }, 'ledger append failed') })
        } else if (frame.t === 'refuse') {
          const refuse = frame.m
          if (refuse.signer !== attempt.provider || refuse.payload.awardId !== attempt.awardId) throw new RefusedMessageError('wrong-sender', 'refusal does not match the award')
          attempt.state = 'refused'
          attempt.endedAt = Date.now()
          attempt.reason = refuse.payload.reason
          this.emit(job, 'refused', { provider: attempt.provider, reason: refuse.payload.reason })
          await channel.close()
          await this.awardNext(job)
          return
        } else if (frame.t === 'hb') {
          if (frame.state === 'running' && attempt.state === 'accepted') {
            attempt.state = 'running'
            if (job.status === 'awarded') this.setStatus(job, 'running')
            this.emit(job, 'running', { provider: attempt.provider })
          }
        } else if (frame.t === 'result') {
          await this.onResult(job, attempt, frame.m)
          if (attempt.state === 'completed' || attempt.state === 'superseded' || attempt.state === 'mismatch') {
            await channel.close().catch(() => {})
            return
          }
        }
      }
      // the provider closed the channel without a result
      if (attempt.state === 'offered' || attempt.state === 'accepted' || attempt.state === 'running') {
        await this.lose(job, attempt, 'provider closed the award channel')
      }
    } catch (err: any) {
      if (attempt.state === 'offered' || attempt.state === 'accepted' || attempt.state === 'running') {
        await this.lose(job, attempt, err instanceof RefusedMessageError ? err.message : `connection lost: ${err?.message ?? err}`)
      }
    }
  }

  /** Run a job step in the background; a failure fails the job instead of the process. */
  private background (job: RequesterJob, p: Promise<unknown>): void {
    p.catch(async (err) => {
      this.log.error({ err, jobId: job.id }, 'job step failed')
      await this.fail(job, `internal error: ${err?.message ?? err}`).catch(() => {})
    })
  }

  private checkHeartbeats (): void {
    const now = Date.now()
    for (const job of this.jobs.values()) {
      if (job.status !== 'awarded' && job.status !== 'running') continue
      for (const a of job.attempts) {
        if (a.state !== 'accepted' && a.state !== 'running' && a.state !== 'offered') continue
        if (now > a.deadline) {
          // heartbeats alone do not buy a provider unlimited time
          this.background(job, this.lose(job, a, `no result by the deadline (${Math.round((a.deadline - a.awardedAt) / 1000)} s after the award)`))
          continue
        }
        if (a.polled) continue // recovered after our restart: pollStatus owns it (with its own grace)
        const silent = now - a.lastSeen
        if (silent > this.cfg.lostAfterMs) {
          this.background(job, this.lose(job, a, `silent for ${silent} ms`))
        } else if (silent > this.cfg.suspectAfterMs && !a.suspect) {
          a.suspect = true
          this.emit(job, 'suspect', { provider: a.provider, silentMs: silent })
        }
      }
    }
  }

  /** The provider of an attempt is lost: hand the job over to the runner-up. */
  private async lose (job: RequesterJob, attempt: Attempt, reason: string): Promise<void> {
    if (attempt.state !== 'offered' && attempt.state !== 'accepted' && attempt.state !== 'running') return
    attempt.state = 'lost'
    attempt.endedAt = Date.now()
    attempt.reason = reason
    withdraw(attempt.channel, 'handed over')
    job.excluded.add(attempt.provider)
    this.deps.reputation.record(attempt.provider, 'lost')
    if (TERMINAL.has(job.status)) return
    job.handovers++
    const next = this.ranked(job).find(b => !job.attempts.some(a => a.provider === b.provider))
    this.emit(job, 'handover', { from: attempt.provider, to: next?.provider ?? null, reason, attempt: attempt.attempt })
    this.log.info({ jobId: job.id, from: attempt.provider, to: next?.provider, reason }, 'handover')
    await this.deps.ledger.append('handover', { jobId: job.id, side: 'requester', from: attempt.provider, to: next?.provider ?? null, reason, attempt: attempt.attempt, awardId: attempt.awardId })
    if (job.handovers > 1) await new Promise(resolve => setTimeout(resolve, FAILOVER_BACKOFF_MS * 2 ** Math.min(job.handovers - 2, 5)))
    await this.awardNext(job)
  }

  // ---------------------------------------------------------------- results and settlement

  private async onResult (job: RequesterJob, attempt: Attempt, result: Signed<Result>): Promise<void> {
    const r = result.payload
    if (result.signer !== attempt.provider || r.awardId !== attempt.awardId || r.jobId !== job.id) {
      this.count('wrong-sender')
      throw new RefusedMessageError('wrong-sender', 'result does not match the award')
    }
    const expected = computeResultHash(job.id, { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, output: r.output })
    if (expected !== r.resultHash) {
      this.count('bad-hash')
      throw new RefusedMessageError('bad-hash', 'result hash does not match its contents')
    }
    const resultId = messageId(result)
    attempt.resultHash = r.resultHash
    // queued, not awaited: the receipt (appended after it, in order) is awaited before the job settles
    const resultLogged = this.deps.ledger.append('result', { jobId: job.id, side: 'requester', result })
    resultLogged.catch(err => { this.log.error({ err, jobId: job.id }, 'logging a result failed') })
    this.emit(job, 'result', { provider: attempt.provider, resultHash: r.resultHash, exitCode: r.exitCode })
    if (job.status === 'cancelled') {
      attempt.state = 'cancelled'
      attempt.endedAt = Date.now()
      return
    }
    if (job.final != null) {
      const finalHash = job.final.result.payload.resultHash
      attempt.endedAt = Date.now()
      if (job.replicas > 1 && attempt.state !== 'lost' && r.resultHash === finalHash) {
        // a replica we awarded finished after the quorum, with the same answer: it did the work asked
        attempt.state = 'completed'
        job.results.set(attempt.provider, { signed: result, id: resultId })
        job.final.providers.push(attempt.provider)
        job.final.price += attempt.price
        await this.settle(job, attempt, result, resultId, 'paid', attempt.price)
      } else if (job.replicas > 1 && attempt.state !== 'lost') {
        // a replica outvoted by the quorum that was already in
        attempt.state = 'mismatch'
        await this.recordMismatch(job, attempt.provider, result, resultId, finalHash, job.final.providers)
      } else {
        // a late result from a replaced provider: recorded, never paid
        attempt.state = 'superseded'
        await this.settle(job, attempt, result, resultId, 'superseded', 0)
        this.emit(job, 'superseded', { provider: attempt.provider })
      }
      return
    }
    if (attempt.state === 'lost' && job.replicas > 1) {
      // its slot went to a runner-up: counting it too would pay two providers for one replica
      attempt.state = 'superseded'
      attempt.endedAt = Date.now()
      await this.settle(job, attempt, result, resultId, 'superseded', 0)
      this.emit(job, 'superseded', { provider: attempt.provider })
      return
    }
    job.results.set(attempt.provider, { signed: result, id: resultId })
    attempt.state = 'completed'
    attempt.endedAt = Date.now()
    await this.tally(job)
  }

  /** Decide once enough results agree (a majority of `replicas`). */
  private async tally (job: RequesterJob): Promise<void> {
    if (job.final != null) return
    const quorum = Math.floor(job.replicas / 2) + 1
    const byHash = new Map<string, string[]>()
    for (const [provider, { signed }] of job.results) {
      const list = byHash.get(signed.payload.resultHash) ?? []
      list.push(provider)
      byHash.set(signed.payload.resultHash, list)
    }
    let winning: [string, string[]] | undefined
    for (const entry of byHash) if (entry[1].length >= quorum) winning = entry
    if (winning == null) {
      const pending = job.attempts.filter(a => a.state === 'offered' || a.state === 'accepted' || a.state === 'running').length
      if (pending > 0) return
      if (job.results.size >= job.replicas) {
        // results disagree and nobody is still running: extra runs, up to a cap
        if (job.extraRuns < MAX_EXTRA_RUNS) {
          job.extraRuns++
          await this.awardNext(job)
        } else {
          await this.fail(job, 'replica results disagree and the extra-run cap is reached')
        }
        return
      }
      // fewer results than replicas and nobody running (too few bidders): award more, or ask again
      const tried = new Set(job.attempts.map(a => a.provider))
      if (this.ranked(job).some(b => !tried.has(b.provider))) {
        await this.awardNext(job)
      } else if (job.round + 1 < this.cfg.maxAttempts) {
        job.round++
        await this.announce(job)
      } else {
        await this.fail(job, `only ${job.results.size} of ${job.replicas} replicas could be run`)
      }
      return
    }
    const [hash, agreeing] = winning
    const first = job.results.get(agreeing[0])?.signed as Signed<Result>
    const prices = agreeing.map(p => job.attempts.find(a => a.provider === p && a.state === 'completed')?.price ?? 0)
    job.final = { result: first, providers: agreeing, price: prices.reduce((a, b) => a + b, 0) }
    for (const provider of agreeing) {
      const att = job.attempts.find(a => a.provider === provider && a.state === 'completed') as Attempt
      const res = job.results.get(provider) as { signed: Signed<Result>, id: string }
      await this.settle(job, att, res.signed, res.id, 'paid', att.price)
    }
    for (const [provider, res] of job.results) {
      if (res.signed.payload.resultHash === hash) continue
      const att = job.attempts.find(a => a.provider === provider)
      if (att != null) att.state = 'mismatch'
      await this.recordMismatch(job, provider, res.signed, res.id, hash, agreeing)
    }
    // replicas still running finish in the background: a matching answer is paid, a different one
    // is a mismatch (tally of late results in onResult); the job is settled now
    this.setStatus(job, 'completed')
    const latency = (job.completedAt ?? Date.now()) - job.createdAt
    this.emit(job, 'settled', { providers: agreeing, price: job.final.price, resultHash: hash, latencyMs: latency })
  }

  private async recordMismatch (job: RequesterJob, provider: string, result: Signed<Result>, resultId: string, majorityHash: string, agreeing: string[]): Promise<void> {
    this.deps.reputation.record(provider, 'mismatched')
    await this.deps.ledger.append('mismatch', { jobId: job.id, side: 'requester', provider, result, majorityHash, agreeing: [...agreeing] })
    this.emit(job, 'mismatch', { provider, resultHash: result.payload.resultHash, majorityHash })
    const att = job.attempts.find(a => a.provider === provider)
    await this.settle(job, att, result, resultId, 'failed', 0)
  }

  private async settle (job: RequesterJob, attempt: Attempt | undefined, result: Signed<Result>, resultId: string, status: 'paid' | 'superseded' | 'failed', price: number): Promise<void> {
    const receipt = sign(this.deps.signer, 'receipt', {
      v: 1,
      jobId: job.id,
      requester: this.peerId,
      provider: result.signer,
      resultId,
      resultHash: result.payload.resultHash,
      price,
      status,
      ts: Date.now()
    })
    await this.deps.ledger.append('receipt', { jobId: job.id, side: 'requester', receipt })
    this.deps.reputation.applyReceipt(receipt)
    this.receiptBatch.add(receipt)
    if (attempt?.channel != null) await attempt.channel.send(encodeFrame({ t: 'receipt', m: receipt })).catch(() => {})
  }

  private async fail (job: RequesterJob, reason: string): Promise<void> {
    if (TERMINAL.has(job.status)) return
    job.error = reason
    this.setStatus(job, 'failed')
    this.emit(job, 'failed', { reason })
    await this.deps.ledger.append('job', { jobId: job.id, side: 'requester', status: 'failed', reason })
  }

  async cancel (id: string): Promise<JobView> {
    const job = this.jobs.get(id)
    if (job == null) throw new NotFoundError(`no job ${id}`, 'job-not-found')
    if (TERMINAL.has(job.status)) throw new JobStateError(`job ${id} is already ${job.status}`)
    for (const a of job.attempts) {
      if (a.state === 'offered' || a.state === 'accepted' || a.state === 'running') {
        a.state = 'cancelled'
        a.endedAt = Date.now()
        withdraw(a.channel, 'cancelled')
      }
    }
    job.closeBidding?.()
    this.setStatus(job, 'cancelled')
    this.emit(job, 'cancelled')
    await this.deps.ledger.append('job', { jobId: job.id, side: 'requester', status: 'cancelled' })
    return this.view(job)
  }

  // ---------------------------------------------------------------- recovery after a restart

  /**
   * Rebuild unfinished jobs from the ledger: jobs still bidding are announced
   * again; awarded jobs ask their provider for status and fail over if it is
   * gone. Resolves once every job has been looked at.
   */
  async recover (records: AsyncIterable<LedgerRecord> | LedgerRecord[]): Promise<number> {
    const byJob = new Map<string, LedgerRecord[]>()
    for await (const r of records as AsyncIterable<LedgerRecord>) {
      const body = r.body as any
      if (body?.side !== 'requester' || typeof body.jobId !== 'string') continue
      const list = byJob.get(body.jobId) ?? []
      list.push(r)
      byJob.set(body.jobId, list)
    }
    let resumed = 0
    for (const [jobId, recs] of byJob) {
      const terminal = recs.some(r => (r.type === 'job' && ['failed', 'no-bids', 'cancelled'].includes((r.body as any).status)) || (r.type === 'receipt' && (r.body as any).receipt?.payload?.status === 'paid'))
      if (terminal) continue
      const jobRec = recs.find(r => r.type === 'job')
      const offers = recs.filter(r => r.type === 'offer')
      const lastOffer = (offers.at(-1)?.body as any)?.offer as Signed<Offer> | undefined
      if (jobRec == null || lastOffer == null) continue
      const o = lastOffer.payload
      const job = newJob({
        id: jobId,
        spec: o.spec,
        maxPrice: o.maxPrice,
        replicas: o.replicas,
        minBids: Math.max(this.cfg.minBids, o.replicas),
        bidWindowMs: o.bidWindowMs,
        createdAt: jobRec.ts,
        round: o.round,
        offer: lastOffer,
        offerId: messageId(lastOffer)
      })
      for (const r of recs) {
        const b = r.body as any
        if (r.type === 'bid' && b.offerId === job.offerId && Array.isArray(b.bids)) {
          for (const bid of b.bids as Array<Signed<Bid>>) {
            job.bids.set(bid.signer, { id: messageId(bid), signed: bid, provider: bid.signer, price: bid.payload.price, estStartMs: bid.payload.estStartMs })
          }
        } else if (r.type === 'award') {
          const aw = b.award
          job.attempts.push({ provider: aw.payload.provider, awardId: messageId(aw), price: aw.payload.price, attempt: aw.payload.attempt, state: 'offered', lastSeen: Date.now(), suspect: false, awardedAt: r.ts, deadline: attemptDeadline(Date.now(), 0, o.spec.limits.timeoutMs) + RECOVERY_GRACE_MS, polled: true })
        } else if (r.type === 'accept') {
          const att = job.attempts.find(a => a.awardId === b.accept?.payload?.awardId)
          if (att != null) att.state = 'accepted'
        } else if (r.type === 'handover') {
          const att = job.attempts.find(a => a.awardId === b.awardId)
          if (att != null) { att.state = 'lost'; job.excluded.add(att.provider) }
        }
      }
      this.remember(job)
      this.emit(job, 'announced', { recovered: true })
      resumed++
      const live = job.attempts.filter(a => a.state === 'offered' || a.state === 'accepted')
      if (live.length === 0) {
        job.round++
        void this.announce(job).catch(err => { this.log.error({ err, jobId }, 're-announce failed') })
        continue
      }
      this.setStatus(job, 'awarded')
      for (const att of live) this.background(job, this.pollStatus(job, att))
    }
    return resumed
  }

  /** After a restart: ask the provider about an award until it answers with a result or is gone. */
  private async pollStatus (job: RequesterJob, attempt: Attempt): Promise<void> {
    let failures = 0
    let firstFailure = 0
    while (!this.stopped && !TERMINAL.has(job.status) && (attempt.state === 'offered' || attempt.state === 'accepted' || attempt.state === 'running') && Date.now() <= attempt.deadline) {
      try {
        const res: StatusReply = attempt.provider === this.peerId && this.deps.localProvider != null
          ? this.deps.localProvider.status(job.id) ?? { state: 'unknown' }
          : decodeStatusReply(await this.deps.network.request(attempt.provider, STATUS_PROTOCOL, encodeStatusRequest({ jobId: job.id, awardId: attempt.awardId }), { timeoutMs: 2000, maxResponseBytes: MAX_CHANNEL_BYTES }))
        failures = 0
        firstFailure = 0
        attempt.lastSeen = Date.now()
        if (res == null || res.state === 'unknown') {
          await this.lose(job, attempt, 'provider does not know the job after our restart')
          return
        }
        if (res.result != null) {
          await this.onResult(job, attempt, res.result)
          return
        }
        if (res.state === 'running' && attempt.state !== 'running') {
          attempt.state = 'running'
          this.setStatus(job, 'running')
          this.emit(job, 'running', { provider: attempt.provider })
        }
      } catch (err: any) {
        if (err instanceof RefusedMessageError) { await this.lose(job, attempt, err.message); return }
        // right after our restart the mesh is still forming: give the provider a grace period
        if (firstFailure === 0) firstFailure = Date.now()
        if (++failures >= 3 && Date.now() - firstFailure > RECOVERY_GRACE_MS) { await this.lose(job, attempt, `provider unreachable after restart: ${err?.message ?? err}`); return }
      }
      await new Promise(resolve => setTimeout(resolve, this.cfg.heartbeatMs))
    }
  }

  // ---------------------------------------------------------------- views

  /** Providers this node knows of: the jobs-topic mesh, DHT engine providers, and every bidder seen. */
  knownProviderList (): Array<{ peerId: string, engines: string[], lastAsk: number | null, self: boolean }> {
    const out = new Map<string, { peerId: string, engines: Set<string>, lastAsk: number | null, self: boolean }>()
    const get = (peerId: string): { peerId: string, engines: Set<string>, lastAsk: number | null, self: boolean } => {
      let e = out.get(peerId)
      if (e == null) { e = { peerId, engines: new Set(), lastAsk: null, self: peerId === this.peerId }; out.set(peerId, e) }
      return e
    }
    for (const p of this.deps.network.topicPeers(JOBS_TOPIC)) get(p)
    for (const [engine, { peers }] of this.engineProviders) for (const p of peers) get(p).engines.add(engine)
    if (this.deps.localProvider != null) for (const e of this.deps.localProvider.engines()) get(this.peerId).engines.add(e)
    for (const job of this.jobs.values()) {
      for (const b of job.bids.values()) { const e = get(b.provider); e.lastAsk = b.price; e.engines.add(job.spec.engine) }
    }
    return [...out.values()].map(e => ({ ...e, engines: [...e.engines].sort() }))
  }

  has (id: string): boolean { return this.jobs.has(id) }

  get (id: string): JobView {
    const job = this.jobs.get(id)
    if (job == null) throw new NotFoundError(`no job ${id}`, 'job-not-found')
    return this.view(job)
  }

  list (opts: { status?: JobStatus, limit?: number } = {}): JobView[] {
    const out: JobView[] = []
    const all = [...this.jobs.values()].reverse()
    for (const job of all) {
      if (opts.status != null && job.status !== opts.status) continue
      out.push(this.view(job))
      if (out.length >= (opts.limit ?? 100)) break
    }
    return out
  }

  jobEvents (id: string): JobEvent[] {
    const job = this.jobs.get(id)
    if (job == null) throw new NotFoundError(`no job ${id}`, 'job-not-found')
    return [...job.events]
  }

  statusCounts (): Map<JobStatus, number> {
    const counts = new Map<JobStatus, number>(JOB_STATUSES.map(s => [s, 0]))
    for (const job of this.jobs.values()) counts.set(job.status, (counts.get(job.status) ?? 0) + 1)
    return counts
  }

  isTerminal (id: string): boolean {
    const job = this.jobs.get(id)
    return job != null && TERMINAL.has(job.status)
  }

  result (id: string): ResultView {
    const job = this.jobs.get(id)
    if (job == null) throw new NotFoundError(`no job ${id}`, 'job-not-found')
    if (job.final == null) throw new JobStateError(`job ${id} is ${job.status}; no result yet`)
    const r = job.final.result.payload
    const dec = new TextDecoder()
    return {
      jobId: job.id,
      exitCode: r.exitCode,
      stdout: dec.decode(r.stdout),
      stderr: dec.decode(r.stderr),
      output: r.output,
      truncated: r.truncated,
      error: r.error,
      resultHash: r.resultHash,
      provider: job.final.providers[0],
      providers: job.final.providers,
      price: job.final.price,
      usage: r.usage
    }
  }

  private view (job: RequesterJob): JobView {
    const holding = job.attempts.filter(a => a.state === 'offered' || a.state === 'accepted' || a.state === 'running')
    const provider = job.final?.providers[0] ?? holding[0]?.provider ?? null
    const price = job.final?.price ?? holding[0]?.price ?? null
    return {
      id: job.id,
      status: job.status,
      engine: job.spec.engine,
      provider,
      providers: job.final?.providers ?? holding.map(a => a.provider),
      price,
      maxPrice: job.maxPrice,
      replicas: job.replicas,
      bids: rankBids(job.id, [...job.bids.values()]).map(b => ({ provider: b.provider, price: b.price, estStartMs: b.estStartMs, id: b.id })),
      attempts: job.attempts.map(a => ({ provider: a.provider, price: a.price, attempt: a.attempt, state: a.state, awardedAt: a.awardedAt, endedAt: a.endedAt, reason: a.reason })),
      declines: [...job.declines].map(([p, d]) => ({ provider: p, reason: d.reason, detail: d.detail })),
      createdAt: job.createdAt,
      completedAt: job.completedAt ?? null,
      latencyMs: job.completedAt != null ? job.completedAt - job.createdAt : null,
      error: job.error
    }
  }
}

/** Margin on top of the job's own timeout: fetching the module, queueing, sending the result. */
const DEADLINE_MARGIN_MS = 15_000

function attemptDeadline (awardedAt: number, estStartMs: number, timeoutMs: number): number {
  return awardedAt + estStartMs + timeoutMs + DEADLINE_MARGIN_MS
}

/** A job in the bidding state with empty books. */
function newJob (fields: Pick<RequesterJob, 'id' | 'spec' | 'maxPrice' | 'replicas' | 'minBids' | 'bidWindowMs' | 'createdAt' | 'round'> & Partial<Pick<RequesterJob, 'offer' | 'offerId'>>): RequesterJob {
  return {
    ...fields,
    status: 'bidding',
    bids: new Map(),
    declines: new Map(),
    attempts: [],
    excluded: new Set(),
    results: new Map(),
    events: [],
    extraRuns: 0,
    handovers: 0
  }
}

/**
 * Withdraw an award: tell the provider to stop (a `cancel` frame, best effort), then close the
 * stream. A provider whose stream merely drops keeps running, for a requester that restarts.
 */
function withdraw (channel: MessageChannel | undefined, reason: string): void {
  if (channel == null) return
  const frame = encodeFrame({ t: 'cancel', reason })
  const force = setTimeout(() => { channel.abort(new Error(reason)) }, WITHDRAW_FLUSH_MS)
  force.unref()
  // close (not abort) so the frame is flushed; a dead peer fails fast and the timer resets the stream
  void channel.send(frame).then(async () => { await channel.close() }).catch(() => { channel.abort(new Error(reason)) }).finally(() => { clearTimeout(force) })
}

/** How long a withdrawn award's stream may take to flush its cancel frame before it is reset. */
const WITHDRAW_FLUSH_MS = 1_000

/** Status re-read after an await (a cancel may have landed meanwhile). */
function isCancelled (job: RequesterJob): boolean {
  return job.status === 'cancelled'
}

function specSummary (spec: JobSpecWire): Record<string, unknown> {
  return { engine: spec.engine, module: spec.module, sourceBytes: spec.source?.length, args: spec.args.length, limits: spec.limits }
}
