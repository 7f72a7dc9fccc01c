/**
 * Output files end to end with real nodes on 127.0.0.1 (issue 14, outputs):
 * a job writes files, its provider stores them as blobs, the requester
 * fetches and checks them before the result counts; the gateway lists and
 * serves them (Range); replicas vote on them; a provider that names outputs
 * it does not serve loses the award and is not paid.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { createHash, randomBytes } from 'node:crypto'
import { getOutputs } from '../../src/cli/get.js'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { unixfsCidOfBytes } from '../../src/crypto/unixfs.js'
import { BLOB_PROTOCOL, BLOB_STREAM_PROTOCOL, JOBS_TOPIC, type JobView } from '../../src/auction/index.js'
import { decodeBlobBatch } from '../../src/auction/protocol/frames.js'
import { cidOfBytes } from '../../src/crypto/index.js'
import { MercatoClient, MercatoApiError } from '../../src/client/index.js'
import type { MercatoNode } from '../../src/node.js'
import { startLiarAndTwoHonest, startTestNode, stopNodes, waitFor, type TestNodeOptions } from '../helpers/nodes.js'

const WRITER = `function main (i) {
  writeFile('report.txt', 'hello ' + i.name + '\\n')
  writeFile('data/numbers.bin', new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]))
  writeFile('page.html', '<script>alert(1)</script>')
  writeFile('with space/ü.txt', 'unicode')
  writeFile('empty.txt', '')
  console.log('wrote 5 files')
  return 5
}`

describe('market: output files', function () {
  this.timeout(60_000)
  let requester: MercatoNode
  let provider: MercatoNode
  let client: MercatoClient
  let jobId: string

  before(async () => {
    requester = await startTestNode({ provide: false, gateway: true })
    provider = await startTestNode({ price: 1, bootstrap: requester.network.addresses() })
    client = new MercatoClient({ url: requester.gateway!.url })
    await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).includes(provider.peerId), 15_000)
    const submitted = await requester.market.submit({ engine: 'js', source: WRITER, input: { name: 'ada' } })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(20_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    jobId = job.id
  })
  after(stopNodes)

  it('a js job\'s files are named in the signed result, held by the requester, verified', async () => {
    const result = await requester.market.result(jobId)
    expect(result.output).to.equal(5)
    expect(result.outputs.map(o => o.path)).to.deep.equal(['data/numbers.bin', 'empty.txt', 'page.html', 'report.txt', 'with space/ü.txt'])
    const report = result.outputs.find(o => o.path === 'report.txt')!
    expect(report.size).to.equal(10)
    expect(report.cid).to.equal(cidOfBytes(new TextEncoder().encode('hello ada\n')))
    // fetched from the provider and stored here before the job settled
    const held = await requester.market.getBlob(report.cid)
    expect(new TextDecoder().decode(held)).to.equal('hello ada\n')
    // the job's events say so between the provider's result and its acceptance: how many files, how many bytes
    const events: Array<{ type: string, files?: number, bytes?: number }> = []
    for await (const e of client.events(jobId, { signal: AbortSignal.timeout(10_000) })) events.push(e as any)
    const types = events.map(e => e.type)
    const collecting = events.find(e => e.type === 'collecting')
    expect(collecting, types.join(',')).to.include({ files: 5, bytes: 52 })
    expect(types.indexOf('collecting')).to.be.lessThan(types.indexOf('result'))
    // the provider's signed result in the requester's log names the same outputs
    const records = await requester.ledger.byJob(jobId)
    const logged = records.find(r => r.type === 'result')
    expect((logged?.body as any).result.payload.outputs.map((o: any) => o.path)).to.deep.equal(result.outputs.map(o => o.path))
  })

  it('GET /v1/jobs/:id/outputs lists them; /outputs/<path> serves each with its type, and Range (206, 416)', async () => {
    const base = `${requester.gateway!.url}/v1/jobs/${jobId}/outputs`
    const list = await (await fetch(base)).json() as Array<{ path: string, size: number }>
    expect(list.map(o => [o.path, o.size])).to.deep.equal([['data/numbers.bin', 10], ['empty.txt', 0], ['page.html', 25], ['report.txt', 10], ['with space/ü.txt', 7]])

    const whole = await fetch(`${base}/report.txt`)
    expect(whole.status).to.equal(200)
    expect(whole.headers.get('content-type')).to.equal('text/plain; charset=utf-8')
    expect(whole.headers.get('accept-ranges')).to.equal('bytes')
    expect(await whole.text()).to.equal('hello ada\n')

    const part = await fetch(`${base}/data/numbers.bin`, { headers: { range: 'bytes=2-4' } })
    expect(part.status).to.equal(206)
    expect(part.headers.get('content-range')).to.equal('bytes 2-4/10')
    expect([...new Uint8Array(await part.arrayBuffer())]).to.deep.equal([2, 3, 4])
    const tail = await fetch(`${base}/data/numbers.bin`, { headers: { range: 'bytes=-3' } })
    expect(tail.status).to.equal(206)
    expect([...new Uint8Array(await tail.arrayBuffer())]).to.deep.equal([7, 8, 9])
    const open = await fetch(`${base}/data/numbers.bin`, { headers: { range: 'bytes=8-' } })
    expect([...new Uint8Array(await open.arrayBuffer())]).to.deep.equal([8, 9])
    const beyond = await fetch(`${base}/data/numbers.bin`, { headers: { range: 'bytes=10-' } })
    expect(beyond.status).to.equal(416)
    expect(beyond.headers.get('content-range')).to.equal('bytes */10')
    expect((await beyond.json()).error.code).to.equal('range-not-satisfiable')

    // a stranger's HTML is never served as HTML from the gateway's origin
    const html = await fetch(`${base}/page.html`)
    expect(html.headers.get('content-type')).to.equal('application/octet-stream')
    expect(html.headers.get('content-disposition')).to.match(/^attachment; filename="page.html"/)
    expect(html.headers.get('content-security-policy')).to.match(/sandbox/)
    expect(html.headers.get('x-content-type-options')).to.equal('nosniff')

    const spaced = await fetch(`${base}/with%20space/%C3%BC.txt`)
    expect(spaced.status).to.equal(200)
    expect(await spaced.text()).to.equal('unicode')
    const empty = await fetch(`${base}/empty.txt`)
    expect(empty.status).to.equal(200)
    expect(await empty.text()).to.equal('')

    for (const bad of ['nope.txt', '..%2Freport.txt', 'data']) {
      const res = await fetch(`${base}/${bad}`)
      expect(res.status, bad).to.equal(404)
    }
  })

  it('the client lists and downloads them, checked against their CIDs, with progress', async () => {
    const outputs = await client.outputs(jobId)
    expect(outputs).to.have.length(5)
    const seen: number[] = []
    const bytes = await client.downloadOutput(jobId, 'data/numbers.bin', { onProgress: (n) => { seen.push(n) } })
    expect([...bytes]).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(seen.at(-1)).to.equal(10)
    const range = await client.downloadOutput(jobId, 'data/numbers.bin', { range: { start: 5, end: 6 } })
    expect([...range]).to.deep.equal([5, 6])
    try {
      await client.downloadOutput(jobId, 'missing')
      expect.fail('expected a 404')
    } catch (e) {
      expect(e).to.be.instanceOf(MercatoApiError)
      expect((e as MercatoApiError).status).to.equal(404)
    }
  })

  it('a wasm job\'s files under /outputs travel the same way', async () => {
    const module = new Uint8Array(await readFile(new URL('../fixtures/wasm/outputs.wasm', import.meta.url)))
    const cid = await requester.market.uploadBlob(module)
    const submitted = await requester.market.submit({ engine: 'wasm', module: cid })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(20_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    const result = await requester.market.result(job.id)
    expect(result.exitCode).to.equal(0)
    expect(result.outputs.map(o => [o.path, o.size])).to.deep.equal([['data/bytes.bin', 4], ['report.txt', 28]])
    expect([...await client.downloadOutput(job.id, 'data/bytes.bin')]).to.deep.equal([0, 1, 2, 255])
  })

  it('a job that floods its outputs fails with output-limit, and nothing is stored', async () => {
    const submitted = await requester.market.submit({ engine: 'js', source: `function main () { for (let i = 0; ; i++) writeFile('f' + i, 'x') }` })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(20_000) })
    // a failed run is still the job's own result: completed, with the error named
    const result = await requester.market.result(job.id)
    expect(result.error?.name).to.equal('output-limit')
    expect(result.outputs).to.deep.equal([])
  })

  it('every job\'s staging folder goes once its result is sent: one that wrote nothing, and the flood\'s', async () => {
    const submitted = await requester.market.submit({ engine: 'js', source: 'function main () { return 1 }' })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(20_000) })
    expect(job.status).to.equal('completed')
    const staging = join(provider.config.dataDir, 'outputs')
    await waitFor(async () => (await readdir(staging)).length === 0, 5000)
  })
})

