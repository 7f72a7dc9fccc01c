/**
 * Content-addressed blobs (wasm modules, inputs, output files), named by CIDv1 and kept as blocks
 * (see blocks.ts).
 *
 * Two ways in:
 * - {@link BlobStore.putStream} (uploads, `POST /v1/blobs`) builds a UnixFS file DAG with the IPFS
 *   ecosystem's own importer (ipfs-unixfs-importer) and its defaults, the same options as
 *   `ipfs add --cid-version 1` in kubo: 256 KiB chunks (`size-262144`), raw leaves, balanced layout
 *   with at most 174 links per node. A blob of up to 256 KiB is one raw block (`bafkrei…`, the
 *   sha2-256 of its bytes); a larger one a dag-pb root (`bafybei…`) over raw leaves. Either CID is
 *   the one any IPFS tool computes for the same bytes with those options.
 * - {@link BlobStore.put} (modules read whole, output files the executor names by the raw sha2-256
 *   CID of their bytes) stores the bytes as one raw block, as the first release did, so that the
 *   CID the executor computed stays the blob's name (≤ MAX_BLOB_BYTES).
 *
 * Blobs are read back by {@link BlobStore.cat} (a range, streamed) and {@link BlobStore.get} (the
 * whole): the DAG is walked in order, a few blocks ahead of the reader (BLOB_READ_AHEAD_BLOCKS).
 * A block is hashed when it is stored (imported or fetched), not again when it is read: the
 * store trusts its disk, as kubo does by default. (ipfs-unixfs-exporter, used before, reads a
 * whole file ahead of a slow reader: streaming 100 MiB out grew a node's RSS by 120 MiB.)
 *
 * ## The blob protocols
 * `/mercato/blob/2.1.0` (blob-stream.ts), what a fetch uses: one stream per peer for the whole
 * fetch. The fetcher writes requests `{ cids: [...] }` (canonical CBOR, 1 to MAX_BLOB_BATCH = 64
 * CIDs, ≤ 16 KiB); the server reads one request at a time and answers each CID in order with one
 * frame (`0x00` + the block, `0x01` not held, `0x02` + `{ code, message }` refused, then it
 * closes), each write waiting for the reader (backpressure). The fetcher keeps at most BLOB_READ_AHEAD_BYTES (4 MiB) of blocks asked
 * for and not yet stored per peer (a raw leaf is counted at the size its parent declares), and
 * resets a stream that sends more than that and one block unread; a peer that sends nothing for
 * BLOB_STALL_MS (10 s) while blocks are asked of it is dropped. The server reads up to
 * BLOB_SERVE_READ_AHEAD (4) blocks (≤ 1 MiB) of a batch and writes them at once, never a block larger
 * than MAX_BLOCK_BYTES (`0x03` + `{ size }`: 2.0.0 carries those), serves MAX_BLOB_STREAMS (32)
 * streams at once (more are refused `busy`, and the fetcher then asks over 2.0.0), two per
 * connection, and resets a stream idle (no request, or a reader taking nothing) for 30 s; a request
 * too large, malformed or naming too many CIDs gets a refusal frame.
 *
 * `/mercato/blob/2.0.0`, still served, and used to fetch from a peer that does not speak 2.1.0 (or
 * a whole-blob raw root larger than a block, one request): one request per block, `{ cid }`
 * (canonical CBOR, ≤ 512 bytes) → the block's bytes (one frame, ≤ MAX_BLOCK_BYTES; a raw root, a
 * whole-blob block of the first release, may be as large as the caller's size cap, ≤
 * MAX_BLOB_BYTES), BLOB_FETCH_CONCURRENCY requests at once. The server serves MAX_BLOB_REQUESTS
 * (32) requests at once, all peers together, holding at most MAX_BLOB_REQUEST_BYTES_SERVED (16 MiB)
 * of their blocks (a block larger than what is left waits for an idle server), each counted from
 * before its block is read until its reader has taken it (a reader that takes nothing: the
 * request's 10 s timeout); past that it answers `busy` without reading the block, and the fetcher
 * asks again every BLOB_BUSY_RETRY_MS, for up to BLOB_STALL_MS before it drops the peer.
 * BLOB_REQUESTS_PER_CONNECTION (16, two fetches) requests may be open on one connection.
 *
 * Either way the fetcher walks the DAG from its root: every block is hashed against its CID as it
 * arrives (a peer sending a wrong block is caught at that block and dropped; what was still asked
 * of it goes to the next peer), dag-pb nodes must be UnixFS file nodes, the bytes the DAG
 * describes are counted against the caller's `maxBytes` as they come (and the root's declared
 * size is checked before any leaf is asked for), the depth and the number of nodes visited are
 * capped. Blocks are stored as they arrive (a fetch returns only when every block that arrived is
 * on disk): a transfer that breaks resumes from what is held, asking only for the missing blocks.
 * A blob counts as held only when every block of its DAG is.
 */
