/**
 * Open audit over the mesh.
 *
 * Protocol
 * - Heads. Each node signs its head `{ seq, id, ts }` (domain
 *   `mercato/v1/head`) and publishes it on `mercato/heads/1` at start, when
 *   its log changes (at most once per `headDebounceMs`), HEAD_CONNECT_DELAY_MS
 *   after a peer connects before any head of ours reached a peer, and every
 *   `headIntervalMs` if the head moved since it was last sent (an unchanged
 *   head is sent again only every `HEAD_REFRESH_MS`, for peers that joined
 *   since). In a mesh of more than `HEAD_MESH_FREE` nodes (signers heard on
 *   the topic within `HEAD_REFRESH_MS`) the debounce and the interval
 *   stretch in proportion, up to `HEAD_REFRESH_MS`: each node then hears
 *   about as many heads a second as in a mesh of `HEAD_MESH_FREE`, not one
 *   per node per interval. The topic validator checks size,
 *   schema and signature: Reject for anything malformed or forged (the sender's
 *   score drops), Ignore for heads stamped too far in the future or our own.
 * - Log pages. `/mercato/log/1.0.0` answers `{ from, limit }` with a page of
 *   the server's own records, exactly as stored (canonical bytes), about
 *   LOG_PAGE_BYTES at most (always at least one record), and a freshly
 *   signed head. `audit(peer)` fetches the whole log page by page, verifies
 *   every signature and link, and checks the records against every signed
 *   head it holds for that peer: the log must reach the head's seq (else
 *   `truncated`) and hold the head's id there.
 * - Equivocation. Two validly signed items (heads or records) from one signer
 *   for the same seq with different ids prove the signer kept two histories.
 *   The node that sees them stores an `equivocation` record holding both,
 *   gossips the proof on `mercato/equivocations/1` (every receiver checks
 *   both signatures before accepting), and flags the signer. Flags are
 *   rebuilt from the log's equivocation records on start.
 *
 * Guarantees: a node cannot show different histories to different peers
 * without the contradiction becoming provable as soon as two of its signed
 * heads or records meet in one place. It can still withhold its log (an
 * audit then fails as unreachable or truncated), and a node that never
 * published a head can rewrite its log freely until it does.
 */
import { canonicalDecode, isPeerId, type Signer } from '../crypto/index.js'
import { InvalidInputError } from '../errors.js'
import { logger } from '../logger.js'
import type { Network, RequestContext, TopicVerdict } from '../p2p/network.js'
import { peerOfAddress } from '../p2p/index.js'
import {
  AUDIT_PAGE_LIMIT, EQUIVOCATIONS_TOPIC, HEAD_CONNECT_DELAY_MS, HEAD_DEBOUNCE_MS, HEAD_INTERVAL_MS, HEAD_MESH_FREE, HEAD_REFRESH_MS, HEAD_STRETCH_RECOUNT_MS, HEADS_PER_SIGNER, HEADS_TOPIC,
  INLINE_VERIFY_MAX, LOG_PAGE_BYTES, LOG_PROTOCOL, MAX_CLOCK_SKEW_MS, MAX_LOG_REQUEST_BYTES,
  MAX_FLAGGED_SIGNERS, MAX_LOG_RESPONSE_BYTES, MAX_PROOF_BYTES, MAX_TRACKED_SIGNERS, EQUIVOCATION_RECORD_BURST, EQUIVOCATION_RECORD_REFILL_MS
} from './constants.js'
import { InvalidLogPageError } from './errors.js'
import type { Ledger } from './ledger.js'
import { decodeRecord, type LedgerRecord, type VerifyReason } from './record.js'
import { defaultVerifyWorkers, verifyEncoded } from './verify.js'
import {
  checkHead, decodeHead, decodeLogRequest, encodeHead, encodeLogPage, encodeLogRequest, encodeProof,
  isValidProof, logPageSchema, parseProof, signHead, type EquivocationProof, type Evidence, type HeadPayload, type LogPageWire, type SignedHead
} from './wire.js'

