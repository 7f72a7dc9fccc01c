/**
 * Announce a job and collect its sealed answers.
 *
 * `announce` signs the Offer, logs it, gossips it (in batches while other
 * auctions are open) and sends it directly to providers the DHT names
 * outside the gossip mesh, then opens the bid window. Answers arrive on a
 * provider's bid stream (a batch per frame) or as single requests; each is
 * checked by the protocol codec, then here for sender, job, round and
 * standing. When the window closes the round's answers are logged (one
 * record for the bids, one for the declines) and the planner is asked what
 * comes next.
 */
import { messageIdOfEncoded, type Signed } from '../../crypto/index.js'
import { BidStreamClosedError, InvalidInputError } from '../../errors.js'
import { RemoteError, type MessageChannel } from '../../p2p/index.js'
import { Batcher } from '../batcher.js'
import { LruCache } from '../../lru.js'
import { nextWithin } from '../streams.js'
import { KeyedRateLimit } from '../protocol/gossip.js'
import { BID_PROTOCOL, BID_STREAM_IDLE_MS, BID_STREAM_PROTOCOL, BID_STREAM_REFUSALS_BURST, BID_STREAM_REFUSALS_PER_SEC, DOMAIN, ENGINE_KEY_PREFIX, INVITE_ANSWER_GRACE_MS, INVITE_CHEAPER_WAIT_MS, INVITE_UNHEARD_WAITS_PER_SEC, INVITE_UNHEARD_WAIT_BURST, JOBS_TOPIC, MAX_BATCH_BYTES, MAX_BATCH_ITEMS, MAX_BID_BYTES, MAX_OFFER_BYTES, MAX_OFFER_STREAMS, MAX_REFUSING_PEERS, NO_BID_GRACE_MS, OFFER_BATCH_DELAY_MS, OFFER_PROTOCOL, OFFER_STREAM_IDLE_MS, OFFER_STREAM_PROTOCOL, OFFER_STREAM_RETRY_MS, OFFER_TTL_MS } from '../constants.js'
import { encodeBatch, encodeSigned, RefusedMessageError, sign, type Bid, type Decline, type Offer, type RefusalReason } from '../protocol/messages.js'
import { decodeAnswer, decodeAnswers, isAdvertAnswer, type Answer } from '../protocol/frames.js'
import { addBid, type RequesterContext, type RequesterJob } from './job.js'
import { countsTowardMinBids } from './trust.js'
import { chooseInvitees, roundDecided, type Invitation } from './invite.js'
import { effectiveAsk } from './book.js'
import { agreeOn, firstUnmet, formatConstraint } from '../../labels.js'

/** Refusals that close a bid stream: no honest provider sends these. */
const BID_STREAM_FATAL = new Set<RefusalReason>(['bad-encoding', 'bad-schema', 'bad-signature', 'wrong-sender', 'too-large'])

/** Is the job taking answers: bidding, or queued (between and during its queued rounds)? */
function isCollecting (job: RequesterJob): boolean {
  return job.status === 'bidding' || job.status === 'queued'
}

/**
 * Can `provider` still win this job? Not once it has an attempt at it (a replica it ran, a failover
 * from it): its answers to later rounds (it is free again and bids) neither close a round nor count
 * as the bids the round waits for. Before, such a bid closed each round a replica was re-announced
 * for within its 50 ms window, so a provider that answered in 100 ms never got in (every bid was
 * "for an older offer") and the job failed after four rounds.
 */
function canWin (job: RequesterJob, provider: string): boolean {
  return !job.attempts.some(a => a.provider === provider)
}

/** This round's bids from providers that can still win the job. */
function liveBids (job: RequesterJob): number {
  let n = 0
  for (const b of job.bids.values()) if (canWin(job, b.provider)) n++
  return n
}

/** The requester's bidding desk: announcements out, answers in. */
/** An offer stream to one provider, and when we last wrote to it. */
interface OfferStream { channel: Promise<MessageChannel>, used: number }

