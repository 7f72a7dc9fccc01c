/**
 * After a restart: rebuild unfinished jobs from the log, and ask the
 * providers of live awards what became of them.
 *
 * The journal's {@link readJobHistory} gives each unfinished job's last
 * offer, that round's bids and its awards (accepted, handed over). The
 * planner then says: announce again (no live award) or poll (ask each live
 * award's provider over `/mercato/status/1.0.0`). A poll collects a result,
 * notes that the job runs, or, with {@link afterStatus}, gives up on a
 * provider that forgot the job or stayed unreachable past the grace period.
 */
import { messageId } from '../../crypto/index.js'
import { matches } from '../../labels.js'
import type { Ledger, LedgerRecord } from '../../ledger/index.js'
import { MAX_CHANNEL_BYTES, RECOVERY_GRACE_MS, STATUS_PROTOCOL } from '../constants.js'
import { readJobHistory, readRecord, type MarketRecord } from '../protocol/journal.js'
import { RefusedMessageError } from '../protocol/messages.js'
import { decodeStatusReply, encodeStatusRequest, type StatusReply } from '../protocol/frames.js'
import { afterStatus, attemptDeadline, isInFlight } from './plan.js'
import { addBid, isTerminal, newJob, type Attempt, type RequesterContext, type RequesterJob } from './job.js'
import type { Awards } from './award.js'
import type { Settlement } from './settle.js'

/** Group the requester's market records by job (oldest first). */
function byJob (records: Iterable<LedgerRecord>): Map<string, MarketRecord[]> {
  const out = new Map<string, MarketRecord[]>()
  for (const r of records) {
    const m = readRecord(r)
    if (m == null || m.body.side !== 'requester') continue
    const list = out.get(m.body.jobId) ?? []
    list.push(m)
    out.set(m.body.jobId, list)
  }
  return out
}

/**
 * The records of the jobs this node submitted and has not finished, read
 * through the ledger's indexes: the `job` records and the receipts (type
 * index) say which jobs are still open (submitted, not ended, not paid), then
 * each open job's records (job index). The work is a few small reads per job
 * ever submitted plus the open jobs' records, not a pass over the whole log.
 */
export async function readUnfinished (ledger: Pick<Ledger, 'ofType' | 'byJob'>): Promise<LedgerRecord[]> {
  const open = new Set<string>()
  for await (const r of ledger.ofType('job')) {
    const m = readRecord(r)
    if (m?.type !== 'job' || m.body.side !== 'requester') continue
    if (m.body.status === 'submitted') open.add(m.body.jobId)
    else open.delete(m.body.jobId)
  }
  if (open.size > 0) {
    for await (const r of ledger.ofType('receipt')) {
      const m = readRecord(r)
      if (m?.type === 'receipt' && m.body.side === 'requester' && m.body.receipt.payload.status === 'paid') open.delete(m.body.jobId)
    }
  }
  const out: LedgerRecord[] = []
  for (const jobId of open) out.push(...await ledger.byJob(jobId))
  return out
}

/** Rebuild the unfinished jobs; returns them, each to be handed to the planner as `recovered`. */
export function rebuildJobs (ctx: RequesterContext, records: Iterable<LedgerRecord>): RequesterJob[] {
  const out: RequesterJob[] = []
  for (const recs of byJob(records).values()) {
    const h = readJobHistory(recs, messageId)
    if (h == null || h.finished) continue
    const o = h.offer.payload
    const job = newJob({
      id: h.jobId,
      spec: o.spec,
      maxPrice: o.maxPrice,
      replicas: o.replicas,
      minBids: Math.max(ctx.cfg.minBids, o.replicas),
      bidWindowMs: o.bidWindowMs,
      createdAt: h.createdAt,
      round: o.round,
      offer: h.offer,
      offerId: messageId(h.offer),
      // the offer carries the constraints it was announced with; name and labels are the job record's
      constraints: o.constraints ?? h.constraints,
      name: h.name,
      labels: h.labels,
      // counted from submission: a restart does not give a queued job more time
      queueUntil: h.queueUntil
    })
    for (const bid of h.bids) {
      // only bids that met the constraints were logged; checked again, cheaply, on what the log says
      if (!matches(bid.payload.labels, job.constraints)) continue
      addBid(ctx, job, bid)
    }
    const now = Date.now()
    for (const a of h.awards) {
      const aw = a.award.payload
      job.attempts.push({
        provider: aw.provider,
        awardId: a.awardId,
        price: aw.price,
        attempt: aw.attempt,
        state: a.handedOver ? 'lost' : a.accepted ? 'accepted' : 'offered',
        lastSeen: now,
        suspect: false,
        awardedAt: aw.ts,
        deadline: attemptDeadline('proven', now, 0, o.spec.limits.timeoutMs) + RECOVERY_GRACE_MS,
        polled: true,
        trust: a.trust ?? ctx.trust(aw.provider)
      })
      if (a.handedOver) job.excluded.add(aw.provider)
    }
    out.push(job)
  }
  return out
}

/** Ask a recovered award's provider about it until it answers with a result or is gone. */
export async function pollStatus (ctx: RequesterContext, awards: Awards, settlement: Settlement, job: RequesterJob, attempt: Attempt): Promise<void> {
  const failures = { count: 0, since: 0 }
  while (!ctx.stopped() && !isTerminal(job) && isInFlight(attempt.state) && Date.now() <= attempt.deadline) {
    let reply: StatusReply | undefined
    let outcome
    try {
      reply = decodeStatusReply(await ctx.network.request(attempt.provider, STATUS_PROTOCOL, encodeStatusRequest({ jobId: job.id, awardId: attempt.awardId }), { timeoutMs: 2000, maxResponseBytes: MAX_CHANNEL_BYTES }))
      failures.count = 0
      failures.since = 0
      attempt.lastSeen = Date.now()
      outcome = afterStatus({ state: reply.state, hasResult: reply.result != null }, failures, Date.now(), RECOVERY_GRACE_MS)
    } catch (err: any) {
      // right after our restart the mesh is still forming: give the provider a grace period
      if (failures.since === 0) failures.since = Date.now()
      failures.count++
      outcome = afterStatus({ error: String(err?.message ?? err), refused: err instanceof RefusedMessageError }, failures, Date.now(), RECOVERY_GRACE_MS)
    }
    switch (outcome.kind) {
      case 'lost':
        await awards.lose(job, attempt, outcome.reason)
        return
      case 'result':
        try {
          await settlement.onResult(job, attempt, reply?.result as NonNullable<StatusReply['result']>)
        } catch (err: any) {
          if (err instanceof RefusedMessageError) { await awards.lose(job, attempt, err.message); return }
          throw err
        }
        return
      case 'running':
        if (attempt.state !== 'running') {
          attempt.state = 'running'
          ctx.setStatus(job, 'running')
          ctx.emit(job, 'running', { provider: attempt.provider })
        }
        break
      case 'waiting': case 'retry':
        break
    }
    await new Promise(resolve => setTimeout(resolve, ctx.cfg.heartbeatMs))
  }
}