/** Why an audit failed: a record-level reason, or one about the log as a whole. */
export type AuditReason = VerifyReason | 'truncated' | 'equivocation'

export interface AuditReport {
  peer: string
  /** true when every record verified and agreed with every signed head we hold */
  ok: boolean
  /** records that verified (the valid prefix) */
  count: number
  /** id of the last record that verified */
  headId: string | null
  /** the newest signed head checked against (null when the peer has published none and its log is empty) */
  head: HeadPayload | null
  firstBad?: { seq: number, reason: AuditReason }
  /** the peer is flagged for equivocation (now, after this audit) */
  flagged: boolean
  pages: number
  ms: number
}

export interface LogPage {
  signer: string
  from: number
  records: LedgerRecord[]
  head: SignedHead | null
  more: boolean
}

export interface FlagInfo {
  seq: number
  since: number
  /** our log holds an equivocation record of it (such flags are rebuilt at start and never evicted) */
  stored: boolean
}

export interface LedgerAuditInit {
  ledger: Ledger
  network: Network
  /** signs our heads (the same identity as the ledger's) */
  signer: Signer
  headIntervalMs?: number
  headDebounceMs?: number
  /** records asked for per page by audit() */
  pageLimit?: number
}

export interface LedgerAudit {
  start (): Promise<void>
  stop (): Promise<void>
  /** sign and gossip our current head now (undefined while our log is empty) */
  publishHead (): Promise<SignedHead | undefined>
  /** one page of a peer's log, decoded (throws InvalidLogPageError on a malformed page) */
  fetchLog (peer: string, from: number, limit: number, opts?: { signal?: AbortSignal }): Promise<LogPage>
  /** fetch and verify a peer's whole log (peer: PeerId or multiaddr) */
  audit (peer: string, opts?: { signal?: AbortSignal }): Promise<AuditReport>
  /** the newest signed head seen from a peer */
  latestHead (peer: string): SignedHead | undefined
  /** feed a signed head learned elsewhere (validated here); true when accepted */
  observeHead (head: unknown): boolean
  isFlagged (peerId: string): boolean
  flagged (): string[]
  /** called when a peer gets flagged; returns an unsubscribe function */
  onFlagged (listener: (peer: string, proof: EquivocationProof) => void): () => void
}

/** How much a node's head spacing stretches in a mesh of `nodes` heard on the heads topic (ourselves included). PURE. */
export function headStretch (nodes: number): number {
  return Math.max(1, nodes / HEAD_MESH_FREE)
}

/** A configured head spacing (debounce or interval) stretched by `stretch`, at most HEAD_REFRESH_MS (or the configured value, if longer). PURE. */
export function headSpacing (configured: number, stretch: number): number {
  return Math.min(Math.max(configured, HEAD_REFRESH_MS), Math.round(configured * stretch))
}

interface SignerHeads {
  latest?: SignedHead
  /** when we received it (our clock: the head's own ts is the signer's) */
  latestAt: number
  bySeq: Map<number, SignedHead>
}

/**
 * A bucket of `burst` tokens that earns one every `everyMs`, at `now`. A full bucket earns nothing:
 * its refill counts from when it was last below full, so a token spent after an idle hour is not
 * given back at once. PURE.
 */
export function refillBucket (b: { tokens: number, at: number }, now: number, burst: number, everyMs: number): { tokens: number, at: number } {
  if (b.tokens >= burst) return { tokens: burst, at: now }
  const earned = Math.floor((now - b.at) / everyMs)
  if (earned <= 0) return b
  const tokens = Math.min(burst, b.tokens + earned)
  return { tokens, at: tokens === burst ? now : b.at + earned * everyMs }
}

const log = logger('ledger:audit')

