/**
 * The local log: group commit over a {@link LedgerBackend}.
 *
 * Keys:
 *   r!<seq, 14 hex digits>      → canonical bytes of the record
 *   i!<record id>               → seq (decimal, utf8)
 *   j!<jobId>\0<seq hex>        → empty (index of body.jobId)
 *   t!<type>\0<seq hex>         → empty (index of the types in TYPE_INDEXED)
 *   m!types                     → the TYPE_INDEXED list the t! index was built for
 *
 * Appends are serialised: `append()` checks the body (embedded signatures
 * included) and queues it, in call order. The pump signs queued records in
 * batches of at most MAX_BATCH_RECORDS, each linking to the record before it,
 * and writes one batch at a time; while a batch is being written the next
 * one is signed (group commit with a two-stage pipeline). A record and its
 * index entries are always in the same batch, and batches are atomic, so the
 * stored log is always a contiguous, linked prefix of what was appended.
 * `append()` resolves once its batch is written. If a write fails, that batch
 * and the one signed behind it (which links to it) are rejected; the queue
 * continues from the last committed record.
 */
import type { Signer } from '../crypto/index.js'
import { logger } from '../logger.js'
import type { BackendOp, LedgerBackend } from './backend.js'
import { MemoryBackend } from './backend.js'
import { LevelBackend } from './level-backend.js'
import {
  INLINE_VERIFY_MAX, MAX_BATCH_RECORDS, MAX_JOB_ID_LENGTH, MAX_RANGE_LIMIT, MAX_RECORD_BYTES,
  TAIL_CHECK_RECORDS, VERIFY_CHUNK_RECORDS
} from './constants.js'
import { InvalidRecordError, LedgerClosedError, LedgerCorruptError } from './errors.js'
import {
  checkRecordBytes, createRecord, decodeRecord, isPlainMap, isRecordType, recordId, verifyEmbedded,
  type LedgerRecord, type RecordType, type VerifyReport
} from './record.js'
import { ChainChecker, defaultVerifyWorkers, verifyEncoded } from './verify.js'

const log = logger('ledger')

const SEQ_DIGITS = 14 // 2^53 in hex has 14 digits
export const REC_PREFIX = 'r!'
const REC_END = 'r"'
const ID_PREFIX = 'i!'
const JOB_PREFIX = 'j!'
const TYPE_PREFIX = 't!'
const TYPES_META_KEY = 'm!types'

export function seqHex (seq: number): string {
  return seq.toString(16).padStart(SEQ_DIGITS, '0')
}
/** Storage key of record `seq` (exported for tests that tamper with storage). */
export function recordKey (seq: number): string {
  return REC_PREFIX + seqHex(seq)
}
export function idKey (id: string): string {
  return ID_PREFIX + id
}
function jobKey (jobId: string, seq: number): string {
  return `${JOB_PREFIX}${jobId}\0${seqHex(seq)}`
}
function typeKey (type: string, seq: number): string {
  return `${TYPE_PREFIX}${type}\0${seqHex(seq)}`
}
function seqFromIndexKey (key: string): number {
  return parseInt(key.slice(key.length - SEQ_DIGITS), 16)
}

const EMPTY = new Uint8Array(0)
const enc = new TextEncoder()
const dec = new TextDecoder()

export interface LedgerHead { seq: number, id: string | null, count: number }

export interface Ledger {
  /** PeerId of the log's owner */
  readonly signer: string
  /**
   * Append a record. Every embedded signed message in `body` (any nested value
   * shaped like a Signed) is verified first (InvalidEvidenceError otherwise).
   * `body.jobId` (a string) is indexed. Resolves once the record is stored.
   */
  append (type: RecordType, body: Record<string, unknown>): Promise<{ record: LedgerRecord, id: string }>
  get (seq: number): Promise<LedgerRecord | undefined>
  getById (id: string): Promise<LedgerRecord | undefined>
  range (from: number, limit: number): Promise<LedgerRecord[]>
  /** canonical bytes of records from `from`, at most `limit` records and about `maxBytes` (at least one record) */
  rangeEncoded (from: number, limit: number, maxBytes?: number): Promise<Uint8Array[]>
  byJob (jobId: string): Promise<LedgerRecord[]>
  /** records of one type, oldest first, from seq `from` (`limit` newest when `last` is set) */
  byType (type: RecordType, opts?: { limit?: number, last?: boolean, from?: number }): Promise<LedgerRecord[]>
  /** every record of one type, oldest first, read through the type index where there is one */
  ofType (type: RecordType): AsyncIterable<LedgerRecord>
  /** the last stored record; seq -1 when empty */
  head (): LedgerHead
  /** verify the whole stored log (streaming; worker threads for long logs) */
  verify (opts?: { signal?: AbortSignal, workers?: number }): Promise<VerifyReport>
  /** called after each committed batch with the new head; returns an unsubscribe function */
  onChange (listener: (head: LedgerHead) => void): () => void
  close (): Promise<void>
}

