/**
 * The provider's side of `/mercato/output-push/1.0.0`: a job's output files go to its requester
 * as they are read for the import into our blob store, instead of after the result, when the
 * requester would fetch them block by block (settle.ts). The transfer overlaps the import, the
 * bytes are read from disk once for both, and the fetch that follows the result finds the leaves
 * held and asks only for the DAG's inner nodes.
 *
 * The stream: our `{ v: 1, jobId }`, the requester's `{ stored: 0 }` (accepted) or `{ refused }`;
 * then the files' bytes, each file cut as the UnixFS importer cuts it (UNIXFS_CHUNK_BYTES pieces
 * from its start, so every message is one raw leaf of its DAG), one message each; we close when
 * the last file is sent. Bytes queued and sent but not yet stored by the requester (it sends back
 * `{ stored }` as it stores them) stay within OUTPUT_PUSH_WINDOW_BYTES: past that the import
 * waits, so the push costs at most a window of memory and the import runs at the pace the
 * requester takes the bytes (it must have them all before it pays anyway). The result is sent
 * once the push has been answered and every queued leaf written (`flushed`), so the requester
 * knows of the push when the result comes and the leaves are ahead of it on the connection.
 *
 * A push is an optimisation and never the job's business: a refusal, a failure, a stall of
 * OUTPUT_PUSH_STALL_MS or a push that outlives the time the requester gives a fetch of the same
 * bytes ends it quietly, the import goes on unhindered, and whatever did not arrive is fetched
 * after the result as before. Files under OUTPUT_PUSH_MIN_BYTES are not pushed, nor any file of a
 * job we requested ourselves (the requester's blob store is ours).
 */
import { UNIXFS_CHUNK_BYTES } from '../../crypto/unixfs.js'
import type { Logger } from '../../logger.js'
import type { MessageChannel, Network } from '../../p2p/index.js'
import { OUTPUT_FETCH_BASE_MS, OUTPUT_FETCH_MIN_BYTES_PER_SEC, OUTPUT_PUSH_MIN_BYTES, OUTPUT_PUSH_PROTOCOL, OUTPUT_PUSH_STALL_MS, OUTPUT_PUSH_WINDOW_BYTES } from '../constants.js'
import { decodePushReply, encodePushHello, MAX_PUSH_CONTROL_BYTES } from '../protocol/frames.js'
import { nextWithin } from '../streams.js'

export class OutputPusher {
  /** leaves queued, not sent yet, and their bytes */
  private readonly queue: Uint8Array[] = []
  private queuedBytes = 0
  /** bytes sent, and bytes the requester says it stored */
  private sent = 0
  private stored = 0
  /** no more files will come */
  private finished = false
  /** the push is over (refused, failed, stopped): files pass through untouched */
  private dead = false
  private running?: Promise<void>
  /** the requester took the push ({ stored: 0 }) */
  private accepted = false
  /** a write of leaves is under way */
  private sending = false
  private readonly stop = new AbortController()
  /** bytes of the files handed to the push: its deadline grows with them */
  private fileBytes = 0
  private readonly startedAt = Date.now()
  private readonly waiters = new Set<() => void>()

  constructor (
    private readonly network: Network,
    private readonly requester: string,
    private readonly jobId: string,
    private readonly log: Logger
  ) {}

  /**
   * The bytes of a file of `size` bytes as they are read for its import: each chunk is yielded on
   * and queued for the push (a chunk waits while the window is full). A file under
   * OUTPUT_PUSH_MIN_BYTES, or any file once the push is over, passes through untouched.
   */
  async * tee (source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
    // our own job (requester and provider in one node) shares our blob store: nothing to send
    if (size < OUTPUT_PUSH_MIN_BYTES || this.finished || this.dead || this.requester === this.network.peerId) { yield * source; return }
    this.fileBytes += size
    this.running ??= this.run().catch((err: any) => {
      if (!this.stop.signal.aborted) this.log.debug({ jobId: this.jobId, err: err?.message }, 'output push ended early; the rest will be fetched')
    }).finally(() => { this.end() })
    // the bytes of the leaf being filled (a file's leaves start at its first byte)
    let partial: Uint8Array[] = []
    let partialBytes = 0
    const leafDone = async (): Promise<void> => {
      await this.enqueue(partial.length === 1 ? partial[0] : Buffer.concat(partial))
      partial = []
      partialBytes = 0
    }
    for await (const chunk of source) {
      let rest = chunk
      while (!this.dead && rest.length > 0) {
        const take = Math.min(rest.length, UNIXFS_CHUNK_BYTES - partialBytes)
        partial.push(take === rest.length ? rest : rest.subarray(0, take))
        partialBytes += take
        rest = rest.subarray(take)
        if (partialBytes === UNIXFS_CHUNK_BYTES) await leafDone()
      }
      yield chunk
    }
    if (partialBytes > 0) await leafDone()
  }

  /** No more files: the stream is closed once the queued leaves are sent. */
  finish (): void {
    this.finished = true
    this.notify()
  }

  /**
   * Settles once every leaf queued so far has been written to the stream (or the push is over, or
   * never began). The result goes after it: the requester then knows of the push when the result
   * comes (its fetch waits for the push instead of asking for the leaves in flight), and the
   * leaves travel ahead of the result on the same connection. At most OUTPUT_PUSH_STALL_MS.
   */
  async flushed (): Promise<void> {
    if (this.running == null) return
    const until = Date.now() + OUTPUT_PUSH_STALL_MS
    await this.until(() => this.dead || Date.now() > until || (this.accepted && this.queue.length === 0 && !this.sending))
  }