import { importFile } from '../crypto/unixfs.js'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { cidOfBytes } from '../crypto/index.js'
import { decodeBlobBatch, decodeBlobRequest, MAX_BLOB_BATCH_REQUEST_BYTES, MAX_BLOB_REQUEST_BYTES } from './protocol/frames.js'
import { joined, rangeOf, sizeOfChunks, type Chunks } from './chunks.js'
import { BlockMismatchError, blockFrame, missingFrame, PeerSession, refusedFrame, tooLargeFrame } from './blob-stream.js'
import { InvalidInputError, MercatoError, NotFoundError } from '../errors.js'
import type { MessageChannel, Network } from '../p2p/index.js'
import { logger } from '../logger.js'
import {
  BLOB_PROTOCOL, BLOB_READ_AHEAD_BLOCKS, BLOB_SERVE_BATCH_BYTES, BLOB_SERVE_READ_AHEAD, BLOB_STREAM_IDLE_MS, BLOB_STREAM_PROTOCOL,
  BLOB_REQUESTS_PER_CONNECTION, BLOB_STREAMS_PER_CONNECTION, MAX_BLOB_BYTES, MAX_BLOB_REQUEST_BYTES_SERVED, MAX_BLOB_REQUESTS,
  MAX_BLOB_STREAMS, MAX_BLOCK_BYTES, MAX_DAG_DEPTH, MAX_UPLOAD_BYTES
} from './constants.js'

export { BlockMismatchError } from './blob-stream.js'
import { BlockStore, BlockTooLargeError } from './blocks.js'
import { BlobCollector } from './blob-gc.js'

const log = logger('auction:blobs')

const SHA2_256 = 0x12

/** A blob larger than the caller's cap (an upload past `blobs.maxUploadBytes`, a fetch past `maxBytes`). HTTP 413. */
export class BlobTooLargeError extends MercatoError {
  constructor (message: string) {
    super(message, { code: 'blob-too-large', status: 413, name: 'BlobTooLargeError' })
  }
}


/**
 * We serve as many blob requests (2.0.0) or streams (2.1.0) at once as we will: ask later, or
 * another peer. Sent to the peer as the refusal's code `busy`.
 */
export class BlobBusyError extends MercatoError {
  constructor (message: string) {
    super(message, { code: 'busy', status: 503, retryable: true, name: 'BlobBusyError' })
  }
}

/** A DAG that is not a UnixFS file Mercato reads: unknown codec or hash, a directory, too deep, sizes that disagree. */
export class InvalidBlobError extends MercatoError {
  constructor (message: string) {
    super(message, { code: 'invalid-blob', status: 400, name: 'InvalidBlobError' })
  }
}

export interface BlobOptions {
  /** keep the bytes in the in-memory cache (default true) */
  cache?: boolean
}

export interface PutStreamOptions {
  /** refuse (BlobTooLargeError) past this many bytes; default MAX_UPLOAD_BYTES */
  maxBytes?: number
  signal?: AbortSignal
  /**
   * The stream is this file's bytes from its start, and nobody writes the file any more (a job's
   * output, once the job is over): its leaves may stay in it, the file becoming a pack of the
   * store, instead of being written a second time (blocks.ts, Staging.inPlace).
   */
  fromFile?: string
}

/** A range of a file: `length` bytes at `offset`. */
export interface Extent { file: string, offset: number, length: number }

export interface CatOptions {
  offset?: number
  length?: number
  signal?: AbortSignal
}

export interface FetchOptions extends BlobOptions {
  signal?: AbortSignal
  /** most bytes the blob may have (default MAX_BLOB_BYTES) */
  maxBytes?: number
}

/** What the store has done, for tests and status. */
export interface BlobStats {
  /** blocks fetched from peers (each verified) */
  blocksFetched: number
  /** blocks served to peers */
  blocksServed: number
  /** blocks a provider pushed to us (a job's output leaves, hashed here), new or already held */
  blocksPushed: number
  /** blob requests (2.0.0) and streams (2.1.0) of peers refused `busy`: we served as many at once as we will */
  busyRefused: number
}

function parseCid (cid: string): CID | undefined {
  try { return CID.parse(cid) } catch { return undefined }
}

function checkKind (cid: CID): void {
  if (cid.multihash.code !== SHA2_256) throw new InvalidBlobError(`${cid.toString()}: only sha2-256 blocks are supported`)
  if (cid.code !== raw.code && cid.code !== dagPb.code) throw new InvalidBlobError(`${cid.toString()}: codec 0x${cid.code.toString(16)} is not raw or dag-pb`)
}

/** A dag-pb block as a UnixFS file node (throws InvalidBlobError otherwise). */
function fileNode (bytes: Uint8Array, cid: CID): { links: CID[], sizes: bigint[], data: number, content?: Uint8Array, fileSize: number } {
  let node: dagPb.PBNode
  let unixfs: UnixFS
  try {
    node = dagPb.decode(bytes)
    if (node.Data == null) throw new Error('no data')
    unixfs = UnixFS.unmarshal(node.Data)
  } catch (err: any) {
    throw new InvalidBlobError(`${cid.toString()}: not a UnixFS node (${err?.message ?? err})`)
  }
  if (unixfs.type !== 'file' && unixfs.type !== 'raw') throw new InvalidBlobError(`${cid.toString()}: a UnixFS ${unixfs.type}, not a file`)
  return { links: node.Links.map(l => l.Hash), sizes: unixfs.blockSizes, data: unixfs.data?.length ?? 0, content: unixfs.data, fileSize: Number(unixfs.fileSize()) }
}

