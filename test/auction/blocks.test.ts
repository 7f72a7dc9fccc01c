/**
 * The block store's pack files (auction/blocks.ts): blocks appended to packs with an append-only
 * index, read back whole and only whole; packs roll over, survive a restart and a crash mid-append
 * (a torn pack, a torn or garbled index), staging packs join the store on commit and vanish on
 * discard, deletes write tombstones, empty packs are unlinked and mostly dead ones compacted (disk
 * really freed, every live block readable throughout), and the one-file-per-block layout of older
 * data dirs stays readable.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { appendFile, link, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { BlockStore, BlockTooLargeError, IN_PLACE_MIN_BYTES, PACK_READ_FDS } from '../../src/auction/blocks.js'
import { BlobStore } from '../../src/auction/blobs.js'
import { ROOT } from '../helpers/cli.js'

const KiB = 1024
const dirs: string[] = []

async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mercato-blocks-'))
  dirs.push(dir)
  return dir
}

async function started (dir: string, opts: { packMaxBytes?: number } = {}): Promise<BlockStore> {
  const s = new BlockStore(dir, opts)
  await s.start()
  return s
}

async function block (size: number): Promise<{ cid: CID, key: string, bytes: Uint8Array }> {
  const bytes = randomBytes(size)
  const cid = CID.create(1, raw.code, await sha256.digest(bytes))
  return { cid, key: cid.toString(), bytes }
}

async function blocks (n: number, size: number): Promise<Array<{ cid: CID, key: string, bytes: Uint8Array }>> {
  const out = []
  for (let i = 0; i < n; i++) out.push(await block(size))
  return out
}

/** The files in `packs/` and the bytes they take. */
async function packsOnDisk (dir: string): Promise<{ packs: string[], idx: string[], bytes: number }> {
  const names = await readdir(join(dir, 'packs'))
  let bytes = 0
  for (const n of names) bytes += (await stat(join(dir, 'packs', n))).size
  return { packs: names.filter(n => n.endsWith('.pack')).sort(), idx: names.filter(n => n.endsWith('.idx')).sort(), bytes }
}

async function expectHeld (s: BlockStore, list: Array<{ key: string, bytes: Uint8Array }>): Promise<void> {
  for (const b of list) {
    const got = await s.get(b.key)
    expect(got, b.key).to.not.equal(undefined)
    expect(Buffer.from(got!).equals(Buffer.from(b.bytes)), `${b.key}: the same bytes`).to.equal(true)
  }
}