export class LedgerAuditService implements LedgerAudit {
  private readonly ledger: Ledger
  private readonly network: Network
  private readonly signer: Signer
  private readonly headIntervalMs: number
  private readonly headDebounceMs: number
  private readonly pageLimit: number
  private readonly heads = new Map<string, SignerHeads>()
  /** flagged signers, one proof each: in insertion order, so the first unstored one is the oldest */
  private readonly flags = new Map<string, FlagInfo>()
  /** equivocation records we may still write (EQUIVOCATION_RECORD_BURST, refilled over time) */
  private recordTokens = EQUIVOCATION_RECORD_BURST
  private tokensAt = Date.now()
  private readonly listeners = new Set<(peer: string, proof: EquivocationProof) => void>()
  private started = false
  private interval: NodeJS.Timeout | undefined
  private debounce: NodeJS.Timeout | undefined
  /** when the pending debounce fires */
  private debounceAt = 0
  /** when a head of ours last reached a peer: the spacing counts from there */
  private lastPublish = 0
  /** when we last tried (reached or not) */
  private lastAttempt = 0
  /** the stretch of our head spacing (see stretch), and when it was counted */
  private stretchValue = 1
  private stretchAt = -Infinity
  /** a signer we had not heard was heard since the stretch was counted */
  private signersGrew = false
  /** seq of the head last sent, and whether that send reached a peer */
  private lastPublishedSeq = -1
  private reached = false
  private offChange: (() => void) | undefined
  /**
   * A head that reached peers goes to newcomers with the next change or refresh, not one flood per
   * connection. One that reached nobody (sent before our first connection) goes out shortly after
   * a connection, whatever the spacing: it cost nobody anything, and waiting out a spacing of up to
   * minutes kept a new node's head from the mesh for that long.
   */
  private readonly onPeerConnect = (): void => { if (!this.reached) this.publishWithin(HEAD_CONNECT_DELAY_MS) }

  constructor (init: LedgerAuditInit) {
    this.ledger = init.ledger
    this.network = init.network
    this.signer = init.signer
    this.headIntervalMs = init.headIntervalMs ?? HEAD_INTERVAL_MS
    this.headDebounceMs = init.headDebounceMs ?? HEAD_DEBOUNCE_MS
    this.pageLimit = init.pageLimit ?? AUDIT_PAGE_LIMIT
    if (init.signer.peerId !== init.ledger.signer) throw new InvalidInputError('The audit signer must be the ledger\'s signer')
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    for (const r of await this.ledger.byType('equivocation')) {
      const peer = r.body.peer
      const seq = r.body.seq
      if (typeof peer === 'string' && typeof seq === 'number' && !this.flags.has(peer)) this.flags.set(peer, { seq, since: r.ts, stored: true })
    }
    this.network.subscribe(HEADS_TOPIC, (m) => this.decodeHeadMessage(m.data), (m) => { this.observeChecked(m.value) })
    this.network.subscribe(EQUIVOCATIONS_TOPIC, (m) => this.decodeProofMessage(m.data), (m) => { this.onProof(m.value) })
    await this.network.handle(LOG_PROTOCOL, async (req, ctx) => await this.serveLog(req, ctx), {
      maxRequestBytes: MAX_LOG_REQUEST_BYTES
    })
    this.network.addEventListener('peer:connect', this.onPeerConnect)
    this.offChange = this.ledger.onChange(() => { this.schedulePublish() })
    this.interval = setInterval(() => { this.onInterval() }, this.headIntervalMs)
    this.interval.unref()
    await this.publishHead()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    clearInterval(this.interval)
    clearTimeout(this.debounce)
    this.debounce = undefined
    this.offChange?.()
    this.network.removeEventListener('peer:connect', this.onPeerConnect)
    this.network.unsubscribe(HEADS_TOPIC)
    this.network.unsubscribe(EQUIVOCATIONS_TOPIC)
    await this.network.unhandle(LOG_PROTOCOL)
  }

  // -------------------------------------------------------------- heads out

