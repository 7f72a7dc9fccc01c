/**
 * The requester's side of `/mercato/output-push/1.0.0` (the provider's: provider/push.ts): the
 * provider of a job we awarded sends the leaves of its output files while it imports them, and we
 * store each under the CID of its bytes. When its result comes, the fetch of the outputs
 * (settle.ts) waits for the push to end and then walks the DAGs as before: the leaves are held, so
 * it asks only for what is missing (the inner nodes, and anything the push did not bring).
 *
 * What a push can cost us, and the bounds:
 * - only the provider of an attempt in flight (awarded, accepted, running) of a job of ours, before
 *   its result, may push, and one push per job at a time: a peer with no attempt of ours in flight
 *   (any job) is refused (`{ refused: 'unknown-job' }`) as its stream opens, without waiting for
 *   its hello; one that has is refused at its hello when the hello names another job, before any
 *   block is read; the hello must come within OUTPUT_PUSH_HELLO_MS;
 * - with replicas, one provider's push is enough: once one has pushed, the others are refused
 *   (`pushed`; their files match, or what differs is fetched after their result) unless it was
 *   lost (failover: the runner-up pushes);
 * - at most MAX_RESULT_OUTPUT_BYTES per push: what we would fetch for one result anyway;
 * - at most OUTPUT_PUSH_WINDOW_BYTES unread: the provider may send only that far ahead of the
 *   `{ stored }` we send back, and the stream's buffer resets a provider that sends more;
 * - MAX_OUTPUT_PUSHES at once over all jobs, two streams per connection; a push takes its slot only
 *   once its hello is valid (a stream that says nothing, or a stranger's, holds none);
 * - a block is hashed here and stored as a raw block under its own CID: it cannot be wrong, only
 *   useless; a useless block is cached, not pinned, and the collector removes it like any fetched
 *   block (blob-gc.ts);
 * - a push idle for OUTPUT_PUSH_STALL_MS is dropped.
 * A push that fails costs the job nothing: the fetch after the result gets what is missing.
 */
import { isInFlight } from './plan.js'
import type { Attempt, RequesterContext, RequesterJob } from './job.js'
import type { MessageChannel } from '../../p2p/index.js'
import { UNIXFS_CHUNK_BYTES } from '../../crypto/unixfs.js'
import {
  MAX_OUTPUT_PUSHES, MAX_RESULT_OUTPUT_BYTES, OUTPUT_PUSH_ACK_BYTES, OUTPUT_PUSH_HELLO_MS, OUTPUT_PUSH_PROTOCOL, OUTPUT_PUSH_STALL_MS, OUTPUT_PUSH_WINDOW_BYTES
} from '../constants.js'
import { decodePushHello, encodePushReply } from '../protocol/frames.js'
import { RefusedMessageError } from '../protocol/messages.js'
import { nextWithin } from '../streams.js'
import { joined, sizeOfChunks } from '../chunks.js'

/** Pushes since start (`/metrics`: mercato_output_pushes_total, mercato_output_push_bytes_total). */
export interface PushStats {
  /** pushes taken, refused (by us), and the bytes stored from them */
  accepted: number
  refused: number
  bytes: number
}

export class OutputPushes {
  private active = 0
  readonly stats: PushStats = { accepted: 0, refused: 0, bytes: 0 }

  constructor (private readonly ctx: RequesterContext) {}

  async start (): Promise<void> {
    await this.ctx.network.handleChannel(OUTPUT_PUSH_PROTOCOL, async (channel) => { await this.receive(channel) }, {
      maxMessageBytes: UNIXFS_CHUNK_BYTES,
      // the window and a leaf in transit; a provider that ignores the window is reset past it
      maxBufferBytes: OUTPUT_PUSH_WINDOW_BYTES + 2 * UNIXFS_CHUNK_BYTES,
      maxInboundStreams: 2
    })
  }

  async stop (): Promise<void> {
    await this.ctx.network.unhandle(OUTPUT_PUSH_PROTOCOL).catch(() => {})
  }

  private async refuse (channel: MessageChannel, code: string, why: string): Promise<void> {
    this.stats.refused++
    this.ctx.log.debug({ from: channel.remotePeer, code, why }, 'output push refused')
    await channel.send(encodePushReply({ refused: code })).catch(() => {})
    await channel.close().catch(() => {})
  }

  /** The attempt of `job` that `peer` may push for: in flight, its result not in. */
  private attemptOf (job: RequesterJob | undefined, peer: string): Attempt | undefined {
    if (job == null || job.results.has(peer)) return undefined
    return job.attempts.find(a => a.provider === peer && isInFlight(a.state) && a.collecting !== true)
  }

