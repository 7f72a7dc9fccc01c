/**
 * What a requester keeps of its finished jobs in memory.
 *
 * Unfinished jobs are always held (they are being driven). A finished job
 * joins a queue once its end is in the log, and is dropped from memory,
 * oldest first, while more than `maxJobs` are held or their approximate
 * bytes pass `maxBytes`. Nothing is lost: the log keeps every job, and the
 * requester reads a dropped job back from it by id (journal.ts
 * `readFinishedJob`). Each job is measured once, when it joins; eviction
 * pops from the front of the queue: O(1) amortised per job, no scans.
 * Bytes are approximate: results and offers as encoded (an output decoded
 * into many small values takes a few times that in the heap), plus fixed
 * estimates per job and per event, bid, decline and attempt (constants.ts).
 */
import { canonicalEncode, messageId, type Signed } from '../../crypto/index.js'
import { NotFoundError } from '../../errors.js'
import type { Ledger } from '../../ledger/index.js'
import { JOB_BASE_BYTES, JOB_ITEM_BYTES } from '../constants.js'
import { readFinishedJob, readRecord, type FinishedJob, type MarketRecord } from '../protocol/journal.js'
import { jobId as jobIdSchema, type Result } from '../protocol/messages.js'
import type { RequesterJob } from './job.js'

/** Approximate bytes a result holds: its stdout, stderr and encoded output, and its envelope. */
export function resultBytes (result: Signed<Result>): number {
  const r = result.payload
  let output = 0
  if (r.output !== undefined) {
    try { output = canonicalEncode(r.output).length } catch { output = 0 } // it was decoded from CBOR: it encodes
  }
  return JOB_ITEM_BYTES + r.stdout.length + r.stderr.length + output
}

/** Approximate bytes a finished job holds: a base, its offer (spec, inline source and input), its results, and its small books. */
export function heldBytes (job: RequesterJob): number {
  let bytes = JOB_BASE_BYTES + (job.offerBytes ?? 0)
  // every result the job holds (the final one is one of them)
  for (const r of job.results.values()) bytes += resultBytes(r.signed)
  const items = job.events.length + job.bids.size + job.declines.size + job.attempts.length
  return bytes + items * JOB_ITEM_BYTES
}

export interface HeldJobs {
  /** jobs in memory, finished or not */
  jobs: number
  /** finished jobs in memory */
  finished: number
  /** their approximate bytes */
  finishedBytes: number
}

/** The finished jobs held, oldest first, with the caps that drop them. */
export class FinishedJobs {
  private readonly maxJobs: number
  private readonly maxBytes: number
  private queue: Array<{ id: string, bytes: number }> = []
  private head = 0
  private total = 0

  constructor (opts: { maxJobs: number, maxBytes: number }) {
    this.maxJobs = opts.maxJobs
    this.maxBytes = opts.maxBytes
  }

  get count (): number { return this.queue.length - this.head }
  get bytes (): number { return this.total }

  /**
   * A job finished and its end is in the log: hold it; returns the ids to drop from memory
   * (oldest first; the new one too when it alone passes the byte budget).
   */
  add (id: string, bytes: number): string[] {
    this.queue.push({ id, bytes })
    this.total += bytes
    const drop: string[] = []
    while (this.count > 0 && (this.count > this.maxJobs || this.total > this.maxBytes)) {
      const oldest = this.queue[this.head++]
      this.total -= oldest.bytes
      drop.push(oldest.id)
    }
    // compact now and then: the dropped front is garbage
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
    return drop
  }
}

/** A finished job no longer held, read from the requester's records of it in the log (NotFoundError when there is none). */
export async function readFinishedFromLog (ledger: Pick<Ledger, 'byJob'>, id: string): Promise<FinishedJob> {
  const notFound = new NotFoundError(`no job ${id}`, 'job-not-found')
  if (!jobIdSchema.safeParse(id).success) throw notFound
  const records = (await ledger.byJob(id)).map(readRecord).filter((r): r is MarketRecord => r != null)
  const done = readFinishedJob(records, messageId)
  // an unfinished job is always held; one the log shows unfinished and that is not held was cut
  // off by a crash before its offer was logged (a restart cannot resume it, recover.ts): unknown
  if (done == null) throw notFound
  return done
}