  /**
   * How much longer than configured our heads wait between publishes: 1 up to HEAD_MESH_FREE
   * signers heard on the topic lately, then in proportion to them (the topic's cost to each node
   * stays flat as the mesh grows). Counted over the heads we hold, at most once per interval, and
   * again (at most once per HEAD_STRETCH_RECOUNT_MS) when signers we had not heard appear: a node
   * counts first at its start, when it has heard almost nobody, and a count kept for a whole
   * interval then sent its second head after the unstretched spacing (30 s in a mesh of 40, not 80).
   */
  private stretch (now = Date.now()): number {
    const fresh = now - this.stretchAt < (this.signersGrew ? HEAD_STRETCH_RECOUNT_MS : this.headIntervalMs)
    if (fresh) return this.stretchValue
    this.signersGrew = false
    let heard = 0
    for (const t of this.heads.values()) if (t.latest != null && now - t.latestAt < HEAD_REFRESH_MS) heard++
    this.stretchAt = now
    this.stretchValue = headStretch(heard + 1)
    return this.stretchValue
  }

  private spacing (configured: number): number {
    return headSpacing(configured, this.stretch())
  }

  /**
   * At most one publish per debounce window, the last change always published. Until a head of
   * ours has reached a peer, a change waits only HEAD_CONNECT_DELAY_MS after our last try.
   */
  private schedulePublish (): void {
    const now = Date.now()
    const at = this.reached ? this.lastPublish + this.spacing(this.headDebounceMs) : this.lastAttempt + HEAD_CONNECT_DELAY_MS
    this.publishWithin(Math.max(0, at - now))
  }

  /** Publish in `ms` at the latest: a pending publish due later is brought forward. */
  private publishWithin (ms: number): void {
    if (!this.started) return
    const at = Date.now() + ms
    if (this.debounce != null) {
      if (this.debounceAt <= at) return
      clearTimeout(this.debounce)
    }
    this.debounceAt = at
    this.debounce = setTimeout(() => {
      this.debounce = undefined
      void this.publishHead()
    }, ms)
    this.debounce.unref()
  }

  /** the periodic head: only when it moved, when the last send reached nobody, or once per refresh */
  private onInterval (): void {
    if (!this.reached) { void this.publishHead(); return }
    const since = Date.now() - this.lastPublish
    if (this.ledger.head().seq !== this.lastPublishedSeq) {
      // a moved head waits out the spacing, stretched in a large mesh (the debounce sends it then)
      if (since >= this.spacing(this.headIntervalMs)) void this.publishHead()
      else this.schedulePublish()
      return
    }
    if (since >= HEAD_REFRESH_MS) void this.publishHead()
  }

  private currentHead (): SignedHead | undefined {
    const h = this.ledger.head()
    if (h.seq < 0 || h.id == null) return undefined
    return signHead(this.signer, { seq: h.seq, id: h.id, ts: Date.now() })
  }

  async publishHead (): Promise<SignedHead | undefined> {
    const head = this.currentHead()
    if (head == null || !this.started) return head
    const now = Date.now()
    this.lastAttempt = now
    this.lastPublishedSeq = head.payload.seq
    try {
      this.reached = await this.network.publish(HEADS_TOPIC, encodeHead(head)) > 0
    } catch (err) {
      this.reached = false
      log.debug({ err }, 'head publish failed')
    }
    if (this.reached) this.lastPublish = now
    return head
  }

  // -------------------------------------------------------------- heads in

  private decodeHeadMessage (data: Uint8Array): TopicVerdict<SignedHead> {
    let head: SignedHead
    try { head = decodeHead(data) } catch { return { result: 'reject' } }
    if (head.signer === this.signer.peerId) return { result: 'ignore' }
    if (head.payload.ts > Date.now() + MAX_CLOCK_SKEW_MS) return { result: 'ignore' }
    return { result: 'accept', value: head }
  }