  /** `peer` is the provider of an attempt of ours in flight, any job: it may have something to push. */
  private mayPush (peer: string): boolean {
    for (const job of this.ctx.jobs.values()) if (job.retired !== true && this.attemptOf(job, peer) != null) return true
    return false
  }

  private async receive (channel: MessageChannel): Promise<void> {
    const { ctx } = this
    // a stranger (no attempt of ours in flight) is refused at once: it neither waits for its hello nor takes a slot
    if (!this.mayPush(channel.remotePeer)) { ctx.count('unknown-job'); await this.refuse(channel, 'unknown-job', 'no attempt of ours in flight at this peer'); return }
    let slot = false
    let jobId: string | undefined
    let ended: (() => void) | undefined
    let attempt: Attempt | undefined
    let pushingJob: RequesterJob | undefined
    try {
      // leaves in the pieces they arrived in: hashed and written without being joined (chunks.ts)
      const messages = channel.parts()[Symbol.asyncIterator]()
      // a push that sends nothing for OUTPUT_PUSH_STALL_MS is reset
      const next = async (ms = OUTPUT_PUSH_STALL_MS): Promise<IteratorResult<Uint8Array[]>> => {
        const got = await nextWithin(messages, ms)
        if (got === 'idle') throw new Error(`output push idle for ${ms} ms`)
        return got
      }
      // the provider sends its hello with the stream: one that does not is reset soon
      const first = await next(OUTPUT_PUSH_HELLO_MS)
      if (first.done === true) return
      try {
        jobId = decodePushHello(joined(first.value))
      } catch (err) {
        ctx.count(err instanceof RefusedMessageError ? err.reason : 'bad-schema')
        await this.refuse(channel, 'bad-request', 'the first message is not { v: 1, jobId }')
        return
      }
      const job = ctx.jobs.get(jobId)
      const found = this.attemptOf(job, channel.remotePeer)
      if (job == null || found == null) { ctx.count('unknown-job'); await this.refuse(channel, 'unknown-job', 'no attempt of that job in flight at this provider'); return }
      if (job.push != null) { await this.refuse(channel, 'busy', 'a push for this job is under way'); return }
      // a replica's twin: another provider of the job pushed already and is still with us, so its
      // files are (or will be) here; what differs in this one's is fetched after its result
      if (job.attempts.some(a => a !== found && a.pushed === true && a.state !== 'lost')) { await this.refuse(channel, 'pushed', 'another provider of this job pushed its files'); return }
      // a slot only now: the hello named a job with an attempt in flight at this peer
      if (this.active >= MAX_OUTPUT_PUSHES) { await this.refuse(channel, 'busy', `${MAX_OUTPUT_PUSHES} pushes at once`); return }
      this.active++
      slot = true
      attempt = found
      attempt.pushed = true
      this.stats.accepted++
      // the fetch after a result of this job (this provider's, or a replica's: its files are likely the same) waits for this
      job.push = new Promise<void>(resolve => { ended = resolve })
      pushingJob = job
      await channel.send(encodePushReply({ stored: 0 }))
      let stored = 0
      let acked = 0
      while (true) {
        const message = await next()
        if (message.done === true) break
        // the attempt ended meanwhile (lost, cancelled, handed over): nothing more to store for it.
        // (Its result may be in: the fetch after it waits for this push, so the last leaves still count.)
        if (!isInFlight(attempt.state)) { channel.abort(new Error('the attempt is over')); return }
        const block = message.value
        const size = sizeOfChunks(block)
        stored += size
        if (stored > MAX_RESULT_OUTPUT_BYTES) {
          ctx.count('too-large')
          channel.abort(new Error(`output push past ${MAX_RESULT_OUTPUT_BYTES} bytes`))
          return
        }
        await ctx.deps.blobs.putLeaf(block)
        this.stats.bytes += size
        // pushing is a sign of life, as heartbeats are
        attempt.lastSeen = Date.now()
        if (stored - acked >= OUTPUT_PUSH_ACK_BYTES) {
          acked = stored
          await channel.send(encodePushReply({ stored }))
        }
      }
      await channel.close()
    } catch (err: any) {
      ctx.log.debug({ from: channel.remotePeer, jobId, err: err?.message }, 'output push ended early')
      channel.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      if (slot) this.active--
      if (pushingJob != null) pushingJob.push = undefined
      ended?.()
    }
  }
}
