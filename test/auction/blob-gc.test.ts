/**
 * The block store's collector (auction/blob-gc.ts): pinned and held blobs stay, cached ones go
 * oldest first once the store is past its size, shared blocks stay, young blocks stay, pins outlive
 * a restart and expire; end to end, a provider keeps the output files of the job it ran and drops
 * the input it fetched, and the requester keeps the upload and the result until the user releases
 * the upload (`DELETE /v1/blobs/:cid`).
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import { BlobStore, JOBS_TOPIC } from '../../src/auction/index.js'
import { MercatoClient } from '../../src/client/index.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'

const KiB = 1024
const dirs: string[] = []

async function store (): Promise<{ s: BlobStore, dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'mercato-blob-gc-'))
  dirs.push(dir)
  const s = new BlobStore(dir)
  await s.start()
  return { s, dir }
}

async function * once (bytes: Uint8Array): AsyncGenerator<Uint8Array> { yield bytes }

/** Every block of a held blob's DAG. */
async function blocksOf (s: BlobStore, root: string): Promise<string[]> {
  const out: string[] = []
  const visit = async (cid: CID): Promise<void> => {
    out.push(cid.toString())
    if (cid.code !== dagPb.code) return
    const bytes = await s.blocks.get(cid)
    for (const l of dagPb.decode(bytes!).Links) await visit(l.Hash)
  }
  await visit(CID.parse(root))
  return out
}

/** Make a blob's blocks look written `agoMs` ago (the time their index records; every block must be held). */
async function age (s: BlobStore, keys: string[], agoMs: number): Promise<void> {
  const t = Date.now() - agoMs
  for (const k of keys) {
    expect(await s.blocks.has(k), `${k} is held`).to.equal(true)
    await s.blocks.setWrittenMs(k, t)
  }
  const times = new Map((await s.blocks.list()).map(b => [b.key, b.writtenMs]))
  for (const k of keys) expect(times.get(k)).to.equal(t)
}

