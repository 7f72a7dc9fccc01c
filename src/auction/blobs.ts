/**
 * Content-addressed blobs (wasm modules, large inputs), named by CIDv1
 * (raw, sha2-256). Stored as files under `<dataDir>/blobs`, served to peers
 * over `/mercato/blob/1.0.0`, fetched from the requester or from peers the
 * DHT names as holders, and always verified against their CID.
 */
import { mkdir, readFile, writeFile, rename, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { bytesMatchCid, cidOfBytes, isCid } from '../crypto/index.js'
import { decodeBlobRequest, encodeBlobRequest, MAX_BLOB_REQUEST_BYTES } from './protocol/frames.js'
import { InvalidInputError, NotFoundError } from '../errors.js'
import type { Network } from '../p2p/index.js'
import { logger } from '../logger.js'
import { BLOB_PROTOCOL, MAX_BLOB_BYTES } from './constants.js'

const log = logger('auction:blobs')

export interface BlobOptions {
  /** keep the bytes in the in-memory cache (default true) */
  cache?: boolean
}

export class BlobStore {
  private readonly dir?: string
  private readonly memory = new Map<string, Uint8Array>()
  private readonly cache = new Map<string, Uint8Array>()
  private writes = 0

  constructor (dir?: string) {
    this.dir = dir
  }

  async start (): Promise<void> {
    if (this.dir != null) await mkdir(this.dir, { recursive: true })
  }

  /**
   * Store bytes under their CID. `cache: false` keeps them out of the in-memory cache (output files:
   * large, read once or twice, and many of them).
   */
  async put (bytes: Uint8Array, opts: BlobOptions = {}): Promise<string> {
    if (bytes.length === 0) throw new InvalidInputError('empty blob', 'empty-blob')
    if (bytes.length > MAX_BLOB_BYTES) throw new InvalidInputError(`blob of ${bytes.length} bytes exceeds ${MAX_BLOB_BYTES}`, 'blob-too-large')
    const cid = cidOfBytes(bytes)
    await this.putVerified(cid, bytes, opts)
    return cid
  }

  private async putVerified (cid: string, bytes: Uint8Array, opts: BlobOptions = {}): Promise<void> {
    if (opts.cache !== false) this.remember(cid, bytes)
    if (this.dir == null) { this.memory.set(cid, bytes); return }
    const file = join(this.dir, cid)
    try { await stat(file); return } catch {}
    // a name of its own per write: two writes of one CID at once (replicas' identical outputs fetched
    // together) must not share a temp file, or the second rename finds it gone
    const tmp = `${file}.${process.pid}.${++this.writes}.${randomBytes(4).toString('hex')}.tmp`
    await writeFile(tmp, bytes)
    await rename(tmp, file)
  }

  private remember (cid: string, bytes: Uint8Array): void {
    this.cache.set(cid, bytes)
    if (this.cache.size > 32) this.cache.delete(this.cache.keys().next().value as string)
  }

  async get (cid: string, opts: BlobOptions = {}): Promise<Uint8Array | undefined> {
    if (!isCid(cid)) return undefined
    const hit = this.cache.get(cid) ?? this.memory.get(cid)
    if (hit != null) return hit
    if (this.dir == null) return undefined
    try {
      const bytes = new Uint8Array(await readFile(join(this.dir, cid)))
      if (!bytesMatchCid(bytes, cid)) { log.warn({ cid }, 'stored blob does not match its CID; ignoring'); return undefined }
      if (opts.cache !== false) this.remember(cid, bytes)
      return bytes
    } catch {
      return undefined
    }
  }

  async has (cid: string): Promise<boolean> {
    return (await this.get(cid)) != null
  }

  /** Serve blobs to peers. */
  async serve (network: Network): Promise<void> {
    await network.handle(BLOB_PROTOCOL, async (req) => {
      const cid = decodeBlobRequest(req)
      // what peers ask for is not kept in the cache: a stranger cannot evict our hot modules by asking
      const bytes = await this.get(cid, { cache: false })
      if (bytes == null) throw new NotFoundError(`no blob ${cid}`)
      return bytes
    }, { maxRequestBytes: MAX_BLOB_REQUEST_BYTES })
  }

  /** Fetch a blob from the first of `peers` that has it, verify and store it. */
  async fetch (network: Network, cid: string, peers: string[], opts: { signal?: AbortSignal, maxBytes?: number } & BlobOptions = {}): Promise<Uint8Array> {
    const local = await this.get(cid, opts)
    if (local != null) return local
    const req = encodeBlobRequest(cid)
    let lastErr: unknown
    for (const peer of peers) {
      try {
        const bytes = await network.request(peer, BLOB_PROTOCOL, req, { signal: opts.signal, maxResponseBytes: opts.maxBytes ?? MAX_BLOB_BYTES })
        if (!bytesMatchCid(bytes, cid)) { lastErr = new Error(`blob from ${peer} does not match ${cid}`); continue }
        await this.putVerified(cid, bytes, opts)
        return bytes
      } catch (err) {
        lastErr = err
      }
    }
    throw new NotFoundError(`blob ${cid} not found at ${peers.length} peer(s): ${(lastErr as any)?.message ?? 'no peers'}`, 'blob-not-found')
  }
}
