/**
 * Results and settlement.
 *
 * A result (already schema- and signature-checked by the protocol codec) is
 * matched to its award and its hash re-computed from its contents; then the
 * planner's {@link treatResult} says what it is: counted towards the
 * quorum, a late replica paid or outvoted, superseded, or moot (cancelled).
 * Settling signs a Receipt per provider, logs it, sends it on the award
 * channel and gossips it (in batches) on `mercato/receipts/1`; outvoted
 * replicas get a `mismatch` record and a `failed` receipt.
 */
import { messageId, type Signed } from '../../crypto/index.js'
import { computeResultHash } from '../../executor/index.js'
import { Batcher } from '../batcher.js'
import { MAX_BATCH_BYTES, MAX_BATCH_ITEMS, MAX_BID_BYTES, MAX_RECEIPT_PUBLISHERS, OUTPUT_FETCH_BASE_MS, OUTPUT_FETCH_MIN_BYTES_PER_SEC, RECEIPTS_TOPIC, RECEIPT_BATCHES_PER_SEC, RECEIPT_GOSSIP_BOOK_MAX_DELAY_MS, RECEIPT_GOSSIP_DELAY_MS, RECEIPT_GOSSIP_MAX_DELAY_MS, RECEIPT_MESH_FREE, RECEIPT_PUBLISHERS_WINDOW_MS, transferBudgetMs } from '../constants.js'
import { LruCache } from '../../lru.js'
import { encodeBatch, RefusedMessageError, sign, type Receipt, type Result } from '../protocol/messages.js'
import { encodeFrame } from '../protocol/frames.js'
import { treatResult } from './plan.js'
import { planView, type Attempt, type RequesterContext, type RequesterJob } from './job.js'
import { end } from './award.js'

/**
 * How long receipts are gathered before one gossip message carries them, in a mesh of `nodes`
 * (RECEIPT_MESH_FREE) where `publishers` requesters, this one included, were heard publishing
 * receipts lately (RECEIPT_BATCHES_PER_SEC). PURE.
 */
export function receiptGossipDelayMs (nodes: number, publishers = 1): number {
  const byBook = Math.min(RECEIPT_GOSSIP_BOOK_MAX_DELAY_MS, RECEIPT_GOSSIP_DELAY_MS * Math.max(1, nodes / RECEIPT_MESH_FREE))
  const byPublishers = Math.max(0, publishers - 1) * 1000 / RECEIPT_BATCHES_PER_SEC
  return Math.round(Math.min(RECEIPT_GOSSIP_MAX_DELAY_MS, Math.max(byBook, byPublishers)))
}

/**
 * The requesters heard publishing receipts within `windowMs` (RECEIPT_PUBLISHERS_WINDOW_MS), at
 * most `max` of them, the least recently heard forgotten first: how many share the receipts topic.
 * Only checked receipts count; a stranger's throwaway keys can at worst stretch our gathering to
 * RECEIPT_GOSSIP_MAX_DELAY_MS.
 */
export class RecentPublishers {
  /** signer → when last heard, least recently heard first */
  private readonly heardAt: LruCache<number>

  constructor (private readonly windowMs = RECEIPT_PUBLISHERS_WINDOW_MS, max = MAX_RECEIPT_PUBLISHERS) {
    this.heardAt = new LruCache(max)
  }

  heard (signer: string, now = Date.now()): void {
    this.heardAt.set(signer, now)
  }

  /** How many were heard within the window, `self` counted whether heard or not. */
  count (self?: string, now = Date.now()): number {
    for (const [signer, at] of this.heardAt.entries()) {
      if (at >= now - this.windowMs) break
      this.heardAt.delete(signer)
    }
    return this.heardAt.size + (self != null && !this.heardAt.has(self) ? 1 : 0)
  }
}

export class Settlement {
  private readonly ctx: RequesterContext
  /** receipts signed in one turn go out as one gossip message */
  private readonly receiptBatch: Batcher<Signed<Receipt>>

  constructor (ctx: RequesterContext) {
    this.ctx = ctx
    // nobody waits on the public copy of a receipt (the provider gets its own on the award
    // channel): gather them for a moment, one gossip round for many jobs
    const publishers = ctx.deps.receiptPublishers
    this.receiptBatch = new Batcher<Signed<Receipt>>((items) => {
      publishers?.heard(ctx.peerId)
      void ctx.network.publish(RECEIPTS_TOPIC, encodeBatch(items)).catch(err => { ctx.log.warn({ err, topic: RECEIPTS_TOPIC }, 'publish failed') })
    }, {
      maxItems: MAX_BATCH_ITEMS,
      maxBytes: MAX_BATCH_BYTES,
      sizeOf: () => MAX_BID_BYTES,
      delayMs: () => receiptGossipDelayMs((ctx.deps.book?.size ?? 0) + 1, publishers?.count(ctx.peerId) ?? 1)
    })
  }