  observeHead (value: unknown): boolean {
    let head: SignedHead
    try { head = checkHead(value) } catch { return false }
    return this.observeChecked(head)
  }

  /** A head whose schema and signature are checked. */
  private observeChecked (head: SignedHead): boolean {
    const peer = head.signer
    if (peer === this.signer.peerId) return false
    let t = this.heads.get(peer)
    if (t == null) {
      t = { bySeq: new Map(), latestAt: 0 }
      this.signersGrew = true
      if (this.heads.size >= MAX_TRACKED_SIGNERS) this.heads.delete(this.heads.keys().next().value as string)
    } else {
      this.heads.delete(peer) // re-insert: most recently seen last
    }
    this.heads.set(peer, t)
    const seq = head.payload.seq
    const known = t.bySeq.get(seq)
    if (known != null && known.payload.id !== head.payload.id) {
      void this.equivocation(peer, seq, { kind: 'head', head: known }, { kind: 'head', head })
    } else if (known == null) {
      t.bySeq.set(seq, head)
      if (t.bySeq.size > HEADS_PER_SIGNER) {
        // forget the lowest seq
        let min = Infinity
        for (const s of t.bySeq.keys()) if (s < min) min = s
        t.bySeq.delete(min)
      }
    }
    const latest = t.latest
    if (latest == null || seq > latest.payload.seq || (seq === latest.payload.seq && head.payload.ts > latest.payload.ts)) t.latest = head
    t.latestAt = Date.now()
    return true
  }

  latestHead (peer: string): SignedHead | undefined {
    return this.heads.get(peer)?.latest
  }

  // -------------------------------------------------------------- equivocation

  /**
   * A proof on the topic: a signer already flagged, or one we could not store a record of now, is
   * ignored before any signature is checked (neither stored nor forwarded: each receiver of a
   * forwarded proof writes a record of it); proofs against our own key are always checked.
   */
  private decodeProofMessage (data: Uint8Array): TopicVerdict<EquivocationProof> {
    let p: EquivocationProof
    try { p = parseProof(data) } catch { return { result: 'reject' } }
    if (p.peer !== this.signer.peerId && (this.flags.has(p.peer) || this.refillTokens() < 1)) return { result: 'ignore' }
    return isValidProof(p) ? { result: 'accept', value: p } : { result: 'reject' }
  }

  /** Equivocation records we may write now (the bucket refilled up to now). */
  private refillTokens (now = Date.now()): number {
    const b = refillBucket({ tokens: this.recordTokens, at: this.tokensAt }, now, EQUIVOCATION_RECORD_BURST, EQUIVOCATION_RECORD_REFILL_MS)
    this.recordTokens = b.tokens
    this.tokensAt = b.at
    return b.tokens
  }

  /** A flag for `peer`, within MAX_FLAGGED_SIGNERS: the oldest flag without a record of ours makes room. */
  private flag (peer: string, info: FlagInfo): void {
    if (this.flags.size >= MAX_FLAGGED_SIGNERS) {
      for (const [p, f] of this.flags) {
        if (!f.stored) { this.flags.delete(p); break }
      }
    }
    this.flags.set(peer, info)
  }

  private onProof (p: EquivocationProof): void {
    if (p.peer === this.signer.peerId) {
      // someone holds two histories signed with our key (a restored backup, a cloned data dir, a stolen key)
      log.error({ seq: p.seq }, 'equivocation proof against this node: two different records or heads signed with our key')
      return
    }
    // gossip already carries it on: no re-publish
    void this.equivocation(p.peer, p.seq, p.a, p.b, false)
  }

