/**
 * `/mercato/blob/2.1.0`: many blocks over one stream (see the module doc of blobs.ts).
 *
 * The fetcher opens one stream per peer and writes requests, each a length-prefixed canonical-CBOR
 * `{ cids: [...] }` of 1 to MAX_BLOB_BATCH CIDs (≤ MAX_BLOB_BATCH_REQUEST_BYTES). The server reads
 * one request at a time and answers each CID in order with one frame:
 * - `0x00` and the block's bytes;
 * - `0x01`: not held;
 * - `0x02` and canonical CBOR `{ code, message }`: the request was refused; the server closes;
 * - `0x03` and canonical CBOR `{ size }`: the block is larger than MAX_BLOCK_BYTES (a whole-blob
 *   raw block; 2.0.0 carries those), not read.
 * The fetcher keeps requests in flight up to BLOB_READ_AHEAD_BYTES of expected blocks, so a
 * stream stays full without either side buffering a blob.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { CID } from 'multiformats/cid'
import { canonicalDecode, canonicalEncode, sha256 } from '../crypto/index.js'
import { MercatoError, NotFoundError } from '../errors.js'
import { RemoteError, type MessageChannel, type Network } from '../p2p/index.js'
import { encodeBlobBatch, encodeBlobRequest, MAX_BLOB_BATCH } from './protocol/frames.js'
import { joined, rangeOf, sizeOfChunks, type Chunks } from './chunks.js'
import { BLOB_BUSY_RETRY_MS, BLOB_FETCH_CONCURRENCY, BLOB_PROTOCOL, BLOB_READ_AHEAD_BYTES, BLOB_STALL_MS, BLOB_STREAM_PROTOCOL, MAX_BLOCK_BYTES } from './constants.js'

export const FRAME_BLOCK = 0
export const FRAME_MISSING = 1
export const FRAME_REFUSED = 2
/** the block is larger than MAX_BLOCK_BYTES (a whole-blob raw block): ask it over 2.0.0 */
export const FRAME_TOO_LARGE = 3

const SHA2_256 = 0x12

/** A peer sent a block whose bytes do not hash to its CID. */
export class BlockMismatchError extends MercatoError {
  readonly peer: string
  readonly block: string
  constructor (peer: string, block: string) {
    super(`block ${block} from ${peer} does not match its CID`, { code: 'block-mismatch', status: 502, name: 'BlockMismatchError' })
    this.peer = peer
    this.block = block
  }
}

/** The server refused a blob stream request (too large, malformed, busy). */
export class BlobStreamRefusedError extends MercatoError {
  readonly remoteCode: string
  constructor (message: string, remoteCode: string) {
    super(message, { code: 'blob-stream-refused', status: 502, name: 'BlobStreamRefusedError' })
    this.remoteCode = remoteCode
  }
}

export function blockMatches (bytes: Chunks, cid: CID): boolean {
  if (cid.multihash.code !== SHA2_256) return false
  const digest = sha256(bytes)
  const expected = cid.multihash.digest
  return expected.length === digest.length && Buffer.compare(digest, expected) === 0
}

const BLOCK_HEADER = Uint8Array.of(FRAME_BLOCK)

/** A block's frame as its two parts (the type byte, then the block's own bytes, not copied), for `sendMany`. */
export const blockFrame = (bytes: Uint8Array): Uint8Array[] => [BLOCK_HEADER, bytes]

export const missingFrame = (): Uint8Array => Uint8Array.of(FRAME_MISSING)

export function tooLargeFrame (size: number): Uint8Array {
  const body = canonicalEncode({ size })
  const out = new Uint8Array(body.length + 1)
  out[0] = FRAME_TOO_LARGE
  out.set(body, 1)
  return out
}

export function refusedFrame (code: string, message: string): Uint8Array {
  const body = canonicalEncode({ code: code.slice(0, 64), message: message.slice(0, 512) })
  const out = new Uint8Array(body.length + 1)
  out[0] = FRAME_REFUSED
  out.set(body, 1)
  return out
}