export class BlobStore {
  readonly blocks: BlockStore
  /** pins, holds and the collector of cached blobs (blob-gc.ts) */
  readonly gc: BlobCollector
  private readonly cache = new Map<string, Uint8Array>()
  private readonly counters: BlobStats = { blocksFetched: 0, blocksServed: 0, blocksPushed: 0, busyRefused: 0 }

  constructor (dir?: string) {
    this.blocks = new BlockStore(dir)
    this.gc = new BlobCollector(this.blocks, dir)
  }

  async start (): Promise<void> {
    await this.blocks.start()
    await this.gc.load()
  }

  stats (): BlobStats {
    return { ...this.counters }
  }

  /**
   * Store bytes as one raw block under the raw sha2-256 CID of the whole (≤ MAX_BLOB_BYTES), the
   * name the executor gives output files. `cache: false` keeps them out of the in-memory cache
   * (output files: large, read once or twice, and many of them).
   */
  async put (bytes: Uint8Array, opts: BlobOptions = {}): Promise<string> {
    if (bytes.length === 0) throw new InvalidInputError('empty blob', 'empty-blob')
    if (bytes.length > MAX_BLOB_BYTES) throw new BlobTooLargeError(`blob of ${bytes.length} bytes exceeds ${MAX_BLOB_BYTES}`)
    const cid = cidOfBytes(bytes)
    await this.blocks.put(cid, bytes)
    if (opts.cache !== false) this.remember(cid, bytes)
    return cid
  }

  /**
   * Store a block a peer pushed without being asked (a job's output leaf, requester/push.ts) as a
   * raw block under the CID of its bytes, hashed here: nothing the peer says names it, so it cannot
   * be wrong, only useless (not a leaf of any output: cached, and collected like any fetched block).
   * Returns its CID.
   */
  async putLeaf (bytes: Chunks): Promise<string> {
    const size = sizeOfChunks(bytes)
    if (size === 0 || size > MAX_BLOCK_BYTES) throw new InvalidInputError(`a pushed block of ${size} bytes`, 'invalid-block')
    const cid = cidOfBytes(bytes)
    await this.blocks.put(cid, bytes)
    this.counters.blocksPushed++
    return cid
  }

  /**
   * Import a byte stream as a UnixFS file (kubo's `ipfs add --cid-version 1` options) and return its
   * CID. Past `maxBytes` it throws BlobTooLargeError; the blocks written so far are dropped (they
   * wait in a staging area until the import is complete), so nothing of a refused upload is held.
   */
  async putStream (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: PutStreamOptions = {}): Promise<string> {
    const limit = opts.maxBytes ?? MAX_UPLOAD_BYTES
    const staging = await this.blocks.staging()
    let total = 0
    const signal = opts.signal
    const readFrom = opts.fromFile != null ? staging.inPlace(opts.fromFile) : undefined
    async function * capped (): AsyncGenerator<Uint8Array> {
      for await (const chunk of source) {
        signal?.throwIfAborted()
        readFrom?.(chunk, total)
        total += chunk.length
        if (total > limit) throw new BlobTooLargeError(`the upload exceeds ${limit} bytes`)
        if (chunk.length > 0) yield chunk
      }
    }
    try {
      // the importer's defaults: kubo's `ipfs add --cid-version 1` (see the module doc)
      const cid = await importFile(capped(), staging)
      signal?.throwIfAborted()
      if (total === 0) throw new InvalidInputError('empty blob', 'empty-blob')
      const blocks = staging.size
      await staging.commit()
      log.debug({ cid, bytes: total, blocks }, 'blob imported')
      return cid
    } catch (err) {
      await staging.discard()
      throw err
    }
  }

  /**
   * Stream the bytes of a held blob (`offset`, `length` select a range). Throws NotFoundError when
   * a block is missing, InvalidBlobError when a node does not decode or the DAG's sizes disagree. The DAG
   * is read in order, BLOB_READ_AHEAD_BLOCKS blocks ahead of the reader and no further (the
   * exporter of ipfs-unixfs-exporter reads a whole file ahead of a slow reader): a file of any
   * size is streamed in a few MiB.
   */
  async * cat (cid: string, opts: CatOptions = {}): AsyncGenerator<Uint8Array> {
    const parsed = parseCid(cid)
    if (parsed == null) throw new NotFoundError(`no blob ${cid}`, 'blob-not-found')
    checkKind(parsed)
    const start = opts.offset ?? 0
    const end = opts.length != null ? start + opts.length : Number.POSITIVE_INFINITY
    if (!Number.isSafeInteger(start) || start < 0 || !(end >= start)) throw new InvalidInputError(`invalid range: offset ${opts.offset}, length ${opts.length}`, 'invalid-range')
    yield * this.readRange(parsed, { pos: 0, start, end, depth: 0, signal: opts.signal })
  }

