/**
 * Blobs as UnixFS DAGs: the CIDs IPFS tools compute, uploads refused past their cap with nothing
 * kept, and the block-by-block blob protocol between two real libp2p nodes on 127.0.0.1 (a
 * multi-block transfer, a peer lying about one block, a broken transfer resumed).
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { importBytes } from 'ipfs-unixfs-importer'
import { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { Connection } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import {
  BlobStore, BLOB_PROTOCOL, BLOB_REQUESTS_PER_CONNECTION, BLOB_STALL_MS, BLOB_STREAM_PROTOCOL, BLOB_STREAMS_PER_CONNECTION, MAX_BLOB_BYTES,
  MAX_BLOB_REQUESTS, MAX_BLOCK_BYTES
} from '../../src/auction/index.js'
import { decodeBlobRequest, encodeBlobBatch, encodeBlobRequest, MAX_BLOB_BATCH } from '../../src/auction/protocol/frames.js'
import { FRAME_REFUSED, FRAME_TOO_LARGE, readRefusal } from '../../src/auction/blob-stream.js'
import { createNetwork, RemoteError, type NetworkNode } from '../../src/p2p/index.js'

const dirs: string[] = []
async function store (): Promise<BlobStore> {
  const dir = await mkdtemp(join(tmpdir(), 'mercato-blobs-'))
  dirs.push(dir)
  const s = new BlobStore(dir)
  await s.start()
  return s
}

/** The CID ipfs-unixfs-importer computes on its own, with its defaults, into a blockstore that keeps nothing. */
async function importerCid (bytes: Uint8Array): Promise<string> {
  return (await importBytes(bytes, { put: async (cid: CID) => cid })).cid.toString()
}

async function * chunks (bytes: Uint8Array, size = 65_536): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size)
}

async function collect (it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of it) parts.push(p)
  return Buffer.concat(parts)
}