/** The `{ code, message }` of a refusal frame, read defensively. */
export function readRefusal (frame: Uint8Array): { code: string, message: string } {
  let code = 'refused'
  let message = 'request refused'
  try {
    const body: unknown = canonicalDecode(frame.subarray(1))
    if (typeof body === 'object' && body !== null) {
      const { code: c, message: m } = body as Record<string, unknown>
      if (typeof c === 'string' && c.length <= 64) code = c
      if (typeof m === 'string') message = m.slice(0, 512)
    }
  } catch {}
  return { code, message }
}

interface Want {
  cid: CID
  key: string
  maxBytes: number
  /** bytes charged against the read-ahead while in flight */
  charge: number
  resolve: (bytes: Chunks) => void
  reject: (err: unknown) => void
}

/**
 * The blocks a fetch wants from one peer, over one `/mercato/blob/2.1.0` stream (or, from a peer
 * that does not speak it, one `/mercato/blob/2.0.0` request per block, BLOB_FETCH_CONCURRENCY at
 * once). Every block is hashed against its CID as it arrives: a wrong one fails the session (the
 * peer is dropped), as does a missing block, a refused request, or a broken stream; every block
 * still wanted is then rejected, for the caller to ask another peer.
 */
export class PeerSession {
  private readonly queue: Want[] = []
  private readonly inflight: Want[] = []
  private inflightBytes = 0
  private channel?: MessageChannel
  private legacy = false
  private legacyActive = 0
  private opening?: Promise<void>
  private failure?: unknown
  /** blocks being written to the store */
  private readonly storing = new Set<Promise<void>>()
  /** fails the session when blocks are asked for and no frame comes for BLOB_STALL_MS */
  private stall?: NodeJS.Timeout

  constructor (
    private readonly network: Network,
    readonly peer: string,
    private readonly signal: AbortSignal,
    /** stores a verified block (in the pieces it arrived in); a block counts against the read-ahead until it is stored */
    private readonly store: (cid: CID, bytes: Chunks) => Promise<void>
  ) {
    // a fetch that is stopped (its caller gave up, a job withdrawn or out of time) fails what it
    // still waits for at once: a peer sending a block every few seconds never trips the stall
    // timer, and kept a withdrawn job's fetch going for hours
    if (signal.aborted) this.failure = signal.reason
    else signal.addEventListener('abort', () => { this.fail(signal.reason ?? new Error('blob fetch stopped')) }, { once: true })
  }

  get failed (): boolean { return this.failure != null }

  /**
   * The verified and stored bytes of `cid` (at most `maxBytes`), in the pieces they arrived in;
   * `expected` is the size the parent node declares for it (what it is charged against the
   * read-ahead until it is stored).
   */
  async get (cid: CID, maxBytes: number, expected?: number): Promise<Chunks> {
    if (this.failure != null) throw this.failure
    if (maxBytes > MAX_BLOCK_BYTES) {
      // a whole-blob raw root (up to MAX_BLOB_BYTES): one request of its own, capped at its size
      const bytes = await this.requestOne(cid, maxBytes)
      await this.track(this.store(cid, bytes))
      return bytes
    }
    const charge = Math.min(maxBytes, expected != null && expected > 0 ? expected : maxBytes)
    return await new Promise<Chunks>((resolve, reject) => {
      this.queue.push({ cid, key: cid.toString(), maxBytes, charge, resolve, reject })
      this.pump()
    })
  }

  /** Drop the session: every block still wanted from this peer fails with `err`. */
  fail (err: unknown): void {
    if (this.failure != null) return
    this.failure = err
    for (const w of this.inflight.splice(0)) w.reject(err)
    for (const w of this.queue.splice(0)) w.reject(err)
    this.inflightBytes = 0
    clearTimeout(this.stall)
    this.channel?.abort(err instanceof Error ? err : new Error(String(err)))
  }