export class Bidding {
  private readonly ctx: RequesterContext
  private readonly engineProviders = new Map<string, { peers: string[], at: number }>()
  /** encoded size of each offer we signed (measured once, for batching) */
  private readonly encodedSize = new WeakMap<object, number>()
  /** auctions announced and not yet closed */
  private openAuctions = 0
  /** offers announced in one turn go out as one gossip message */
  private readonly offerBatch: Batcher<Signed<Offer>>
  /**
   * Refused answers each provider may send us (late, unknown job, repeated, …), on its streams and
   * requests together: late answers happen to honest providers, a flood of them does not. A peer
   * past it has its bid streams closed and its requests refused unread.
   */
  private readonly refusedBy: KeyedRateLimit
  /** our long-lived offer stream to each provider we invited lately (opened on first use) */
  /** rounds that may wait for cheaper invitees never heard bid, over all jobs (INVITE_UNHEARD_WAITS_PER_SEC) */
  private readonly unheardWaits = new KeyedRateLimit(INVITE_UNHEARD_WAITS_PER_SEC, INVITE_UNHEARD_WAIT_BURST, 1)
  private readonly offerStreams = new Map<string, OfferStream>()
  /** providers that did not take an offer stream, until when we do not try again */
  private readonly noOfferStream = new LruCache<number>(MAX_OFFER_STREAMS)

  constructor (ctx: RequesterContext) {
    this.ctx = ctx
    const refusals = ctx.cfg.bidRefusals ?? { perSec: BID_STREAM_REFUSALS_PER_SEC, burst: BID_STREAM_REFUSALS_BURST }
    this.refusedBy = new KeyedRateLimit(refusals.perSec, refusals.burst, MAX_REFUSING_PEERS)
    // an offer alone goes out at once; while other auctions are open (we are busy), offers wait
    // a few ms so that one gossip round carries many. The auction whose offer starts a batch is
    // open already (counted before its offer is added): others are open past one. (`> 0` held
    // every lone open call OFFER_BATCH_DELAY_MS: 4 of a job's 30 ms on a 4-node mesh)
    this.offerBatch = new Batcher<Signed<Offer>>((items) => {
      void ctx.network.publish(JOBS_TOPIC, encodeBatch(items)).catch(err => { ctx.log.warn({ err, topic: JOBS_TOPIC }, 'publish failed') })
    }, { maxItems: MAX_BATCH_ITEMS, maxBytes: MAX_BATCH_BYTES, sizeOf: (m) => this.encodedSize.get(m) ?? MAX_BID_BYTES, delayMs: () => this.openAuctions > 1 ? OFFER_BATCH_DELAY_MS : 0 })
  }

  async start (): Promise<void> {
    const { network } = this.ctx
    await network.handle(BID_PROTOCOL, async (data, ctx) => {
      this.onAnswerBytes(data, ctx.from)
      return new Uint8Array(0)
    }, { maxRequestBytes: MAX_BID_BYTES, maxInboundStreams: 1024 })
    // the same answers over one long-lived stream per provider: no stream set-up per bid
    await network.handleChannel(BID_STREAM_PROTOCOL, async (channel) => { await this.readBidStream(channel) }, { maxMessageBytes: MAX_BID_BYTES * MAX_BATCH_ITEMS, maxInboundStreams: 4 })
  }

  async stop (): Promise<void> {
    for (const stream of this.offerStreams.values()) void stream.channel.then((ch) => { ch.abort(new Error('stopping')) }, () => {})
    this.offerStreams.clear()
    await this.ctx.network.unhandle(BID_PROTOCOL).catch(() => {})
    await this.ctx.network.unhandle(BID_STREAM_PROTOCOL).catch(() => {})
  }