describe('market: large output files', function () {
  this.timeout(90_000)
  after(stopNodes)

  it('a 40 MiB file (over the old 16 MiB cap) travels as a UnixFS blob: verified block by block, streamed by the gateway, nothing left in the provider\'s staging folder', async () => {
    // (before: any frame over libp2p's 4 MiB read buffer aborted the blob stream, "Read buffer overflow";
    // heartbeats stop once the result is sent, so the fetch is not judged by them: plan.test.ts)
    const requester = await startTestNode({ provide: false, gateway: true })
    const provider = await startTestNode({ price: 1, bootstrap: requester.network.addresses() })
    await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).includes(provider.peerId), 15_000)
    const size = 40 * 1024 * 1024
    const source = `function main () { const b = new Uint8Array(${size}); for (let i = 0; i < b.length; i += 65536) b[i] = (i >> 16) & 255; b[b.length - 1] = 7; writeFile('big.bin', b); writeFile('small.txt', 'small'); return 2 }`
    const submitted = await requester.market.submit({ engine: 'js', source, limits: { memoryMb: 96, timeoutMs: 30_000 } })
    const started = Date.now()
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(60_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect(job.attempts.map(a => a.state), JSON.stringify(job.attempts)).to.deep.equal(['completed'])
    const settledMs = Date.now() - started
    const result = await requester.market.result(job.id)
    expect(result.outputs.map(o => [o.path, o.size])).to.deep.equal([['big.bin', size], ['small.txt', 5]])
    const expected = new Uint8Array(size)
    for (let i = 0; i < size; i += 65536) expected[i] = (i >> 16) & 255
    expected[size - 1] = 7
    // the CID `ipfs add --cid-version 1` gives the bytes: a DAG of 256 KiB leaves; a 5-byte file is its raw leaf
    expect(result.outputs[0].cid).to.equal(await unixfsCidOfBytes(expected))
    expect(result.outputs[0].cid).to.match(/^bafybei/)
    expect(result.outputs[1].cid).to.equal(cidOfBytes(new TextEncoder().encode('small')))
    // the requester holds it (fetched before it paid), the gateway streams it
    const client = new MercatoClient({ url: requester.gateway!.url })
    const { total, content } = await client.streamOutput(job.id, 'big.bin')
    expect(total).to.equal(size)
    const hash = createHash('sha256')
    for await (const chunk of content) hash.update(chunk)
    expect(hash.digest('hex')).to.equal(createHash('sha256').update(expected).digest('hex'))
    const part = await fetch(`${requester.gateway!.url}/v1/jobs/${job.id}/outputs/big.bin`, { headers: { range: `bytes=${size - 2}-` } })
    expect(part.status).to.equal(206)
    expect([...new Uint8Array(await part.arrayBuffer())]).to.deep.equal([0, 7])
    // the provider's staging folder is gone with the job (removed once the result is sent)
    await waitFor(async () => (await readdir(join(provider.config.dataDir, 'outputs')).catch(() => [])).length === 0, 5000)
    process.stderr.write(`      40 MiB output: submit → settled in ${settledMs} ms\n`)
  })

  it('a wasm job reads a 24 MiB input and writes a 24 MiB output: fetched and verified by the requester, downloaded by mercato get\'s path', async () => {
    const requester = await startTestNode({ provide: false, gateway: true })
    const provider = await startTestNode({ price: 1, bootstrap: requester.network.addresses() })
    await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).includes(provider.peerId), 15_000)
    const client = new MercatoClient({ url: requester.gateway!.url })
    const data = randomBytes(24 * 1024 * 1024 + 7)
    const input = await client.uploadBlob(data)
    const module = await client.uploadBlob(await readFile(new URL('../fixtures/wasm/copy-input.wasm', import.meta.url)))
    const { id } = await client.submit({ engine: 'wasm', module, inputs: [{ path: 'in.bin', cid: input }], limits: { memoryMb: 8, timeoutMs: 30_000 } })
    const job = await requester.market.waitFor(id, { signal: AbortSignal.timeout(60_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    const inverted = data.map(b => b ^ 0xff)
    const [out] = await client.outputs(id)
    expect([out.path, out.size, out.cid]).to.deep.equal(['out.bin', inverted.length, await unixfsCidOfBytes(inverted)])
    // the provider keeps the file the guest wrote as a pack of its leaves (linked, not copied): a pack of exactly its bytes
    const packs = join(provider.config.dataDir, 'blobs', 'packs')
    const sameBytes = []
    for (const name of (await readdir(packs)).filter(n => n.endsWith('.pack'))) {
      const bytes = await readFile(join(packs, name))
      if (bytes.equals(inverted)) sameBytes.push(name)
    }
    expect(sameBytes).to.have.length(1)
    // held by the requester (pulled block by block before it paid), streamed and checked by `mercato get`
    const dir = await mkdtemp(join(tmpdir(), 'mercato-get-'))
    try {
      expect(await getOutputs(client, id, dir, { out: () => {}, err: () => {}, tty: false })).to.equal(0)
      expect(Buffer.compare(await readFile(join(dir, 'out.bin')), inverted)).to.equal(0)
    } finally { await rm(dir, { recursive: true, force: true }) }
  })

  it('a provider restarted after a crash finds no staging folder left behind', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'mercato-crashed-'))
    try {
      // what a provider killed mid-job leaves: a job's staging folder with a half-written file
      await mkdir(join(dataDir, 'outputs', 'abc123-0011'), { recursive: true })
      await writeFile(join(dataDir, 'outputs', 'abc123-0011', 'o1'), 'half')
      const node = await startTestNode({ dataDir, price: 1 })
      expect(await readdir(join(dataDir, 'outputs')).catch(() => [])).to.deep.equal([])
      await node.stop()
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

describe('market: output files and lying providers', function () {
  this.timeout(90_000)
  afterEach(stopNodes)

  it('replicas 3, one provider alters one byte of an output: it is outvoted and not paid', async () => {
    const { requester, liar, honest1, honest2 } = await startLiarAndTwoHonest()
    const submitted = await requester.market.submit({ engine: 'js', source: WRITER, input: { name: 'bob' }, replicas: 3, maxPrice: 10, bidWindowMs: 3000 })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(30_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    const result = await requester.market.result(job.id)
    for (const p of result.providers) expect([honest1.peerId, honest2.peerId]).to.include(p)
    // the honest bytes, not the liar's
    const first = result.outputs[0]
    expect(first.path).to.equal('data/numbers.bin')
    expect(first.cid).to.equal(cidOfBytes(new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])))
    await waitFor(async () => (await requester.ledger.byJob(job.id)).some(r => r.type === 'mismatch'), 15_000)
    const records = await requester.ledger.byJob(job.id)
    const mismatches = records.filter(r => r.type === 'mismatch')
    expect(mismatches.map(r => r.body.provider)).to.deep.equal([liar.peerId])
    const paid = records.filter(r => r.type === 'receipt' && (r.body as any).receipt.payload.status === 'paid')
    expect(paid.map(r => (r.body as any).receipt.payload.provider)).to.not.include(liar.peerId)
    // the liar's result differs only in the output: its stdout is the honest one
    const liarResult = records.find(r => r.type === 'result' && (r.body as any).result.signer === liar.peerId)
    expect(new TextDecoder().decode((liarResult?.body as any).result.payload.stdout)).to.equal('wrote 5 files\n')
  })

  /**
   * A requester, a cheaper provider that misbehaves and an honest one: the job goes to the cheap
   * one first, which loses the award (its first attempt `lost`), and the honest one completes it
   * and is the only one paid.
   */
  async function failsOver (bad: TestNodeOptions, name: string, setup?: (bad: MercatoNode) => Promise<void>): Promise<{ requester: MercatoNode, job: JobView }> {
    const requester = await startTestNode({ provide: false })
    const boot = [requester.network.addresses()[0]]
    const [cheap, honest] = await Promise.all([
      startTestNode({ ...bad, price: 1, bootstrap: boot }),
      startTestNode({ price: 2, bootstrap: boot })
    ])
    await setup?.(cheap)
    await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).length === 2, 15_000)
    const submitted = await requester.market.submit({ engine: 'js', source: WRITER, input: { name }, maxPrice: 10, bidWindowMs: 1500 })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(40_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect(job.attempts[0].provider).to.equal(cheap.peerId)
    expect(job.attempts[0].state).to.equal('lost')
    expect(job.providers).to.deep.equal([honest.peerId])
    const records = await requester.ledger.byJob(job.id)
    const paid = records.filter(r => r.type === 'receipt' && (r.body as any).receipt.payload.status === 'paid')
    expect(paid.map(r => (r.body as any).receipt.payload.provider)).to.deep.equal([honest.peerId])
    return { requester, job }
  }

  it('a provider that serves other bytes than its result names: refused, handed over, not paid', async () => {
    const { requester, job } = await failsOver({}, 'mallory', async (forger) => {
      // the forger's blob protocol answers every request with 10 bytes of its own choosing (the size
      // of the first output, data/numbers.bin): the right length, the wrong bytes
      await forger.network.unhandle(BLOB_PROTOCOL)
      await forger.network.handle(BLOB_PROTOCOL, async () => new TextEncoder().encode('forged!!!\n'), { maxRequestBytes: 1024 })
      // and on the stream protocol (2.1.0): a block frame of the same forged bytes for every CID asked
      await forger.network.unhandle(BLOB_STREAM_PROTOCOL)
      await forger.network.handleChannel(BLOB_STREAM_PROTOCOL, async (ch) => {
        for await (const req of ch) for (const _ of decodeBlobBatch(req)) await ch.send(new Uint8Array([0, ...new TextEncoder().encode('forged!!!\n')]))
      }, { maxMessageBytes: 16 * 1024 })
    })
    expect(job.attempts[0].reason).to.match(/output data\/numbers.bin .* not served by the provider: .*does not match/)
    const numbers = (await requester.market.result(job.id)).outputs[0]
    expect([...(await requester.market.getBlob(numbers.cid))!]).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  })

  it('a provider that names outputs it does not serve loses the award (outputs-unavailable) and the job fails over', async () => {
    const { requester, job } = await failsOver({ withholdOutputs: true }, 'eve')
    expect(job.attempts[0].reason).to.match(/output .* not served by the provider/)
    expect(requester.market.refusals().requester.get('outputs-unavailable')).to.be.at.least(1)
    expect(new TextDecoder().decode(await requester.market.getBlob((await requester.market.result(job.id)).outputs.find(o => o.path === 'report.txt')!.cid))).to.equal('hello eve\n')
  })
})