  /** (Re)start the stall timer while blocks are in flight; stop it when none is. */
  private watch (): void {
    clearTimeout(this.stall)
    if (this.inflight.length === 0 || this.failure != null) return
    this.stall = setTimeout(() => {
      this.fail(new NotFoundError(`${this.peer} sent no block for ${BLOB_STALL_MS} ms`, 'blob-not-found'))
    }, BLOB_STALL_MS)
    this.stall.unref?.()
  }

  /** End the session (the fetch is over). */
  close (): void {
    this.fail(new Error('blob fetch ended'))
  }

  /** Resolves when every block that arrived is stored (or failed to be). */
  async settled (): Promise<void> {
    while (this.storing.size > 0) await Promise.allSettled([...this.storing])
  }

  private track (p: Promise<void>): Promise<void> {
    this.storing.add(p)
    const done = (): void => { this.storing.delete(p) }
    p.then(done, done)
    return p
  }

  /**
   * One 2.0.0 request. A server at its limit of requests answers `busy`: it is asked again every
   * BLOB_BUSY_RETRY_MS, and dropped (the block asked of the next peer) once it has been busy for
   * BLOB_STALL_MS.
   */
  private async requestOne (cid: CID, maxBytes: number): Promise<Uint8Array> {
    let bytes: Uint8Array
    const since = Date.now()
    try {
      for (;;) {
        try {
          bytes = await this.network.request(this.peer, BLOB_PROTOCOL, encodeBlobRequest(cid.toString()), { signal: this.signal, maxResponseBytes: maxBytes })
          break
        } catch (err) {
          if (!(err instanceof RemoteError && err.remoteCode === 'busy') || Date.now() - since >= BLOB_STALL_MS) throw err
          await sleep(BLOB_BUSY_RETRY_MS, undefined, { signal: this.signal })
          if (this.failure != null) throw this.failure
        }
      }
    } catch (err) {
      this.fail(err)
      throw err
    }
    if (!blockMatches(bytes, cid)) {
      const err = new BlockMismatchError(this.peer, cid.toString())
      this.fail(err)
      throw err
    }
    return bytes
  }

  private pump (): void {
    if (this.failure != null) return
    if (this.legacy) { this.pumpLegacy(); return }
    if (this.channel == null) {
      this.opening ??= this.open()
      return
    }
    // batches while the read-ahead has room, from half empty on (a batch of several blocks lets the
    // server read the next from disk while it sends one); one block always goes when nothing is in flight
    if (this.inflight.length > 0 && this.inflightBytes > BLOB_READ_AHEAD_BYTES / 2) return
    while (this.queue.length > 0) {
      const batch: Want[] = []
      while (this.queue.length > 0 && batch.length < MAX_BLOB_BATCH) {
        const next = this.queue[0]
        if (this.inflight.length + batch.length > 0 && this.inflightBytes + next.charge > BLOB_READ_AHEAD_BYTES) break
        batch.push(next)
        this.queue.shift()
        this.inflightBytes += next.charge
      }
      if (batch.length === 0) return
      const wasIdle = this.inflight.length === 0
      this.inflight.push(...batch)
      if (wasIdle) this.watch()
      this.channel.send(encodeBlobBatch(batch.map(w => w.key))).catch(err => { this.fail(err) })
    }
  }

  private async open (): Promise<void> {
    try {
      this.channel = await this.network.openChannel(this.peer, BLOB_STREAM_PROTOCOL, {
        signal: this.signal,
        maxMessageBytes: MAX_BLOCK_BYTES + 1,
        // what may arrive before we read it: the read-ahead, and one block more from a peer whose blocks are larger than their parent said (it is then dropped)
        maxBufferBytes: BLOB_READ_AHEAD_BYTES + MAX_BLOCK_BYTES + 64 * 1024
      })
    } catch (err) {
      if (this.signal.aborted) { this.fail(this.signal.reason ?? err); return }
      // an older node (or one that does not answer 2.1.0): a request per block; an unreachable one fails there
      this.legacy = true
      this.pump()
      return
    }
    if (this.failure != null) { this.channel.abort(); return }
    void this.read(this.channel)
    this.pump()
  }