  /**
   * An invitation, as a frame on our offer stream to this provider (opened on first use); by
   * request/response when the stream cannot be had (a provider of an older release: not tried
   * again for OFFER_STREAM_RETRY_MS). A stream unused for half the provider's idle limit is closed
   * here and a new one opened, so that we never write to a stream the provider is closing for
   * idling (an invitation in that frame would be lost).
   */
  private invite (peer: string, bytes: Uint8Array): void {
    const { network } = this.ctx
    const byRequest = (): void => { void network.request(peer, OFFER_PROTOCOL, bytes, { timeoutMs: 2000 }).catch(() => {}) }
    const until = this.noOfferStream.get(peer)
    if (until != null) {
      if (Date.now() < until) { byRequest(); return }
      this.noOfferStream.delete(peer)
    }
    let stream = this.offerStreams.get(peer)
    if (stream != null && Date.now() - stream.used > OFFER_STREAM_IDLE_MS / 2) {
      this.offerStreams.delete(peer)
      void stream.channel.then(async (ch) => { await ch.close() }).catch(() => {})
      stream = undefined
    }
    if (stream == null) {
      const opened = network.openChannel(peer, OFFER_STREAM_PROTOCOL, { maxMessageBytes: 1, signal: AbortSignal.timeout(3000) })
      stream = { channel: opened, used: Date.now() }
      this.offerStreams.set(peer, stream)
      if (this.offerStreams.size > MAX_OFFER_STREAMS) {
        const [oldest, old] = this.offerStreams.entries().next().value as [string, OfferStream]
        this.offerStreams.delete(oldest)
        void old.channel.then((ch) => { ch.abort(new Error('too many offer streams')) }, () => {})
      }
      const mine = stream
      const forget = (): void => { if (this.offerStreams.get(peer) === mine) this.offerStreams.delete(peer) }
      opened.then(async (ch) => {
        // the provider never writes; the loop ends when it closes the stream, and so do we
        try { for await (const _ of ch) { /* nothing */ } } catch {}
        forget()
        await ch.close().catch(() => {})
      }, (err: unknown) => {
        forget()
        if (err instanceof RemoteError && err.remoteCode === 'unsupported-protocol') {
          this.noOfferStream.set(peer, Date.now() + OFFER_STREAM_RETRY_MS)
        }
      })
    }
    const sent = stream
    sent.used = Date.now()
    sent.channel.then(async (ch) => { await ch.send(bytes) }).catch(() => {
      if (this.offerStreams.get(peer) === sent) this.offerStreams.delete(peer)
      byRequest()
    })
  }

  /**
   * One provider's bid stream: each frame carries the answers it produced in one turn,
   * `{ b: [signed, ...] }`. A frame that is not one, or an answer no honest provider sends
   * (bad schema or signature, signed by someone else), closes the stream; so does silence for
   * `bidStreamIdleMs` (the provider opens a new stream with its next answer).
   */
  private async readBidStream (channel: MessageChannel): Promise<void> {
    const { ctx } = this
    const idleMs = ctx.cfg.bidStreamIdleMs ?? BID_STREAM_IDLE_MS
    const it = channel[Symbol.asyncIterator]()
    const from = channel.remotePeer
    const close = (reason: string): void => {
      ctx.log.debug({ from, reason }, 'closing bid stream')
      channel.abort(new BidStreamClosedError(reason))
    }
    // a peer past its budget of refused answers (on any of its streams) is not read
    if (!this.refusedBy.has(from, 1)) { close('too many refused answers'); return }
    const precheck = (item: unknown): RefusedMessageError | undefined => this.precheck(item, from)
    while (true) {
      const next = await nextWithin(it, idleMs)
      if (next === 'idle') { close(`idle for ${idleMs} ms`); return }
      if (next.done === true) return
      let items: Array<Answer | RefusedMessageError>
      try {
        items = decodeAnswers(next.value, { precheck })
      } catch {
        ctx.count('bad-encoding')
        close('garbage frame')
        return
      }
      for (const item of items) {
        try {
          if (item instanceof RefusedMessageError) this.refuse(item.reason, item.message, from)
          this.onAnswer(item, from)
        } catch (err: any) {
          // refused and counted; late, unknown or repeated answers happen to honest providers
          if (err instanceof RefusedMessageError && BID_STREAM_FATAL.has(err.reason)) { close(`refused answer: ${err.reason}`); return }
          if (!this.refusedBy.take(from, 1)) { close('too many refused answers'); return }
        }
      }
    }
  }

