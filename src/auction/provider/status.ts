/**
 * `/mercato/status/1.0.0`: what became of a job we were awarded, for its
 * requester only (a restarted requester asks before it fails over). Jobs
 * are answered from memory while held (`resultRetentionMs` after they end, the
 * last MAX_HELD_RESULTS finished at most),
 * then from our own log, which keeps the signed award and result.
 */
import { readProviderResult, readRecord, type MarketRecord } from '../protocol/journal.js'
import { decodeStatusRequest, type StatusReply } from '../protocol/frames.js'
import { dropOffer, type ProviderContext } from './state.js'

export async function statusFor (ctx: ProviderContext, data: Uint8Array, from: string): Promise<StatusReply> {
  let jobId: string
  try { jobId = decodeStatusRequest(data).jobId } catch { return { state: 'unknown' } }
  const held = ctx.state.held.get(jobId)
  if (held != null) {
    if (held.requester !== from) return { state: 'unknown' }
    return held.result != null ? { state: 'done', result: held.result } : { state: held.state }
  }
  // not in memory (we restarted, or it aged out): our log still holds the signed result
  const records = (await ctx.deps.ledger.byJob(jobId)).map(readRecord).filter((r): r is MarketRecord => r != null)
  const done = readProviderResult(records)
  if (done == null || done.requester !== from) return { state: 'unknown' }
  return { state: 'done', result: done.result }
}

/** Forget finished jobs past their retention, and offers whose bid has expired. */
export function sweep (ctx: ProviderContext): void {
  const cutoff = Date.now() - ctx.cfg.resultRetentionMs
  for (const [id, h] of ctx.state.held) if (h.doneAt != null && h.doneAt < cutoff) ctx.state.held.delete(id)
  // an expired bid cannot be awarded any more
  const now = Date.now()
  for (const [id, entry] of ctx.state.offers) if (entry.bid.payload.expires < now) dropOffer(ctx.state, id)
}