  /**
   * Two signed, contradicting items of `peer` for `seq`: flag it (once: one proof per signer is
   * enough), and while the record budget lasts store the proof in our log and gossip it.
   */
  private async equivocation (peer: string, seq: number, a: Evidence, b: Evidence, gossip = true): Promise<void> {
    if (this.flags.has(peer)) return
    const stored = this.refillTokens() >= 1
    this.flag(peer, { seq, since: Date.now(), stored })
    const proof: EquivocationProof = { v: 1, peer, seq, a, b }
    for (const l of this.listeners) {
      try { l(peer, proof) } catch (err) { log.warn({ err }, 'flag listener threw') }
    }
    if (!stored) {
      // keys are free: a flood of throwaway keys' proofs costs no record, no line above debug
      log.debug({ peer, seq }, 'equivocation: peer flagged in memory; record budget spent, proof not stored')
      return
    }
    this.recordTokens--
    log.warn({ peer, seq, a: a.kind, b: b.kind }, 'equivocation: two signed histories for one seq; peer flagged')
    try {
      await this.ledger.append('equivocation', { peer, seq, a, b })
    } catch (err) {
      log.error({ err, peer, seq }, 'could not store the equivocation proof')
    }
    if (gossip && this.started) {
      const data = encodeProof(proof)
      if (data.length > MAX_PROOF_BYTES) {
        log.warn({ peer, seq, bytes: data.length }, 'equivocation proof too large to gossip; kept in the log')
        return
      }
      try { await this.network.publish(EQUIVOCATIONS_TOPIC, data) } catch (err) { log.debug({ err }, 'proof publish failed') }
    }
  }

  isFlagged (peerId: string): boolean {
    return this.flags.has(peerId)
  }

  flagged (): string[] {
    return [...this.flags.keys()]
  }

