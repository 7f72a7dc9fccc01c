/**
 * The blocks blobs are made of, one file per block under `<dir>/blocks/<cid>` (or a map in memory
 * when the node has no data dir). Only verified blocks are written: the importer's own (it hashed
 * them) and fetched ones (checked against their CID before `put`).
 *
 * An upload goes through a {@link Staging} area (`<dir>/staging/<id>/`): its blocks join the store
 * only when the whole import succeeded, so an upload refused half-way (too large, aborted) leaves
 * no block behind that a peer or a user could reach as a blob.
 *
 * A blob of the first release is one file `<dir>/<cid>` holding the whole blob as one raw block;
 * `get` still finds it there.
 */
import { mkdir, readdir, writeFile, rename, stat, rm, unlink } from 'node:fs/promises'
import { closeSync, fstatSync, openSync, readSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { CID } from 'multiformats/cid'

/** A held block is larger than the reader takes (`get` with `maxBytes`). */
export class BlockTooLargeError extends Error {
  constructor (readonly cid: string, readonly size: number) {
    super(`block ${cid} is ${size} bytes`)
    this.name = 'BlockTooLargeError'
  }
}

/** Where blocks live: a directory, or memory. */
export class BlockStore {
  private readonly dir?: string
  private readonly blocksDir?: string
  private readonly memory = new Map<string, Uint8Array>()
  private readonly memoryTimes = new Map<string, number>()
  private writes = 0
  /** bytes of blocks written since start (puts and staged blocks), for the collector's estimate */
  written = 0

  constructor (dir?: string) {
    this.dir = dir
    this.blocksDir = dir != null ? join(dir, 'blocks') : undefined
  }

  async start (): Promise<void> {
    if (this.dir == null || this.blocksDir == null) return
    await mkdir(this.blocksDir, { recursive: true })
    // staging areas left by a crash: never part of a blob
    await rm(join(this.dir, 'staging'), { recursive: true, force: true })
  }

  /**
   * The block's bytes, or undefined. Not verified here: callers that read for peers or users verify.
   * `maxBytes`: a larger block is not read; {@link BlockTooLargeError} says its size.
   */
  async get (cid: CID | string, opts: { maxBytes?: number } = {}): Promise<Uint8Array | undefined> {
    const key = cid.toString()
    const max = opts.maxBytes ?? Number.POSITIVE_INFINITY
    if (this.blocksDir == null || this.dir == null) {
      const held = this.memory.get(key)
      if (held != null && held.length > max) throw new BlockTooLargeError(key, held.length)
      return held
    }
    for (const file of [join(this.blocksDir, key), join(this.dir, key)]) {
      // synchronous: a block is at most a few MiB, usually in the page cache; four thread-pool round
      // trips per block (open, stat, read, close) were a fifth of a fetch's time (bench:data: a
      // 100 MiB pull 43-46 MB/s async, 51-58 MB/s sync, run alternately)
      let fd: number
      try { fd = openSync(file, 'r') } catch { continue }
      try {
        const size = fstatSync(fd).size
        if (size > max) throw new BlockTooLargeError(key, size)
        // one read into a buffer of the file's size (no copy afterwards)
        const out = new Uint8Array(size)
        let n = 0
        while (n < size) {
          const bytesRead = readSync(fd, out, n, size - n, n)
          if (bytesRead === 0) break
          n += bytesRead
        }
        return n === size ? out : out.subarray(0, n)
      } catch (err) {
        if (err instanceof BlockTooLargeError) throw err
        continue
      } finally {
        closeSync(fd)
      }
    }
    return undefined
  }

  /** The block's size in bytes, or undefined when it is not held (no read). */
  async sizeOf (cid: CID | string): Promise<number | undefined> {
    const key = cid.toString()
    if (this.blocksDir == null || this.dir == null) return this.memory.get(key)?.length
    for (const file of [join(this.blocksDir, key), join(this.dir, key)]) {
      try { return (await stat(file)).size } catch {}
    }
    return undefined
  }

  async has (cid: CID | string): Promise<boolean> {
    return (await this.sizeOf(cid)) != null
  }

  /**
   * Store a verified block (no-op when held). `missing`: the caller knows it is not held (a fetch
   * asks only for missing blocks): no stat first; a block written twice is the same bytes, and the
   * rename is atomic.
   */
  async put (cid: CID | string, bytes: Uint8Array, opts: { missing?: boolean } = {}): Promise<void> {
    const key = cid.toString()
    if (this.blocksDir == null) {
      if (!this.memory.has(key)) this.memoryTimes.set(key, Date.now())
      this.memory.set(key, bytes)
      return
    }
    const file = join(this.blocksDir, key)
    if (opts.missing !== true) {
      try { await stat(file); return } catch {}
    }
    // a name of its own per write: two writes of one block at once must not share a temp file
    const tmp = `${file}.${process.pid}.${++this.writes}.${randomBytes(4).toString('hex')}.tmp`
    this.written += bytes.length
    writeFileSync(tmp, bytes)
    renameSync(tmp, file)
  }

  /**
   * Every block in `blocks/` with its size and when it was written (ms since the epoch), for the
   * collector (blobs.ts). In memory, the time is when the block was put.
   */
  async list (): Promise<Array<{ key: string, bytes: number, writtenMs: number }>> {
    if (this.blocksDir == null) return [...this.memory].map(([key, bytes]) => ({ key, bytes: bytes.length, writtenMs: this.memoryTimes.get(key) ?? 0 }))
    const out: Array<{ key: string, bytes: number, writtenMs: number }> = []
    for (const name of await readdir(this.blocksDir)) {
      if (name.endsWith('.tmp')) continue
      try {
        const s = await stat(join(this.blocksDir, name))
        out.push({ key: name, bytes: s.size, writtenMs: s.mtimeMs })
      } catch {} // removed meanwhile
    }
    return out
  }

  /** Remove a block from `blocks/` (the collector's; no-op when it is not there). */
  async delete (key: string): Promise<void> {
    if (this.blocksDir == null) { this.memory.delete(key); this.memoryTimes.delete(key); return }
    await unlink(join(this.blocksDir, key)).catch(() => {})
  }

  /** Number of blocks held in `blocks/` (tests, status). */
  async count (): Promise<number> {
    if (this.blocksDir == null) return this.memory.size
    return (await readdir(this.blocksDir)).filter(f => !f.endsWith('.tmp')).length
  }

  /** A staging area for one import. */
  async staging (): Promise<Staging> {
    if (this.dir == null) return new Staging(this)
    const dir = join(this.dir, 'staging', `${process.pid}.${++this.writes}.${randomBytes(6).toString('hex')}`)
    await mkdir(dir, { recursive: true })
    return new Staging(this, dir)
  }

  /** Move a staged block into the store (the staged file is gone afterwards). */
  async adopt (cid: string, staged: string | Uint8Array): Promise<void> {
    if (typeof staged !== 'string' || this.blocksDir == null) {
      if (typeof staged !== 'string') await this.put(cid, staged)
      return
    }
    const file = join(this.blocksDir, cid)
    try {
      await stat(file)
      await unlink(staged).catch(() => {})
    } catch {
      await rename(staged, file)
    }
  }
}

/**
 * Blocks written by one import, kept apart until {@link Staging.commit} moves them into the store;
 * {@link Staging.discard} drops them. Shaped as the importer's blockstore (`put(cid, bytes)`).
 */
export class Staging {
  private readonly blocks = new Map<string, string | Uint8Array>()
  private done = false

  constructor (private readonly store: BlockStore, private readonly dir?: string) {}

  async put (cid: CID, bytes: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<CID> {
    if (this.done) throw new Error('staging area closed')
    const key = cid.toString()
    if (this.blocks.has(key)) return cid
    const data = await toBytes(bytes)
    this.store.written += data.length
    if (this.dir == null) { this.blocks.set(key, data); return cid }
    const file = join(this.dir, key)
    // reserve the name first: the importer writes blocks concurrently, a block twice in a file is common
    this.blocks.set(key, file)
    await writeFile(file, data)
    return cid
  }

  get size (): number { return this.blocks.size }

  async commit (): Promise<void> {
    this.done = true
    for (const [cid, staged] of this.blocks) await this.store.adopt(cid, staged)
    await this.discard()
  }

  async discard (): Promise<void> {
    this.done = true
    this.blocks.clear()
    if (this.dir != null) await rm(this.dir, { recursive: true, force: true })
  }
}

async function toBytes (bytes: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  if (bytes instanceof Uint8Array) return bytes
  const parts: Uint8Array[] = []
  for await (const p of bytes) parts.push(p)
  return Buffer.concat(parts)
}
