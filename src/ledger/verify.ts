/**
 * Verification of a chain of records: each record on its own (shape, signer,
 * signature, id) and then in order (sequence numbers contiguous, `prev`
 * equal to the previous record's id).
 *
 * Ed25519 verify costs ≈ 63 µs here (node:crypto, ≈ 16k/s on one core), so a
 * long log is checked record by record in worker threads (one per core) while
 * the main thread only reads storage and checks the order of the results.
 */
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import { ed25519FromPeerId } from '../crypto/index.js'
import { logger } from '../logger.js'
import { RECORD_DOMAIN, RECORD_VERSION } from './constants.js'
import { AbortError } from './errors.js'
import { RECORD_TYPES, checkRecord, checkRecordBytes, type RecordCheck, type VerifyReason, type VerifyReport } from './record.js'
import { pathToFileURL } from 'node:url'
import { codePath, plainWorkerExecArgv } from '../paths.js'

const log = logger('ledger:verify')

/**
 * Checks results of {@link checkRecord} in log order. Reasons, in the order
 * they are tested: bad-encoding, gap (the record does not carry the next
 * sequence number: one missing, duplicated or out of order), wrong-signer,
 * broken-link (`prev` is not the previous record's id), bad-signature.
 */
export class ChainChecker {
  count = 0
  headId: string | null
  firstBad?: { seq: number, reason: VerifyReason }
  private nextSeq: number

  /** `startSeq`/`prevId` let a check begin mid-log (a page, a tail). */
  constructor (startSeq = 0, prevId: string | null = null) {
    this.nextSeq = startSeq
    this.headId = prevId
  }

  /** Feed the next record's check; false once the chain is broken. */
  push (c: RecordCheck): boolean {
    if (this.firstBad != null) return false
    const seq = this.nextSeq
    let reason: VerifyReason | undefined
    if (c.problem === 'bad-encoding') reason = 'bad-encoding'
    else if (c.seq !== seq) reason = 'gap'
    else if (c.problem === 'wrong-signer') reason = 'wrong-signer'
    else if (c.prev !== this.headId) reason = 'broken-link'
    else if (c.problem === 'bad-signature') reason = 'bad-signature'
    if (reason != null) {
      this.firstBad = { seq, reason }
      return false
    }
    this.count++
    this.nextSeq++
    this.headId = c.id ?? null
    return true
  }

  report (): VerifyReport {
    const r: VerifyReport = { ok: this.firstBad == null, count: this.count, headId: this.headId }
    if (this.firstBad != null) r.firstBad = this.firstBad
    return r
  }
}

export interface VerifyRecordsOptions {
  /** sequence number of records[0] (default 0) */
  startSeq?: number
  /** id the first record must link to (default null: the log's first record) */
  prevId?: string | null
}

/**
 * Verify records (e.g. fetched from a peer) against the signer that should
 * have signed them. Pure and synchronous. `count`/`headId` describe the valid
 * prefix; with `startSeq`, count is relative to it.
 */
export function verifyRecords (records: readonly unknown[], expectedSigner: string, opts: VerifyRecordsOptions = {}): VerifyReport {
  const checker = new ChainChecker(opts.startSeq ?? 0, opts.prevId ?? null)
  for (const r of records) {
    if (!checker.push(checkRecord(r, expectedSigner))) break
  }
  return checker.report()
}

// ---------------------------------------------------------------- worker pool

interface Job { resolve: (c: RecordCheck[]) => void, reject: (e: unknown) => void }

/** A few workers checking chunks of encoded records for one signer. */
class VerifyPool {
  private readonly workers: Worker[] = []
  private readonly jobs = new Map<number, Job>()
  private nextId = 0
  private rr = 0
  private failed: unknown