export interface LedgerInit {
  /** signs records (the node's identity); a bare `{ peerId }` is enough with `readOnly` */
  signer: Signer | { peerId: string }
  /** LevelDB directory; absent = in memory (unless `backend` is given) */
  path?: string
  /** a storage backend to use instead of `path` */
  backend?: LedgerBackend
  /** fsync every batch (LevelDB): survives power loss, not only process death (default false) */
  sync?: boolean
  /**
   * Read-only: no tail check and no appends. For inspecting (and verifying) a
   * log that may be damaged: `mercato ledger verify|show|export`.
   */
  readOnly?: boolean
}

interface Request {
  type: RecordType
  body: Record<string, unknown>
  resolve: (v: { record: LedgerRecord, id: string }) => void
  reject: (err: unknown) => void
}

interface Built {
  entries: Array<{ record: LedgerRecord, id: string, resolve: Request['resolve'], reject: Request['reject'] }>
  ops: BackendOp[]
}

/**
 * Types indexed by `t!` keys: the ones a node reads on start (its jobs for
 * restart recovery; receipts, handovers, mismatches for standing;
 * equivocations). At most two `job` and two `receipt` records per job, so
 * the index costs a few percent of append throughput, not the ≈ 10% of an
 * index on every record. Changing this list rebuilds the index on the next
 * writable open (see `m!types`).
 */
const TYPE_INDEXED = new Set<string>(['job', 'receipt', 'handover', 'mismatch', 'equivocation'])
const TYPE_INDEX_VERSION = [...TYPE_INDEXED].sort().join(',')
/** Index entries written per batch while rebuilding the type index of an older log. */
const REINDEX_BATCH_OPS = 5_000

export class LedgerImpl implements Ledger {
  readonly signer: string
  private readonly key: Signer | undefined
  private readonly backend: LedgerBackend
  private readonly readOnly: boolean
  private committed: { seq: number, id: string | null } = { seq: -1, id: null }
  private tip: { seq: number, id: string | null } = { seq: -1, id: null }
  /** appends not yet signed */
  private queue: Request[] = []
  /** a signed batch waiting for the write in flight */
  private ready: Built | undefined
  private writing: Promise<void> | undefined
  private pumpScheduled = false
  private closed = false
  private readonly listeners = new Set<(head: LedgerHead) => void>()
  /** the t! index covers TYPE_INDEXED (false only for a read-only open of a log from an older version) */
  private typeIndexCurrent = true

  constructor (signer: Signer | { peerId: string }, backend: LedgerBackend, readOnly = false) {
    this.key = 'sign' in signer ? signer : undefined
    this.signer = signer.peerId
    this.backend = backend
    this.readOnly = readOnly || this.key == null
  }

  /** open storage, find the head and check the tail */
  async open (): Promise<void> {
    await this.backend.open()
    try {
      if (this.readOnly) await this.loadHead()
      else await this.checkTail()
      await this.checkTypeIndex()
    } catch (err) {
      await this.backend.close()
      throw err
    }
    this.tip = { ...this.committed }
  }

  /**
   * A log written by an older version has a t! index for fewer types:
   * rebuild it (one pass over the log, once) when open for writing; a
   * read-only open falls back to scanning for those types instead.
   */
  private async checkTypeIndex (): Promise<void> {
    const meta = await this.backend.get(TYPES_META_KEY)
    if (meta != null && dec.decode(meta) === TYPE_INDEX_VERSION) return
    if (this.readOnly) { this.typeIndexCurrent = false; return }
    const started = Date.now()
    let ops: BackendOp[] = []
    let entries = 0
    for await (const [k, v] of this.backend.iterate({ gte: REC_PREFIX, lt: REC_END })) {
      const r = decodeRecord(v)
      if (r == null || !TYPE_INDEXED.has(r.type)) continue
      ops.push({ type: 'put', key: typeKey(r.type, seqFromIndexKey(k)), value: EMPTY })
      if (ops.length >= REINDEX_BATCH_OPS) { await this.backend.batch(ops); entries += ops.length; ops = [] }
    }
    entries += ops.length
    ops.push({ type: 'put', key: TYPES_META_KEY, value: enc.encode(TYPE_INDEX_VERSION) })
    await this.backend.batch(ops)
    if (this.committed.seq >= 0) log.info({ types: TYPE_INDEX_VERSION, entries, ms: Date.now() - started }, 'ledger: type index rebuilt for this version')
  }