describe('blobs as UnixFS DAGs', function () {
  this.timeout(60_000)
  after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

  it('names a file as kubo does: "Hello IPFS\\n" with ipfs add --cid-version 1 is bafkreidfdrlk…', async () => {
    // kubo test/sharness/t0124-gateway-ipns-record/README.md: FILE_CID=$(echo "Hello IPFS" | ipfs add --cid-version 1 -q)
    const s = await store()
    const cid = await s.putStream(chunks(new TextEncoder().encode('Hello IPFS\n')))
    expect(cid).to.equal('bafkreidfdrlkeq4m4xnxuyx6iae76fdm4wgl5d4xzsb77ixhyqwumhz244')
  })

  it('a multi-block file: the importer\'s own CID, 256 KiB raw leaves under a dag-pb root, read back whole and by range', async () => {
    const s = await store()
    const bytes = randomBytes(3 * 1024 * 1024 + 12_345)
    const cid = await s.putStream(chunks(bytes, 100_000))
    expect(cid).to.equal(await importerCid(bytes))
    expect(CID.parse(cid).code).to.equal(0x70) // dag-pb
    expect(await s.blocks.count()).to.equal(13 + 1) // ceil(size / 256 KiB) leaves and the root
    expect(await s.size(cid)).to.equal(bytes.length)
    expect(Buffer.compare((await s.get(cid))!, bytes)).to.equal(0)
    const part = await collect(s.cat(cid, { offset: 262_140, length: 10 }))
    expect(part.equals(bytes.subarray(262_140, 262_150))).to.equal(true)
  })

  it('put() keeps a whole-blob raw block under the sha2-256 CID of the bytes (the name executors give outputs)', async () => {
    const s = await store()
    const bytes = randomBytes(1024 * 1024)
    const cid = await s.put(bytes)
    const digest = CID.parse(cid).multihash.digest
    expect(Buffer.from(digest).equals(createHash('sha256').update(bytes).digest())).to.equal(true)
    expect(Buffer.compare((await s.get(cid))!, bytes)).to.equal(0)
  })

  it('reads a blob of the first release: one file <blobs>/<raw CID> holding the whole blob', async () => {
    const first = await store()
    const bytes = randomBytes(5 * 1024 * 1024)
    const cid = CID.createV1(0x55, { code: 0x12, size: 32, digest: createHash('sha256').update(bytes).digest(), bytes: new Uint8Array([0x12, 0x20, ...createHash('sha256').update(bytes).digest()]) } as any).toString()
    const dir = dirs[dirs.length - 1]
    await writeFile(join(dir, cid), bytes)
    await first.blocks.close()
    // the data dir of that release, opened by this one
    const s = new BlobStore(dir)
    await s.start()
    after(async () => { await s.blocks.close() })
    expect(await s.size(cid)).to.equal(bytes.length)
    expect(Buffer.compare((await s.get(cid))!, bytes)).to.equal(0)
  })

  it('extents: the ranges of the packs that hold a blob, in order (adjacent leaves one range); none for a memory store, too many ranges or files, or a node with bytes of its own', async () => {
    const s = await store()
    const bytes = randomBytes(3 * 1024 * 1024 + 12_345)
    const cid = await s.putStream(chunks(bytes, 100_000))
    const got = await s.extents(cid)
    // the 13 leaves back to back in one staging pack, the root after them: one range
    expect(got?.extents).to.have.length(1)
    const { readFile } = await import('node:fs/promises')
    const read = async (xs: Array<{ file: string, offset: number, length: number }>): Promise<Buffer> => Buffer.concat(await Promise.all(xs.map(async x => (await readFile(x.file)).subarray(x.offset, x.offset + x.length))))
    expect((await read(got!.extents)).equals(bytes)).to.equal(true)
    got!.release()
    expect(await new BlobStore().extents(await new BlobStore().putStream([bytes]))).to.equal(undefined)
    // one leaf named 12 times: 12 ranges at the same place, or none past maxExtents
    const leafBytes = randomBytes(2048)
    const leaf = CID.parse(await s.putStream([leafBytes]))
    const node = new UnixFS({ type: 'file' })
    for (let i = 0; i < 12; i++) node.addBlockSize(2048n)
    const rootBytes = dagPb.encode({ Data: node.marshal(), Links: Array.from({ length: 12 }, () => ({ Hash: leaf, Tsize: 2048 })) })
    const { sha256 } = await import('multiformats/hashes/sha2')
    const root = CID.createV1(dagPb.code, await sha256.digest(rootBytes))
    await s.blocks.put(root, rootBytes)
    const twelve = await s.extents(root.toString())
    expect(twelve?.extents).to.have.length(12)
    expect((await read(twelve!.extents)).equals(Buffer.concat(Array.from({ length: 12 }, () => leafBytes)))).to.equal(true)
    twelve!.release()
    expect(await s.extents(root.toString(), { maxExtents: 11 })).to.equal(undefined)
    // leaves in two packs (two imports, each its own staging pack): none past maxFiles: 1
    const otherBytes = randomBytes(2048)
    const other = CID.parse(await s.putStream([otherBytes]))
    const two = new UnixFS({ type: 'file' })
    two.addBlockSize(2048n)
    two.addBlockSize(2048n)
    const twoBytes = dagPb.encode({ Data: two.marshal(), Links: [{ Hash: leaf, Tsize: 2048 }, { Hash: other, Tsize: 2048 }] })
    const twoCid = CID.createV1(dagPb.code, await sha256.digest(twoBytes))
    await s.blocks.put(twoCid, twoBytes)
    const inTwo = await s.extents(twoCid.toString(), { maxFiles: 2 })
    expect(new Set(inTwo?.extents.map(x => x.file)).size).to.equal(2)
    inTwo!.release()
    expect(await s.extents(twoCid.toString(), { maxFiles: 1 })).to.equal(undefined)
    // a node that carries bytes itself (not a raw-leaf DAG): not ranges of a pack
    const inline = new UnixFS({ type: 'file', data: new Uint8Array([1, 2, 3]) })
    const inlineBytes = dagPb.encode({ Data: inline.marshal(), Links: [] })
    const inlineCid = CID.createV1(dagPb.code, await sha256.digest(inlineBytes))
    await s.blocks.put(inlineCid, inlineBytes)
    expect(await s.extents(inlineCid.toString())).to.equal(undefined)
    expect(await s.extents('not a cid')).to.equal(undefined)
  })

  it('an upload past its cap is refused (blob-too-large) and leaves no block, staged or stored', async () => {
    const s = await store()
    const before = await s.blocks.count()
    const err = await s.putStream(chunks(randomBytes(2 * 1024 * 1024)), { maxBytes: 1024 * 1024 }).catch(e => e)
    expect(err.name).to.equal('BlobTooLargeError')
    expect(err.code).to.equal('blob-too-large')
    expect(await s.blocks.count()).to.equal(before)
    const dir = dirs[dirs.length - 1]
    expect(await readdir(join(dir, 'staging')).catch(() => [])).to.deep.equal([])
  })

  describe('the blob protocol between two nodes', () => {
    let a: NetworkNode
    let b: NetworkNode
    let liar: NetworkNode
    let sa: BlobStore
    let sb: BlobStore
    let big: Uint8Array
    let bigCid: string

    before(async () => {
      a = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, allow: ['/ip4/127.0.0.1'] })
      b = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, allow: ['/ip4/127.0.0.1'] })
      liar = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, allow: ['/ip4/127.0.0.1'] })
      sa = await store()
      await sa.serve(a)
      big = randomBytes(5 * 1024 * 1024 + 777) // 21 leaves and a root
      bigCid = await sa.putStream(chunks(big))
    })
    after(async () => { await Promise.all([a?.stop(), b?.stop(), liar?.stop()]) })
    beforeEach(async () => { sb = await store() })
    afterEach(async () => {
      await liar.unhandle(BLOB_PROTOCOL).catch(() => {})
      await liar.unhandle(BLOB_STREAM_PROTOCOL).catch(() => {})
    })

    it('fetches a multi-block blob block by block, every block verified, and serves it on', async () => {
      const bytes = await sb.fetch(b, bigCid, [a.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      expect(Buffer.compare(bytes, big)).to.equal(0)
      expect(sb.stats().blocksFetched).to.equal(22)
      expect(await sb.has(bigCid)).to.equal(true)
    })

    /** A liar serving sa's blocks over 2.0.0, one per request, each request waiting on `hold(n)` (n: its position, from 1). */
    async function serveHeld (hold: (n: number) => Promise<void>): Promise<{ served: () => number }> {
      let asked = 0
      let served = 0
      await liar.handle(BLOB_PROTOCOL, async (req) => {
        const n = ++asked
        await hold(n)
        served++
        return (await sa.blocks.get(decodeBlobRequest(req)))!
      })
      return { served: () => served }
    }

    it('pullStream: the bytes come out as their blocks arrive, not after the whole blob; then all of them, checked', async () => {
      // the root and three leaves at once; the rest only once the reader has had its first bytes
      let release!: () => void
      const gate = new Promise<void>((resolve) => { release = resolve })
      const liarServes = await serveHeld(async (n) => { if (n > 4) await gate })
      const { size, content } = await sb.pullStream(b, bigCid, [liar.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      expect(size).to.equal(big.length)
      const parts: Uint8Array[] = []
      const first = await content.next()
      expect(first.done).to.equal(false)
      parts.push(first.value as Uint8Array)
      // the first leaf is out while 18 of the 21 leaves are still held back by the server
      expect(liarServes.served()).to.be.within(2, 4)
      expect(Buffer.compare(Buffer.from(parts[0]), Buffer.from(big.subarray(0, parts[0].length)))).to.equal(0)
      release()
      for await (const p of content) parts.push(p)
      expect(Buffer.compare(Buffer.concat(parts), big)).to.equal(0)
      expect(await sb.has(bigCid)).to.equal(true)
      expect(sb.stats().blocksFetched).to.equal(22)
    })

    it('pullStream: a reader that stops early stops the pull, and what arrived is kept for the next fetch', async () => {
      const liarServes = await serveHeld(async (n) => { if (n > 4) await new Promise(resolve => setTimeout(resolve, 50)) })
      const { content } = await sb.pullStream(b, bigCid, [liar.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      await content.next()
      await content.return(undefined)
      const fetched = sb.stats().blocksFetched
      expect(fetched).to.be.within(2, 21)
      await new Promise(resolve => setTimeout(resolve, 300))
      // nothing asked after the stop but the requests already under way
      const servedAfterStop = liarServes.served()
      await new Promise(resolve => setTimeout(resolve, 300))
      expect(liarServes.served()).to.equal(servedAfterStop)
      expect(await sb.has(bigCid)).to.equal(false)
      // resumed from what arrived: only the rest is fetched
      const bytes = await sb.fetch(b, bigCid, [a.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      expect(Buffer.compare(bytes, big)).to.equal(0)
      expect(sb.stats().blocksFetched).to.equal(22)
    })

    it('pullStream: a wrong block fails the content where it stands (after the good bytes), never a short success; too large fails before any byte', async () => {
      let served = 0
      await liar.handle(BLOB_PROTOCOL, async (req) => {
        const block = (await sa.blocks.get(decodeBlobRequest(req)))!
        if (++served === 6) { const bad = new Uint8Array(block); bad[100] ^= 1; return bad }
        return block
      })
      const { content } = await sb.pullStream(b, bigCid, [liar.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      let got = 0
      const err = await (async () => { for await (const p of content) got += p.length })().catch(e => e)
      expect(err?.name).to.equal('BlockMismatchError')
      expect(got).to.be.lessThan(big.length)
      expect(await sb.has(bigCid)).to.equal(false)
      const tooBig = await sb.pullStream(b, bigCid, [a.addresses()[0]], { maxBytes: 1024 * 1024 }).catch(e => e)
      expect(tooBig.code).to.equal('blob-too-large')
      const nobody = await sb.pullStream(b, 'bafkreidfdrlkeq4m4xnxuyx6iae76fdm4wgl5d4xzsb77ixhyqwumhz244', [a.addresses()[0]]).catch(e => e)
      expect(nobody.code).to.equal('blob-not-found')
    })

    it('refuses a blob larger than the caller\'s maxBytes from its root, before any leaf', async () => {
      const err = await sb.fetch(b, bigCid, [a.addresses()[0]], { maxBytes: 1024 * 1024 }).catch(e => e)
      expect(err.code).to.equal('blob-too-large')
      expect(sb.stats().blocksFetched).to.equal(1)
      expect(await sb.has(bigCid)).to.equal(false)
    })

    it('catches a peer that sends one wrong block at that block (BlockMismatchError), keeps nothing wrong', async () => {
      // the liar serves the real blocks, except the 6th block asked for: one byte flipped
      let served = 0
      await liar.handle(BLOB_PROTOCOL, async (req) => {
        const cid = decodeBlobRequest(req)
        const block = (await sa.blocks.get(cid))!
        if (++served === 6) { const bad = new Uint8Array(block); bad[100] ^= 1; return bad }
        return block
      })
      const err = await sb.fetch(b, bigCid, [liar.addresses()[0]], { maxBytes: 8 * 1024 * 1024 }).catch(e => e)
      expect(err.name).to.equal('BlockMismatchError')
      expect(err.code).to.equal('block-mismatch')
      // caught as it arrived: the fetch stopped within one window of concurrent requests, not after the whole blob
      expect(served).to.be.lessThan(6 + 8 + 1)
      expect(await sb.has(bigCid)).to.equal(false)
      // every block kept is a true one; an honest peer completes the blob from there
      const bytes = await sb.fetch(b, bigCid, [a.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      expect(Buffer.compare(bytes, big)).to.equal(0)
      await liar.unhandle(BLOB_PROTOCOL)
    })

    it('resumes a broken transfer: the second fetch asks only for the blocks not held', async () => {
      // a peer that goes away after 9 blocks
      let served = 0
      await liar.handle(BLOB_PROTOCOL, async (req) => {
        if (served >= 9) throw new Error('gone')
        served++
        return (await sa.blocks.get(decodeBlobRequest(req)))!
      })
      const err = await sb.fetch(b, bigCid, [liar.addresses()[0]], { maxBytes: 8 * 1024 * 1024 }).catch(e => e)
      expect(err.code).to.equal('blob-not-found')
      const held = await sb.blocks.count()
      // what arrived before the break is kept (a block in flight when the fetch gave up may be lost)
      expect(held).to.be.within(1, 9)
      const servedByA = sa.stats().blocksServed
      const bytes = await sb.fetch(b, bigCid, [a.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      expect(Buffer.compare(bytes, big)).to.equal(0)
      expect(sa.stats().blocksServed - servedByA).to.equal(22 - held)
      await liar.unhandle(BLOB_PROTOCOL)
    })

    /** Serve `blocks` (CID → bytes) from the liar; returns the count of requests it answered. */
    async function liarServes (blocks: Map<string, Uint8Array>): Promise<{ served: number }> {
      const count = { served: 0 }
      await liar.handle(BLOB_PROTOCOL, async (req) => {
        const bytes = blocks.get(decodeBlobRequest(req))
        if (bytes == null) throw new Error('no such block')
        count.served++
        return bytes
      })
      return count
    }
    async function dagPbBlock (unixfs: UnixFS, links: CID[]): Promise<{ cid: CID, bytes: Uint8Array }> {
      const bytes = dagPb.encode({ Data: unixfs.marshal(), Links: links.map(Hash => ({ Hash, Tsize: 0 })) })
      const { sha256 } = await import('multiformats/hashes/sha2')
      return { cid: CID.createV1(dagPb.code, await sha256.digest(bytes)), bytes }
    }

    it('a root that understates its size: the bytes are counted as they come and the fetch stops at maxBytes', async () => {
      const blocks = new Map<string, Uint8Array>()
      const leaves: CID[] = []
      for (let i = 0; i < 24; i++) {
        const leaf = randomBytes(256 * 1024)
        const cid = CID.parse(await new BlobStore().put(leaf)) // a raw block's CID
        blocks.set(cid.toString(), leaf)
        leaves.push(cid)
      }
      const liarRoot = new UnixFS({ type: 'file' })
      for (let i = 0; i < 24; i++) liarRoot.addBlockSize(1n) // claims 24 bytes
      const root = await dagPbBlock(liarRoot, leaves)
      blocks.set(root.cid.toString(), root.bytes)
      const count = await liarServes(blocks)
      const err = await sb.fetch(b, root.cid.toString(), [liar.addresses()[0]], { maxBytes: 600 * 1024 }).catch(e => e)
      expect(err.code).to.equal('blob-too-large')
      // the root, the 3 leaves that cross 600 KiB, and at most one window (8) of requests already in flight
      expect(count.served).to.be.at.most(1 + 3 + 8)
      expect(await sb.has(root.cid.toString())).to.equal(false)
      await liar.unhandle(BLOB_PROTOCOL)
    })

    it('a root that is a UnixFS directory, not a file: invalid-blob, nothing below it is asked for', async () => {
      const dir = await dagPbBlock(new UnixFS({ type: 'directory' }), [CID.parse(bigCid)])
      const count = await liarServes(new Map([[dir.cid.toString(), dir.bytes]]))
      const err = await sb.fetch(b, dir.cid.toString(), [liar.addresses()[0]], { maxBytes: 8 * 1024 * 1024 }).catch(e => e)
      expect(err.name).to.equal('InvalidBlobError')
      expect(err.code).to.equal('invalid-blob')
      expect(count.served).to.equal(1)
      await liar.unhandle(BLOB_PROTOCOL)
    })

    it('a block larger than a block may be: refused by size at the frame, not buffered', async () => {
      // a dag-pb root linking to a raw "leaf" of 3 MiB (over MAX_BLOCK_BYTES, 2 MiB)
      const huge = randomBytes(3 * 1024 * 1024)
      const hugeCid = CID.parse(await new BlobStore().put(huge))
      const file = new UnixFS({ type: 'file' })
      file.addBlockSize(BigInt(huge.length))
      const root = await dagPbBlock(file, [hugeCid])
      await liarServes(new Map([[root.cid.toString(), root.bytes], [hugeCid.toString(), huge]]))
      const err = await sb.fetch(b, root.cid.toString(), [liar.addresses()[0]], { maxBytes: 8 * 1024 * 1024 }).catch(e => e)
      expect(err.code).to.equal('blob-not-found')
      expect(err.message).to.match(/exceeds/)
      expect(await sb.blocks.has(hugeCid)).to.equal(false)
      await liar.unhandle(BLOB_PROTOCOL)
    })

    // ---------------------------------------------------------------- /mercato/blob/2.1.0

    /** A store for the liar holding what `keep` selects of the blocks of A's blob `cid` (big by default; all blocks by default). */
    async function liarStore (keep: (cid: string, i: number) => boolean = () => true, cid: string = bigCid): Promise<{ store: BlobStore, leaves: CID[] }> {
      const s = await store()
      const root = dagPb.decode((await sa.blocks.get(cid))!)
      const leaves = root.Links.map(l => l.Hash)
      await s.blocks.put(cid, (await sa.blocks.get(cid))!)
      for (const [i, leaf] of leaves.entries()) if (keep(leaf.toString(), i)) await s.blocks.put(leaf, (await sa.blocks.get(leaf))!)
      return { store: s, leaves }
    }

    it('2.1.0: a 12 MiB blob over one stream, every block verified, no request per block', async () => {
      const bytes12 = randomBytes(12 * 1024 * 1024 + 5) // 49 leaves and a root: three times the read-ahead
      const cid = await sa.putStream(chunks(bytes12, 1024 * 1024), { maxBytes: 64 * 1024 * 1024 })
      const before = a.traffic!()
      const got = await sb.fetch(b, cid, [a.addresses()[0]], { maxBytes: 16 * 1024 * 1024, cache: false })
      const after = a.traffic!()
      expect(createHash('sha256').update(got).digest('hex')).to.equal(createHash('sha256').update(bytes12).digest('hex'))
      expect(sb.stats().blocksFetched).to.equal(50)
      // the requests A read were batches on the stream (channel frames), none a 2.0.0 request
      expect(after.requests - before.requests).to.equal(0)
      expect(after.frames - before.frames).to.be.within(1, 50)
    })

    it('2.1.0: a peer that sends a wrong block is dropped at that block; the fetch completes from the next peer', async () => {
      // 49 leaves: three read-ahead windows (16 leaves each), so a liar that kept being asked would serve them all
      const bytes12 = randomBytes(12 * 1024 * 1024 + 5)
      const cid = await sa.putStream(chunks(bytes12, 1024 * 1024), { maxBytes: 64 * 1024 * 1024 })
      const { store: ls, leaves } = await liarStore((_, i) => i !== 5, cid)
      const bad = new Uint8Array((await sa.blocks.get(leaves[5]))!)
      bad[100] ^= 1
      await ls.blocks.put(leaves[5], bad) // a block store does not check what it is given
      await ls.serve(liar)
      const servedByA = sa.stats().blocksServed
      const bytes = await sb.fetch(b, cid, [liar.addresses()[0], a.addresses()[0]], { maxBytes: 16 * 1024 * 1024 })
      expect(Buffer.compare(bytes, bytes12)).to.equal(0)
      // the liar was dropped at the wrong block: it served the root, the leaves asked before the wrong one arrived and
      // what was in flight behind it — the wrong leaf is among the first leaves asked (the walk asks in the order the
      // stat calls return, near DAG order), so that is at most two windows, never the whole blob
      const byLiar = ls.stats().blocksServed
      const byA = sa.stats().blocksServed - servedByA
      expect(byLiar).to.be.within(2, 1 + 2 * 16)
      // A served the rest: every block fetched once, none of the liar's after the wrong one kept
      expect(sb.stats().blocksFetched).to.be.at.least(50)
      expect(byA).to.be.within(50 - byLiar + 1, 49)
      // what is held is true: every block read back is checked against its CID
      expect(Buffer.compare((await sb.get(cid, { cache: false }))!, bytes12)).to.equal(0)
    })

    it('2.1.0: a transfer cut mid-way (the peer holds part of the blob) resumes asking only for the missing blocks', async () => {
      const { store: ls } = await liarStore((_cid, i) => i < 9)
      await ls.serve(liar)
      const err = await sb.fetch(b, bigCid, [liar.addresses()[0]], { maxBytes: 8 * 1024 * 1024 }).catch(e => e)
      expect(err.code).to.equal('blob-not-found')
      const held = await sb.blocks.count()
      // the root and the leaves the peer had that arrived before its 'not held' (leaves are asked in the order their stat calls return)
      expect(held).to.be.within(1, 1 + 9)
      const servedByA = sa.stats().blocksServed
      const bytes = await sb.fetch(b, bigCid, [a.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      expect(Buffer.compare(bytes, big)).to.equal(0)
      expect(sa.stats().blocksServed - servedByA).to.equal(22 - held)
    })

    /** Open a 2.1.0 stream to A as a raw client, send `request`, return the first frame (or the error). */
    async function ask (request: Uint8Array): Promise<Uint8Array | Error> {
      const ch = await b.openChannel(a.addresses()[0], BLOB_STREAM_PROTOCOL, { maxMessageBytes: MAX_BLOCK_BYTES + 1 })
      try {
        await ch.send(request).catch(() => {})
        for await (const frame of ch) return frame
        return new Error('closed without a frame')
      } catch (err: any) {
        return err
      } finally {
        ch.abort()
      }
    }

    it('2.1.0: a hostile client (100,000 CIDs, an oversized or malformed request, a 3 MiB block) gets a clear refusal; the server serves on', async () => {
      // 100,000 CIDs in one request: refused by its length prefix, never buffered (≈ 6 MB)
      const huge = encodeBlobBatch(Array.from({ length: 100_000 }, () => bigCid))
      const r1 = await ask(huge)
      if (r1 instanceof Error) {
        // the server may reset the stream before its refusal is read (the rest of the request overflows its small buffer)
        expect(r1.message).to.match(/reset|abort|closed|overflow/i)
      } else {
        expect(r1[0]).to.equal(FRAME_REFUSED)
        expect(readRefusal(r1).code).to.equal('message-too-large')
      }
      // just over the cap (17 KiB): the refusal arrives
      const r2 = await ask(new Uint8Array(17 * 1024))
      expect(r2).to.be.instanceOf(Uint8Array)
      expect((r2 as Uint8Array)[0]).to.equal(FRAME_REFUSED)
      expect(readRefusal(r2 as Uint8Array).code).to.equal('message-too-large')
      // more CIDs than a batch may name, under the byte cap
      const r3 = await ask(encodeBlobBatch(Array.from({ length: MAX_BLOB_BATCH + 1 }, () => 'x')))
      expect(readRefusal(r3 as Uint8Array)).to.deep.include({ code: 'refused-bad-schema' })
      // not CBOR at all
      const r4 = await ask(new Uint8Array([0xff, 0x00, 0x13]))
      expect(readRefusal(r4 as Uint8Array).code).to.equal('refused-bad-encoding')
      // a whole-blob raw block larger than a block (put() of 3 MiB) is not read for a stream: 2.0.0 carries it
      const whole = await sa.put(randomBytes(3 * 1024 * 1024), { cache: false })
      const r5 = await ask(encodeBlobBatch([whole]))
      expect((r5 as Uint8Array)[0]).to.equal(FRAME_TOO_LARGE)
      // unharmed: the next fetch from A works
      const bytes = await sb.fetch(b, bigCid, [a.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      expect(Buffer.compare(bytes, big)).to.equal(0)
    })

    it('2.1.0: a peer that takes the stream and never answers is dropped after BLOB_STALL_MS; the next peer completes the fetch', async () => {
      let asked = 0
      await liar.handleChannel(BLOB_STREAM_PROTOCOL, async (ch) => { for await (const _ of ch) asked++ }, { maxMessageBytes: 16 * 1024 })
      const t0 = Date.now()
      const bytes = await sb.fetch(b, bigCid, [liar.addresses()[0], a.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      expect(Buffer.compare(bytes, big)).to.equal(0)
      expect(asked).to.equal(1) // the root, asked once
      expect(Date.now() - t0).to.be.within(BLOB_STALL_MS, BLOB_STALL_MS + 20_000)
    })

    it('2.1.0: a fetch whose signal aborts stops at once, while its peer keeps the stream and says nothing (it waited BLOB_STALL_MS, and a slow drip for ever)', async () => {
      await liar.handleChannel(BLOB_STREAM_PROTOCOL, async (ch) => { for await (const _ of ch) { /* never answers */ } }, { maxMessageBytes: 16 * 1024 })
      const t0 = Date.now()
      const err = await sb.fetch(b, bigCid, [liar.addresses()[0]], { maxBytes: 8 * 1024 * 1024, signal: AbortSignal.timeout(300) }).then(() => null, (e: Error) => e)
      expect(err?.name).to.equal('TimeoutError')
      expect(Date.now() - t0).to.be.below(BLOB_STALL_MS / 2)
    })

    it('2.1.0: a peer opening many streams gets BLOB_STREAMS_PER_CONNECTION of them; the others are refused', async () => {
      // every stream is held open (none answered is closed) until all six have their answer
      const open: Array<{ abort: () => void }> = []
      const results = await Promise.all(Array.from({ length: 6 }, async () => {
        try {
          const ch = await b.openChannel(a.addresses()[0], BLOB_STREAM_PROTOCOL, { maxMessageBytes: MAX_BLOCK_BYTES + 1 })
          open.push(ch)
          await ch.send(encodeBlobBatch([bigCid]))
          for await (const frame of ch) return frame[0] === 0 ? 'served' : 'refused'
          return 'closed'
        } catch {
          return 'refused'
        }
      }))
      for (const ch of open) ch.abort()
      expect(results.filter(r => r === 'served').length).to.be.within(1, BLOB_STREAMS_PER_CONNECTION)
      expect(results.filter(r => r !== 'served').length).to.be.at.least(6 - BLOB_STREAMS_PER_CONNECTION)
      // and A serves on
      const bytes = await sb.fetch(b, bigCid, [a.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      expect(Buffer.compare(bytes, big)).to.equal(0)
    })

    it('falls back to 2.0.0, a request per block, against a node that only speaks it', async () => {
      // an older node: the 2.0.0 handler only
      await liar.handle(BLOB_PROTOCOL, async (req) => (await sa.blocks.get(decodeBlobRequest(req)))!)
      const before = liar.traffic!()
      const bytes = await sb.fetch(b, bigCid, [liar.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
      expect(Buffer.compare(bytes, big)).to.equal(0)
      expect(liar.traffic!().requests - before.requests).to.equal(22)
    })

    it('a small blob put() whole (an output file, a module) still travels as one raw block', async () => {
      const out = randomBytes(3 * 1024 * 1024)
      const cid = await sa.put(out, { cache: false })
      const bytes = await sb.fetch(b, cid, [a.addresses()[0]], { maxBytes: MAX_BLOB_BYTES })
      expect(Buffer.compare(bytes, out)).to.equal(0)
      expect(sb.stats().blocksFetched).to.equal(1)
    })
  })
})

describe('blob protocol 2.0.0 under a client that asks and never reads', function () {
  this.timeout(60_000)
  let victim: NetworkNode
  let honest: NetworkNode
  let served: BlobStore
  const hostile: NetworkNode[] = []
  before(async () => {
    victim = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, allow: ['/ip4/127.0.0.1'] })
    honest = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, allow: ['/ip4/127.0.0.1'] })
    served = await store()
    await served.serve(victim)
    // an older node, as far as the fetcher can tell: 2.0.0 only, a request per block
    await victim.unhandle(BLOB_STREAM_PROTOCOL)
  })
  after(async () => {
    await Promise.all(hostile.map(async h => { await h.stop().catch(() => {}) }))
    await Promise.all([victim?.stop(), honest?.stop()])
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  it('serves MAX_BLOB_REQUESTS at once, BLOB_REQUESTS_PER_CONNECTION per connection; the rest are refused busy before a block is read; an honest fetch asks again and completes', async () => {
    const bytes = randomBytes(5 * 1024 * 1024 + 777) // 21 leaves of 256 KiB and a root
    const cid = await served.putStream(chunks(bytes))
    const leaves = dagPb.decode((await served.blocks.get(cid))!).Links.map(l => l.Hash.toString())
    // strangers (one connection each) open streams, ask a leaf on every one in the same turn, then
    // stop reading their socket: nothing the victim sends is taken, so what it served stays held
    // (until the request times out)
    const flood = async (streams: number): Promise<number> => {
      const h = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
      hostile.push(h)
      await h.dial(victim.addresses()[0])
      // the stranger's own libp2p connection, to write raw streams on
      const conn: Connection = (h as any).node.getConnections()[0]
      // one after another (yamux closes a connection with more than 10 streams it has not answered yet)
      const opened = []
      for (let i = 0; i < streams; i++) opened.push(await conn.newStream(BLOB_PROTOCOL, { maxOutboundStreams: 1024 }).catch(() => null))
      // (the victim resets a connection's streams past BLOB_REQUESTS_PER_CONNECTION once negotiated)
      for (const [i, stream] of opened.entries()) { try { stream?.send(lp.encode.single(encodeBlobRequest(leaves[i % leaves.length]))) } catch {} }
      ;(conn as any).maConn.socket.pause()
      return opened.filter(x => x != null).length
    }
    const handled = (): number => served.stats().blocksServed + served.stats().busyRefused
    const settle = async (n: number): Promise<void> => {
      const deadline = Date.now() + 5_000
      while (handled() < n && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 25))
      await new Promise(resolve => setTimeout(resolve, 300))
    }
    // three connections of BLOB_REQUESTS_PER_CONNECTION requests each: more than the victim serves at once
    const conns = 3
    for (let k = 0; k < conns; k++) expect(await flood(BLOB_REQUESTS_PER_CONNECTION)).to.equal(BLOB_REQUESTS_PER_CONNECTION)
    await settle(conns * BLOB_REQUESTS_PER_CONNECTION)
    // none of the served blocks was taken, so each is still held: the count served is the count at once
    expect(served.stats().blocksServed, `requests served at once (${JSON.stringify(served.stats())})`).to.equal(MAX_BLOB_REQUESTS)
    expect(served.stats().busyRefused, 'requests refused busy').to.equal(conns * BLOB_REQUESTS_PER_CONNECTION - MAX_BLOB_REQUESTS)
    // a connection that opens more streams than that: at most BLOB_REQUESTS_PER_CONNECTION of its requests are read
    const before = handled()
    await flood(BLOB_REQUESTS_PER_CONNECTION + 8)
    await settle(before + BLOB_REQUESTS_PER_CONNECTION)
    expect(handled() - before, 'requests read from one connection').to.be.at.most(BLOB_REQUESTS_PER_CONNECTION)
    expect(served.stats().blocksServed).to.equal(MAX_BLOB_REQUESTS)
    // a request past the cap from anyone: busy, its block not read
    const err = await honest.request(victim.addresses()[0], BLOB_PROTOCOL, encodeBlobRequest(leaves[0]), { maxResponseBytes: MAX_BLOCK_BYTES }).then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(RemoteError)
    expect((err as RemoteError).remoteCode).to.equal('busy')
    expect(served.stats().blocksServed).to.equal(MAX_BLOB_REQUESTS)
    // an honest fetch meanwhile is refused busy, asks again, and completes once the strangers are gone
    const refused = served.stats().busyRefused
    const sb = await store()
    const fetching = sb.fetch(honest, cid, [victim.addresses()[0]], { maxBytes: 8 * 1024 * 1024 })
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(served.stats().busyRefused, 'the honest fetch was refused busy').to.be.above(refused)
    await Promise.all(hostile.splice(0).map(async h => { await h.stop() }))
    const got = await fetching
    expect(Buffer.compare(got, bytes)).to.equal(0)
    expect(sb.stats().blocksFetched).to.equal(22)
  })
})