  private async read (channel: MessageChannel): Promise<void> {
    // the block whose frame is being read: taken off `inflight`, so failed here if its frame is bad
    let want: Want | undefined
    try {
      // frames in the pieces they arrived in: a block is hashed and written without being joined (chunks.ts)
      for await (const pieces of channel.parts()) {
        want = this.inflight.shift()
        this.watch()
        if (want == null) throw new BlobStreamRefusedError(`${this.peer} sent a frame nobody asked for`, 'unasked')
        const head = pieces.find(p => p.length > 0)
        if (head == null) throw new BlobStreamRefusedError(`${this.peer} sent an empty frame`, 'empty')
        const type = head[0]
        if (type === FRAME_MISSING) throw new NotFoundError(`block ${want.key} not held by ${this.peer}`, 'blob-not-found')
        if (type === FRAME_TOO_LARGE) throw new BlobStreamRefusedError(`block ${want.key} at ${this.peer} is larger than ${MAX_BLOCK_BYTES} bytes (a stream carries blocks up to that)`, 'too-large')
        if (type === FRAME_REFUSED) {
          const { code, message } = readRefusal(joined(pieces))
          throw new BlobStreamRefusedError(`${this.peer} refused the request (${code}): ${message}`, code)
        }
        if (type !== FRAME_BLOCK) throw new BlobStreamRefusedError(`${this.peer} sent a frame of unknown type ${type}`, 'bad-frame')
        // the block: the frame's pieces after its type byte, not copied
        const size = sizeOfChunks(pieces) - 1
        const bytes = rangeOf(pieces, 1, size + 1)
        const w = want
        if (size > want.maxBytes) throw new BlobStreamRefusedError(`block ${want.key} from ${this.peer} exceeds ${want.maxBytes} bytes`, 'too-large')
        if (!blockMatches(bytes, want.cid)) throw new BlockMismatchError(this.peer, want.key)
        // stored while the next frames arrive; its bytes leave the read-ahead once on disk
        this.track(this.store(w.cid, bytes)).then(() => {
          if (this.failure == null) this.inflightBytes -= w.charge
          w.resolve(bytes)
          this.pump()
        }, err => { w.reject(err); this.fail(err) })
        want = undefined
      }
      if (this.failure == null && (this.inflight.length > 0 || this.queue.length > 0)) {
        throw new NotFoundError(`${this.peer} closed the blob stream with ${this.inflight.length} block(s) unanswered`, 'blob-not-found')
      }
    } catch (err) {
      if (err instanceof BlobStreamRefusedError && err.remoteCode === 'busy' && this.failure == null) {
        // a server at its limit of streams: ask it the older way, a request per block
        if (want != null) this.inflight.unshift(want)
        this.queue.unshift(...this.inflight.splice(0))
        this.inflightBytes = 0
        clearTimeout(this.stall)
        this.legacy = true
        channel.abort()
        this.pump()
        return
      }
      want?.reject(err)
      this.fail(err)
    }
  }

  private pumpLegacy (): void {
    while (this.failure == null && this.legacyActive < BLOB_FETCH_CONCURRENCY && this.queue.length > 0) {
      const want = this.queue.shift() as Want
      this.legacyActive++
      this.requestOne(want.cid, want.maxBytes).then(async bytes => { await this.track(this.store(want.cid, bytes)); want.resolve(bytes) }).catch(want.reject).finally(() => {
        this.legacyActive--
        this.pump()
      })
    }
  }
}