  /**
   * A held block. Not hashed again: the store holds only blocks hashed when they were written (the
   * importer's own, fetched ones checked against their CID before `put`), so a read trusts the
   * disk as kubo does by default (`Datastore.HashOnRead` false). Whoever takes the bytes over the
   * network checks them on arrival. Hashing again on every read cost a provider 60-100 ms per 100
   * MiB input staged for a job, on the job's path (bench:data).
   */
  private async readBlock (cid: CID): Promise<Uint8Array> {
    const bytes = await this.blocks.get(cid)
    if (bytes == null) throw new NotFoundError(`block ${cid.toString()} is not held`, 'blob-incomplete')
    return bytes
  }

  /** The file bytes under `cid` (at file position `pos`, `expected` bytes long if known) that fall in [start, end). */
  private async * readRange (cid: CID, at: { pos: number, start: number, end: number, depth: number, signal?: AbortSignal, expected?: number, block?: Promise<Chunks>, read?: (cid: CID) => Promise<Chunks> }): AsyncGenerator<Uint8Array> {
    const { pos, start, end, depth, signal } = at
    const read = at.read ?? (async (c: CID) => await this.readBlock(c))
    signal?.throwIfAborted()
    if (depth > MAX_DAG_DEPTH) throw new InvalidBlobError(`${cid.toString()}: DAG deeper than ${MAX_DAG_DEPTH}`)
    checkKind(cid)
    const bytes = await (at.block ?? read(cid))
    if (cid.code === raw.code) {
      // a fetched leaf in the pieces it arrived in: sent on piece by piece (chunks.ts)
      const size = sizeOfChunks(bytes)
      if (at.expected != null && size !== at.expected) throw new InvalidBlobError(`${cid.toString()}: ${size} bytes where its parent declares ${at.expected}`)
      yield * rangeOf(bytes, Math.max(0, start - pos), Math.min(size, end - pos))
      return
    }
    const node = fileNode(joined(bytes), cid)
    if (at.expected != null && node.fileSize !== at.expected) throw new InvalidBlobError(`${cid.toString()}: ${node.fileSize} bytes where its parent declares ${at.expected}`)
    if (node.links.length > 0 && node.sizes.length !== node.links.length) throw new InvalidBlobError(`${cid.toString()}: ${node.links.length} links, ${node.sizes.length} sizes`)
    let p = pos
    if (node.content != null && node.content.length > 0) {
      const from = Math.max(0, start - p)
      const to = Math.min(node.content.length, end - p)
      if (to > from) yield node.content.subarray(from, to)
      p += node.content.length
    }
    // the children that hold bytes of the range, read in order a few blocks ahead
    const kids: Array<{ cid: CID, pos: number, size: number }> = []
    for (let i = 0; i < node.links.length; i++) {
      const size = Number(node.sizes[i])
      if (p + size > start && p < end && size > 0) kids.push({ cid: node.links[i], pos: p, size })
      p += size
      if (p >= end) break
    }
    const ahead: Array<Promise<Chunks>> = []
    let next = 0
    for (const kid of kids) {
      while (next < kids.length && ahead.length < BLOB_READ_AHEAD_BLOCKS) {
        const reading = read(kids[next++].cid)
        reading.catch(() => {}) // awaited in turn below; a read abandoned by an early stop must not go unhandled
        ahead.push(reading)
      }
      yield * this.readRange(kid.cid, { pos: kid.pos, start, end, depth: depth + 1, signal, expected: kid.size, block: ahead.shift(), read: at.read })
    }
  }

