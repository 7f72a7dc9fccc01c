/**
 * `POST /v1/blobs` streams: a real `mercato start` process takes a 50 MiB upload from the client's
 * `uploadFile` (a ReadStream) while its peak RSS is watched, names it by the CID the importer
 * computes on its own, streams it back, and refuses an upload past `gateway.maxUploadBytes` (413,
 * `blob-too-large`) keeping no block of it. Needs `npm run build`.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { createReadStream, createWriteStream } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes, createHash } from 'node:crypto'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { importByteStream } from 'ipfs-unixfs-importer'
import type { CID } from 'multiformats/cid'
import { MercatoClient } from '../../src/client/index.js'
import { BlockStore } from '../../src/auction/blocks.js'
import { startNodeProcess, stopAll, tempDir, type NodeProcess } from '../helpers/cli.js'

const MiB = 1024 * 1024

/** Resident and peak resident memory of a process, in bytes (Linux /proc). */
async function memoryOf (pid: number): Promise<{ rss: number, hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string): number => Number(/(\d+) kB/.exec(status.split('\n').find(l => l.startsWith(key)) ?? '')?.[1] ?? NaN) * 1024
  return { rss: kb('VmRSS:'), hwm: kb('VmHWM:') }
}

async function writeRandomFile (path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path)
  for (let i = 0; i < bytes; i += MiB) {
    if (!out.write(randomBytes(Math.min(MiB, bytes - i)))) await once(out, 'drain')
  }
  out.end()
  await once(out, 'finish')
}

/** POST `bytes` zero bytes with their length declared, taking the answer whenever it comes (a write error after it is expected). */
async function postEarlyAnswer (url: string, bytes: number): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes) } }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      res.on('error', reject)
    })
    req.on('error', () => {}) // EPIPE/ECONNRESET once the node has answered and closed
    const chunk = new Uint8Array(MiB)
    let sent = 0
    const pump = (): void => {
      while (sent < bytes && !req.destroyed) {
        sent += MiB
        if (!req.write(chunk)) { req.once('drain', pump); return }
      }
      if (!req.destroyed) req.end()
    }
    pump()
  })
}

/** The blocks the node holds and the bytes of its pack files, read from its data dir (a read-only view of the pack indexes). */
async function held (dataDir: string): Promise<{ blocks: number, packBytes: number }> {
  const view = new BlockStore(join(dataDir, 'blobs'))
  await view.load()
  return { blocks: await view.count(), packBytes: view.packBytes() }
}

describe('POST /v1/blobs streams (real node process)', function () {
  this.timeout(180_000)
  let node: NodeProcess
  let client: MercatoClient
  let dir: string

  before(async () => {
    dir = await tempDir('mercato-upload-')
    node = await startNodeProcess(['--no-provide'], { env: { MERCATO_GATEWAY_MAX_UPLOAD_BYTES: String(60 * MiB) } })
    client = new MercatoClient({ url: node.gatewayUrl })
  })
  after(stopAll)

  it('takes 50 MiB from a ReadStream with the node\'s RSS growing ≤ 64 MiB; the CID is the importer\'s own; GET streams it back', async () => {
    const file = join(dir, 'big.bin')
    await writeRandomFile(file, 50 * MiB)
    const expected = (await importByteStream(createReadStream(file), { put: async (cid: CID) => cid })).cid.toString()

    const pid = node.proc.pid!
    const before = await memoryOf(pid)
    const t0 = performance.now()
    const { cid, size } = await client.uploadFile(file)
    const ms = performance.now() - t0
    const after = await memoryOf(pid)
    const growth = after.hwm - before.rss
    console.log(`      upload 50 MiB: ${ms.toFixed(0)} ms (${(50 * MiB / 1e6 / (ms / 1000)).toFixed(1)} MB/s), node RSS ${(before.rss / MiB).toFixed(1)} MiB before, peak ${(after.hwm / MiB).toFixed(1)} MiB after, growth ≤ ${(growth / MiB).toFixed(1)} MiB`)
    expect(size).to.equal(50 * MiB)
    expect(cid).to.equal(expected)
    expect(growth).to.be.at.most(64 * MiB)

    // streamed back by the exporter: the same bytes
    const res = await fetch(`${node.gatewayUrl}/v1/blobs/${cid}`)
    expect(res.status).to.equal(200)
    expect(res.headers.get('content-length')).to.equal(String(50 * MiB))
    const hash = createHash('sha256')
    for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) hash.update(part)
    const want = createHash('sha256')
    for await (const part of createReadStream(file)) want.update(part as Buffer)
    expect(hash.digest('hex')).to.equal(want.digest('hex'))
  })

  it('refuses an upload past gateway.maxUploadBytes with 413 blob-too-large and keeps none of it', async () => {
    // a blob it keeps: the view below sees the node's blocks (not 0 = 0)
    await client.uploadBlob(randomBytes(MiB))
    const before = await held(node.dataDir)
    expect(before.blocks).to.be.at.least(5)
    // streamed without a length: refused when the 61st MiB arrives
    async function * sixtyOne (): AsyncGenerator<Uint8Array> { for (let i = 0; i < 61; i++) yield randomBytes(MiB) }
    const err = await client.upload(sixtyOne()).catch(e => e)
    expect(err.status).to.equal(413)
    expect(err.code).to.equal('blob-too-large')
    // a declared length past the cap: refused before a byte is read
    // (the node answers at once and closes the connection; the client reads the answer, as curl does)
    const early = await postEarlyAnswer(`${node.gatewayUrl}/v1/blobs`, 61 * MiB)
    expect(early.status).to.equal(413)
    expect(JSON.parse(early.body).error.code).to.equal('blob-too-large')
    expect(await held(node.dataDir)).to.deep.equal(before)
    expect(await readdir(join(node.dataDir, 'blobs', 'staging')).catch(() => [])).to.deep.equal([])
  })
})