  private async lastEntries (n: number): Promise<Array<[string, Uint8Array]>> {
    const out: Array<[string, Uint8Array]> = []
    for await (const e of this.backend.iterate({ gte: REC_PREFIX, lt: REC_END, reverse: true, limit: n })) out.push(e)
    return out.reverse()
  }

  private async loadHead (): Promise<void> {
    const [last] = await this.lastEntries(1)
    if (last == null) return
    const seq = seqFromIndexKey(last[0])
    const c = checkRecordBytes(last[1], this.signer)
    this.committed = { seq, id: c.id ?? null }
  }

  /**
   * The tail check. Trailing records that are unreadable or whose signature
   * fails are a torn tail (what an interrupted write leaves on a store whose
   * batches are not atomic): they are deleted, with one warning. Anything else
   * wrong in the last TAIL_CHECK_RECORDS records (a gap, a broken link, a
   * record by another key, a bad record followed by good ones) is not a torn
   * write but damage or tampering: opening is refused with LedgerCorruptError.
   */
  private async checkTail (): Promise<void> {
    const window = await this.lastEntries(TAIL_CHECK_RECORDS)
    if (window.length === 0) return
    const checks = window.map(([k, b]) => ({ keySeq: seqFromIndexKey(k), key: k, bytes: b, c: checkRecordBytes(b, this.signer) }))
    let cut = checks.length
    while (cut > 0) {
      const { c, keySeq } = checks[cut - 1]
      const torn = c.problem === 'bad-encoding' || c.problem === 'bad-signature' || c.seq !== keySeq
      if (!torn) break
      cut--
    }
    if (cut < checks.length) {
      const torn = checks.slice(cut)
      const ops: BackendOp[] = []
      for (const t of torn) {
        ops.push({ type: 'del', key: t.key })
        const r = decodeRecord(t.bytes)
        if (r != null) {
          ops.push({ type: 'del', key: idKey(recordId(r)) })
          if (typeof r.body.jobId === 'string') ops.push({ type: 'del', key: jobKey(r.body.jobId, r.seq) })
          ops.push({ type: 'del', key: typeKey(r.type, r.seq) })
        }
      }
      await this.backend.batch(ops)
      log.warn({ from: torn[0].keySeq, count: torn.length, reason: torn[0].c.problem ?? 'gap' },
        `ledger: torn tail truncated (${torn.length} record(s) from seq ${torn[0].keySeq})`)
    }
    const kept = checks.slice(0, cut)
    if (kept.length === 0) {
      // the whole window was torn; anything before it is checked by the next open / verify
      await this.loadHead()
      if (this.committed.seq >= 0) {
        // records remain before the window: they must end in a good record
        const c = checkRecordBytes((await this.lastEntries(1))[0][1], this.signer)
        if (c.problem != null) throw this.corrupt(this.committed.seq, c.problem)
      }
      return
    }
    const first = kept[0]
    const checker = new ChainChecker(first.keySeq, first.c.prev ?? null)
    for (const k of kept) {
      if (!checker.push(k.c)) {
        const bad = checker.firstBad as { seq: number, reason: 'gap' }
        throw this.corrupt(bad.seq, bad.reason)
      }
    }
    const last = kept[kept.length - 1]
    this.committed = { seq: last.keySeq, id: last.c.id ?? null }
  }

  private corrupt (seq: number, reason: LedgerCorruptError['reason']): LedgerCorruptError {
    const err = new LedgerCorruptError(seq, reason)
    log.error({ seq, reason }, `ledger: refusing to open, the tail fails verification at seq ${seq} (${reason}); run \`mercato ledger verify\``)
    return err
  }

  head (): LedgerHead {
    return { seq: this.committed.seq, id: this.committed.id, count: this.committed.seq + 1 }
  }