  /**
   * Where a blob's bytes are on disk, in order: ranges of the store's pack files (raw leaves next to
   * each other in a pack make one range), and the release of a lease that keeps those packs where
   * they are until it is called (BlockStore.lease). For a reader that takes the bytes from the
   * packs themselves: a job's input read in place, not copied. Undefined when the blob is not held
   * whole, or some of its bytes are not in a pack (a memory store, an older layout, a node with
   * bytes of its own rather than raw leaves), or they are in more than `maxExtents` ranges (a DAG
   * that names one small leaf many times, say) or `maxFiles` pack files (leaves scattered over
   * many packs: a reader would hold a descriptor for each).
   */
  async extents (cid: string, opts: { maxExtents?: number, maxFiles?: number } = {}): Promise<{ extents: Extent[], release: () => void } | undefined> {
    const parsed = parseCid(cid)
    if (parsed == null) return undefined
    // the leaves in order, with the size their parent declares (inner nodes are read: awaits)
    const leaves: Array<{ key: string, expected?: number }> = []
    const visit = async (c: CID, depth: number, expected?: number): Promise<boolean> => {
      if (depth > MAX_DAG_DEPTH) return false
      checkKind(c)
      if (c.code === raw.code) { leaves.push({ key: c.toString(), expected }); return true }
      const node = fileNode(await this.readBlock(c), c)
      if ((node.content != null && node.content.length > 0) || node.sizes.length !== node.links.length) return false
      if (expected != null && node.fileSize !== expected) return false
      for (let i = 0; i < node.links.length; i++) {
        const size = Number(node.sizes[i])
        if (size > 0 && !await visit(node.links[i], depth + 1, size)) return false
      }
      return true
    }
    try {
      if (!await visit(parsed, 0)) return undefined
    } catch {
      return undefined
    }
    // where each leaf is, and the lease on those packs, in one turn: no compaction moves one between
    const release = this.blocks.lease(leaves.map(l => l.key))
    const extents: Extent[] = []
    const files = new Set<string>()
    for (const { key, expected } of leaves) {
      const at = this.blocks.where(key)
      if (at == null || (expected != null && at.length !== expected)) { release(); return undefined }
      if (files.add(at.file).size > (opts.maxFiles ?? Number.POSITIVE_INFINITY)) { release(); return undefined }
      const last = extents.at(-1)
      if (last != null && last.file === at.file && last.offset + last.length === at.offset) last.length += at.length
      else if (extents.push(at) > (opts.maxExtents ?? Number.POSITIVE_INFINITY)) { release(); return undefined }
    }
    return { extents, release }
  }

  /** The size of a blob held whole, or undefined (not held, or some block missing). */
  async size (cid: string): Promise<number | undefined> {
    const parsed = parseCid(cid)
    if (parsed == null) return undefined
    try {
      return await this.walk(parsed, { limit: Number.MAX_SAFE_INTEGER })
    } catch {
      return undefined
    }
  }

  async has (cid: string): Promise<boolean> {
    return (await this.size(cid)) != null
  }

  private remember (cid: string, bytes: Uint8Array): void {
    if (bytes.length > MAX_BLOB_BYTES) return
    this.cache.set(cid, bytes)
    if (this.cache.size > 32) this.cache.delete(this.cache.keys().next().value as string)
  }

  /** The whole blob, or undefined when it is not held whole (or a stored block is damaged). */
  async get (cid: string, opts: BlobOptions = {}): Promise<Uint8Array | undefined> {
    const hit = this.cache.get(cid)
    if (hit != null) return hit
    const parsed = parseCid(cid)
    if (parsed == null) return undefined
    try {
      checkKind(parsed)
      const parts: Uint8Array[] = []
      for await (const part of this.cat(cid)) parts.push(part)
      const bytes = parts.length === 1 ? parts[0] : new Uint8Array(Buffer.concat(parts))
      if (opts.cache !== false) this.remember(cid, bytes)
      return bytes
    } catch (err: any) {
      if (err?.code !== 'blob-incomplete' && err?.code !== 'blob-not-found') log.warn({ cid, err: err?.message }, 'stored blob cannot be read; ignoring')
      return undefined
    }
  }

  /**
   * Walk a blob's DAG from its root, checking its shape and counting the file's bytes against
   * `limit`. Missing blocks are asked of `fetchBlock` (the network); without it, a missing block
   * ends the walk with `undefined`. Returns the file's size.
   */
  private async walk (root: CID, opts: { limit: number, fetchBlock?: (cid: CID, maxBytes: number, expected?: number) => Promise<Chunks>, signal?: AbortSignal }): Promise<number | undefined> {
    const { limit, fetchBlock } = opts
    // an average block of 1 KiB at least: a DAG of empty nodes linking each other many times is work, not data
    const maxVisits = Math.ceil(limit / 1024) + 1024
    let total = 0
    let visits = 0
    let missing = false
    let declared: number | undefined
    const add = (n: number): void => {
      total += n
      if (total > limit) throw new BlobTooLargeError(`blob ${root.toString()} exceeds ${limit} bytes`)
    }
    const visit = async (cid: CID, depth: number, expected?: number): Promise<void> => {
      opts.signal?.throwIfAborted()
      if (missing) return
      if (depth > MAX_DAG_DEPTH) throw new InvalidBlobError(`blob ${root.toString()}: DAG deeper than ${MAX_DAG_DEPTH}`)
      if (++visits > maxVisits) throw new InvalidBlobError(`blob ${root.toString()}: more than ${maxVisits} nodes for ${limit} bytes`)
      checkKind(cid)
      if (cid.code === raw.code) {
        const held = await this.blocks.sizeOf(cid)
        if (held != null) { add(held); return }
        if (fetchBlock == null) { missing = true; return }
        // a whole-blob raw block (put, or the first release) may be larger than a chunk; never past the cap
        const bytes = await fetchBlock(cid, depth === 0 ? Math.min(limit, Math.max(MAX_BLOB_BYTES, MAX_BLOCK_BYTES)) : MAX_BLOCK_BYTES, expected)
        add(sizeOfChunks(bytes))
        return
      }
      let bytes = await this.blocks.get(cid)
      if (bytes == null) {
        if (fetchBlock == null) { missing = true; return }
        bytes = joined(await fetchBlock(cid, MAX_BLOCK_BYTES))
      }
      const node = fileNode(bytes, cid)
      if (depth === 0) {
        declared = node.fileSize
        if (declared > limit) throw new BlobTooLargeError(`blob ${root.toString()} is ${declared} bytes; the limit is ${limit}`)
      }
      add(node.data)
      // a raw leaf's size is the one its parent declares (a dag-pb child's is not known before it arrives)
      await Promise.all(node.links.map(async (link, i) => {
        await visit(link, depth + 1, link.code === raw.code && node.sizes.length === node.links.length ? Number(node.sizes[i]) : undefined)
      }))
    }
    await visit(root, 0)
    if (missing) return undefined
    if (declared != null && declared !== total) throw new InvalidBlobError(`blob ${root.toString()} declares ${declared} bytes and holds ${total}`)
    return total
  }