describe('blob store: what is kept, what is collected', function () {
  this.timeout(30_000)
  after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

  it('cached blobs go oldest first until the store fits; pinned and held ones stay whole', async () => {
    const { s } = await store()
    const pinned = await s.putStream(once(randomBytes(600 * KiB)))
    const held = await s.putStream(once(randomBytes(300 * KiB)))
    const old = await s.putStream(once(randomBytes(300 * KiB)))
    const newer = await s.putStream(once(randomBytes(300 * KiB)))
    await age(s, await blocksOf(s, pinned), 60_000)
    await age(s, await blocksOf(s, held), 60_000)
    await age(s, await blocksOf(s, old), 50_000)
    await age(s, await blocksOf(s, newer), 40_000)
    s.gc.pin(pinned, 'upload')
    const release = s.gc.hold(held)
    // 1,500 KiB held; room for 1,300 KiB: the oldest cached blob goes, and only it
    s.gc.start({ maxBytes: 1300 * KiB, graceMs: 1000, intervalMs: 0 })
    const r = await s.gc.collect()
    expect(r.removedBlocks).to.be.greaterThan(0)
    expect(r.storeBytes).to.be.at.most(1300 * KiB)
    expect(await s.size(pinned)).to.equal(600 * KiB)
    expect(await s.size(held)).to.equal(300 * KiB)
    expect(await s.size(old), 'the oldest cached blob').to.equal(undefined)
    expect(await s.size(newer)).to.equal(300 * KiB)
    // released, the held blob is cache like any other, and older than `newer`
    release()
    s.gc.start({ maxBytes: 950 * KiB, graceMs: 1000, intervalMs: 0 })
    await s.gc.collect()
    expect(await s.size(held)).to.equal(undefined)
    expect(await s.size(pinned)).to.equal(600 * KiB)
    expect(await s.size(newer)).to.equal(300 * KiB)
    await s.gc.stop()
  })

  it('never takes a block written within the grace period, nor one a pinned blob shares', async () => {
    const { s } = await store()
    const bytes = randomBytes(512 * KiB)
    const a = await s.putStream(once(bytes))
    // the same bytes as one raw block (put): a different root, and its own block
    const b = await s.put(bytes.subarray(0, 200 * KiB))
    // a second DAG sharing a's first leaf: its root differs, its first block is a's
    const c = await s.putStream(once(Buffer.concat([bytes.subarray(0, 256 * KiB), randomBytes(300 * KiB)])))
    const shared = (await blocksOf(s, a))[1]
    expect(await blocksOf(s, c)).to.include(shared)
    s.gc.pin(a, 'upload')
    s.gc.start({ maxBytes: 0, graceMs: 60_000, intervalMs: 0 })
    let r = await s.gc.collect()
    expect(r.removedBlocks, 'everything is young').to.equal(0)
    expect(await s.size(b)).to.equal(200 * KiB)
    await age(s, [...await blocksOf(s, a), ...await blocksOf(s, c), b], 120_000)
    r = await s.gc.collect()
    expect(await s.size(a)).to.equal(512 * KiB)
    expect(await s.size(b)).to.equal(undefined)
    expect(await s.size(c)).to.equal(undefined)
    expect(await s.blocks.has(CID.parse(shared)), 'the shared leaf').to.equal(true)
    expect(r.storeBytes).to.equal(r.keptBytes)
    await s.gc.stop()
  })

  it('pins outlive a restart; an expired pin is dropped and its blob collected; a torn last line is skipped', async () => {
    const { s, dir } = await store()
    const kept = await s.putStream(once(randomBytes(100 * KiB)))
    const output = await s.putStream(once(randomBytes(100 * KiB)))
    s.gc.pin(kept, 'upload')
    s.gc.pin(output, 'output', 50)
    expect(s.gc.pinned(output)).to.equal('output')
    await s.gc.stop() // the pins are written
    const again = new BlobStore(dir)
    await again.start()
    expect(again.gc.pinned(kept)).to.equal('upload')
    await new Promise(resolve => setTimeout(resolve, 80))
    expect(again.gc.pinned(output), 'expired').to.equal(undefined)
    await age(again, [...await blocksOf(again, kept), ...await blocksOf(again, output)], 60_000)
    again.gc.start({ maxBytes: 0, graceMs: 1000, intervalMs: 0 })
    const r = await again.gc.collect()
    expect(r.expiredPins).to.equal(1)
    expect(await again.size(kept)).to.equal(100 * KiB)
    expect(await again.size(output)).to.equal(undefined)
    await again.gc.stop()
    // a crash mid-append leaves a partial last line: skipped, the pins before it kept
    await appendFile(join(dir, 'pins.log'), '["+","bafkrei')
    const third = new BlobStore(dir)
    await third.start()
    expect(third.gc.pinned(kept)).to.equal('upload')
    // released, and the release outlives a restart too
    expect(third.gc.unpin(kept)).to.equal(true)
    await third.gc.stop()
    const fourth = new BlobStore(dir)
    await fourth.start()
    expect(fourth.gc.pinned(kept)).to.equal(undefined)
  })

  it('a pin that expired while the node was down is dropped at start and counted by the first collection; a later line wins over an earlier one', async () => {
    const { s, dir } = await store()
    const gone = await s.putStream(once(randomBytes(50 * KiB)))
    const renewed = await s.putStream(once(randomBytes(50 * KiB)))
    await s.gc.stop()
    const past = Date.now() - 1000
    await appendFile(join(dir, 'pins.log'), [
      ['+', gone, 'output', past],
      ['+', renewed, 'output', past],
      ['+', renewed, 'upload'],
      ['+', 'bafkreibad', 'output', 'soon'],
      ['?', 'bafkreibad']
    ].map(l => JSON.stringify(l) + '\n').join(''))
    const again = new BlobStore(dir)
    await again.start()
    expect(again.gc.pinned(gone)).to.equal(undefined)
    expect(again.gc.pinned(renewed)).to.equal('upload')
    expect(again.gc.pinned('bafkreibad'), 'a line with a bad field is skipped').to.equal(undefined)
    await age(again, [...await blocksOf(again, gone), ...await blocksOf(again, renewed)], 60_000)
    again.gc.start({ maxBytes: 0, graceMs: 1000, intervalMs: 0 })
    expect((await again.gc.collect()).expiredPins).to.equal(1)
    expect(await again.size(gone)).to.equal(undefined)
    expect(await again.size(renewed)).to.equal(50 * KiB)
    expect((await again.gc.collect()).expiredPins, 'counted once').to.equal(0)
    await again.gc.stop()
  })

  it('a pin costs one appended line, and the log is compacted at start-up', async () => {
    const { s, dir } = await store()
    for (let i = 0; i < 500; i++) s.gc.pin(`bafkreifake${i}`, 'upload')
    for (let i = 0; i < 400; i++) s.gc.unpin(`bafkreifake${i}`)
    await s.gc.stop()
    const lines = (await readFile(join(dir, 'pins.log'), 'utf8')).split('\n').filter(l => l !== '')
    expect(lines).to.have.length(900)
    const again = new BlobStore(dir)
    await again.start()
    expect(again.gc.pinned('bafkreifake499')).to.equal('upload')
    expect(again.gc.pinned('bafkreifake0')).to.equal(undefined)
    const compacted = (await readFile(join(dir, 'pins.log'), 'utf8')).split('\n').filter(l => l !== '')
    expect(compacted).to.have.length(100)
  })

  describe('end to end: a provider and a requester (real nodes on 127.0.0.1)', function () {
    this.timeout(60_000)
    let requester: MercatoNode
    let provider: MercatoNode
    let client: MercatoClient
    // no room for cache, no grace: what is not pinned or held goes at the next collection
    const TIGHT = { blobs: { cacheMaxBytes: 0, collectGraceMs: 0, collectIntervalMs: 0, outputRetentionMs: 3_600_000 } }
    before(async () => {
      requester = await startTestNode({ provide: false, gateway: true, config: TIGHT })
      provider = await startTestNode({ price: 1, bootstrap: requester.network.addresses(), config: TIGHT })
      client = new MercatoClient({ url: requester.gateway!.url })
      await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).includes(provider.peerId), 15_000)
    })
    after(stopNodes)

    /** The node's block store as it is on disk (a read-only view of its pack indexes). */
    const onDisk = async (node: MercatoNode): Promise<BlobStore> => {
      const view = new BlobStore(join(node.config.dataDir, 'blobs'))
      await view.blocks.load()
      return view
    }
    const blockFiles = async (node: MercatoNode): Promise<string[]> => (await (await onDisk(node)).blocks.list()).map(b => b.key)

    it('the provider drops the input it fetched and keeps the output it made; the requester keeps upload and result until released', async () => {
      const input = randomBytes(700 * KiB)
      const cid = await client.uploadBlob(input)
      const source = `function main () {
        const b = readFile('in.bin'); const out = new Uint8Array(b.length)
        for (let i = 0; i < b.length; i++) out[i] = b[i] ^ 0x5a
        writeFile('out.bin', out)
        return b.length
      }`
      const { id } = await client.submit({ engine: 'js', source, inputs: [{ path: 'in.bin', cid }], limits: { memoryMb: 32 }, queueTimeoutMs: 0 } as any)
      const job = await client.wait(id, { timeoutMs: 30_000 } as any)
      expect(job.status, JSON.stringify(job)).to.equal('completed')
      const result = await client.result(id)
      expect(result.output).to.equal(input.length)
      const out = result.outputs?.find((o: any) => o.path === 'out.bin') as { cid: string, size: number }
      expect(out?.size).to.equal(input.length)
      // the provider: the input's blocks were fetched, then collected soon after the job; the output stays
      const inputBlocks = await blocksOf(await onDisk(requester), cid)
      await waitFor(async () => {
        const held = await blockFiles(provider)
        return inputBlocks.every(b => !held.includes(b)) && held.includes(out.cid)
      }, 10_000)
      // the requester: upload and result stay through a collection
      const downloaded = Buffer.from(await (await fetch(`${requester.gateway!.url}/v1/jobs/${id}/outputs/out.bin`)).arrayBuffer())
      expect(downloaded.equals(Buffer.from(input.map(b => b ^ 0x5a)))).to.equal(true)
      const res = await fetch(`${requester.gateway!.url}/v1/blobs/${cid}`, { method: 'DELETE' })
      expect(res.status).to.equal(200)
      expect(await res.json()).to.deep.equal({ cid, pinned: false })
      // the client's way, for a blob that was never kept
      const never = await client.releaseBlob('bafkreidfdrlkeq4m4xnxuyx6iae76fdm4wgl5d4xzsb77ixhyqwumhz244').then(() => undefined, (e: any) => e)
      expect(never?.code).to.equal('not-found')
      // released: collected (no grace here); a second DELETE is a 404
      await waitFor(async () => !(await blockFiles(requester)).includes(cid), 10_000)
      expect((await blockFiles(requester)).includes(out.cid), 'the result stays').to.equal(true)
      // what the node shows of its store: the result pinned (the upload released), the collection that took the upload
      const info = await (await fetch(`${requester.gateway!.url}/v1/node`)).json() as any
      expect(info.blobs.pins).to.equal(1)
      expect(info.blobs.cacheMaxBytes).to.equal(0)
      expect(info.blobs.lastCollection.at).to.be.a('number')
      expect(info.blobs.storeBytes).to.be.at.least(input.length)
      // on disk: the result's blocks, and no longer the upload's (its pack had nothing else: deleted)
      expect(info.blobs.packBytes).to.be.at.least(input.length)
      expect(info.blobs.packBytes).to.be.below(2 * input.length)
      const again = await fetch(`${requester.gateway!.url}/v1/blobs/${cid}`, { method: 'DELETE' })
      expect(again.status).to.equal(404)
      expect((await again.json() as any).error.code).to.equal('not-found')
    })
  })
})
