/**
 * Award a bid and watch the award channel.
 *
 * `award` signs the Award (listing every bid considered), logs it, opens
 * `/mercato/award/1.0.0` to the winner (ourselves too, through the
 * loopback) and sends it. `watch` reads the channel's frames, each decoded
 * by the protocol codec: accept, refuse, heartbeats, live logs (logs.ts), the result. A refusal,
 * a reset, a close without a result or a bad signed message ends the award;
 * `lose` hands the job over (a `handover` record) and asks the planner who
 * is next.
 */
import { messageId } from '../../crypto/index.js'
import type { MessageChannel } from '../../p2p/index.js'
import { AWARD_PROTOCOL, BID_TTL_MS, FAILOVER_BACKOFF_MS, MAX_CHANNEL_BYTES } from '../constants.js'
import { RefusedMessageError, sign } from '../protocol/messages.js'
import { decodeFrame, encodeFrame, type Frame } from '../protocol/frames.js'
import { attemptDeadline, isInFlight, next } from './plan.js'
import type { Trust } from './trust.js'
import { isTerminal, planView, type Attempt, type BidEntry, type RequesterContext, type RequesterJob } from './job.js'
import type { Settlement } from './settle.js'
import { LiveLogs } from './logs.js'
import { pollStatus } from './recover.js'

/** How long a withdrawn award's stream may take to flush its cancel frame before it is reset. */
const WITHDRAW_FLUSH_MS = 1_000

export class Awards {
  private readonly ctx: RequesterContext
  private readonly settlement: Settlement
  private readonly logs: LiveLogs

  constructor (ctx: RequesterContext, settlement: Settlement) {
    this.ctx = ctx
    this.settlement = settlement
    this.logs = new LiveLogs(ctx)
  }

  /**
   * Award `winner` at `price`. The attempt is recorded at once (before any await), so a planner
   * asked meanwhile counts it in flight.
   */
  async award (job: RequesterJob, winner: BidEntry, price: number, trust: Trust, eligible: BidEntry[]): Promise<void> {
    const { ctx } = this
    if (isTerminal(job) || ctx.stopped()) return
    const now = Date.now()
    const award = sign(ctx.deps.signer, 'award', {
      v: 1,
      jobId: job.id,
      offerId: job.offerId as string,
      requester: ctx.peerId,
      provider: winner.provider,
      bidId: winner.id,
      bids: [...job.bids.values()].map(b => b.id).sort(),
      price,
      attempt: job.attempts.length,
      ts: now,
      expires: now + BID_TTL_MS
    })
    const attempt: Attempt = { provider: winner.provider, awardId: messageId(award), price, attempt: job.attempts.length, state: 'offered', lastSeen: now, suspect: false, awardedAt: now, deadline: attemptDeadline(trust, now, winner.estStartMs, job.spec.limits.timeoutMs), trust, opening: true }
    job.attempts.push(attempt)
    if (trust !== 'proven') ctx.probations.set(attempt.provider, [...(ctx.probations.get(attempt.provider) ?? []), attempt])
    if (job.status === 'bidding' || job.status === 'queued') ctx.setStatus(job, 'awarded')
    // the award is logged before it is sent; the channel opens while the record is written. With
    // it, the bids the winner rule ran over and the winner's trust: an auditor re-runs rankBids and
    // settlementPrice over exactly these
    const awardLogged = ctx.journal.award(award, eligible.map(b => b.id).sort(), trust)
    awardLogged.catch(() => {}) // awaited below
    let channel: MessageChannel
    try {
      const opening = ctx.network.openChannel(winner.provider, AWARD_PROTOCOL, { maxMessageBytes: MAX_CHANNEL_BYTES, signal: AbortSignal.timeout(3000) })
      opening.catch(() => {}) // awaited below
      await awardLogged
      if (isCancelled(job)) {
        // the cancel ended it already (it was in flight): keep the time it ended
        if (isInFlight(attempt.state)) end(attempt, 'cancelled')
        void opening.then(ch => { ch.abort(new Error('cancelled')) }, () => {})
        return
      }
      ctx.emit(job, 'awarded', { provider: winner.provider, price, attempt: attempt.attempt })
      channel = await opening
      if (attempt.state !== 'offered') {
        // the watchdog gave up on this award while the stream was opening: never send it
        channel.abort(new Error('award withdrawn'))
        return
      }
      attempt.channel = channel
      if (isCancelled(job)) { if (isInFlight(attempt.state)) end(attempt, 'cancelled'); channel.abort(new Error('cancelled')); return }
      await channel.send(encodeFrame({ t: 'award', m: award }))
      // the provider's silence counts from when it could first answer, not from before the stream opened
      attempt.lastSeen = Math.max(attempt.lastSeen, Date.now())
      attempt.opening = false
    } catch (err: any) {
      attempt.opening = false
      await this.lose(job, attempt, `could not reach provider: ${err?.message ?? err}`)
      return
    }
    ctx.background(job, this.watch(job, attempt, channel))
  }