  onFlagged (listener: (peer: string, proof: EquivocationProof) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  // -------------------------------------------------------------- log protocol

  private async serveLog (data: Uint8Array, _ctx: RequestContext): Promise<Uint8Array> {
    const req = decodeLogRequest(data)
    if (req.signer != null && req.signer !== this.signer.peerId) throw new InvalidInputError('This node serves only its own log', 'not-served')
    const records = await this.ledger.rangeEncoded(req.from, req.limit, LOG_PAGE_BYTES)
    const head = this.currentHead() ?? null
    const more = head != null && req.from + records.length <= head.payload.seq
    return encodeLogPage({ signer: this.signer.peerId, from: req.from, records, head, more })
  }

  /** one raw page: envelope checked, records left as bytes */
  private async fetchPage (peer: string, from: number, limit: number, signal?: AbortSignal): Promise<LogPageWire> {
    const res = await this.network.request(peer, LOG_PROTOCOL, encodeLogRequest({ signer: peer, from, limit }), {
      signal, maxResponseBytes: MAX_LOG_RESPONSE_BYTES
    })
    let value: unknown
    try { value = canonicalDecode(res) } catch { throw new InvalidLogPageError('Log page is not canonical DAG-CBOR') }
    const parsed = logPageSchema.safeParse(value)
    if (!parsed.success) throw new InvalidLogPageError('Log page does not match its schema')
    const page = parsed.data
    if (page.signer !== peer) throw new InvalidLogPageError('Log page is for another signer')
    if (page.from !== from) throw new InvalidLogPageError('Log page starts at the wrong seq')
    if (page.records.length > limit) throw new InvalidLogPageError('Log page holds more records than asked for')
    let head: SignedHead | null = null
    if (page.head != null) {
      try { head = checkHead(page.head) } catch { throw new InvalidLogPageError('Log page carries an invalid head') }
      if (head.signer !== peer) throw new InvalidLogPageError('Log page carries another signer\'s head')
    }
    return { signer: page.signer, from: page.from, records: page.records, head, more: page.more }
  }

  async fetchLog (peer: string, from: number, limit: number, opts: { signal?: AbortSignal } = {}): Promise<LogPage> {
    const page = await this.fetchPage(peer, from, limit, opts.signal)
    if (page.head != null) this.observeHead(page.head)
    const records: LedgerRecord[] = []
    for (const b of page.records) {
      const r = decodeRecord(b)
      if (r == null) throw new InvalidLogPageError(`Record ${from + records.length} does not decode`)
      records.push(r)
    }
    return { signer: page.signer, from: page.from, records, head: page.head, more: page.more }
  }

  /**
   * The PeerId to audit: a PeerId as is, a multiaddr ending in /p2p/<PeerId> dialled first (as
   * `POST /v1/peers` takes it). Anything else, and this node itself, is the caller's mistake
   * (invalid-peer), not an unreachable peer.
   */
  private async resolvePeer (peer: string, signal?: AbortSignal): Promise<string> {
    const id = peer.startsWith('/') ? peerOfAddress(peer) : peer
    if (id == null || !isPeerId(id)) throw new InvalidInputError(`Not a PeerId or a multiaddr ending in /p2p/<PeerId>: ${peer.slice(0, 256)}`, 'invalid-peer')
    if (id === this.signer.peerId) throw new InvalidInputError('That is this node: its own log is checked by GET /v1/ledger/verify', 'invalid-peer')
    if (peer.startsWith('/')) return await this.network.dial(peer, { signal })
    return id
  }

  async audit (target: string, opts: { signal?: AbortSignal } = {}): Promise<AuditReport> {
    const t0 = Date.now()
    const peer = await this.resolvePeer(target, opts.signal)
    let pages = 0
    let fetched = 0
    let conflict: { seq: number } | undefined
    // the first page brings a fresh head; every head we hold is checked
    const first = await this.fetchPage(peer, 0, this.pageLimit, opts.signal)
    if (first.head != null) this.observeHead(first.head)
    const known = (): Map<number, SignedHead> => this.heads.get(peer)?.bySeq ?? new Map()
    const target0 = this.latestHead(peer)?.payload.seq ?? -1

    const self = this
    async function * pagesOf (): AsyncIterable<Uint8Array[]> {
      let page: LogPageWire = first
      while (true) {
        pages++
        fetched += page.records.length
        if (page.records.length > 0) yield page.records
        if (!page.more || page.records.length === 0) return
        page = await self.fetchPage(peer, page.from + page.records.length, self.pageLimit, opts.signal)
        if (page.head != null) self.observeHead(page.head)
      }
    }

    const report = await verifyEncoded(pagesOf(), peer, {
      signal: opts.signal,
      workers: target0 > INLINE_VERIFY_MAX ? defaultVerifyWorkers() : 0,
      onChunk: (checks, chunk) => {
        if (conflict != null) return
        const heads = known()
        for (let i = 0; i < checks.length; i++) {
          const c = checks[i]
          const h = c.seq != null ? heads.get(c.seq) : undefined
          if (h == null || c.id == null || h.payload.id === c.id) continue
          // a chained, validly signed record and a signed head disagree on this seq
          const record = decodeRecord(chunk[i])
          if (record != null) void this.equivocation(peer, c.seq as number, { kind: 'head', head: h }, { kind: 'record', record })
          conflict = { seq: c.seq as number }
          return
        }
      }
    })

    const latest = this.latestHead(peer)
    const out: AuditReport = {
      peer,
      ok: report.ok,
      count: report.count,
      headId: report.headId,
      head: latest?.payload ?? null,
      flagged: false,
      pages,
      ms: 0
    }
    if (report.firstBad != null) {
      out.firstBad = report.firstBad
    } else if (conflict != null) {
      out.ok = false
      out.firstBad = { seq: conflict.seq, reason: 'equivocation' }
    } else if (latest != null && report.count - 1 < latest.payload.seq) {
      out.ok = false
      out.firstBad = { seq: report.count, reason: 'truncated' }
    }
    if (!out.ok) log.info({ peer, fetched, firstBad: out.firstBad }, 'audit failed')
    out.flagged = this.isFlagged(peer)
    out.ms = Date.now() - t0
    return out
  }
}

export function createLedgerAudit (init: LedgerAuditInit): LedgerAudit {
  return new LedgerAuditService(init)
}