  constructor (size: number, expectedSigner: string) {
    const publicKey = ed25519FromPeerId(expectedSigner) ?? null
    for (let i = 0; i < size; i++) {
      const w = new Worker(pathToFileURL(codePath('ledger/verify-worker.js')), {
        execArgv: plainWorkerExecArgv(),
        workerData: { signer: expectedSigner, publicKey, domain: RECORD_DOMAIN, types: [...RECORD_TYPES], version: RECORD_VERSION }
      })
      w.on('message', (msg: { id: number, checks: RecordCheck[] }) => {
        const job = this.jobs.get(msg.id)
        if (job == null) return
        this.jobs.delete(msg.id)
        job.resolve(msg.checks)
      })
      w.on('error', (err) => this.fail(err))
      w.on('exit', (code) => { if (code !== 0) this.fail(new Error(`verify worker exited with code ${code}`)) })
      this.workers.push(w)
    }
  }

  private fail (err: unknown): void {
    this.failed ??= err
    for (const job of this.jobs.values()) job.reject(err)
    this.jobs.clear()
  }

  run (chunk: Uint8Array[]): Promise<RecordCheck[]> {
    if (this.failed != null) return Promise.reject(this.failed)
    const id = this.nextId++
    const w = this.workers[this.rr++ % this.workers.length]
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { resolve, reject })
      w.postMessage({ id, chunk })
    })
  }

  async close (): Promise<void> {
    this.failed ??= new Error('pool closed')
    await Promise.all(this.workers.map(async (w) => await w.terminate()))
  }
}

export interface VerifyEncodedOptions extends VerifyRecordsOptions {
  signal?: AbortSignal
  /** worker threads (0 = inline on this thread); default: one per core, at most 4 */
  workers?: number
  /** called in log order with the checks of each chunk's records that passed (chain included) */
  onChunk?: (checks: RecordCheck[], chunk: Uint8Array[]) => void
}

export function defaultVerifyWorkers (): number {
  return Math.max(1, Math.min(4, availableParallelism()))
}

/**
 * Verify a stream of chunks of encoded records, in log order, stopping at the
 * first bad one. Used for the local log (chunks read from storage) and for
 * remote audits (pages fetched from a peer).
 */
export async function verifyEncoded (source: AsyncIterable<Uint8Array[]>, expectedSigner: string, opts: VerifyEncodedOptions = {}): Promise<VerifyReport> {
  const checker = new ChainChecker(opts.startSeq ?? 0, opts.prevId ?? null)
  const workers = opts.workers ?? defaultVerifyWorkers()
  let pool = workers > 0 ? new VerifyPool(workers, expectedSigner) : undefined
  const maxInFlight = pool != null ? workers * 2 : 1
  const inflight: Array<{ chunk: Uint8Array[], checks?: Promise<RecordCheck[]> }> = []

  const consume = async (): Promise<boolean> => {
    const entry = inflight.shift()
    if (entry == null) return true
    let checks: RecordCheck[]
    if (entry.checks != null) {
      try {
        checks = await entry.checks
      } catch (err) {
        // a worker failed (or could not start): finish on this thread
        log.warn({ err }, 'verify worker failed; verifying on the main thread')
        await pool?.close()
        pool = undefined
        for (const e of inflight) e.checks = undefined
        checks = entry.chunk.map((b) => checkRecordBytes(b, expectedSigner))
      }
    } else {
      checks = entry.chunk.map((b) => checkRecordBytes(b, expectedSigner))
    }
    let ok = true
    let n = 0
    for (const c of checks) {
      if (!checker.push(c)) { ok = false; break }
      n++
    }
    opts.onChunk?.(checks.slice(0, n), entry.chunk.slice(0, n))
    return ok
  }

  try {
    let broken = false
    for await (const chunk of source) {
      if (opts.signal?.aborted === true) throw new AbortError()
      if (chunk.length === 0) continue
      inflight.push({ chunk, checks: pool?.run(chunk) })
      // the pool may reject; attach a handler so an unconsumed rejection is not "unhandled"
      inflight[inflight.length - 1].checks?.catch(() => {})
      while (inflight.length >= maxInFlight) {
        if (!await consume()) { broken = true; break }
      }
      if (broken) break
    }
    while (!broken && inflight.length > 0) {
      if (opts.signal?.aborted === true) throw new AbortError()
      if (!await consume()) broken = true
    }
  } finally {
    await pool?.close()
  }
  return checker.report()
}