  /**
   * Serve blocks to peers: `/mercato/blob/2.1.0` (batches of CIDs in, one frame per block out, on
   * one stream) and `/mercato/blob/2.0.0` (`{ cid }` → the block) for older nodes.
   */
  async serve (network: Network): Promise<void> {
    await network.handle(BLOB_PROTOCOL, async (req, { ended }) => {
      const cid = decodeBlobRequest(req)
      const parsed = parseCid(cid)
      // its size first, without reading it: a request past the bounds is refused before any block is read
      const size = parsed != null ? await this.blocks.sizeOf(parsed) : undefined
      if (parsed == null || size == null) throw new NotFoundError(`no block ${cid}`)
      if (this.requests >= MAX_BLOB_REQUESTS || (this.requests > 0 && this.requestBytes + size > MAX_BLOB_REQUEST_BYTES_SERVED)) {
        this.counters.busyRefused++
        throw new BlobBusyError(`this node serves ${MAX_BLOB_REQUESTS} blob requests (${MAX_BLOB_REQUEST_BYTES_SERVED} bytes) at once`)
      }
      // the block is held until its reader has taken it (a reader that takes nothing: until the
      // request times out), so it counts until the exchange is over, not until it is read
      this.requests++
      this.requestBytes += size
      void ended.then(() => {
        this.requests--
        this.requestBytes -= size
      })
      // what peers ask for is not cached: a stranger cannot evict our hot modules by asking
      const bytes = await this.blocks.get(parsed)
      if (bytes == null) throw new NotFoundError(`no block ${cid}`)
      this.counters.blocksServed++
      return bytes
    }, { maxRequestBytes: MAX_BLOB_REQUEST_BYTES, maxInboundStreams: BLOB_REQUESTS_PER_CONNECTION })
    await network.handleChannel(BLOB_STREAM_PROTOCOL, async (channel) => { await this.serveStream(channel) }, {
      maxMessageBytes: MAX_BLOB_BATCH_REQUEST_BYTES,
      // a client that writes requests faster than we answer them is reset past a few of them
      maxBufferBytes: 4 * MAX_BLOB_BATCH_REQUEST_BYTES,
      maxInboundStreams: BLOB_STREAMS_PER_CONNECTION
    })
  }

  /** Blob streams being served now (all peers). */
  private streams = 0
  /** 2.0.0 requests being served now (all peers), and the bytes of their blocks. */
  private requests = 0
  private requestBytes = 0

  /**
   * One `/mercato/blob/2.1.0` stream: a request at a time, its blocks in order, a few at a time in
   * one write, each write once the reader has taken the previous ones (the stream's backpressure):
   * BLOB_SERVE_READ_AHEAD blocks in memory at most. Idle (no request, or a reader taking nothing) for BLOB_STREAM_IDLE_MS, it is reset.
   */
  private async serveStream (channel: MessageChannel): Promise<void> {
    const from = channel.remotePeer
    if (this.streams >= MAX_BLOB_STREAMS) {
      this.counters.busyRefused++
      await channel.send(refusedFrame('busy', `this node serves ${MAX_BLOB_STREAMS} blob streams at once`)).catch(() => {})
      await channel.close()
      return
    }
    this.streams++
    let timer: NodeJS.Timeout | undefined
    const idle = (): void => {
      clearTimeout(timer)
      timer = setTimeout(() => { channel.abort(new Error(`blob stream idle for ${BLOB_STREAM_IDLE_MS} ms`)) }, BLOB_STREAM_IDLE_MS)
      timer.unref?.()
    }
    idle()
    try {
      for await (const request of channel) {
        idle()
        let cids: string[]
        try {
          cids = decodeBlobBatch(request)
        } catch (err: any) {
          await channel.send(refusedFrame(String(err?.code ?? 'bad-request'), String(err?.message ?? err)))
          await channel.close()
          return
        }
        // a block larger than a block may be (a whole-blob raw block of up to 16 MiB) is not read: 2.0.0 carries those
        const read = async (cid: string): Promise<Uint8Array | number | undefined> => {
          const parsed = parseCid(cid)
          try {
            return parsed != null ? await this.blocks.get(parsed, { maxBytes: MAX_BLOCK_BYTES }) : undefined
          } catch (err) {
            if (err instanceof BlockTooLargeError) return err.size
            return undefined
          }
        }
        // a few blocks at a time, in one write (BLOB_SERVE_READ_AHEAD blocks, BLOB_SERVE_BATCH_BYTES, in memory at most)
        let i = 0
        while (i < cids.length) {
          const frames: Array<Uint8Array | Uint8Array[]> = []
          let batched = 0
          while (i < cids.length && frames.length < BLOB_SERVE_READ_AHEAD && batched < BLOB_SERVE_BATCH_BYTES) {
            const bytes = await read(cids[i++])
            if (bytes instanceof Uint8Array) {
              this.counters.blocksServed++
              frames.push(blockFrame(bytes))
              batched += bytes.length + 1
            } else {
              const frame = bytes == null ? missingFrame() : tooLargeFrame(bytes)
              frames.push(frame)
              batched += frame.length
            }
          }
          await channel.sendMany(frames)
          idle()
        }
      }
      await channel.close()
    } catch (err: any) {
      if (err?.code === 'message-too-large') {
        log.debug({ from }, 'blob stream request too large; refusing')
        await channel.send(refusedFrame('message-too-large', `a request is at most ${MAX_BLOB_BATCH_REQUEST_BYTES} bytes`)).catch(() => {})
        await channel.close().catch(() => {})
        return
      }
      log.debug({ from, err: err?.message }, 'blob stream ended')
      channel.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      clearTimeout(timer)
      this.streams--
    }
  }