  onChange (listener: (head: LedgerHead) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  async append (type: RecordType, body: Record<string, unknown>): Promise<{ record: LedgerRecord, id: string }> {
    if (this.closed) throw new LedgerClosedError()
    if (this.readOnly || this.key == null) throw new LedgerClosedError('Ledger is open read-only')
    if (!isRecordType(type)) throw new InvalidRecordError(`Unknown record type: ${String(type)}`)
    if (!isPlainMap(body)) throw new InvalidRecordError('Record body must be a map')
    const jobId = body.jobId
    if (typeof jobId === 'string' && (jobId.length > MAX_JOB_ID_LENGTH || jobId.includes('\0'))) {
      throw new InvalidRecordError('body.jobId is too long or holds a NUL character')
    }
    verifyEmbedded(body)
    return await new Promise((resolve, reject) => {
      this.queue.push({ type, body, resolve, reject })
      this.schedulePump()
    })
  }

  private schedulePump (): void {
    if (this.pumpScheduled) return
    this.pumpScheduled = true
    queueMicrotask(() => { this.pumpScheduled = false; this.pump() })
  }

  /** sign the next batch from the queue (synchronously, in queue order) */
  private build (): Built | undefined {
    const key = this.key as Signer
    const reqs = this.queue.splice(0, MAX_BATCH_RECORDS)
    if (reqs.length === 0) return undefined
    const built: Built = { entries: [], ops: [] }
    for (const req of reqs) {
      const seq = this.tip.seq + 1
      let made: ReturnType<typeof createRecord>
      try {
        made = createRecord(key, seq, this.tip.id, req.type, req.body)
        if (made.bytes.length > MAX_RECORD_BYTES) throw new InvalidRecordError(`Record of ${made.bytes.length} bytes exceeds ${MAX_RECORD_BYTES}`)
      } catch (err) {
        req.reject(err)
        continue
      }
      const { record, bytes, id } = made
      built.ops.push({ type: 'put', key: recordKey(seq), value: bytes })
      built.ops.push({ type: 'put', key: idKey(id), value: enc.encode(String(seq)) })
      if (TYPE_INDEXED.has(req.type)) built.ops.push({ type: 'put', key: typeKey(req.type, seq), value: EMPTY })
      const jobId = req.body.jobId
      if (typeof jobId === 'string') built.ops.push({ type: 'put', key: jobKey(jobId, seq), value: EMPTY })
      built.entries.push({ record, id, resolve: req.resolve, reject: req.reject })
      this.tip = { seq, id }
    }
    return built.entries.length > 0 ? built : undefined
  }

  /**
   * Group commit pipeline: while one batch is being written (on libuv's
   * thread pool), the next one is signed on this thread.
   */
  private pump (): void {
    this.ready ??= this.build()
    if (this.writing != null || this.ready == null) return
    const batch = this.ready
    this.ready = undefined
    this.writing = this.backend.batch(batch.ops).then(() => {
      const last = batch.entries[batch.entries.length - 1]
      this.committed = { seq: last.record.seq, id: last.id }
      this.writing = undefined
      for (const e of batch.entries) e.resolve({ record: e.record, id: e.id })
      const head = this.head()
      for (const l of this.listeners) {
        try { l(head) } catch (err) { log.warn({ err }, 'ledger change listener threw') }
      }
      this.pump()
    }, (err) => {
      // the batch built ahead links to the failed one: fail it too; the queue
      // (not yet signed) continues from the last committed record
      const failed = [...batch.entries, ...(this.ready?.entries ?? [])]
      this.ready = undefined
      this.tip = { ...this.committed }
      this.writing = undefined
      log.error({ err, from: batch.entries[0].record.seq, count: failed.length }, 'ledger: batch write failed')
      for (const e of failed) e.reject(err)
      this.pump()
    })
    // sign the next batch while this one is written
    if (this.queue.length > 0) this.ready = this.build()
  }

  async get (seq: number): Promise<LedgerRecord | undefined> {
    if (!Number.isSafeInteger(seq) || seq < 0) return undefined
    const bytes = await this.backend.get(recordKey(seq))
    return bytes == null ? undefined : decodeRecord(bytes)
  }

  async getById (id: string): Promise<LedgerRecord | undefined> {
    if (typeof id !== 'string') return undefined
    const v = await this.backend.get(idKey(id))
    if (v == null) return undefined
    const r = await this.get(Number(dec.decode(v)))
    // the index may outlive a truncated record: make sure it is the one asked for
    return r != null && recordId(r) === id ? r : undefined
  }

  async rangeEncoded (from: number, limit: number, maxBytes = Infinity): Promise<Uint8Array[]> {
    if (!Number.isSafeInteger(from) || from < 0) from = 0
    limit = Math.max(0, Math.min(MAX_RANGE_LIMIT, Math.floor(limit)))
    if (limit === 0) return []
    const out: Uint8Array[] = []
    let bytes = 0
    for await (const [, v] of this.backend.iterate({ gte: recordKey(from), lt: REC_END, limit })) {
      if (out.length > 0 && bytes + v.length > maxBytes) break
      out.push(v)
      bytes += v.length
    }
    return out
  }

  async range (from: number, limit: number): Promise<LedgerRecord[]> {
    const out: LedgerRecord[] = []
    for (const b of await this.rangeEncoded(from, limit)) {
      const r = decodeRecord(b)
      if (r == null) break // a damaged record ends the readable range; verify() names it
      out.push(r)
    }
    return out
  }

  private async byIndex (prefix: string, limit: number, last: boolean, from = 0): Promise<LedgerRecord[]> {
    const seqs: number[] = []
    for await (const [k] of this.backend.iterate({ gte: prefix + '\0' + seqHex(from), lt: prefix + '\x01', reverse: last, limit })) seqs.push(seqFromIndexKey(k))
    if (last) seqs.reverse()
    const out: LedgerRecord[] = []
    for (const s of seqs) {
      const r = await this.get(s)
      if (r != null) out.push(r)
    }
    return out
  }

  async byJob (jobId: string): Promise<LedgerRecord[]> {
    if (typeof jobId !== 'string' || jobId.includes('\0')) return []
    return await this.byIndex(JOB_PREFIX + jobId, MAX_RANGE_LIMIT, false)
  }

  async byType (type: RecordType, opts: { limit?: number, last?: boolean, from?: number } = {}): Promise<LedgerRecord[]> {
    if (!isRecordType(type)) return []
    const limit = Math.min(opts.limit ?? MAX_RANGE_LIMIT, MAX_RANGE_LIMIT)
    const from = Number.isSafeInteger(opts.from) && (opts.from as number) > 0 ? opts.from as number : 0
    if (this.isTypeIndexed(type)) return await this.byIndex(TYPE_PREFIX + type, limit, opts.last === true, from)
    // not indexed: scan (newest first when `last`)
    const out: LedgerRecord[] = []
    for await (const [, v] of this.backend.iterate({ gte: recordKey(from), lt: REC_END, reverse: opts.last === true })) {
      const r = decodeRecord(v)
      if (r?.type === type) out.push(r)
      if (out.length >= limit) break
    }
    if (opts.last === true) out.reverse()
    return out
  }

  async * ofType (type: RecordType): AsyncIterable<LedgerRecord> {
    if (!isRecordType(type)) return
    if (!this.isTypeIndexed(type)) {
      for await (const [, v] of this.backend.iterate({ gte: REC_PREFIX, lt: REC_END })) {
        const r = decodeRecord(v)
        if (r?.type === type) yield r
      }
      return
    }
    const prefix = TYPE_PREFIX + type
    for await (const [k] of this.backend.iterate({ gte: prefix + '\0', lt: prefix + '\x01' })) {
      const r = await this.get(seqFromIndexKey(k))
      if (r != null) yield r
    }
  }

  private isTypeIndexed (type: string): boolean {
    return TYPE_INDEXED.has(type) && this.typeIndexCurrent
  }

  async verify (opts: { signal?: AbortSignal, workers?: number } = {}): Promise<VerifyReport> {
    if (this.closed) throw new LedgerClosedError()
    const backend = this.backend
    async function * chunks (): AsyncIterable<Uint8Array[]> {
      let chunk: Uint8Array[] = []
      for await (const [, v] of backend.iterate({ gte: REC_PREFIX, lt: REC_END })) {
        chunk.push(v)
        if (chunk.length >= VERIFY_CHUNK_RECORDS) { yield chunk; chunk = [] }
      }
      if (chunk.length > 0) yield chunk
    }
    const workers = opts.workers ?? (this.committed.seq + 1 > INLINE_VERIFY_MAX ? defaultVerifyWorkers() : 0)
    return await verifyEncoded(chunks(), this.signer, { signal: opts.signal, workers })
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    // let everything already appended reach storage
    while (this.writing != null || this.ready != null || this.queue.length > 0) {
      if (this.writing == null) this.pump()
      await this.writing?.catch(() => {})
    }
    this.listeners.clear()
    await this.backend.close()
  }
}

/** Open (creating if needed) a node's ledger. */
export async function openLedger (init: LedgerInit): Promise<Ledger> {
  const backend = init.backend ?? (init.path != null ? new LevelBackend(init.path, { sync: init.sync }) : new MemoryBackend())
  const ledger = new LedgerImpl(init.signer, backend, init.readOnly === true)
  await ledger.open()
  return ledger
}