  /** Stop now (the award ended without a result to fetch). */
  abort (): void {
    this.finished = true
    this.stop.abort(new Error('output push stopped'))
    this.end()
  }

  /** Drop the push (its stream reset, so a send waiting on it ends too). */
  private fail (err: Error): void {
    if (this.dead) return
    this.log.debug({ jobId: this.jobId, err: err.message }, 'output push dropped; the rest will be fetched')
    this.stop.abort(err)
    this.end()
  }

  private end (): void {
    this.dead = true
    this.queue.length = 0
    this.queuedBytes = 0
    this.notify()
  }

  private notify (): void {
    for (const wake of [...this.waiters]) wake()
  }

  /**
   * Queue a leaf, once the window has room for it (or the push is over). Waiting for room is
   * waiting for the requester: past OUTPUT_PUSH_STALL_MS without it storing anything, or past the
   * push's deadline, the push is dropped and the import goes on.
   */
  private async enqueue (leaf: Uint8Array): Promise<void> {
    let progress = this.stored
    let since = Date.now()
    await this.until(() => {
      if (this.dead || this.queuedBytes + (this.sent - this.stored) + leaf.length <= OUTPUT_PUSH_WINDOW_BYTES) return true
      const now = Date.now()
      if (this.stored > progress) { progress = this.stored; since = now }
      if (now - since > OUTPUT_PUSH_STALL_MS) this.fail(new Error(`the requester stored nothing for ${OUTPUT_PUSH_STALL_MS} ms`))
      else if (now > this.startedAt + OUTPUT_FETCH_BASE_MS + this.fileBytes / OUTPUT_FETCH_MIN_BYTES_PER_SEC * 1000) this.fail(new Error('past the time a fetch of the same bytes is given'))
      return this.dead
    })
    if (this.dead) return
    this.queue.push(leaf)
    this.queuedBytes += leaf.length
    this.notify()
  }

  /** Wait until `ready()`, re-checked on every change and each second. */
  private async until (ready: () => boolean): Promise<void> {
    while (!ready()) {
      await new Promise<void>(resolve => {
        const wake = (): void => { clearTimeout(timer); this.waiters.delete(wake); resolve() }
        const timer = setTimeout(wake, 1000)
        this.waiters.add(wake)
      })
    }
  }

  private async run (): Promise<void> {
    const channel = await this.network.openChannel(this.requester, OUTPUT_PUSH_PROTOCOL, {
      maxMessageBytes: MAX_PUSH_CONTROL_BYTES,
      signal: AbortSignal.any([this.stop.signal, AbortSignal.timeout(OUTPUT_PUSH_STALL_MS)])
    })
    const onAbort = (): void => { channel.abort(new Error('output push stopped')) }
    this.stop.signal.addEventListener('abort', onAbort, { once: true })
    try {
      await channel.send(encodePushHello(this.jobId))
      const replies = channel[Symbol.asyncIterator]()
      const first = await nextWithin(replies, OUTPUT_PUSH_STALL_MS)
      if (first === 'idle') throw new Error(`no answer to the push in ${OUTPUT_PUSH_STALL_MS} ms`)
      if (first.done === true) throw new Error('the requester closed the push')
      const answer = decodePushReply(first.value)
      this.accepted = !('refused' in answer)
      this.notify()
      if ('refused' in answer) {
        this.log.debug({ jobId: this.jobId, reason: answer.refused }, 'output push refused; the files will be fetched')
        await channel.close().catch(() => {})
        return
      }
      // the requester's progress, read while we write; its end before ours drops the push
      let sentAll = false
      const reading = this.readAcks(replies).then(
        () => { if (!sentAll) this.fail(new Error('the requester ended the push early')) },
        (err: Error) => { if (!sentAll) this.fail(err) }
      )
      await this.send(channel)
      sentAll = true
      // our end closes once every leaf is written (a reset would drop what the requester has not
      // read yet); the requester closes its end when it has stored them
      this.stop.signal.removeEventListener('abort', onAbort)
      await channel.close()
      const closed = await Promise.race([reading.then(() => true), new Promise<boolean>(resolve => setTimeout(() => { resolve(false) }, OUTPUT_PUSH_STALL_MS).unref())])
      if (!closed) channel.abort(new Error('the requester did not close the push'))
    } catch (err) {
      channel.abort(err instanceof Error ? err : new Error(String(err)))
      throw err
    } finally {
      this.stop.signal.removeEventListener('abort', onAbort)
    }
  }

  private async readAcks (replies: AsyncIterator<Uint8Array>): Promise<void> {
    while (true) {
      const next = await replies.next()
      if (next.done === true) return
      const reply = decodePushReply(next.value)
      if ('refused' in reply) throw new Error(`the requester stopped the push: ${reply.refused}`)
      // what it stored only grows, and never past what we sent
      if (reply.stored > this.stored && reply.stored <= this.sent) this.stored = reply.stored
      this.notify()
    }
  }

  /** Send the queued leaves as they come; returns when the queue is empty and no file will come. */
  private async send (channel: MessageChannel): Promise<void> {
    while (true) {
      await this.until(() => {
        this.stop.signal.throwIfAborted()
        return this.queue.length > 0 || this.finished
      })
      const leaf = this.queue.shift()
      if (leaf == null) return
      this.queuedBytes -= leaf.length
      this.sending = true
      try {
        await channel.send(leaf)
      } finally {
        this.sending = false
      }
      this.sent += leaf.length
      this.notify()
    }
  }
}