  /**
   * Fetch the blocks of a blob that are not held yet from `peers`, verifying and storing each;
   * returns the blob's size. Blocks are asked of the first peer still in the running, over one
   * stream (`/mercato/blob/2.1.0`, or a request per block from a peer that only speaks 2.0.0); a
   * peer that fails, lacks a block or lies is dropped and what was still wanted from it is asked
   * of the next. Throws BlobTooLargeError past `maxBytes` (default MAX_BLOB_BYTES),
   * BlockMismatchError when the only peers that answered sent wrong bytes, NotFoundError
   * (`blob-not-found`) otherwise.
   */
  async pull (network: Network, cid: string, peers: string[], opts: FetchOptions = {}, onStored?: (block: CID, bytes: Chunks) => void): Promise<number> {
    const root = parseCid(cid)
    if (root == null) throw new NotFoundError(`not a CID: ${cid.slice(0, 128)}`, 'blob-not-found')
    const limit = opts.maxBytes ?? MAX_BLOB_BYTES
    const alive = [...peers]
    const sessions = new Map<string, PeerSession>()
    let lastErr: unknown
    const stop = new AbortController()
    const signal = opts.signal != null ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal
    const store = async (block: CID, bytes: Chunks): Promise<void> => {
      await this.blocks.put(block, bytes, { missing: true })
      this.counters.blocksFetched++
      onStored?.(block, bytes)
    }
    const drop = (peer: string, err: unknown): void => {
      const i = alive.indexOf(peer)
      if (i < 0) return
      alive.splice(i, 1)
      lastErr = err
      if (err instanceof BlockMismatchError) log.warn({ peer, cid, block: err.block }, 'peer sent a block that does not match its CID; dropping it')
      else log.debug({ peer, cid, err: (err as any)?.message }, 'blob peer dropped')
    }
    const fetchBlock = async (block: CID, maxBytes: number, expected?: number): Promise<Chunks> => {
      while (alive.length > 0) {
        signal.throwIfAborted()
        const peer = alive[0]
        let session = sessions.get(peer)
        if (session == null) {
          session = new PeerSession(network, peer, signal, store)
          sessions.set(peer, session)
        }
        try {
          return await session.get(block, maxBytes, expected)
        } catch (err) {
          signal.throwIfAborted()
          session.fail(err)
          drop(peer, err)
        }
      }
      if (lastErr instanceof BlockMismatchError) throw lastErr
      throw new NotFoundError(`blob ${cid}: block ${block.toString()} not found at ${peers.length} peer(s): ${(lastErr as any)?.message ?? 'no peers'}`, 'blob-not-found')
    }
    try {
      const size = await this.walk(root, { limit, fetchBlock, signal })
      if (size == null) throw new NotFoundError(`blob ${cid} is incomplete`, 'blob-not-found')
      return size
    } catch (err) {
      if (opts.signal?.aborted === true) throw opts.signal.reason ?? err
      throw err
    } finally {
      stop.abort()
      for (const s of sessions.values()) s.close()
      // what arrived is on disk before we return: a fetch that failed resumes from every block it got
      await Promise.all([...sessions.values()].map(async s => { await s.settled() }))
    }
  }