describe('block store: pack files', function () {
  this.timeout(30_000)
  after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

  it('put, get, sizeOf, has, list, count and delete round trip; written counts the bytes put', async () => {
    const dir = await tempDir()
    const s = await started(dir)
    const bs = await blocks(5, 100 * KiB)
    const before = Date.now()
    for (const b of bs) await s.put(b.cid, b.bytes)
    expect(s.written).to.equal(5 * 100 * KiB)
    await expectHeld(s, bs)
    expect(await s.sizeOf(bs[0].cid)).to.equal(100 * KiB)
    expect(await s.has(bs[1].key)).to.equal(true)
    expect(await s.count()).to.equal(5)
    const listed = await s.list()
    expect(listed.map(b => b.key).sort()).to.deep.equal(bs.map(b => b.key).sort())
    for (const l of listed) {
      expect(l.bytes).to.equal(100 * KiB)
      expect(l.writtenMs).to.be.within(before, Date.now())
    }
    // maxBytes: a larger block is not read
    const err = await s.get(bs[0].cid, { maxBytes: 10 * KiB }).catch(e => e)
    expect(err).to.be.instanceOf(BlockTooLargeError)
    expect(err.size).to.equal(100 * KiB)
    await s.delete(bs[0].key)
    expect(await s.get(bs[0].cid)).to.equal(undefined)
    expect(await s.has(bs[0].cid)).to.equal(false)
    expect(await s.count()).to.equal(4)
    await s.delete('bafkreinotheld') // a no-op
    expect(await s.get('bafkreinotheld')).to.equal(undefined)
    // one pack, not a file per block
    const disk = await packsOnDisk(dir)
    expect(disk.packs).to.have.length(1)
    expect(await readdir(dir)).to.not.include('blocks')
  })

  it('a block put twice is written once', async () => {
    const dir = await tempDir()
    const s = await started(dir)
    const b = await block(64 * KiB)
    await s.put(b.cid, b.bytes)
    await s.put(b.cid, b.bytes)
    await s.put(b.cid, b.bytes, { missing: true })
    await Promise.all([s.put(b.cid, b.bytes), s.put(b.cid, b.bytes)])
    expect(await s.count()).to.equal(1)
    expect(s.written).to.equal(64 * KiB)
    expect(s.packBytes()).to.equal(64 * KiB)
  })

  it('rolls over to a new pack past packMaxBytes; a restart keeps every block, and deleted ones stay deleted', async () => {
    const dir = await tempDir()
    const s = await started(dir, { packMaxBytes: 1024 * KiB })
    const bs = await blocks(10, 256 * KiB)
    for (const b of bs) await s.put(b.cid, b.bytes)
    const disk = await packsOnDisk(dir)
    expect(disk.packs).to.have.length(3) // 4 + 4 + 2 blocks
    for (const p of disk.packs) expect((await stat(join(dir, 'packs', p))).size).to.be.at.most(1024 * KiB)
    await s.delete(bs[0].key)
    await s.setWrittenMs(bs[1].key, 12345)
    await s.close()
    const again = await started(dir, { packMaxBytes: 1024 * KiB })
    expect(await again.count()).to.equal(9)
    await expectHeld(again, bs.slice(1))
    expect(await again.get(bs[0].key)).to.equal(undefined)
    expect((await again.list()).find(l => l.key === bs[1].key)?.writtenMs, 'the written time set is kept').to.equal(12345)
    // new blocks go to a new pack; the old ones are not written again
    const more = await block(10 * KiB)
    await again.put(more.cid, more.bytes)
    expect((await packsOnDisk(dir)).packs).to.have.length(4)
  })

  it('puts written at once (off the event loop): readable while in flight, packs roll over under them, a delete waits for its block, close waits for every write; all kept across a restart', async () => {
    const dir = await tempDir()
    const s = await started(dir, { packMaxBytes: 1024 * KiB })
    const bs = await blocks(24, 256 * KiB)
    const puts = bs.map(async b => await s.put(b.cid, b.bytes, { missing: true }))
    // in flight (no turn of the event loop yet: no write has ended): the bytes and sizes are there
    // already; a second put of one waits for the first
    expect(await s.count()).to.equal(0)
    for (const b of bs.slice(0, 4)) {
      expect(Buffer.from(await s.get(b.key) as Uint8Array).equals(b.bytes)).to.equal(true)
      expect(await s.sizeOf(b.key)).to.equal(b.bytes.length)
    }
    expect(await s.get(bs[0].key, { maxBytes: 1024 }).catch(e => e)).to.be.instanceOf(BlockTooLargeError)
    const again = s.put(bs[1].cid, bs[1].bytes)
    const deleted = s.delete(bs[2].key)
    await Promise.all([...puts, again, deleted])
    expect(await s.count()).to.equal(23)
    expect(await s.get(bs[2].key)).to.equal(undefined)
    expect(s.written).to.equal(24 * 256 * KiB)
    await expectHeld(s, bs.filter((_, i) => i !== 2))
    const disk = await packsOnDisk(dir)
    expect(disk.packs).to.have.length(6) // 4 blocks a pack; no two appends in one range
    for (const p of disk.packs) expect((await stat(join(dir, 'packs', p))).size).to.equal(1024 * KiB)
    // a close while writes are in flight waits for them, and every descriptor is closed after
    const late = await blocks(3, 256 * KiB)
    const latePuts = late.map(async b => await s.put(b.cid, b.bytes))
    await s.close()
    await Promise.all(latePuts)
    const reopened = await started(dir, { packMaxBytes: 1024 * KiB })
    expect(await reopened.count()).to.equal(26)
    await expectHeld(reopened, [...bs.filter((_, i) => i !== 2), ...late])
    await reopened.close()
  })

  it('a block given in pieces (as it came off a channel) is written as one block: read whole while in flight and after, sized, kept across a restart', async () => {
    const dir = await tempDir()
    const s = await started(dir, { packMaxBytes: 1024 * KiB })
    const bs = await blocks(6, 300 * KiB)
    // cut at odd places, with an empty piece and a one-byte piece, as a transport may
    const cuts = (b: Uint8Array): Uint8Array[] => [b.subarray(0, 1), b.subarray(1, 1), b.subarray(1, 65_537), b.subarray(65_537, 200_001), b.subarray(200_001)]
    const puts = bs.map(async b => await s.put(b.cid, cuts(b.bytes), { missing: true }))
    // in flight: get joins the pieces, sizeOf adds them up, writing() hands them over as they are
    expect(Buffer.from(await s.get(bs[0].key) as Uint8Array).equals(bs[0].bytes)).to.equal(true)
    expect(await s.sizeOf(bs[0].key)).to.equal(300 * KiB)
    const inFlight = s.writing(bs[0].key) as Uint8Array[]
    expect(inFlight).to.have.length(5)
    expect(Buffer.concat(inFlight).equals(bs[0].bytes)).to.equal(true)
    await Promise.all(puts)
    expect(s.writing(bs[0].key)).to.equal(undefined)
    expect(s.written).to.equal(6 * 300 * KiB)
    await expectHeld(s, bs)
    await s.close()
    const reopened = await started(dir, { packMaxBytes: 1024 * KiB })
    await expectHeld(reopened, bs)
    await reopened.close()
    // a store in memory keeps the block joined
    const memory = new BlockStore()
    await memory.start()
    await memory.put(bs[1].cid, cuts(bs[1].bytes))
    expect(Buffer.from(await memory.get(bs[1].key) as Uint8Array).equals(bs[1].bytes)).to.equal(true)
  })

  it('reads from many packs keep at most PACK_READ_FDS descriptors open', async () => {
    const dir = await tempDir()
    const s = await started(dir, { packMaxBytes: 1 }) // a pack per block
    const bs = await blocks(PACK_READ_FDS + 36, 4 * KiB)
    for (const b of bs) await s.put(b.cid, b.bytes)
    expect((await packsOnDisk(dir)).packs).to.have.length(bs.length)
    for (let round = 0; round < 2; round++) await expectHeld(s, bs)
    const open = async (): Promise<number> => {
      let n = 0
      for (const fd of await readdir('/proc/self/fd')) {
        const target = await readlink(join('/proc/self/fd', fd)).catch(() => '')
        if (target.startsWith(join(dir, 'packs'))) n++
      }
      return n
    }
    expect(await open()).to.be.within(PACK_READ_FDS, PACK_READ_FDS + 2) // and the pack being written, with its index
    await s.close()
    expect(await open()).to.equal(0)
  })

  describe('a crash mid-append loses at most the last block, and never returns wrong bytes', function () {
    async function filled (): Promise<{ dir: string, bs: Array<{ cid: CID, key: string, bytes: Uint8Array }>, pack: string, idx: string }> {
      const dir = await tempDir()
      const s = await started(dir)
      const bs = await blocks(4, 50 * KiB)
      for (const b of bs) await s.put(b.cid, b.bytes)
      await s.close()
      const { packs, idx } = await packsOnDisk(dir)
      return { dir, bs, pack: join(dir, 'packs', packs[0]), idx: join(dir, 'packs', idx[0]) }
    }

    it('a pack cut short: the block past its end is dropped, the others are whole', async () => {
      const { dir, bs, pack } = await filled()
      await truncate(pack, 4 * 50 * KiB - 3)
      const s = await started(dir)
      expect(await s.count()).to.equal(3)
      await expectHeld(s, bs.slice(0, 3))
      expect(await s.get(bs[3].key)).to.equal(undefined)
      expect(await s.sizeOf(bs[3].key)).to.equal(undefined)
      // written again, it is whole
      await s.put(bs[3].cid, bs[3].bytes)
      await expectHeld(s, bs)
    })

    it('a pack cut short after the store started: get answers undefined, never a short block', async () => {
      const { dir, bs, pack } = await filled()
      const s = await started(dir)
      await truncate(pack, 4 * 50 * KiB - 3)
      expect(await s.get(bs[3].key)).to.equal(undefined)
      await expectHeld(s, bs.slice(0, 3))
    })

    it('an index cut short: the torn record is dropped (the last block), and later records are kept', async () => {
      const { dir, bs, idx } = await filled()
      const size = (await stat(idx)).size
      await truncate(idx, size - 5)
      const s = await started(dir)
      expect(await s.count()).to.equal(3)
      await expectHeld(s, bs.slice(0, 3))
      expect(await s.get(bs[3].key)).to.equal(undefined)
      // the torn tail was cut off at start: a tombstone written now is read at the next start
      await s.delete(bs[0].key)
      await s.close()
      const again = await started(dir)
      expect(await again.count()).to.equal(2)
      await expectHeld(again, bs.slice(1, 3))
    })

    it('garbage appended to an index: ignored, every block kept, and the index repaired', async () => {
      const { dir, bs, idx } = await filled()
      const size = (await stat(idx)).size
      await appendFile(idx, randomBytes(300))
      const s = await started(dir)
      expect(await s.count()).to.equal(4)
      await expectHeld(s, bs)
      expect((await stat(idx)).size).to.equal(size)
      await s.delete(bs[2].key)
      const again = await started(dir)
      expect(await again.count()).to.equal(3)
      expect(await again.get(bs[2].key)).to.equal(undefined)
    })

    it('a record damaged in the middle ends the index there (the CRC): the blocks after it are lost, none is misread', async () => {
      const { dir, bs, idx } = await filled()
      const buf = await readFile(idx)
      buf[8 + 30] ^= 0xff // inside the first record
      await writeFile(idx, buf)
      const s = await started(dir)
      expect(await s.count()).to.equal(0)
      for (const b of bs) expect(await s.get(b.key)).to.equal(undefined)
      expect((await packsOnDisk(dir)).packs, 'a pack with no live block is removed').to.have.length(0)
    })

    it('a record torn by a failed write (ENOSPC) is overwritten by the next one, not left in the middle of the index', async () => {
      const dir = await tempDir()
      const s = await started(dir)
      const bs = await blocks(3, 20 * KiB)
      await s.put(bs[0].cid, bs[0].bytes)
      // what a short write leaves: part of a record past the index's end
      const idx = join(dir, 'packs', (await packsOnDisk(dir)).idx[0])
      await appendFile(idx, randomBytes(40))
      await s.put(bs[1].cid, bs[1].bytes)
      await s.delete(bs[0].key)
      await s.put(bs[2].cid, bs[2].bytes)
      await s.close()
      const again = await started(dir)
      expect(await again.count()).to.equal(2)
      await expectHeld(again, bs.slice(1))
      expect(await again.has(bs[0].cid)).to.equal(false)
    })

    it('a writer killed (SIGKILL) mid-stream: every block it had stored is held, every held block is its CID\'s bytes (real process; needs npm run build)', async function () {
      this.timeout(60_000)
      const dir = await tempDir()
      // the child puts blocks (a few through a staging commit, some deleted) and prints each key once stored
      const child = spawn(process.execPath, ['--input-type=module', '-e', `
        import { BlockStore } from ${JSON.stringify(join(ROOT, 'dist/auction/blocks.js'))}
        import { CID } from 'multiformats/cid'
        import * as raw from 'multiformats/codecs/raw'
        import { sha256 } from 'multiformats/hashes/sha2'
        import { randomBytes } from 'node:crypto'
        const s = new BlockStore(process.argv[1], { packMaxBytes: 4 * 1024 * 1024 })
        await s.start()
        const make = async () => { const b = randomBytes(1 + Math.floor(Math.random() * 300 * 1024)); return { cid: CID.create(1, raw.code, await sha256.digest(b)), b } }
        for (let i = 0; ; i++) {
          if (i % 10 === 5) {
            const st = await s.staging()
            const keys = []
            for (let j = 0; j < 3; j++) { const { cid, b } = await make(); await st.put(cid, b); keys.push(cid.toString()) }
            await st.commit()
            for (const k of keys) process.stdout.write('+' + k + '\\n')
          } else {
            const { cid, b } = await make()
            await s.put(cid, b)
            process.stdout.write('+' + cid + '\\n')
            // '~' before the delete: killed during it (or before its '-' line), the block may be held or not
            if (i % 4 === 0) { process.stdout.write('~' + cid + '\\n'); await s.delete(cid.toString()); process.stdout.write('-' + cid + '\\n') }
          }
        }
      `, dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      child.stdout.setEncoding('utf8')
      await new Promise<void>((resolve, reject) => {
        child.on('error', reject)
        child.on('exit', (code) => { reject(new Error(`the writer exited (${code ?? 'signal'}) before it was killed`)) })
        child.stdout.on('data', (d: string) => {
          out += d
          if (out.split('\n').length > 400) { child.kill('SIGKILL'); resolve() }
        })
      })
      await new Promise(resolve => child.once('close', resolve))
      const stored = new Set<string>()
      let deleting: string | undefined // a delete it was killed in (or before it said so): either outcome is right
      for (const line of out.split('\n').slice(0, -1)) {
        const key = line.slice(1)
        if (line.startsWith('+')) stored.add(key)
        else if (line.startsWith('~')) { stored.delete(key); deleting = key } else if (deleting === key) deleting = undefined
      }
      expect(stored.size).to.be.above(200)
      const s = await started(dir, { packMaxBytes: 4 * 1024 * 1024 })
      const held = new Set((await s.list()).map(l => l.key))
      for (const k of stored) expect(held.has(k), `${k} was stored`).to.equal(true)
      // at most the block being written when it was killed, and none deleted, beyond what it said
      const extra = [...held].filter(k => !stored.has(k) && k !== deleting)
      expect(extra.length).to.be.at.most(3)
      for (const k of held) {
        const bytes = await s.get(k)
        const cid = CID.parse(k)
        expect(CID.create(1, raw.code, await sha256.digest(bytes!)).equals(cid), `${k}: its own bytes`).to.equal(true)
      }
    })

    it('a pack without an index and an empty index (a crash at creation) are cleaned up', async () => {
      const dir = await tempDir()
      await mkdir(join(dir, 'packs'), { recursive: true })
      await writeFile(join(dir, 'packs', 'x.pack'), randomBytes(100))
      await writeFile(join(dir, 'packs', 'y.pack'), '')
      await writeFile(join(dir, 'packs', 'y.idx'), '')
      const s = await started(dir)
      expect(await s.count()).to.equal(0)
      expect(await readdir(join(dir, 'packs'))).to.deep.equal([])
    })
  })

  describe('staging', function () {
    it('commit moves the staged pack into packs/ (blocks seen twice written once); a block already held keeps one copy', async () => {
      const dir = await tempDir()
      const s = await started(dir)
      const held = await block(30 * KiB)
      await s.put(held.cid, held.bytes)
      const bs = await blocks(6, 40 * KiB)
      const st = await s.staging()
      // the importer's way: concurrent puts, some of the same block, one of them already in the store
      await Promise.all([...bs, ...bs.slice(0, 3), held].map(async b => await st.put(b.cid, b.bytes)))
      expect(st.size).to.equal(7)
      expect(await s.has(bs[0].cid), 'not in the store before commit').to.equal(false)
      expect(await readdir(join(dir, 'staging'))).to.have.length(1)
      await st.commit()
      expect(await s.count()).to.equal(7)
      await expectHeld(s, [...bs, held])
      expect(await readdir(join(dir, 'staging'))).to.deep.equal([])
      expect((await packsOnDisk(dir)).packs).to.have.length(2)
      expect(s.written).to.equal(30 * KiB + 6 * 40 * KiB + 30 * KiB)
      await s.close()
      const again = await started(dir)
      expect(await again.count()).to.equal(7)
      await expectHeld(again, [...bs, held])
      // the dead copy of `held` does not come back: deleting the live one deletes the block
      await again.delete(held.key)
      await again.close()
      const third = await started(dir)
      expect(await third.has(held.cid)).to.equal(false)
      expect(await third.count()).to.equal(6)
    })

    it('a block committed by a staging area while a put of it is being written keeps the committed copy; the put\'s bytes stay dead, with no record', async () => {
      const dir = await tempDir()
      const s = await started(dir)
      const [x, y] = await blocks(2, 64 * KiB)
      const st = await s.staging()
      await st.put(x.cid, x.bytes)
      await st.put(y.cid, y.bytes)
      // a fetch stores x (its bytes written off the event loop) while the upload that staged it commits
      const putting = s.put(x.cid, x.bytes, { missing: true })
      const committing = st.commit()
      await Promise.all([putting, committing])
      expect(await s.count()).to.equal(2)
      expect(s.where(x.key)?.file, 'x is where the upload put it').to.equal(s.where(y.key)?.file)
      await expectHeld(s, [x, y])
      await s.close()
      const again = await started(dir)
      expect(await again.count()).to.equal(2)
      expect(again.where(x.key)?.file).to.equal(again.where(y.key)?.file)
      await expectHeld(again, [x, y])
      await again.close()
    })

    it('discard leaves nothing: no block, no pack, no staging dir; a staging area left by a crash goes at start', async () => {
      const dir = await tempDir()
      const s = await started(dir)
      const bs = await blocks(3, 40 * KiB)
      const st = await s.staging()
      for (const b of bs) await st.put(b.cid, b.bytes)
      await st.discard()
      expect(await s.count()).to.equal(0)
      expect((await packsOnDisk(dir)).packs).to.deep.equal([])
      expect(await readdir(join(dir, 'staging'))).to.deep.equal([])
      const err = await st.put(bs[0].cid, bs[0].bytes).catch(e => e)
      expect(err?.message).to.equal('staging area closed')
      // a crash mid-import: the staging pack is left; the next start drops it
      const crashed = await s.staging()
      for (const b of bs) await crashed.put(b.cid, b.bytes)
      const again = await started(dir)
      expect(await again.count()).to.equal(0)
      expect(await readdir(join(dir, 'staging')).catch(() => [])).to.deep.equal([])
    })
  })

  describe('a file kept in place (putStream fromFile: a job\'s output)', function () {
    const MiB = 1024 * KiB

    async function blobStore (dir: string): Promise<BlobStore> {
      const s = new BlobStore(dir)
      await s.start()
      return s
    }

    async function readBlob (s: BlobStore, cid: string): Promise<Buffer> {
      const parts: Uint8Array[] = []
      for await (const p of s.cat(cid)) parts.push(p)
      return Buffer.concat(parts)
    }

    /** A file of `size` random bytes in `dir` (the store's file system unless told otherwise). */
    async function fileOf (dir: string, size: number, name = 'out.bin'): Promise<{ file: string, bytes: Buffer, cid: string }> {
      await mkdir(dir, { recursive: true })
      const bytes = randomBytes(size)
      const file = join(dir, name)
      await writeFile(file, bytes)
      return { file, bytes, cid: await new BlobStore().putStream([bytes]) }
    }

    /** The store's pack files that are `file` itself (same inode), and the bytes of all the others. */
    async function packsBeside (dir: string, file: string): Promise<{ same: string[], otherBytes: number }> {
      const { ino } = await stat(file)
      const same: string[] = []
      let otherBytes = 0
      for (const name of (await packsOnDisk(dir)).packs) {
        const st = await stat(join(dir, 'packs', name))
        if (st.ino === ino) same.push(name); else otherBytes += st.size
      }
      return { same, otherBytes }
    }

    it('its leaves stay in it: the importer\'s CID, the file linked into packs/ (no second copy), read back whole after the file\'s own name is gone and after a restart, freed when collected', async () => {
      const dir = await tempDir()
      const s = await blobStore(dir)
      const size = 9 * MiB + 1234
      const src = await fileOf(join(dir, 'job'), size)
      const cid = await s.putStream(createReadStream(src.file, { highWaterMark: 256 * KiB }), { maxBytes: size, fromFile: src.file })
      expect(cid).to.equal(src.cid)
      expect((await stat(src.file)).nlink, 'linked into the store').to.equal(2)
      const { same, otherBytes } = await packsBeside(dir, src.file)
      expect(same).to.have.length(1)
      // the inner nodes only (a root over 37 leaves): the leaves were not written again
      expect(otherBytes).to.be.above(0).and.below(4 * KiB)
      expect(s.blocks.written).to.be.at.least(size)
      expect((await readBlob(s, cid)).equals(src.bytes)).to.equal(true)
      await unlink(src.file)
      expect((await readBlob(s, cid)).equals(src.bytes)).to.equal(true)
      await s.blocks.close()
      const again = await blobStore(dir)
      expect((await readBlob(again, cid)).equals(src.bytes)).to.equal(true)
      // not pinned: the collector takes it, and the linked pack goes with it
      again.gc.start({ maxBytes: 0, graceMs: 0, intervalMs: 0 })
      const r = await again.gc.collect()
      await again.gc.stop()
      expect(r.removedBlocks).to.equal(38)
      expect((await packsOnDisk(dir)).packs).to.deep.equal([])
      expect(await again.size(cid)).to.equal(undefined)
    })

    it('a leaf read across two pieces is written, the others stay in place; same CID, same bytes', async () => {
      const dir = await tempDir()
      const s = await blobStore(dir)
      const size = 6 * MiB
      const src = await fileOf(join(dir, 'job'), size)
      // 384 KiB pieces: of every three leaves, one straddles two pieces
      const cid = await s.putStream(createReadStream(src.file, { highWaterMark: 384 * KiB }), { maxBytes: size, fromFile: src.file })
      expect(cid).to.equal(src.cid)
      const { same, otherBytes } = await packsBeside(dir, src.file)
      expect(same).to.have.length(1)
      expect(otherBytes).to.be.within(8 * 256 * KiB, 8 * 256 * KiB + 4 * KiB)
      await unlink(src.file)
      expect((await readBlob(s, cid)).equals(src.bytes)).to.equal(true)
    })

    it('a file that cannot stay where it is is copied: too small, with a second name, a symlink, on another file system', async () => {
      const dir = await tempDir()
      const s = await blobStore(dir)
      const job = join(dir, 'job')
      const small = await fileOf(job, IN_PLACE_MIN_BYTES - 1, 'small.bin')
      const twice = await fileOf(job, 5 * MiB, 'twice.bin')
      await link(twice.file, join(job, 'twice-again.bin'))
      const target = await fileOf(job, 5 * MiB, 'target.bin')
      await symlink(target.file, join(job, 'via-symlink.bin'))
      const cases = [
        { src: small, file: small.file },
        { src: twice, file: twice.file },
        { src: target, file: join(job, 'via-symlink.bin') }
      ]
      // tmpfs, where there is one apart from the store's: a hard link into the store fails (EXDEV), the leaves are copied
      if ((await stat('/dev/shm').catch(() => undefined))?.dev !== (await stat(dir)).dev) {
        const shm = await mkdtemp('/dev/shm/mercato-blocks-')
        dirs.push(shm)
        const elsewhere = await fileOf(shm, 5 * MiB)
        cases.push({ src: elsewhere, file: elsewhere.file })
      }
      for (const { src, file } of cases) {
        const links = (await stat(src.file)).nlink
        const cid = await s.putStream(createReadStream(file, { highWaterMark: 256 * KiB }), { maxBytes: src.bytes.length, fromFile: file })
        expect(cid, file).to.equal(src.cid)
        expect((await stat(src.file)).nlink, file).to.equal(links)
        expect((await packsBeside(dir, src.file)).same, file).to.deep.equal([])
      }
      for (const { src } of cases) await unlink(src.file)
      for (const { src } of cases) expect((await readBlob(s, src.cid)).equals(src.bytes)).to.equal(true)
    })
  })

  describe('deletes and compaction', function () {
    it('a pack whose blocks are all deleted is unlinked (a full one and the one being written)', async () => {
      const dir = await tempDir()
      const s = await started(dir, { packMaxBytes: 200 * KiB })
      const bs = await blocks(4, 100 * KiB) // two packs of two
      for (const b of bs) await s.put(b.cid, b.bytes)
      expect((await packsOnDisk(dir)).packs).to.have.length(2)
      await s.delete(bs[0].key)
      await s.delete(bs[1].key)
      expect((await packsOnDisk(dir)).packs).to.have.length(1)
      await s.delete(bs[2].key)
      await s.delete(bs[3].key)
      expect(await readdir(join(dir, 'packs'))).to.deep.equal([])
      // and writing goes on in a new pack
      const b = await block(10 * KiB)
      await s.put(b.cid, b.bytes)
      await expectHeld(s, [b])
    })

    /** A store of packs of 1 MiB holding `count` blocks of 128 KiB (8 a pack). */
    const packedStore = async (count: number): Promise<{ dir: string, s: BlockStore, bs: Awaited<ReturnType<typeof blocks>>, full: Awaited<ReturnType<typeof packsOnDisk>> }> => {
      const dir = await tempDir()
      const s = await started(dir, { packMaxBytes: 1024 * KiB })
      const bs = await blocks(count, 128 * KiB)
      for (const b of bs) await s.put(b.cid, b.bytes)
      return { dir, s, bs, full: await packsOnDisk(dir) }
    }

    it('a pack under half live is compacted: live blocks copied and readable, the disk space freed, kept across a restart', async () => {
      const { dir, s, bs, full } = await packedStore(16) // two full packs of 8
      expect(full.packs).to.have.length(2)
      expect(full.bytes).to.be.at.least(16 * 128 * KiB)
      // 5 of 8 dead in the first pack, 5 of 8 in the second (the current one)
      const dead = [...bs.slice(0, 5), ...bs.slice(8, 13)]
      const live = [...bs.slice(5, 8), ...bs.slice(13)]
      for (const b of dead) await s.delete(b.key)
      await s.compacted()
      const after = await packsOnDisk(dir)
      expect(after.packs.some(p => full.packs.includes(p)), 'the old packs are gone').to.equal(false)
      expect(after.bytes).to.be.below(6 * 128 * KiB + 10 * KiB)
      expect(after.bytes).to.be.at.least(6 * 128 * KiB)
      expect(s.packBytes()).to.equal(6 * 128 * KiB)
      await expectHeld(s, live)
      for (const b of dead) expect(await s.has(b.cid)).to.equal(false)
      // the written times move with the blocks (the collector's order)
      const times = new Map((await s.list()).map(l => [l.key, l.writtenMs]))
      expect(times.size).to.equal(6)
      await s.close()
      const again = await started(dir)
      expect(await again.count()).to.equal(6)
      await expectHeld(again, live)
      for (const l of await again.list()) expect(l.writtenMs).to.equal(times.get(l.key))
    })

    it('a leased pack (read in place by a job) is neither compacted nor unlinked until released; where() names its ranges', async () => {
      const { dir, s, bs, full } = await packedStore(16) // two full packs of 8
      // (pack names do not sort in the order the packs were made: ask where the blocks are)
      const firstPack = s.where(bs[0].key)!.file
      const secondPack = s.where(bs[8].key)!.file
      expect(full.packs.map(p => join(dir, 'packs', p)).sort()).to.deep.equal([firstPack, secondPack].sort())
      const leased = bs.slice(5, 8)
      expect(leased.map(b => s.where(b.key)?.file)).to.deep.equal([firstPack, firstPack, firstPack])
      const at = leased.map(b => s.where(b.key)!)
      const release = s.lease(leased.map(b => b.key))
      // under half live, and then with no live block at all: kept while leased
      for (const b of bs.slice(0, 5)) await s.delete(b.key)
      await s.compacted()
      const onDisk = async (): Promise<string[]> => (await packsOnDisk(dir)).packs.map(p => join(dir, 'packs', p))
      expect(await onDisk()).to.include(firstPack)
      for (const b of leased) await s.delete(b.key)
      await s.compacted()
      expect(await onDisk()).to.include(firstPack)
      // the ranges still hold the blocks' bytes, deleted or not
      const bytes = await readFile(firstPack)
      leased.forEach((b, i) => { expect(Buffer.from(bytes.subarray(at[i].offset, at[i].offset + at[i].length)).equals(b.bytes)).to.equal(true) })
      release()
      release() // twice is once
      await s.compacted()
      expect(await onDisk()).to.not.include(firstPack)
      expect(s.where(bs[0].key)).to.equal(undefined)
      // a live block of a leased pack that is compacted after the lease: moved, where() follows it
      const other = bs.slice(8, 16)
      const release2 = s.lease([other[0].key])
      for (const b of other.slice(1, 6)) await s.delete(b.key)
      await s.compacted()
      expect(s.where(other[6].key)?.file).to.equal(secondPack)
      release2()
      await s.compacted()
      expect(s.where(other[6].key)?.file).to.not.equal(secondPack)
      await expectHeld(s, [other[0], other[6], other[7]])
    })

    it('a read error during compaction (EMFILE, EIO) keeps the pack and every live block in it', async () => {
      const { dir, s, bs, full } = await packedStore(8) // one full pack of 8
      // descriptors run out while the compaction reads (a busy node near its ulimit)
      const store = s as any
      const readFd = store.readFd
      store.readFd = () => { throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' }) }
      for (const b of bs.slice(0, 5)) await s.delete(b.key)
      await s.compacted()
      store.readFd = readFd
      expect((await packsOnDisk(dir)).packs, 'the pack is still there').to.include(full.packs[0])
      await expectHeld(s, bs.slice(5))
      // and held across a restart
      await s.close()
      const again = await started(dir)
      await expectHeld(again, bs.slice(5))
      expect(await again.count()).to.equal(3)
    })

    it('every live block stays readable while its pack is compacted', async () => {
      const dir = await tempDir()
      const s = await started(dir, { packMaxBytes: 4096 * KiB })
      const bs = await blocks(60, 64 * KiB)
      for (const b of bs) await s.put(b.cid, b.bytes)
      const live = bs.filter((_, i) => i % 3 === 0)
      for (const [i, b] of bs.entries()) if (i % 3 !== 0) await s.delete(b.key)
      let reads = 0
      let done = false
      const compaction = s.compacted().then(() => { done = true })
      while (!done) {
        for (const b of live) {
          const got = await s.get(b.cid)
          expect(got?.length, `${b.key} during compaction`).to.equal(b.bytes.length)
          expect(Buffer.from(got!).equals(Buffer.from(b.bytes))).to.equal(true)
          reads++
        }
        await new Promise(resolve => setImmediate(resolve))
      }
      await compaction
      expect(reads).to.be.at.least(live.length)
      await expectHeld(s, live)
      expect((await packsOnDisk(dir)).bytes).to.be.below(live.length * 64 * KiB + 10 * KiB)
    })

    it('a crash during compaction (a block in two packs) keeps one copy', async () => {
      const dir = await tempDir()
      const s = await started(dir)
      const b = await block(20 * KiB)
      await s.put(b.cid, b.bytes)
      await s.close()
      // the same block committed in a second pack, as a compaction cut before its unlink leaves it
      const other = await started(dir)
      const st = await other.staging()
      await st.put(b.cid, b.bytes)
      ;(other as any).index.clear() // this store forgets it held it: its commit registers the copy
      await st.commit()
      await other.close()
      expect((await packsOnDisk(dir)).packs).to.have.length(2)
      const again = await started(dir)
      expect(await again.count()).to.equal(1)
      await expectHeld(again, [b])
      await again.delete(b.key)
      const third = await started(dir)
      expect(await third.has(b.cid), 'one delete removes it for good').to.equal(false)
    })
  })

  describe('older layouts', function () {
    it('a block file under blocks/ is read, sized, listed, counted and deleted; new blocks go to packs', async () => {
      const dir = await tempDir()
      const old = await block(30 * KiB)
      await mkdir(join(dir, 'blocks'), { recursive: true })
      await writeFile(join(dir, 'blocks', old.key), old.bytes)
      const s = await started(dir)
      await expectHeld(s, [old])
      expect(await s.sizeOf(old.cid)).to.equal(30 * KiB)
      expect(await s.count()).to.equal(1)
      const fresh = await block(10 * KiB)
      await s.put(fresh.cid, fresh.bytes)
      await s.put(old.cid, old.bytes) // held (as a file): not written again
      expect(s.packBytes()).to.equal(10 * KiB)
      expect((await s.list()).map(l => l.key).sort()).to.deep.equal([old.key, fresh.key].sort())
      await s.setWrittenMs(old.key, 1_000_000)
      expect((await s.list()).find(l => l.key === old.key)?.writtenMs).to.equal(1_000_000)
      await s.delete(old.key)
      expect(await readdir(join(dir, 'blocks'))).to.deep.equal([])
      expect(await s.has(old.cid)).to.equal(false)
      expect(await s.count()).to.equal(1)
    })

    it('a blob stored a file per block is read whole, sits beside packed blobs, and is collected (its files removed)', async () => {
      const dir = await tempDir()
      // the old layout, as a node before packs left it: blocks/<cid>, one file each
      const mem = new BlobStore()
      const oldBytes = randomBytes(700 * KiB)
      const oldCid = await mem.putStream([oldBytes])
      await mkdir(join(dir, 'blocks'))
      for (const b of await mem.blocks.list()) await writeFile(join(dir, 'blocks', b.key), (await mem.blocks.get(b.key))!)
      const s = new BlobStore(dir)
      await s.start()
      expect(await s.blocks.count()).to.equal(4) // three leaves and the root
      const newBytes = randomBytes(300 * KiB)
      const newCid = await s.putStream([newBytes])
      for (const [cid, bytes] of [[oldCid, oldBytes], [newCid, newBytes]] as const) {
        const parts: Uint8Array[] = []
        for await (const p of s.cat(cid)) parts.push(p)
        expect(Buffer.concat(parts).equals(bytes), cid).to.equal(true)
      }
      expect(await s.blocks.count()).to.equal(4 + 3)
      s.gc.pin(newCid, 'upload')
      s.gc.start({ maxBytes: 0, graceMs: 0, intervalMs: 0 })
      const r = await s.gc.collect()
      await s.gc.stop()
      expect(r.removedBlocks).to.equal(4)
      expect(r.freedBytes).to.be.above(700 * KiB)
      expect(await readdir(join(dir, 'blocks'))).to.deep.equal([])
      expect(await s.size(oldCid)).to.equal(undefined)
      expect(await s.size(newCid)).to.equal(300 * KiB)
    })

    it('a whole blob of the first release (<dir>/<cid>) is still read', async () => {
      const dir = await tempDir()
      const whole = await block(50 * KiB)
      await writeFile(join(dir, whole.key), whole.bytes)
      const s = await started(dir)
      await expectHeld(s, [whole])
      expect(await s.sizeOf(whole.cid)).to.equal(50 * KiB)
    })
  })

  it('a read-only view (load) sees what another store wrote, and changes nothing', async () => {
    const dir = await tempDir()
    const s = await started(dir)
    const bs = await blocks(3, 10 * KiB)
    for (const b of bs) await s.put(b.cid, b.bytes)
    await appendFile(join(dir, 'packs', (await packsOnDisk(dir)).idx[0]), 'torn')
    const before = await packsOnDisk(dir)
    const view = new BlockStore(dir)
    await view.load()
    expect(await view.count()).to.equal(3)
    await expectHeld(view, bs)
    expect(await packsOnDisk(dir)).to.deep.equal(before)
  })

  it('without a data dir, blocks live in memory', async () => {
    const s = new BlockStore()
    await s.start()
    const b = await block(10 * KiB)
    await s.put(b.cid, b.bytes)
    await expectHeld(s, [b])
    const st = await s.staging()
    const c = await block(5 * KiB)
    await st.put(c.cid, c.bytes)
    expect(await s.has(c.cid)).to.equal(false)
    await st.commit()
    expect(await s.count()).to.equal(2)
    await s.delete(b.key)
    expect(await s.get(b.cid)).to.equal(undefined)
  })
})
