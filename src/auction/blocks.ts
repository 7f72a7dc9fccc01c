/**
 * The blocks blobs are made of, appended to pack files under `<dir>/packs/` (or a map in memory
 * when the node has no data dir). Only verified blocks are written: the importer's own (it hashed
 * them) and fetched ones (checked against their CID before `put`).
 *
 * Why packs: a file per block cost an `open(O_CREAT)` of 0.55–0.7 ms per 256 KiB block on ext4
 * under load, a third of a 100 MiB fetch's time (bench:data); 400 appends to one file took 32–42 ms
 * where 400 block files took 170 ms.
 *
 * Layout: `packs/<id>.pack` holds block bytes back to back; `packs/<id>.idx` is its append-only
 * index, an 8-byte header ({@link IDX_HEADER}) then one record per event (see {@link encodeRecord}):
 * a put (cid, offset, length, time written) or a tombstone (the pack's copy of a cid is dead). A
 * record carries a CRC-32, so a torn or damaged tail is recognised and dropped. A block's bytes are
 * written before its record: a crash leaves at most a block without a record (dead bytes).
 * An in-memory map cid → {pack, offset, length, writtenMs} answers get/sizeOf/has/list.
 *
 * - `put` (fetched blocks, whole blobs) appends to the store's current pack; past
 *   {@link PACK_MAX_BYTES} a new pack is started. Its offset is taken at once (appends never
 *   overlap) and the bytes are written on the thread pool: copying them into the page cache
 *   (0.04–0.5 ms per 256 KiB block here, the high end on memory the kernel has not used lately)
 *   and any wait for the kernel's writeback stay off the event loop, where heartbeats and auctions
 *   run. Until the write ends, `get`/`sizeOf` answer from the bytes in memory, a second `put` or a
 *   `delete` of the block waits for it, and the pack is neither closed, unlinked nor compacted;
 *   then the index record is written and the map points at the block. Compaction's copies are
 *   still written synchronously.
 * - An upload goes through a {@link Staging} area (`<dir>/staging/<id>/`) that writes a pack of its
 *   own: `commit` renames the pack and its index into `packs/` and registers them, `discard`
 *   deletes them, so an upload refused half-way (too large, aborted) leaves no block behind that a
 *   peer or a user could reach as a blob. A block already held elsewhere becomes a dead copy.
 * - A large file whose bytes no one writes any more (a job's output, once the job is over) can
 *   stay where it is: {@link Staging.inPlace} records each raw leaf the importer cuts from it by
 *   its offset in the file instead of writing its bytes again, and `commit` hard-links the file
 *   into `packs/` as a pack of those leaves, with an index of their offsets (no copy; inner nodes
 *   go to the staging pack as usual). Only a regular file of this process's user with one name,
 *   on the store's file system, of IN_PLACE_MIN_BYTES to PACK_MAX_BYTES; otherwise (or when the
 *   link fails) its leaves are copied into the staging pack as before.
 * - `delete` (the collector's) appends a tombstone. A pack with no live block left is unlinked; one
 *   whose live bytes fall under half its size is compacted: its live blocks are copied into the
 *   current pack (one at a time, yielding between them; the map points at the old copy until the
 *   new one is written), then it is unlinked.
 * - At `start`, every index is read; records pointing past their pack's end and a damaged tail are
 *   dropped (the index is truncated to its last good record); a cid live in two packs (a crash
 *   during compaction) keeps one copy.
 *
 * Older layouts stay readable: a block per file under `<dir>/blocks/<cid>` (listed, deletable; new
 * blocks go to packs), and a blob of the first release as one file `<dir>/<cid>` holding the whole
 * blob as one raw block (`get` finds it).
 */