  /** A checked result arrived for an attempt (on its channel, or in a status reply after a restart). */
  async onResult (job: RequesterJob, attempt: Attempt, result: Signed<Result>): Promise<void> {
    const { ctx } = this
    const r = result.payload
    if (result.signer !== attempt.provider || r.awardId !== attempt.awardId || r.jobId !== job.id) {
      ctx.count('wrong-sender')
      throw new RefusedMessageError('wrong-sender', 'result does not match the award')
    }
    const expected = computeResultHash(job.id, { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, output: r.output, outputs: r.outputs })
    if (expected !== r.resultHash) {
      ctx.count('bad-hash')
      throw new RefusedMessageError('bad-hash', 'result hash does not match its contents')
    }
    // the output files it names must be here, every byte checked against its CID, before it counts
    if (job.status !== 'cancelled') await this.fetchOutputs(job, attempt, r)
    const resultId = messageId(result)
    attempt.resultHash = r.resultHash
    // when it arrived: the attempt's end, kept in the log with the result
    const at = Date.now()
    // queued, not awaited: the receipt (appended after it, in order) is awaited before the job settles
    ctx.journal.result('requester', result, at).catch(err => { ctx.log.error({ err, jobId: job.id }, 'logging a result failed') })
    ctx.emit(job, 'result', { provider: attempt.provider, resultHash: r.resultHash, exitCode: r.exitCode })
    switch (treatResult(planView(job, ctx.trust), attempt, r.resultHash)) {
      case 'cancelled':
        end(attempt, 'cancelled', undefined, at)
        return
      case 'late-paid': {
        // a replica we awarded finished after the quorum, with the same answer: it did the work asked
        const final = job.final as NonNullable<RequesterJob['final']>
        end(attempt, 'completed', undefined, at)
        job.results.set(attempt.provider, { signed: result, id: resultId })
        final.providers.push(attempt.provider)
        final.price += attempt.price
        await this.receipt(job, attempt, result, resultId, 'paid', attempt.price)
        return
      }
      case 'late-mismatch': {
        // a replica outvoted by the quorum that was already in
        const final = job.final as NonNullable<RequesterJob['final']>
        end(attempt, 'mismatch', undefined, at)
        await this.mismatch(job, attempt.provider, result, resultId, final.result.payload.resultHash, final.providers)
        return
      }
      case 'superseded':
        // a late result from a replaced provider: recorded, never paid
        end(attempt, 'superseded', undefined, at)
        await this.receipt(job, attempt, result, resultId, 'superseded', 0)
        ctx.emit(job, 'superseded', { provider: attempt.provider })
        return
      case 'count':
        job.results.set(attempt.provider, { signed: result, id: resultId })
        end(attempt, 'completed', undefined, at)
        await ctx.drive(job, { type: 'result' })
    }
  }

  /**
   * Fetch a result's output files from its provider, one at a time, block by block into the blob
   * store (a few blocks in memory, never a whole file), each capped at the size the result names and
   * checked against its CID and size by the blob store. A file the provider does not serve, or serves wrong, is an `outputs-unavailable`
   * refusal: the award is lost and handed over, never paid. Files already here (a replica's twin)
   * are not fetched again.
   */
  private async fetchOutputs (job: RequesterJob, attempt: Attempt, r: Result): Promise<void> {
    const { ctx } = this
    const outputs = r.outputs ?? []
    if (outputs.length === 0) return
    // one budget for them all (the schema capped their count and sizes); meanwhile the attempt is
    // not judged by heartbeats, which stop once the provider sent its result
    const total = outputs.reduce((n, o) => n + o.size, 0)
    const signal = AbortSignal.timeout(transferBudgetMs(total, OUTPUT_FETCH_BASE_MS, OUTPUT_FETCH_MIN_BYTES_PER_SEC))
    attempt.collecting = true
    ctx.emit(job, 'collecting', { provider: attempt.provider, files: outputs.length, bytes: total })
    try {
      // the provider may be pushing them still, or a replica its twins (push.ts): the fetch then asks only for what did not come
      if (job.push != null) await settledOrAborted(job.push, signal)
      for (const o of outputs) {
        if (o.size === 0) continue
        try {
          // block by block into the blob store, each checked against its CID (the file is never whole in memory)
          const size = await ctx.deps.blobs.pull(ctx.network, o.cid, [attempt.provider], { maxBytes: o.size, signal })
          if (size !== o.size) throw new Error(`${size} bytes, not ${o.size}`)
          // the user's results: kept until the user releases them (blob-gc.ts)
          ctx.deps.blobs.gc.pin(o.cid, 'result')
        } catch (err: any) {
          ctx.count('outputs-unavailable')
          throw new RefusedMessageError('outputs-unavailable', `output ${o.path} (${o.cid}) not served by the provider: ${String(err?.message ?? err).slice(0, 200)}`)
        }
      }
    } finally {
      attempt.collecting = false
      attempt.lastSeen = Date.now()
    }
  }