  /** Read the award channel until a result, a refusal or a loss. */
  private async watch (job: RequesterJob, attempt: Attempt, channel: MessageChannel): Promise<void> {
    const { ctx } = this
    try {
      for await (const data of channel) {
        attempt.lastSeen = Date.now()
        if (attempt.suspect) attempt.suspect = false
        let frame: Frame
        try {
          frame = decodeFrame(data)
        } catch (err: any) {
          ctx.count(err.reason ?? 'bad-encoding')
          // a well-formed frame carrying a bad signed message ends the award; garbage is skipped
          if (err.inner === true) throw err
          continue
        }
        if (frame.t === 'accept') {
          const accept = frame.m
          if (accept.signer !== attempt.provider || accept.payload.awardId !== attempt.awardId) throw new RefusedMessageError('wrong-sender', 'accept does not match the award')
          if (attempt.state === 'offered') attempt.state = 'accepted'
          ctx.emit(job, 'accepted', { provider: attempt.provider, attempt: attempt.attempt })
          void ctx.journal.accept('requester', accept).catch(err => { ctx.log.error({ err }, 'ledger append failed') })
        } else if (frame.t === 'refuse') {
          const refuse = frame.m
          if (refuse.signer !== attempt.provider || refuse.payload.awardId !== attempt.awardId) throw new RefusedMessageError('wrong-sender', 'refusal does not match the award')
          end(attempt, 'refused', refuse.payload.reason)
          // a probation refused is a probation failed: a key that bids low and refuses every award
          // took each job's probation, for free, and kept honest newcomers out
          if (attempt.trust !== 'proven') ctx.deps.reputation.record(attempt.provider, 'failed')
          ctx.emit(job, 'refused', { provider: attempt.provider, reason: refuse.payload.reason })
          await channel.close()
          await ctx.drive(job, { type: 'ended' })
          return
        } else if (frame.t === 'hb') {
          if (frame.state === 'running' && attempt.state === 'accepted') {
            attempt.state = 'running'
            if (job.status === 'awarded') ctx.setStatus(job, 'running')
            ctx.emit(job, 'running', { provider: attempt.provider })
          }
        } else if (frame.t === 'log') {
          this.logs.take(job, attempt, frame)
        } else if (frame.t === 'result') {
          this.logs.end(job, attempt)
          await this.settlement.onResult(job, attempt, frame.m)
          if (attempt.state === 'completed' || attempt.state === 'superseded' || attempt.state === 'mismatch') {
            await channel.close().catch(() => {})
            return
          }
        }
      }
      // the provider closed the channel without a result
      await this.dropped(job, attempt, channel, 'provider closed the award channel')
    } catch (err: any) {
      if (err instanceof RefusedMessageError) await this.lose(job, attempt, err.message)
      else await this.dropped(job, attempt, channel, `connection lost: ${err?.message ?? err}`)
    }
  }