import { mkdir, readdir, readFile, rm, stat, unlink, utimes } from 'node:fs/promises'
import { closeSync, fstatSync, fsyncSync, ftruncateSync, linkSync, lstatSync, openSync, readSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync, writev } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'
import type { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { logger } from '../logger.js'
import { joined, rangeOf, sizeOfChunks, type Chunks } from './chunks.js'

const log = logger('auction:blocks')

/** A held block is larger than the reader takes (`get` with `maxBytes`). */
export class BlockTooLargeError extends Error {
  constructor (readonly cid: string, readonly size: number) {
    super(`block ${cid} is ${size} bytes`)
    this.name = 'BlockTooLargeError'
  }
}

/** A pack is closed for writing past this size: large enough that packs stay few (a TiB is 4,096 of them), small enough that compacting one copies at most 128 MiB. */
export const PACK_MAX_BYTES = 256 * 1024 * 1024
/** A file smaller than this is copied into a pack, not linked as one (a pack costs two files and an index read at start). */
export const IN_PLACE_MIN_BYTES = 4 * 1024 * 1024
/** Open read descriptors kept, least recently used closed first (a busy store reads from a few packs). */
export const PACK_READ_FDS = 64
/** The first bytes of an index file: its format and version. */
const IDX_HEADER = Buffer.from('MCIDX01\n', 'latin1')
const PUT = 1
const DEL = 2
/** kind (1) + key length (2) + offsets (8 + 4 + 8) + crc (4), around the key */
const RECORD_FIXED = 1 + 2 + 8 + 4 + 8 + 4

interface Pack {
  readonly id: string
  file: string
  idxFile: string
  /** bytes of the pack file (the next append's offset) */
  size: number
  /** bytes of its index (the next record's offset: a record torn by a failed write is overwritten by the next) */
  idxSize: number
  /** bytes of its live blocks */
  live: number
  /** the cids whose live copy is here */
  readonly keys: Set<string>
  /** open while written (the current pack, a staging pack) */
  fd?: number
  idxFd?: number
  /** block writes in flight (`put`'s, off the event loop); its writers close and it may be unlinked only at 0 */
  inflight?: number
}

interface Entry { pack: Pack, offset: number, length: number, writtenMs: number }

interface IdxRecord { kind: number, key: string, offset: number, length: number, writtenMs: number }

/** One index record: kind, key length, key (UTF-8), offset (f64), length (u32), time written (f64 ms), CRC-32 of all before. */
function encodeRecord (kind: number, key: string, offset = 0, length = 0, writtenMs = 0): Buffer {
  const k = Buffer.from(key, 'utf8')
  const buf = Buffer.allocUnsafe(RECORD_FIXED + k.length)
  let p = buf.writeUInt8(kind, 0)
  p = buf.writeUInt16LE(k.length, p)
  p += k.copy(buf, p)
  p = buf.writeDoubleLE(offset, p)
  p = buf.writeUInt32LE(length, p)
  p = buf.writeDoubleLE(writtenMs, p)
  buf.writeUInt32LE(crc32(buf.subarray(0, p)), p)
  return buf
}

/** The records of an index and the length of its valid part (a torn or damaged tail ends it). */
function decodeIndex (buf: Buffer): { records: IdxRecord[], valid: number } | undefined {
  if (buf.length < IDX_HEADER.length || !buf.subarray(0, IDX_HEADER.length).equals(IDX_HEADER)) return undefined
  const records: IdxRecord[] = []
  let p = IDX_HEADER.length
  while (p + RECORD_FIXED <= buf.length) {
    const kind = buf.readUInt8(p)
    const keyLen = buf.readUInt16LE(p + 1)
    const end = p + RECORD_FIXED + keyLen
    if ((kind !== PUT && kind !== DEL) || keyLen === 0 || end > buf.length) break
    if (crc32(buf.subarray(p, end - 4)) !== buf.readUInt32LE(end - 4)) break
    let q = p + 3
    const key = buf.toString('utf8', q, q + keyLen)
    q += keyLen
    const offset = buf.readDoubleLE(q)
    const length = buf.readUInt32LE(q + 8)
    const writtenMs = buf.readDoubleLE(q + 12)
    if (!Number.isSafeInteger(offset) || offset < 0) break
    records.push({ kind, key, offset, length, writtenMs })
    p = end
  }
  return { records, valid: p }
}

/**
 * A buffer for `size` bytes about to be read into it: not zeroed first (Buffer.allocUnsafeSlow,
 * its own memory, not the shared pool), as a plain Uint8Array. Only ever returned once filled.
 */
function readBuffer (size: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(size)
  return new Uint8Array(b.buffer, b.byteOffset, size)
}

/** Read `out.length` bytes at `pos`, or fewer where the file ends; how many were read. */
function readAt (fd: number, out: Uint8Array, pos: number): number {
  let n = 0
  while (n < out.length) {
    const bytesRead = readSync(fd, out, n, out.length - n, pos + n)
    if (bytesRead === 0) break
    n += bytesRead
  }
  return n
}

/** Write all of `buf` at `pos`. */
function writeAll (fd: number, buf: Uint8Array, pos: number): void {
  let n = 0
  while (n < buf.length) n += writeSync(fd, buf, n, buf.length - n, pos + n)
}

function newPackId (): string {
  return `${Date.now().toString(36)}-${process.pid}-${randomBytes(6).toString('hex')}`
}

/** Create an empty pack and its index (header only), both open for writing. */
function createPack (dir: string, id: string): Pack {
  const file = join(dir, `${id}.pack`)
  const idxFile = join(dir, `${id}.idx`)
  writeFileSync(idxFile, IDX_HEADER, { flag: 'wx' })
  const idxFd = openSync(idxFile, 'r+')
  const fd = openSync(file, 'wx')
  return { id, file, idxFile, size: 0, idxSize: IDX_HEADER.length, live: 0, keys: new Set(), fd, idxFd }
}

/**
 * Write an index record at the index's end as this store knows it (positioned: a record torn by a
 * failed write, ENOSPC, is overwritten by the next one instead of ending the index before it).
 */
function appendRecord (pack: Pack, rec: Buffer): void {
  const fd = pack.idxFd ?? openSync(pack.idxFile, 'r+')
  try {
    writeAll(fd, rec, pack.idxSize)
    pack.idxSize += rec.length
  } finally {
    if (fd !== pack.idxFd) closeSync(fd)
  }
}

/** Write all `size` bytes of `bytes` (its pieces in one writev) at `pos` on the thread pool (the copy into the page cache off the event loop). */
async function writeAllAsync (fd: number, bytes: Chunks, size: number, pos: number): Promise<void> {
  let n = 0
  while (n < size) {
    n += await new Promise<number>((resolve, reject) => {
      writev(fd, rangeOf(bytes, n, size), pos + n, (err, written) => { if (err != null) reject(err); else resolve(written) })
    })
  }
}

/** Append a block to an open pack: bytes first, then its index record. */
function appendBlock (pack: Pack, key: string, bytes: Uint8Array, writtenMs: number): { offset: number, length: number } {
  if (pack.fd == null || pack.idxFd == null) throw new Error(`pack ${pack.id} is not open for writing`)
  const offset = pack.size
  writeAll(pack.fd, bytes, offset)
  pack.size += bytes.length
  appendRecord(pack, encodeRecord(PUT, key, offset, bytes.length, writtenMs))
  return { offset, length: bytes.length }
}

/** Flush a pack and its index to the disk (fsync), through its writers or descriptors of our own. */
function syncPack (pack: Pack): void {
  for (const [held, file] of [[pack.fd, pack.file], [pack.idxFd, pack.idxFile]] as const) {
    const fd = held ?? openSync(file, 'r')
    try { fsyncSync(fd) } finally { if (fd !== held) closeSync(fd) }
  }
}

function closeWriters (pack: Pack): void {
  if (pack.fd != null) { try { closeSync(pack.fd) } catch {} pack.fd = undefined }
  if (pack.idxFd != null) { try { closeSync(pack.idxFd) } catch {} pack.idxFd = undefined }
}

/** Where blocks live: pack files in a directory, or memory. */
export class BlockStore {
  private readonly dir?: string
  private readonly blocksDir?: string
  private readonly packsDir?: string
  private readonly packMaxBytes: number
  private readonly memory = new Map<string, Uint8Array>()
  private readonly memoryTimes = new Map<string, number>()
  private readonly index = new Map<string, Entry>()
  private readonly packs = new Map<string, Pack>()
  /** read descriptors by pack id, in least-recently-used order */
  private readonly readFds = new Map<string, number>()
  private current?: Pack
  /** `blocks/` held files at start (the one-file-per-block layout) */
  private legacy = false
  /** files beside `blocks/` at start: whole blobs of an older release, named by CID (never written now) */
  private wholeBlobs = new Set<string>()
  private readonly toCompact = new Set<Pack>()
  /** packs read in place (lease), with how many leases each */
  private readonly leased = new Map<Pack, number>()
  private compacting?: Promise<void>
  /**
   * Blocks `put` is writing (off the event loop): their bytes until the write is done and the map
   * points at them. `get` and `sizeOf` answer from here meanwhile.
   */
  private readonly pending = new Map<string, { bytes: Chunks, done: Promise<void> }>()
  private writes = 0
  /** bytes of blocks written since start (puts and staged blocks), for the collector's estimate */
  written = 0

  constructor (dir?: string, opts: { packMaxBytes?: number } = {}) {
    this.dir = dir
    this.blocksDir = dir != null ? join(dir, 'blocks') : undefined
    this.packsDir = dir != null ? join(dir, 'packs') : undefined
    this.packMaxBytes = opts.packMaxBytes ?? PACK_MAX_BYTES
  }

  async start (): Promise<void> {
    if (this.dir == null || this.packsDir == null) return
    await mkdir(this.packsDir, { recursive: true })
    // staging areas left by a crash: never part of a blob
    await rm(join(this.dir, 'staging'), { recursive: true, force: true })
    await this.loadPacks(true)
  }

  /**
   * Read the store's indexes without changing a file (no repair, no pack opened for writing): a
   * view of a store another process writes (tests, tools). `start` loads and repairs.
   */
  async load (): Promise<void> {
    await this.loadPacks(false)
  }

  private async loadPacks (repair: boolean): Promise<void> {
    if (this.packsDir == null || this.blocksDir == null) return
    this.legacy = (await readdir(this.blocksDir).catch(() => [] as string[])).length > 0
    // known up front, so a block not held costs no failed stat (a fetch asks about every block it lacks)
    const beside = await readdir(this.dir as string, { withFileTypes: true }).catch(() => [])
    this.wholeBlobs = new Set(beside.filter(d => d.isFile()).map(d => d.name))
    const names = (await readdir(this.packsDir).catch(() => [] as string[])).sort()
    const idxIds = new Set(names.filter(n => n.endsWith('.idx')).map(n => n.slice(0, -4)))
    for (const name of names) {
      // a pack without an index (a crash while it was being deleted): nothing in it is reachable
      if (name.endsWith('.pack') && !idxIds.has(name.slice(0, -5)) && repair) await unlink(join(this.packsDir, name)).catch(() => {})
    }
    for (const id of idxIds) {
      if (this.packs.has(id)) continue
      const file = join(this.packsDir, `${id}.pack`)
      const idxFile = join(this.packsDir, `${id}.idx`)
      let size: number
      let buf: Buffer
      try {
        size = (await stat(file)).size
        buf = await readFile(idxFile)
      } catch {
        if (repair) await unlink(idxFile).catch(() => {})
        continue
      }
      const decoded = decodeIndex(buf)
      if (decoded == null) {
        // a torn header (crash at creation) holds nothing; an unknown format is left alone
        if (repair && buf.length < IDX_HEADER.length && IDX_HEADER.subarray(0, buf.length).equals(buf)) {
          await unlink(idxFile).catch(() => {})
          await unlink(file).catch(() => {})
        } else log.warn({ file: idxFile }, 'unknown pack index format: pack not loaded')
        continue
      }
      const pack: Pack = { id, file, idxFile, size, idxSize: decoded.valid, live: 0, keys: new Set() }
      if (decoded.valid < buf.length) {
        log.warn({ file: idxFile, dropped: buf.length - decoded.valid }, 'pack index: damaged tail dropped')
        // a read-only or full disk: the tail stays (it is dropped at every load) and the node starts
        if (repair) {
          try { const fd = openSync(idxFile, 'r+'); try { ftruncateSync(fd, decoded.valid) } finally { closeSync(fd) } } catch (err: any) { log.warn({ file: idxFile, err: err?.message }, 'pack index: could not drop its damaged tail') }
        }
      }
      const local = new Map<string, IdxRecord>()
      for (const r of decoded.records) {
        if (r.kind === DEL) local.delete(r.key)
        else if (r.offset + r.length <= size) local.set(r.key, r)
        else local.delete(r.key) // points past the pack's end: its bytes are gone
      }
      this.packs.set(id, pack)
      for (const [key, r] of local) {
        if (this.index.has(key)) {
          // live in two packs (a crash during compaction or a commit): one copy is enough
          if (repair) { try { appendRecord(pack, encodeRecord(DEL, key)) } catch (err: any) { log.warn({ file: idxFile, err: err?.message }, 'pack index: could not tombstone a duplicate') } }
          continue
        }
        this.index.set(key, { pack, offset: r.offset, length: r.length, writtenMs: r.writtenMs })
        pack.keys.add(key)
        pack.live += r.length
      }
    }
    if (repair) for (const pack of [...this.packs.values()]) this.maybeReclaim(pack)
  }

  /**
   * The block's bytes, or undefined. Not hashed: only verified blocks are written (see the module
   * doc), and a peer that receives them checks them.
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
    const entry = this.index.get(key)
    if (entry != null) {
      if (entry.length > max) throw new BlockTooLargeError(key, entry.length)
      const bytes = this.readEntry(entry)
      if (bytes != null) return bytes
    }
    const writing = this.pending.get(key)
    if (writing != null) {
      const size = sizeOfChunks(writing.bytes)
      if (size > max) throw new BlockTooLargeError(key, size)
      return joined(writing.bytes)
    }
    for (const file of this.olderFiles(key)) {
      const bytes = readWholeFile(file, key, max)
      if (bytes != null) return bytes
    }
    return undefined
  }

  /** Where an older layout may hold `key`: `blocks/<cid>` (when that folder held files at start), a whole blob beside it. */
  private olderFiles (key: string): string[] {
    if (this.blocksDir == null || this.dir == null) return []
    const files = this.legacy ? [join(this.blocksDir, key)] : []
    if (this.wholeBlobs.has(key)) files.push(join(this.dir, key))
    return files
  }

  /**
   * A packed block's bytes: one positioned read (synchronous: a block is at most a few MiB, usually
   * in the page cache) into a buffer of its size; undefined when the pack is shorter than the entry.
   */
  private readEntry (entry: Entry): Uint8Array | undefined {
    try {
      return this.readEntryOrThrow(entry)
    } catch {
      return undefined
    }
  }

  /** {@link readEntry}, but an error (EMFILE, EIO, a pack gone) throws: only a short pack means "not there". */
  private readEntryOrThrow (entry: Entry): Uint8Array | undefined {
    const out = readBuffer(entry.length)
    return readAt(this.readFd(entry.pack), out, entry.offset) === entry.length ? out : undefined
  }

  private readFd (pack: Pack): number {
    const held = this.readFds.get(pack.id)
    if (held != null) {
      this.readFds.delete(pack.id)
      this.readFds.set(pack.id, held)
      return held
    }
    const fd = openSync(pack.file, 'r')
    this.readFds.set(pack.id, fd)
    if (this.readFds.size > PACK_READ_FDS) {
      const [oldest, oldFd] = this.readFds.entries().next().value as [string, number]
      this.readFds.delete(oldest)
      try { closeSync(oldFd) } catch {}
    }
    return fd
  }

  /**
   * The bytes of a block whose write is in flight, in the pieces `put` was given (not joined), or
   * undefined: for a reader that can take pieces ({@link get} joins them).
   */
  writing (cid: CID | string): Chunks | undefined {
    return this.pending.get(cid.toString())?.bytes
  }

  /** The block's size in bytes, or undefined when it is not held (no read). */
  async sizeOf (cid: CID | string): Promise<number | undefined> {
    const key = cid.toString()
    if (this.blocksDir == null || this.dir == null) return this.memory.get(key)?.length
    const entry = this.index.get(key)
    if (entry != null) return entry.length
    const writing = this.pending.get(key)
    if (writing != null) return sizeOfChunks(writing.bytes)
    for (const file of this.olderFiles(key)) {
      try { return (await stat(file)).size } catch {}
    }
    return undefined
  }

  async has (cid: CID | string): Promise<boolean> {
    return (await this.sizeOf(cid)) != null
  }

  /**
   * Store a verified block (no-op when held), given whole or in the pieces it arrived in (written
   * as they are, chunks.ts). `missing`: the caller knows it is not held (a fetch asks only for
   * missing blocks): the older layouts are not looked at first.
   */
  async put (cid: CID | string, bytes: Chunks, opts: { missing?: boolean } = {}): Promise<void> {
    const key = cid.toString()
    if (this.blocksDir == null) {
      if (!this.memory.has(key)) this.memoryTimes.set(key, Date.now())
      this.memory.set(key, joined(bytes))
      return
    }
    if (this.index.has(key)) return
    if (opts.missing !== true && this.legacy) {
      try { await stat(join(this.blocksDir, key)); return } catch {}
      if (this.index.has(key)) return // put meanwhile
    }
    const writing = this.pending.get(key)
    if (writing != null) { await writing.done; return }
    const size = sizeOfChunks(bytes)
    const done = this.appendAsync(key, bytes, size, Date.now())
    this.pending.set(key, { bytes, done })
    try {
      await done
    } finally {
      this.pending.delete(key)
    }
    this.written += size
  }

  /**
   * {@link appendToCurrent}, with the block's bytes written on the thread pool: the offset is taken
   * now (appends never overlap), the index record is written and the map points at the block once
   * its bytes are in the file (a crash in between leaves dead bytes, as before). The pack is not
   * closed or unlinked while writes to it are in flight.
   */
  private async appendAsync (key: string, bytes: Chunks, size: number, writtenMs: number): Promise<void> {
    const pack = this.currentFor(size)
    if (pack.fd == null) throw new Error(`pack ${pack.id} is not open for writing`)
    const offset = pack.size
    pack.size += size
    pack.inflight = (pack.inflight ?? 0) + 1
    try {
      await writeAllAsync(pack.fd, bytes, size, offset)
      // a staged upload committed meanwhile may hold the block already (a second put waits for
      // this one): then these bytes stay dead, with no record. The pack is still there (neither
      // unlinked nor compacted while writes to it are in flight)
      if (!this.index.has(key)) {
        appendRecord(pack, encodeRecord(PUT, key, offset, size, writtenMs))
        this.register(key, { pack, offset, length: size, writtenMs })
      }
    } finally {
      if (--pack.inflight === 0) {
        // retired while this write was in flight: its writers close now
        if (pack !== this.current) closeWriters(pack)
        // a delete or a lease's end that looked at it meanwhile skipped it
        this.maybeReclaim(pack)
      }
    }
  }

  /** The pack the next append of `length` bytes goes to (a new one when there is none or it is full). */
  private currentFor (length: number): Pack {
    if (this.packsDir == null) throw new Error('no data dir')
    if (this.current != null && this.current.size > 0 && this.current.size + length > this.packMaxBytes) this.retire()
    if (this.current == null) {
      this.current = createPack(this.packsDir, newPackId())
      this.packs.set(this.current.id, this.current)
    }
    return this.current
  }

  /** Append a block to the current pack (a new one when there is none or it is full) and point the map at it. */
  private appendToCurrent (key: string, bytes: Uint8Array, writtenMs: number): void {
    const pack = this.currentFor(bytes.length)
    const { offset, length } = appendBlock(pack, key, bytes, writtenMs)
    this.register(key, { pack, offset, length, writtenMs })
  }

  /** Point the map at a new copy of a block; the old copy (if any) is dead. */
  private register (key: string, entry: Entry): void {
    const old = this.index.get(key)
    if (old != null) this.unregister(key, old)
    this.index.set(key, entry)
    entry.pack.keys.add(key)
    entry.pack.live += entry.length
  }

  private unregister (key: string, entry: Entry): void {
    this.index.delete(key)
    entry.pack.keys.delete(key)
    entry.pack.live -= entry.length
  }

  /** Stop writing to the current pack (full, or to be reclaimed); the next put starts a new one. */
  private retire (): void {
    if (this.current == null) return
    // with writes in flight, the last one closes the writers
    if ((this.current.inflight ?? 0) === 0) closeWriters(this.current)
    this.current = undefined
  }

  /** Unlink a pack with no live block; queue one mostly dead for compaction. Not a pack read in place (lease) until it is released. */
  private maybeReclaim (pack: Pack): void {
    if (this.packs.get(pack.id) !== pack || this.leased.has(pack) || (pack.inflight ?? 0) > 0) return
    if (pack.keys.size === 0) {
      if (pack === this.current) this.retire()
      this.unlinkPack(pack)
      return
    }
    if (pack.live * 2 < pack.size && !this.toCompact.has(pack)) {
      if (pack === this.current) this.retire()
      this.toCompact.add(pack)
    }
    // on the next turn: a collection deletes its whole batch first (in microtasks), then the live rest is copied once
    if (this.toCompact.size > 0) this.compacting ??= new Promise<void>(resolve => setImmediate(resolve)).then(async () => { await this.runCompaction() })
  }

  private unlinkPack (pack: Pack): void {
    closeWriters(pack)
    const fd = this.readFds.get(pack.id)
    if (fd != null) { this.readFds.delete(pack.id); try { closeSync(fd) } catch {} }
    this.packs.delete(pack.id)
    this.toCompact.delete(pack)
    for (const f of [pack.file, pack.idxFile]) {
      try { unlinkSync(f) } catch (err: any) { if (err?.code !== 'ENOENT') log.warn({ file: f, err: err?.message }, 'could not remove a pack file') }
    }
  }

  /** Copy the live blocks of each queued pack into the current pack, then unlink it. */
  private async runCompaction (): Promise<void> {
    try {
      for (let pack = first(this.toCompact); pack != null; pack = first(this.toCompact)) {
        // a pack read in place is looked at again when its lease ends
        if (this.packs.get(pack.id) === pack && !this.leased.has(pack)) {
          const moved = pack.live
          const written = new Set<Pack>()
          for (const key of [...pack.keys]) {
            const entry = this.index.get(key)
            if (entry?.pack !== pack) continue // deleted or moved meanwhile
            // an error reading (EMFILE, EIO) stops here and keeps the pack: only a pack shorter
            // than the entry (its bytes never reached the disk) drops the block
            const bytes = this.readEntryOrThrow(entry)
            // read and written in one turn: a get sees the old copy or the new one, both whole
            if (bytes == null) { this.unregister(key, entry); continue }
            this.appendToCurrent(key, bytes, entry.writtenMs)
            if (this.current != null) written.add(this.current)
            await new Promise<void>(resolve => setImmediate(resolve))
          }
          // the copies on disk before the originals are gone (a power loss must not keep the unlink
          // and lose the copies)
          for (const p of written) syncPack(p)
          const size = pack.size
          if (this.packs.get(pack.id) === pack) this.unlinkPack(pack)
          log.debug({ pack: pack.id, bytes: size, moved }, 'pack compacted')
        }
        this.toCompact.delete(pack)
      }
    } catch (err: any) {
      // (ENOSPC): the packs left are looked at again at their next delete, or at start
      log.warn({ err: err?.message }, 'pack compaction failed')
      this.toCompact.clear()
    } finally {
      this.compacting = undefined
    }
  }

  /**
   * Where a block's bytes are on disk: a range of a pack file (undefined for a block in memory, in
   * an older layout's file, or not held). For a reader that takes them from the pack itself (a
   * job's input read in place); {@link lease} keeps the pack there meanwhile.
   */
  where (key: string): { file: string, offset: number, length: number } | undefined {
    const e = this.index.get(key)
    return e == null ? undefined : { file: e.pack.file, offset: e.offset, length: e.length }
  }

  /**
   * Keep the packs that hold these blocks where they are (neither compacted nor unlinked, their
   * blocks may still be deleted) until the returned function is called: a reader of
   * {@link where}'s ranges opens them after it learnt them.
   */
  lease (keys: Iterable<string>): () => void {
    const packs = new Set<Pack>()
    for (const key of keys) { const e = this.index.get(key); if (e != null) packs.add(e.pack) }
    for (const pack of packs) this.leased.set(pack, (this.leased.get(pack) ?? 0) + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      for (const pack of packs) {
        const n = (this.leased.get(pack) ?? 1) - 1
        if (n > 0) { this.leased.set(pack, n); continue }
        this.leased.delete(pack)
        this.maybeReclaim(pack)
      }
    }
  }

  /** Resolves once no compaction is queued or running (tests; `close`). */
  async compacted (): Promise<void> {
    while (this.compacting != null) await this.compacting
  }

  /** Finish compaction and close every descriptor (the store can be started again). */
  async close (): Promise<void> {
    await Promise.allSettled([...this.pending.values()].map(async w => await w.done))
    await this.compacted()
    this.retire()
    for (const fd of this.readFds.values()) { try { closeSync(fd) } catch {} }
    this.readFds.clear()
  }

  /**
   * Every block held with its size and when it was written (ms since the epoch), for the
   * collector (blobs.ts). In memory, the time is when the block was put.
   */
  async list (): Promise<Array<{ key: string, bytes: number, writtenMs: number }>> {
    if (this.blocksDir == null) return [...this.memory].map(([key, bytes]) => ({ key, bytes: bytes.length, writtenMs: this.memoryTimes.get(key) ?? 0 }))
    const out: Array<{ key: string, bytes: number, writtenMs: number }> = []
    for (const [key, e] of this.index) out.push({ key, bytes: e.length, writtenMs: e.writtenMs })
    if (this.legacy) {
      for (const name of await this.legacyNames()) {
        if (this.index.has(name)) continue
        try {
          const s = await stat(join(this.blocksDir, name))
          out.push({ key: name, bytes: s.size, writtenMs: s.mtimeMs })
        } catch {} // removed meanwhile
      }
    }
    return out
  }

  private async legacyNames (): Promise<string[]> {
    if (this.blocksDir == null) return []
    return (await readdir(this.blocksDir).catch(() => [] as string[])).filter(f => !f.endsWith('.tmp'))
  }

  /** Remove a block (the collector's; no-op when it is not held). */
  async delete (key: string): Promise<void> {
    if (this.blocksDir == null) { this.memory.delete(key); this.memoryTimes.delete(key); return }
    await this.pending.get(key)?.done.catch(() => {})
    const entry = this.index.get(key)
    if (entry != null) {
      const pack = entry.pack
      this.unregister(key, entry)
      try {
        appendRecord(pack, encodeRecord(DEL, key))
      } catch (err: any) {
        log.warn({ key, err: err?.message }, 'could not write a tombstone') // the block comes back at the next start
      }
      this.maybeReclaim(pack)
    }
    if (this.legacy) await unlink(join(this.blocksDir, key)).catch(() => {})
  }

  /**
   * Set when a held block counts as written (the collector takes the oldest first): a record in its
   * pack's index (an old-layout file's mtime). For tests that age blocks, and tools.
   */
  async setWrittenMs (key: string, writtenMs: number): Promise<void> {
    if (this.blocksDir == null) { if (this.memory.has(key)) this.memoryTimes.set(key, writtenMs); return }
    const entry = this.index.get(key)
    if (entry != null) {
      appendRecord(entry.pack, encodeRecord(PUT, key, entry.offset, entry.length, writtenMs))
      entry.writtenMs = writtenMs
      return
    }
    if (this.legacy) await utimes(join(this.blocksDir, key), writtenMs / 1000, writtenMs / 1000).catch(() => {})
  }

  /** Number of blocks held (tests, status). */
  async count (): Promise<number> {
    if (this.blocksDir == null) return this.memory.size
    if (!this.legacy) return this.index.size
    return this.index.size + (await this.legacyNames()).filter(n => !this.index.has(n)).length
  }

  /** Bytes of pack files on disk, live or dead (tests, status). */
  packBytes (): number {
    let n = 0
    for (const p of this.packs.values()) n += p.size
    return n
  }

  /** A staging area for one import. */
  async staging (): Promise<Staging> {
    if (this.dir == null) return new Staging(this)
    const dir = join(this.dir, 'staging', `${process.pid}.${++this.writes}.${randomBytes(6).toString('hex')}`)
    await mkdir(dir, { recursive: true })
    return new Staging(this, dir)
  }

  /** Store a staged block (a file path: read, stored, removed). */
  async adopt (cid: string, staged: string | Uint8Array): Promise<void> {
    if (typeof staged !== 'string') { await this.put(cid, staged); return }
    if (!this.index.has(cid)) await this.put(cid, await readFile(staged), { missing: true })
    await unlink(staged).catch(() => {})
  }

  /**
   * A staging pack's move into `packs/` (Staging.commit): one rename for the pack and one for its
   * index, then its blocks are registered; a block already held keeps its copy (the staged one
   * gets a tombstone).
   * @internal
   */
  commitPack (pack: Pack, entries: Map<string, Entry>): void {
    if (this.packsDir == null) throw new Error('no data dir')
    closeWriters(pack)
    const file = join(this.packsDir, `${pack.id}.pack`)
    const idxFile = join(this.packsDir, `${pack.id}.idx`)
    // the index first: a crash between the renames leaves an index whose pack is missing (ignored at start)
    renameSync(pack.idxFile, idxFile)
    renameSync(pack.file, file)
    pack.file = file
    pack.idxFile = idxFile
    this.packs.set(pack.id, pack)
    const dead: Buffer[] = []
    for (const [key, e] of entries) {
      if (this.index.has(key)) { dead.push(encodeRecord(DEL, key)); continue }
      this.register(key, e)
    }
    if (dead.length > 0 && pack.keys.size > 0) appendRecord(pack, Buffer.concat(dead))
    this.maybeReclaim(pack)
  }

  /** @internal */
  newStagingPack (dir: string): Pack {
    return createPack(dir, newPackId())
  }
}

function first<T> (set: Set<T>): T | undefined {
  for (const v of set) return v
  return undefined
}

/** A block of an older layout (one file per block, or a whole blob): one read into a buffer of the file's size. */
function readWholeFile (file: string, key: string, max: number): Uint8Array | undefined {
  let fd: number
  try { fd = openSync(file, 'r') } catch { return undefined }
  try {
    const size = fstatSync(fd).size
    if (size > max) throw new BlockTooLargeError(key, size)
    const out = readBuffer(size)
    return readAt(fd, out, 0) === size ? out : undefined
  } catch (err) {
    if (err instanceof BlockTooLargeError) throw err
    return undefined
  } finally {
    closeSync(fd)
  }
}

/**
 * Blocks written by one import, kept apart (in a pack of its own) until {@link Staging.commit}
 * moves them into the store; {@link Staging.discard} drops them. Shaped as the importer's
 * blockstore (`put(cid, bytes)`), which it calls concurrently, often with a block twice.
 */
export class Staging {
  private readonly keys = new Set<string>()
  private readonly blocks = new Map<string, Uint8Array>()
  private readonly entries = new Map<string, Entry>()
  private pack?: Pack
  private done = false
  /** the file whose leaves stay in it (inPlace), and where in it the memory of each piece read from it came from */
  private source?: { file: string, size: number, read: WeakMap<ArrayBufferLike, Array<{ at: number, length: number, offset: number }>> }
  /** leaves of `source` put so far: where they are in it */
  private readonly inFile = new Map<string, { offset: number, length: number }>()

  constructor (private readonly store: BlockStore, private readonly dir?: string) {}

  /**
   * The blocks to come are imported from `file`, which nobody writes any more: its raw leaves may
   * stay in it (see the module doc). Returns what to call with each piece read from the file and
   * its offset, before the importer sees it: a leaf whose bytes are a view of such a piece (the
   * importer's chunker cuts views, not copies, where a leaf lies within one piece) is known to be
   * the file's bytes at that place. A leaf spanning two pieces, and a file that cannot stay where
   * it is (too small or large, not a plain file of ours with one name, a memory store), is written
   * as any block is.
   */
  inPlace (file: string): ((piece: Uint8Array, offset: number) => void) | undefined {
    if (this.dir == null) return undefined
    let st
    try { st = lstatSync(file) } catch { return undefined }
    if (!st.isFile() || st.nlink !== 1 || st.uid !== process.getuid?.() || st.size < IN_PLACE_MIN_BYTES || st.size > PACK_MAX_BYTES) return undefined
    const read = new WeakMap<ArrayBufferLike, Array<{ at: number, length: number, offset: number }>>()
    this.source = { file, size: st.size, read }
    return (piece, offset) => {
      const at = piece.byteOffset
      // memory read into again (a pooled buffer) holds new bytes: the old record of it goes
      const pieces = (read.get(piece.buffer) ?? []).filter(p => p.at + p.length <= at || at + piece.length <= p.at)
      pieces.push({ at, length: piece.length, offset })
      read.set(piece.buffer, pieces)
    }
  }

  /** Where in the source file `bytes` were read from, when they are a view of a piece read from it. */
  private offsetInSource (bytes: Uint8Array): number | undefined {
    const p = this.source?.read.get(bytes.buffer)?.find(p => p.at <= bytes.byteOffset && bytes.byteOffset + bytes.length <= p.at + p.length)
    return p == null ? undefined : p.offset + bytes.byteOffset - p.at
  }

  async put (cid: CID, bytes: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<CID> {
    if (this.done) throw new Error('staging area closed')
    const key = cid.toString()
    if (this.keys.has(key)) return cid
    // reserved before the bytes are gathered: a second put of the block meanwhile is a no-op
    this.keys.add(key)
    if (this.source != null && cid.code === raw.code && bytes instanceof Uint8Array) {
      const at = this.offsetInSource(bytes)
      if (at != null && at + bytes.length <= this.source.size) {
        this.inFile.set(key, { offset: at, length: bytes.length })
        this.store.written += bytes.length
        return cid
      }
    }
    const data = await toBytes(bytes)
    if (this.done) throw new Error('staging area closed')
    this.store.written += data.length
    if (this.dir == null) { this.blocks.set(key, data); return cid }
    this.pack ??= this.store.newStagingPack(this.dir)
    const writtenMs = Date.now()
    const { offset, length } = appendBlock(this.pack, key, data, writtenMs)
    this.entries.set(key, { pack: this.pack, offset, length, writtenMs })
    return cid
  }

  get size (): number { return this.keys.size }

  async commit (): Promise<void> {
    this.done = true
    if (this.dir == null) {
      for (const [cid, bytes] of this.blocks) await this.store.adopt(cid, bytes)
      await this.discard()
      return
    }
    if (this.source != null && this.inFile.size > 0) this.commitInPlace(this.dir, this.source)
    if (this.pack != null) {
      this.store.commitPack(this.pack, this.entries)
      this.pack = undefined
    }
    await this.discard()
  }

  /**
   * The source file joins the store as a pack of its leaves: hard-linked into the staging dir (the
   * same file, checked by inode, its size unchanged) with an index of their offsets, then committed
   * like any staging pack. When it cannot be linked (another file system, no permission), its
   * leaves are copied into the staging pack instead.
   */
  private commitInPlace (dir: string, source: { file: string, size: number }): void {
    const id = newPackId()
    const file = join(dir, `${id}.pack`)
    let linked = false
    try {
      const before = lstatSync(source.file)
      linkSync(source.file, file)
      linked = true
      const after = statSync(file)
      if (!before.isFile() || after.ino !== before.ino || after.dev !== before.dev || after.size !== source.size) throw new Error('the file changed')
    } catch (err: any) {
      if (linked) { try { unlinkSync(file) } catch {} }
      log.debug({ file: source.file, err: err?.message }, 'file not linked into the store: its leaves are copied')
      this.copyLeaves(dir, source.file)
      return
    }
    const writtenMs = Date.now()
    const records: Buffer[] = [IDX_HEADER]
    const entries = new Map<string, Entry>()
    const pack: Pack = { id, file, idxFile: join(dir, `${id}.idx`), size: source.size, idxSize: 0, live: 0, keys: new Set() }
    for (const [key, { offset, length }] of this.inFile) {
      records.push(encodeRecord(PUT, key, offset, length, writtenMs))
      entries.set(key, { pack, offset, length, writtenMs })
    }
    const idx = Buffer.concat(records)
    writeFileSync(pack.idxFile, idx, { flag: 'wx' })
    pack.idxSize = idx.length
    this.store.commitPack(pack, entries)
    this.inFile.clear()
  }

  /** The leaves recorded in place, read from the file and appended to the staging pack. */
  private copyLeaves (dir: string, source: string): void {
    const fd = openSync(source, 'r')
    try {
      for (const [key, { offset, length }] of this.inFile) {
        const bytes = Buffer.allocUnsafe(length)
        if (readAt(fd, bytes, offset) !== length) throw new Error(`${source} ended before its leaf at ${offset}`)
        this.pack ??= this.store.newStagingPack(dir)
        const writtenMs = Date.now()
        this.entries.set(key, { pack: this.pack, ...appendBlock(this.pack, key, bytes, writtenMs), writtenMs })
      }
    } finally { closeSync(fd) }
    this.inFile.clear()
  }

  async discard (): Promise<void> {
    this.done = true
    this.inFile.clear()
    this.blocks.clear()
    this.entries.clear()
    if (this.pack != null) { closeWriters(this.pack); this.pack = undefined }
    if (this.dir != null) await rm(this.dir, { recursive: true, force: true })
  }
}

async function toBytes (bytes: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  if (bytes instanceof Uint8Array) return bytes
  const parts: Uint8Array[] = []
  for await (const p of bytes) parts.push(p)
  return Buffer.concat(parts)
}