  /** Sign, log and send the job's offer for its current round; the window then closes on its own. */
  async announce (job: RequesterJob): Promise<void> {
    const { ctx } = this
    const now = Date.now()
    const offer = sign(ctx.deps.signer, 'offer', {
      v: 1,
      jobId: job.id,
      requester: ctx.peerId,
      addrs: ctx.network.addresses().slice(0, 16),
      spec: job.spec,
      maxPrice: job.maxPrice,
      replicas: job.replicas,
      bidWindowMs: job.bidWindowMs,
      ts: now,
      expires: now + OFFER_TTL_MS,
      round: job.round,
      ...(job.constraints != null && job.constraints.length > 0 ? { constraints: job.constraints } : {})
    })
    const bytes = encodeSigned(offer)
    if (bytes.length > MAX_OFFER_BYTES) throw new InvalidInputError(`the job offer is ${bytes.length} bytes; the limit is ${MAX_OFFER_BYTES} (upload large inputs as blobs)`, 'offer-too-large')
    this.encodedSize.set(offer, bytes.length)
    job.offer = offer
    job.offerId = messageIdOfEncoded(bytes) // the encoding is at hand: no second encode
    job.announcedAt = now
    job.bids.clear()
    job.provenBids = 0
    job.declines.clear()
    // a queued job stays queued through its rounds (queue.ts) until one gets a bid
    const queued = job.status === 'queued'
    if (!queued) ctx.setStatus(job, 'bidding')
    // invite the providers of the book that can win it, or call the whole mesh when the book is thin
    const invitation = this.invitation(job)
    job.invited = invitation.mode === 'invite' ? new Set(invitation.peers) : undefined
    job.called = invitation.mode === 'open' && invitation.capable != null ? new Set(invitation.capable) : undefined
    const invitees = invitation.mode === 'invite' ? invitation.peers : undefined
    // log and announce at once: the records are written in the time it takes providers to answer,
    // and nothing is awarded before they are. A queued round's offer is logged only if it gets a
    // bid (at the close, before the answers and the award): a job waiting in the queue costs the
    // log nothing per round
    let logged: Promise<unknown> = queued ? Promise.resolve(job.logged) : Promise.all([job.logged, ctx.journal.offer(offer, invitees)])
    job.offerLogged = !queued
    logged.catch(() => {}) // awaited below, before the auction closes
    job.windowElapsed = false
    job.extended = false
    job.unheardWait = false
    const closed = new Promise<void>((resolve) => {
      job.closeBidding = resolve
      const windowEnd = (): void => {
        // an invitee (or a thin book's provider, in an open call) that advertised less than the
        // best bid so far is still to answer: wait for it, a window at a time, up to
        // INVITE_CHEAPER_WAIT_MS after the offer (price discovery: the cheapest, not the fastest;
        // a loaded provider answers in hundreds of ms)
        const waited = Date.now() - now
        if (waited < INVITE_CHEAPER_WAIT_MS && this.awaitingCheaper(job)) {
          job.extended = true
          job.biddingTimer = setTimeout(windowEnd, Math.min(job.bidWindowMs, INVITE_CHEAPER_WAIT_MS - waited))
          return
        }
        // the window is over; with no bid yet (or only bids from unproven providers while a proven
        // one has not answered) and providers still silent, wait a little longer for the first one
        // rather than declare no-bids, or hand the job to a swarm of fresh keys, on a slow network
        if (job.provenBids > 0 || this.allAnswered(job) || (liveBids(job) > 0 && !this.awaitingProven(job))) { resolve(); return }
        job.windowElapsed = true
        job.biddingTimer = setTimeout(resolve, Math.max(NO_BID_GRACE_MS, job.bidWindowMs))
      }
      job.biddingTimer = setTimeout(windowEnd, job.bidWindowMs)
    })
    this.openAuctions++
    // a queued round's announcement is told by the 'queued' event that follows it (one event per run of rounds)
    const emitAnnounced = (data: Record<string, unknown>): void => { if (queued) ctx.events.emit('job', { type: 'announced', ts: now, jobId: job.id, queued: true, ...data }); else ctx.emit(job, 'announced', data) }
    if (invitation.mode === 'invite') {
      emitAnnounced({ round: job.round, invited: invitation.peers.length })
      // straight to each invitee (ourselves through the loopback): nobody else works on this job
      for (const peer of invitation.peers) this.invite(peer, bytes)
    } else {
      const known = this.knownProviders(job)
      emitAnnounced({ round: job.round, knownProviders: known.size })
      ctx.log.debug({ jobId: job.id, reason: invitation.reason }, 'open call')
      // gossip to the mesh (ourselves included, through the loopback), direct to the providers the
      // book or the DHT names that are outside it
      const topicPeers = new Set(ctx.network.topicPeers(JOBS_TOPIC))
      this.offerBatch.add(offer)
      for (const peer of known) {
        if (topicPeers.has(peer) || peer === ctx.peerId) continue
        void ctx.network.request(peer, OFFER_PROTOCOL, bytes, { timeoutMs: 2000 }).catch(() => {})
      }
    }
    void closed.then(async () => {
      this.openAuctions--
      // a queued round with a bid: its offer goes into the log now, before its answers and the award
      if (!job.offerLogged && job.bids.size > 0 && isCollecting(job)) {
        job.offerLogged = true
        logged = Promise.all([logged, ctx.journal.offer(offer, invitees)])
      }
      await logged
      job.closeBidding = undefined
      clearTimeout(job.biddingTimer)
      if (!isCollecting(job)) return // cancelled meanwhile
      this.tallyInvitees(job)
      job.openNext = job.invited != null && job.bids.size === 0
      // queued before the award's record, and the ledger writes in order: the award is never
      // logged without the bids it lists. A queued round without a bid logs nothing: its declines
      // are kept for the job's end record
      if (job.offerLogged) this.logAnswers(job).catch(err => { ctx.log.error({ err, jobId: job.id }, 'logging the answers failed') })
      await ctx.drive(job, { type: 'closed' })
    }).catch(async (err) => {
      ctx.log.error({ err, jobId: job.id }, 'auction failed')
      await ctx.fail(job, `auction failed: ${err?.message ?? err}`).catch(() => {})
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
    await this.ctx.journal.answers(job.id, job.offerId as string, bids, declines)
  }

  /** Whom to offer this round to (requester/invite.ts decides; the book and standings are read here). */
  private invitation (job: RequesterJob): Invitation {
    const book = this.ctx.deps.book
    if (book == null) return { mode: 'open', reason: 'no provider book' }
    if (this.ctx.cfg.invitations === false) return { mode: 'open', reason: 'auction.invitations is off' }
    if (job.openNext === true) return { mode: 'open', reason: 'no invitee of the last round bid' }
    return chooseInvitees({ id: job.id, spec: job.spec, maxPrice: job.maxPrice, need: job.minBids, excluded: job.excluded, constraints: job.constraints }, {
      entries: book.current(),
      trustOf: (p) => this.ctx.trust(p),
      isFlagged: this.ctx.deps.isFlagged
    })
  }

  /**
   * After an invited round: an invitee that has not answered by INVITE_ANSWER_GRACE_MS after the
   * round closed gets a strike (book.ts). A late answer is no strike: slow is not silent.
   */
  private tallyInvitees (job: RequesterJob): void {
    const book = this.ctx.deps.book
    const asked = offeredFromBook(job)
    if (book == null || asked == null) return
    const silent = [...asked].filter(p => !job.heardFrom.has(p))
    if (silent.length === 0) return
    const t = setTimeout(() => { for (const p of silent) if (!job.heardFrom.has(p)) book.strike(p) }, INVITE_ANSWER_GRACE_MS)
    t.unref()
  }

  /** An invited round whose silent invitees cannot change who wins or the price (invite.ts `roundDecided`). */
  private decided (job: RequesterJob): boolean {
    const book = this.ctx.deps.book
    if (book == null || job.invited == null) return false
    const bids: Array<{ provider: string, price: number }> = []
    for (const b of job.bids.values()) if (canWin(job, b.provider)) bids.push({ provider: b.provider, price: b.price })
    const silent: string[] = []
    // every silent invitee, one that cannot win too: its ask could still set the price
    for (const p of job.invited) if (!job.bids.has(p) && !job.declines.has(p)) silent.push(p)
    return roundDecided({ bids, silent, minBids: job.minBids, replicas: job.replicas, probationUsed: job.attempts.some(a => a.trust !== 'proven'), trustOf: (p) => this.ctx.trust(p), entryOf: (p) => book.get(p) })
  }

  /**
   * Is a provider the book offered the job to (an invitee; a thin book's provider in an open call)
   * that advertised less than the best bid so far still to answer?
   */
  private awaitingCheaper (job: RequesterJob): boolean {
    const book = this.ctx.deps.book
    const asked = offeredFromBook(job)
    if (book == null || asked == null) return false
    let best = Infinity
    for (const b of job.bids.values()) if (canWin(job, b.provider)) best = Math.min(best, b.price)
    let unheard = false
    for (const p of asked) {
      if (job.heardFrom.has(p) || !canWin(job, p)) continue
      const entry = book.get(p)
      if (entry == null || effectiveAsk(entry) >= best) continue
      if (entry.observed != null || this.ctx.trust(p) === 'proven') return true
      unheard = true
    }
    // a cheaper invitee we never heard bid: its advert is all we have (INVITE_UNHEARD_WAITS_PER_SEC)
    if (!unheard) return false
    if (job.unheardWait !== true) job.unheardWait = this.unheardWaits.take('all', 1)
    return job.unheardWait
  }

  /**
   * Providers we expect an answer from: this round's invitees; for an open call, the jobs-topic
   * mesh (ourselves too, when we provide) and DHT engine providers.
   */
  knownProviders (job: RequesterJob): ReadonlySet<string> {
    if (job.invited != null) return job.invited
    const set = new Set(this.ctx.network.topicPeers(JOBS_TOPIC))
    // the book's providers for this job: a provider whose subscription to the jobs topic has not
    // reached us yet (a mesh a second old) still gets the offer and is waited for
    if (job.called != null) for (const p of job.called) set.add(p)
    const dht = this.engineProviders.get(job.spec.engine)
    if (dht != null) for (const p of dht.peers) set.add(p)
    if (dht == null || Date.now() - dht.at > 30_000) void this.refreshEngineProviders(job.spec.engine)
    return set
  }

  /** Engines each provider is known for (from the DHT). */
  engineMap (): ReadonlyMap<string, { peers: string[] }> {
    return this.engineProviders
  }

  private async refreshEngineProviders (engine: string): Promise<void> {
    this.engineProviders.set(engine, { peers: this.engineProviders.get(engine)?.peers ?? [], at: Date.now() })
    try {
      const peers = await this.ctx.network.findProviders(ENGINE_KEY_PREFIX + engine, { signal: AbortSignal.timeout(5000), limit: 100 })
      this.engineProviders.set(engine, { peers, at: Date.now() })
    } catch (err) {
      this.ctx.log.debug({ err, engine }, 'DHT provider lookup failed')
    }
  }

  private refuse (reason: RefusalReason, detail: string, from: string): never {
    this.ctx.count(reason)
    this.ctx.log.debug({ reason, from, detail }, 'refused message')
    throw new RefusedMessageError(reason, detail)
  }

  /** A single answer sent as a request, from `from` (the authenticated PeerId). */
  onAnswerBytes (data: Uint8Array, from: string): void {
    if (!this.refusedBy.has(from, 1)) this.refuse('wrong-state', `too many refused answers from ${from}`, from)
    try {
      let msg: Answer
      try {
        msg = decodeAnswer(data, { precheck: (item) => this.precheck(item, from) })
      } catch (err: any) {
        this.refuse(err instanceof RefusedMessageError ? err.reason : 'bad-schema', err.message, from)
      }
      this.onAnswer(msg, from)
    } catch (err) {
      // every refused answer counts against its sender's budget
      this.refusedBy.take(from, 1)
      throw err
    }
  }

  /**
   * What costs nothing first: an answer signed by another key than the peer that sent it, without
   * a job id, or for a job we do not have is refused before its schema and signature are checked
   * (a stranger repeating one signed decline for no job of ours made a requester spend more than a core).
   */
  private precheck (item: unknown, from: string): RefusedMessageError | undefined {
    const m = item as { signer?: unknown, domain?: unknown, payload?: { jobId?: unknown } } | null
    if (m?.signer !== from) return new RefusedMessageError('wrong-sender', `an answer signed by ${String(m?.signer).slice(0, 64)} sent by ${from}`)
    if (m.domain === DOMAIN.advert) return undefined
    const jobId = m.payload?.jobId
    if (typeof jobId !== 'string') return new RefusedMessageError('bad-schema', 'an answer without a job id')
    return this.ctx.jobs.has(jobId) ? undefined : new RefusedMessageError('unknown-job', `no job ${jobId.slice(0, 64)}`)
  }

  /**
   * A checked bid or decline: sender, job, round, state, and the bidder's standing. Or a provider's
   * capacity advert, sent to us because it turned our offers away and has a slot free now: into
   * the book as a gossiped one would (deps.directAdvert: the same replay and per-key rate checks).
   */
  onAnswer (answer: Answer, from: string): void {
    const { ctx } = this
    if (answer.signer !== from) this.refuse('wrong-sender', `${answer.domain} signed by ${answer.signer} but sent by ${from}`, from)
    if (isAdvertAnswer(answer)) { ctx.deps.directAdvert?.(answer); return }
    const msg = answer
    const kind = msg.domain === DOMAIN.decline ? 'decline' : 'bid'
    const job = ctx.jobs.get(msg.payload.jobId)
    if (job == null) this.refuse('unknown-job', `no job ${msg.payload.jobId}`, from)
    const provider = msg.signer
    // any answer from an invitee (or a thin book's provider called directly), even a late one,
    // counts as an answer (no strike in the book)
    if (offeredFromBook(job)?.has(provider) === true && !job.heardFrom.has(provider)) {
      job.heardFrom.add(provider)
      this.ctx.deps.book?.answered(provider)
    }
    if (job.bids.has(provider) || job.declines.has(provider)) this.refuse('replay', `second ${kind} from ${provider}`, from)
    if (msg.payload.offerId !== job.offerId) this.refuse('wrong-state', 'bid for an older offer', from)
    // a queued job takes answers only while one of its rounds is open
    if (job.status !== 'bidding' && (job.status !== 'queued' || job.closeBidding == null)) {
      // a bid for this round that came after it closed (decided without it): too late to count,
      // but the price it names still ranks its provider in the book, as an answer in time would
      if (kind === 'bid') ctx.deps.book?.observe(provider, (msg.payload as Bid).price)
      this.refuse('wrong-state', `job is ${job.status}`, from)
    }
    if (kind === 'decline') {
      const d = msg.payload as Decline
      job.declines.set(provider, { reason: d.reason, detail: d.detail, signed: msg as Signed<Decline> })
      if (d.reason === 'no-slot') ctx.deps.book?.full(provider)
      // a queued round's declines are summed up by its 'queued' event: a job queued for hours does not hold one event per decline
      if (job.status === 'queued') ctx.events.emit('job', { type: 'decline', ts: Date.now(), jobId: job.id, provider, reason: d.reason, detail: d.detail })
      else ctx.emit(job, 'decline', { provider, reason: d.reason, detail: d.detail })
    } else {
      const b = msg.payload as Bid
      if (b.price > job.maxPrice) this.refuse('wrong-state', `ask ${b.price} over maxPrice ${job.maxPrice}`, from)
      if (ctx.deps.isFlagged?.(provider) === true) this.refuse('wrong-state', 'provider is flagged for equivocation', from)
      if (ctx.deps.reputation.score(provider) < ctx.cfg.minReputation) this.refuse('wrong-state', 'provider reputation below the floor', from)
      this.checkLabels(job, b, from)
      addBid(ctx, job, msg as Signed<Bid>)
      ctx.deps.book?.observe(provider, b.price)
      if (countsTowardMinBids(ctx.trust(provider)) && canWin(job, provider)) job.provenBids++
      ctx.emit(job, 'bid', { provider, price: b.price, bids: job.bids.size })
    }
    // close early: every invitee answered, or the answers still to come cannot change the outcome;
    // for an open call, enough bids from proven providers (a swarm of fresh keys answering first
    // must not close the window on the proven ones) or every known capable provider answered; or
    // the first bid after the window. An invited round, and an open call to a thin book's
    // providers, wait for every one of them that advertised less than the bids in hand: the
    // cheapest wins, not the fastest.
    if ((job.invited == null && job.provenBids >= job.minBids && !this.awaitingCheaper(job)) || this.allAnswered(job) || this.decided(job) || (job.extended === true && !this.awaitingCheaper(job)) || (job.windowElapsed === true && (job.provenBids > 0 || (liveBids(job) > 0 && !this.awaitingProven(job))))) job.closeBidding?.()
  }

  /**
   * A bid on a constrained job must carry the provider's signed labels, and they must meet every
   * constraint: that signed claim is what the award rests on (the award lists the bid's digest, the
   * log holds the bid). When our book holds the provider's advert, the advert must say the same on
   * the keys the constraints name: a provider that tells the mesh one thing and a requester another
   * wins nothing on the claim it made only once. Either refusal is counted, not fatal to the stream
   * (a provider that relabelled itself on restart disagrees with its old advert until its new one
   * arrives).
   */
  private checkLabels (job: RequesterJob, b: Bid, from: string): void {
    const constraints = job.constraints
    if (constraints == null || constraints.length === 0) return
    const unmet = firstUnmet(b.labels, constraints)
    if (unmet != null) this.refuseBid(job, b.provider, 'unmet-constraint', `bid refused: its labels do not meet ${formatConstraint(unmet)}`, from)
    // a fresh advert only: an expired one is no longer what the provider says of itself
    const advert = this.ctx.deps.book?.get(b.provider)?.advert
    if (advert != null && advert.expires >= Date.now() && !agreeOn(advert.labels ?? {}, b.labels ?? {}, constraints)) {
      this.refuseBid(job, b.provider, 'label-mismatch', 'bid refused: its labels differ from the provider\'s advert', from)
    }
  }

  /** A bid refused on its labels counts as that provider's answer: a `constraint` decline (unsigned: its own words were a bid). */
  private refuseBid (job: RequesterJob, provider: string, reason: RefusalReason, detail: string, from: string): never {
    const clipped = detail.length > 500 ? detail.slice(0, 499) + '…' : detail
    job.declines.set(provider, { reason: 'constraint', detail: clipped })
    this.ctx.emit(job, 'decline', { provider, reason: 'constraint', detail: clipped })
    if (this.allAnswered(job)) job.closeBidding?.()
    this.refuse(reason, detail, from)
  }

  /** Is a provider we know, and trust, still to answer this round? */
  private awaitingProven (job: RequesterJob): boolean {
    for (const p of this.knownProviders(job)) if (canWin(job, p) && !job.bids.has(p) && !job.declines.has(p) && this.ctx.trust(p) === 'proven') return true
    return false
  }

  /**
   * Has every provider we expect an answer from answered? For invitations that is exact: nobody
   * else has the offer. For an open call it is only the providers we know of (gossip neighbours,
   * DHT): the offer also reaches providers further along the mesh, such as one behind NAT whose
   * answer comes through a relay, seconds later. So an open call short of `minBids` bids waits
   * for its window: before, a NAT'd requester whose only neighbour was a providing relay closed
   * every auction on the relay's bid, and the cheaper provider behind the other NAT never won.
   * A round in which every known provider declined closes at once (nothing to wait for against a
   * price; a queued job's rounds stay cheap and quick).
   */
  private allAnswered (job: RequesterJob): boolean {
    if (job.bids.size + job.declines.size === 0) return false
    const live = liveBids(job)
    if (job.invited == null && live > 0 && live < job.minBids) return false
    // a provider that already ran (or runs) this job cannot win it: it is not waited for
    let waitedFor = 0
    for (const p of this.knownProviders(job)) {
      if (!canWin(job, p)) continue
      waitedFor++
      if (!job.bids.has(p) && !job.declines.has(p)) return false
    }
    return waitedFor > 0
  }
}

/** The providers the book offered this round to directly: its invitees, or a thin book's capable providers in an open call. */
function offeredFromBook (job: RequesterJob): ReadonlySet<string> | undefined {
  return job.invited ?? job.called
}