  /**
   * The award channel ended without a result. On a direct connection the provider is gone: hand
   * over at once (failover in milliseconds). On a relayed one the relay may have died under a
   * provider that lives on behind its NAT and keeps running the job: an accepted award is then
   * followed by status polls (reaching the provider through another relay), with the grace a
   * restart gets, and handed over only if the provider stays unreachable or forgot the job.
   */
  private async dropped (job: RequesterJob, attempt: Attempt, channel: MessageChannel, reason: string): Promise<void> {
    const { ctx } = this
    if (channel.relayed !== true || (attempt.state !== 'accepted' && attempt.state !== 'running') || isTerminal(job) || ctx.stopped()) {
      await this.lose(job, attempt, reason)
      return
    }
    this.logs.end(job, attempt)
    attempt.channel = undefined
    attempt.polled = true
    ctx.log.info({ jobId: job.id, provider: attempt.provider, reason }, 'relayed award channel dropped; following the job by status')
    ctx.emit(job, 'rerouted', { provider: attempt.provider, reason })
    await pollStatus(ctx, this, this.settlement, job, attempt)
  }

  /** The provider of an attempt is lost: log a handover and let the planner award the runner-up. */
  async lose (job: RequesterJob, attempt: Attempt, reason: string): Promise<void> {
    const { ctx } = this
    if (!isInFlight(attempt.state)) return
    // won and never accepted: out of our invitations for a while (it keeps its place when it ran)
    if (attempt.state === 'offered') ctx.deps.book?.bench(attempt.provider)
    this.logs.end(job, attempt)
    end(attempt, 'lost', reason)
    withdraw(attempt.channel, 'handed over')
    job.excluded.add(attempt.provider)
    ctx.deps.reputation.record(attempt.provider, 'lost')
    if (isTerminal(job)) return
    job.handovers++
    // who the planner would award next, for the record (it decides again after the backoff)
    const preview = next(planView(job, ctx.awardTrust), { type: 'ended' }, ctx.planConfig)
    const to = preview.kind === 'award' ? preview.awards[0].bid.provider : null
    ctx.emit(job, 'handover', { from: attempt.provider, to, reason, attempt: attempt.attempt })
    ctx.log.info({ jobId: job.id, from: attempt.provider, to, reason }, 'handover')
    await ctx.journal.handover(job.id, { from: attempt.provider, to, reason, attempt: attempt.attempt, awardId: attempt.awardId, at: attempt.endedAt ?? Date.now() })
    if (job.handovers > 1) await new Promise(resolve => setTimeout(resolve, FAILOVER_BACKOFF_MS * 2 ** Math.min(job.handovers - 2, 5)))
    await ctx.drive(job, { type: 'ended' })
  }
}

/** Status re-read after an await (a cancel may have landed meanwhile). */
function isCancelled (job: RequesterJob): boolean {
  return job.status === 'cancelled'
}

/** An attempt ends: its state, when (now unless told: the log keeps the same time), and why. */
export function end (attempt: Attempt, state: Attempt['state'], reason?: string, at = Date.now()): void {
  attempt.state = state
  attempt.endedAt = at
  if (reason !== undefined) attempt.reason = reason
}

/**
 * Withdraw an award: tell the provider to stop (a `cancel` frame, best effort), then close the
 * stream. A provider whose stream merely drops keeps running, for a requester that restarts.
 */
export function withdraw (channel: MessageChannel | undefined, reason: string): void {
  if (channel == null) return
  const frame = encodeFrame({ t: 'cancel', reason })
  const force = setTimeout(() => { channel.abort(new Error(reason)) }, WITHDRAW_FLUSH_MS)
  force.unref()
  // close (not abort) so the frame is flushed; a dead peer fails fast and the timer resets the stream
  void channel.send(frame).then(async () => { await channel.close() }).catch(() => { channel.abort(new Error(reason)) }).finally(() => { clearTimeout(force) })
}