  /** The quorum agrees on `hash`: pay the agreeing providers, record the outvoted ones, complete the job. */
  async settle (job: RequesterJob, hash: string, agreeing: string[], outvoted: string[]): Promise<void> {
    const { ctx } = this
    if (job.final != null) return
    const first = job.results.get(agreeing[0])?.signed as Signed<Result>
    const completed = (p: string): Attempt | undefined => job.attempts.find(a => a.provider === p && a.state === 'completed')
    job.final = { result: first, providers: [...agreeing], price: agreeing.reduce((sum, p) => sum + (completed(p)?.price ?? 0), 0) }
    // the job completed when its first receipt was signed: a time the log keeps
    let completedAt: number | undefined
    for (const provider of agreeing) {
      const att = completed(provider) as Attempt
      const res = job.results.get(provider) as { signed: Signed<Result>, id: string }
      const receipt = await this.receipt(job, att, res.signed, res.id, 'paid', att.price)
      completedAt ??= receipt.payload.ts
    }
    for (const provider of outvoted) {
      const res = job.results.get(provider) as { signed: Signed<Result>, id: string }
      const att = job.attempts.find(a => a.provider === provider)
      if (att != null) att.state = 'mismatch'
      await this.mismatch(job, provider, res.signed, res.id, hash, agreeing)
    }
    // replicas still running finish in the background: a matching answer is paid, a different one
    // is a mismatch (treatResult on late results); the job is settled now
    ctx.setStatus(job, 'completed', completedAt)
    const latency = (job.completedAt ?? Date.now()) - job.createdAt
    ctx.emit(job, 'settled', { providers: agreeing, price: job.final.price, resultHash: hash, latencyMs: latency })
    // its receipts are in the log (the result records before them): it may leave memory
    ctx.retire(job)
  }

  private async mismatch (job: RequesterJob, provider: string, result: Signed<Result>, resultId: string, majorityHash: string, agreeing: string[]): Promise<void> {
    const { ctx } = this
    ctx.deps.reputation.record(provider, 'mismatched')
    await ctx.journal.mismatch(job.id, provider, result, majorityHash, agreeing)
    ctx.emit(job, 'mismatch', { provider, resultHash: result.payload.resultHash, majorityHash })
    const att = job.attempts.find(a => a.provider === provider)
    await this.receipt(job, att, result, resultId, 'failed', 0)
  }

  private async receipt (job: RequesterJob, attempt: Attempt | undefined, result: Signed<Result>, resultId: string, status: Receipt['status'], price: number): Promise<Signed<Receipt>> {
    const { ctx } = this
    const receipt = sign(ctx.deps.signer, 'receipt', {
      v: 1,
      jobId: job.id,
      requester: ctx.peerId,
      provider: result.signer,
      resultId,
      resultHash: result.payload.resultHash,
      price,
      status,
      ts: Date.now()
    })
    await ctx.journal.receipt('requester', receipt)
    ctx.deps.reputation.applyReceipt(receipt)
    this.receiptBatch.add(receipt)
    if (attempt?.channel != null) await attempt.channel.send(encodeFrame({ t: 'receipt', m: receipt })).catch(() => {})
    return receipt
  }
}

/** Settles when `p` does or when `signal` aborts, whichever is first (never rejects: what follows checks the signal). */
async function settledOrAborted (p: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return
  let onAbort = (): void => {}
  await Promise.race([p.catch(() => {}), new Promise<void>(resolve => { onAbort = resolve; signal.addEventListener('abort', onAbort, { once: true }) })])
  signal.removeEventListener('abort', onAbort)
}