  /**
   * A blob's bytes as they arrive: what `pull` fetches (each block verified and stored) is streamed
   * in file order while the rest is still coming, instead of after the whole transfer. Resolves
   * once the root is here with the blob's size (checked against `maxBytes`, so a caller can send a
   * length before the bytes); the content then waits for each block the pull has not stored yet
   * (handed over as it is stored, or read back from the store when the reader is behind). A failed
   * pull fails the content where it stands; a reader that stops early stops the pull (what arrived
   * stays stored: a later fetch resumes from it).
   */
  async pullStream (network: Network, cid: string, peers: string[], opts: FetchOptions = {}): Promise<{ size: number, content: AsyncGenerator<Uint8Array> }> {
    const root = parseCid(cid)
    if (root == null) throw new NotFoundError(`not a CID: ${cid.slice(0, 128)}`, 'blob-not-found')
    checkKind(root)
    const limit = opts.maxBytes ?? MAX_BLOB_BYTES
    const stop = new AbortController()
    const signal = opts.signal != null ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal
    // readers waiting for a block the pull has not stored yet, by CID
    const waiting = new Map<string, Array<(bytes: Chunks | undefined) => void>>()
    let over = false
    let failure: unknown
    const wake = (key: string, bytes?: Chunks): void => {
      const list = waiting.get(key)
      if (list == null) return
      waiting.delete(key)
      for (const w of list) w(bytes)
    }
    const pulled = this.pull(network, cid, peers, { ...opts, maxBytes: limit, signal }, (block, bytes) => { wake(block.toString(), bytes) })
    const end = (err?: unknown): void => {
      over = true
      failure = err
      for (const key of [...waiting.keys()]) wake(key)
    }
    pulled.then(() => { end() }, (err) => { end(err ?? new Error('pull failed')) })
    const read = async (block: CID): Promise<Chunks> => {
      const key = block.toString()
      for (;;) {
        // a failed pull ends the reader at the next block it asks for, held or not
        if (failure != null) throw failure
        // wait first, then look: a block stored between the look and the wait is not missed
        const arrived = over ? undefined : new Promise<Chunks | undefined>((resolve) => {
          const list = waiting.get(key)
          if (list != null) list.push(resolve); else waiting.set(key, [resolve])
        })
        // a block still being written is taken in its pieces, not joined by get
        const held = this.blocks.writing(block) ?? await this.blocks.get(block)
        if (held != null) { if (arrived != null) wake(key, held); return held }
        if (arrived == null) {
          if (failure != null) throw failure
          throw new NotFoundError(`block ${key} is not held`, 'blob-incomplete')
        }
        const bytes = await arrived
        if (bytes != null) return bytes
      }
    }
    let size: number
    try {
      const first = await read(root)
      size = root.code === raw.code ? sizeOfChunks(first) : fileNode(joined(first), root).fileSize
      if (size > limit) throw new BlobTooLargeError(`blob ${cid} is ${size} bytes; the limit is ${limit}`)
    } catch (err) {
      stop.abort()
      await pulled.catch(() => {})
      throw err
    }
    const self = this
    async function * content (): AsyncGenerator<Uint8Array> {
      // kept while it streams: a reader far behind reads the blocks back from the store, and the
      // collector must not take them meanwhile (a fetched blob is cache)
      const release = self.gc.hold(cid)
      let done = false
      let sent = 0
      try {
        for await (const piece of self.readRange(root as CID, { pos: 0, start: 0, end: Number.POSITIVE_INFINITY, depth: 0, signal: opts.signal, read })) {
          // readRange holds every node to the sizes its parent declares, so the total is the root's
          // size (a UnixFS node's size is its own bytes plus its children's): checked anyway, since
          // a reader may have promised exactly `size` bytes (an HTTP content-length)
          sent += piece.length
          if (sent > size) throw new InvalidBlobError(`blob ${cid}: more than the ${size} bytes its root declares`)
          yield piece
        }
        // the bytes are out; the walk's own checks (the sizes it declared, every block) have the last word
        await pulled
        if (sent !== size) throw new InvalidBlobError(`blob ${cid}: ${sent} bytes where its root declares ${size}`)
        done = true
      } finally {
        if (!done) {
          stop.abort()
          await pulled.catch(() => {})
        }
        release()
      }
    }
    // the pull goes on until the content is read to its end or stopped (by a failure, `return()`
    // or opts.signal); content never read is stopped by opts.signal only
    return { size, content: content() }
  }

  /** Fetch a blob (the blocks not held) from `peers`, verify and store it; returns its bytes. */
  async fetch (network: Network, cid: string, peers: string[], opts: FetchOptions = {}): Promise<Uint8Array> {
    const size = await this.size(cid)
    if (size != null) {
      if (size > (opts.maxBytes ?? MAX_BLOB_BYTES)) throw new BlobTooLargeError(`blob ${cid} is ${size} bytes; the limit is ${opts.maxBytes ?? MAX_BLOB_BYTES}`)
      const local = await this.get(cid, opts)
      if (local != null) return local
    }
    await this.pull(network, cid, peers, opts)
    const bytes = await this.get(cid, opts)
    if (bytes == null) throw new NotFoundError(`blob ${cid} could not be read after fetching`, 'blob-not-found')
    return bytes
  }
}
