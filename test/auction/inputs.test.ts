/**
 * Input files end to end with real nodes on 127.0.0.1 (issue 14, inputs): blob inputs uploaded to
 * the requester and URL inputs from a local HTTP server, read by js and wasm jobs; replicas read the
 * same bytes and agree; a wrong sha256, an unreachable URL, an oversize input, a server that streams
 * forever, a redirect to file:, a server that never answers are named failures or declines, and the
 * provider keeps nothing of them; bad paths are refused at submission.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { readdir, readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { JOBS_TOPIC } from '../../src/auction/index.js'
import { MercatoClient, MercatoApiError } from '../../src/client/index.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { FIXTURES } from '../executor/helpers.js'

const sha256 = (b: string | Uint8Array): string => createHash('sha256').update(b).digest('hex')
const CSV = 'name,n\nada,1\nbob,2\n'
const READER = `function main () {
  return { files: listFiles(), a: readFile('a.txt', 'utf8'), csv: readFile('data/b.csv', 'utf8'), bytes: readFile('a.txt').length }
}`
/** small provider caps, so the hostile servers hit them fast */
const INPUTS = { maxFiles: 8, maxFileBytes: 1024 * 1024, maxTotalBytes: 4 * 1024 * 1024, urlTimeoutMs: 1500 }

describe('market: input files', function () {
  this.timeout(90_000)
  let requester: MercatoNode
  let providers: MercatoNode[]
  let client: MercatoClient
  let server: Server
  let base: string
  const timers = new Set<NodeJS.Timeout>()

  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/data.csv') { res.end(CSV); return }
      if (req.url === '/moved') { res.writeHead(302, { location: '/data.csv' }); res.end(); return }
      if (req.url === '/to-file') { res.writeHead(302, { location: 'file:///etc/passwd' }); res.end(); return }
      if (req.url === '/forever') {
        // no content-length, never ends: the provider must stop at its cap
        res.writeHead(200)
        const chunk = Buffer.alloc(64 * 1024, 0x61)
        const t = setInterval(() => { if (!res.destroyed) res.write(chunk) }, 1)
        timers.add(t)
        res.on('close', () => { clearInterval(t); timers.delete(t) })
        return
      }
      if (req.url === '/slow') { res.writeHead(200); res.write('a'); return } // then nothing
      res.writeHead(404); res.end()
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    requester = await startTestNode({ provide: false, gateway: true })
    const boot = requester.network.addresses()
    providers = await Promise.all([1, 2].map(async price => await startTestNode({ price, bootstrap: boot, config: { provider: { inputs: INPUTS } } })))
    client = new MercatoClient({ url: requester.gateway!.url })
    await waitFor(() => providers.every(p => requester.network.topicPeers(JOBS_TOPIC).includes(p.peerId)), 15_000)
  })
  after(async () => {
    for (const t of timers) clearInterval(t)
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
    await stopNodes()
  })

  const run = async (spec: Record<string, unknown>): Promise<{ job: any, result?: any }> => {
    const { id } = await client.submit({ engine: 'js', source: READER, queueTimeoutMs: 0, ...spec } as any)
    const job = await client.wait(id, { timeoutMs: 30_000 } as any)
    const result = job.status === 'completed' ? await client.result(id) : undefined
    return { job, result }
  }

  /** nothing is left in any provider's staging folder once its jobs are over */
  const nothingStaged = async (): Promise<void> => {
    for (const p of providers) {
      const dir = join(p.config.dataDir, 'inputs')
      const left = await readdir(dir).catch(() => [])
      expect(left, `left in ${dir}`).to.deep.equal([])
    }
  }

  it('a js job reads a blob input and a URL input; two replicas read the same bytes and agree', async () => {
    const cid = await client.uploadBlob(new TextEncoder().encode('hello blob'))
    const { job, result } = await run({ replicas: 2, inputs: [{ path: 'a.txt', cid }, { path: 'data/b.csv', url: `${base}/moved`, sha256: sha256(CSV) }] })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect(result.error).to.equal(undefined)
    expect(result.output).to.deep.equal({ files: ['a.txt', 'data/b.csv'], a: 'hello blob', csv: CSV, bytes: 10 })
    expect(result.providers).to.have.length(2)
    // each provider's signed result, as the requester logged it: two providers, one hash
    const logged = (await requester.ledger.byJob(job.id)).filter(r => r.type === 'result').map(r => (r.body as any).result)
    expect(new Set(logged.map((m: any) => m.signer)).size).to.equal(2)
    expect(new Set(logged.map((m: any) => m.payload.resultHash))).to.deep.equal(new Set([result.resultHash]))
    await waitFor(async () => { try { await nothingStaged(); return true } catch { return false } }, 5000)
  })

  it('a blob input of several blocks (a UnixFS DAG) reaches the job whole, fetched block by block', async () => {
    const bytes = new Uint8Array(900 * 1024)
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + (i >> 11)) & 0xff
    const cid = await client.uploadBlob(bytes)
    expect(cid, 'a dag-pb root over 256 KiB leaves').to.match(/^bafybei/)
    const source = `function main () {
      const b = readFile('big.bin'); let h = 0
      for (let i = 0; i < b.length; i++) h = (Math.imul(h, 31) + b[i]) | 0
      return { n: b.length, h }
    }`
    let h = 0
    for (const b of bytes) h = (Math.imul(h, 31) + b) | 0
    const { job, result } = await run({ source, inputs: [{ path: 'big.bin', cid }], limits: { memoryMb: 32 } })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect(result.output).to.deep.equal({ n: bytes.length, h })
    await waitFor(async () => { try { await nothingStaged(); return true } catch { return false } }, 5000)
  })

  it('a wasm job reads its blob inputs under /inputs', async () => {
    const module = await client.uploadBlob(await readFile(join(FIXTURES, 'wasm/read-inputs.wasm')))
    const data = await client.uploadBlob(new TextEncoder().encode('wasm reads this\n'))
    const { job, result } = await run({ engine: 'wasm', module, source: undefined, inputs: [{ path: 'data.txt', cid: data }] })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect(result.stdout).to.equal('data.txt\nwasm reads this\nrofs\n')
  })

  it('a wrong sha256 is the named failure input-mismatch, and the job never ran', async () => {
    const { job, result } = await run({ inputs: [{ path: 'a.txt', url: `${base}/data.csv`, sha256: sha256('something else') }] })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect(result.error?.name).to.equal('input-mismatch')
    expect(result.error?.message).to.match(/a\.txt: sha256 [0-9a-f]{64} of .*not the pinned/)
    await nothingStaged()
  })

  it('an unreachable URL is input-unreachable (HTTP 404, and a closed port)', async () => {
    const a = await run({ inputs: [{ path: 'a.txt', url: `${base}/missing`, sha256: sha256('') }] })
    expect(a.result?.error?.name, JSON.stringify(a.job)).to.equal('input-unreachable')
    expect(a.result?.error?.message).to.match(/HTTP 404/)
    const closed = createServer()
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as AddressInfo).port
    await new Promise(resolve => closed.close(resolve))
    const b = await run({ inputs: [{ path: 'a.txt', url: `http://127.0.0.1:${port}/x`, sha256: sha256('') }] })
    expect(b.result?.error?.name, JSON.stringify(b.job)).to.equal('input-unreachable')
  })

  it('a server that streams forever is cut at the provider\'s cap: input-too-large, nothing half-stored', async () => {
    const started = Date.now()
    const { job, result } = await run({ inputs: [{ path: 'a.txt', url: `${base}/forever`, sha256: sha256('') }] })
    expect(result?.error?.name, JSON.stringify(job)).to.equal('input-too-large')
    expect(result.error.message).to.match(/more than 1048576 bytes/)
    expect(Date.now() - started).to.be.below(10_000)
    await nothingStaged()
  })

  it('a redirect to file: is refused (input-unreachable), and so is a server that never finishes (timeout)', async () => {
    const a = await run({ inputs: [{ path: 'a.txt', url: `${base}/to-file`, sha256: sha256('') }] })
    expect(a.result?.error?.name, JSON.stringify(a.job)).to.equal('input-unreachable')
    expect(a.result?.error?.message).to.match(/redirected to a file: URL/)
    const started = Date.now()
    const b = await run({ inputs: [{ path: 'a.txt', url: `${base}/slow`, sha256: sha256('a') }] })
    expect(b.result?.error?.name, JSON.stringify(b.job)).to.equal('input-unreachable')
    expect(b.result?.error?.message).to.match(/not fetched within 1500 ms/)
    expect(Date.now() - started).to.be.below(10_000)
    await nothingStaged()
  })

  it('an input over every provider\'s limit is declined (input-too-large) before anything is fetched', async () => {
    const big = await client.uploadBlob(new Uint8Array(1024 * 1024 + 1).fill(7))
    const a = await run({ inputs: [{ path: 'big', cid: big }] })
    expect(a.job.status).to.equal('no-bids')
    expect(a.job.declines.map((d: any) => d.reason)).to.deep.equal(['input-too-large', 'input-too-large'])
    // a URL input that says its size is declined the same way
    const b = await run({ inputs: [{ path: 'big', url: `${base}/forever`, sha256: sha256(''), size: 5 * 1024 * 1024 }] })
    expect(b.job.status).to.equal('no-bids')
    expect(b.job.declines[0].reason).to.equal('input-too-large')
  })

  it('providers advertise their input limits; GET /v1/providers shows them', async () => {
    await waitFor(async () => (await client.providers()).filter((p: any) => p.advert?.inputs != null).length === 2, 15_000)
    const listed = (await client.providers()).find((p: any) => p.peerId === providers[0].peerId) as any
    expect(listed.advert.inputs).to.deep.equal({ files: 8, fileBytes: 1024 * 1024, totalBytes: 4 * 1024 * 1024 })
  })

  it('refuses bad input lists at submission with a clear error', async () => {
    const cid = await client.uploadBlob(new TextEncoder().encode('x'))
    const cases: Array<[unknown, RegExp]> = [
      [[{ path: '../etc/passwd', cid }], /inputs: input path "..\/etc\/passwd" is not a plain relative path \(absolute or escaping with \.\.\)/],
      [[{ path: '/abs', cid }], /absolute or escaping/],
      [[{ path: 'a\u0000b', cid }], /not a plain relative path \(invalid\)/],
      [[{ path: 'a', cid }, { path: 'a', cid }], /listed twice/],
      [[{ path: 'a', cid }, { path: 'a/b', cid }], /both a file and a directory/],
      [[{ path: 'a', url: 'file:///etc/passwd', sha256: sha256('') }], /http:\/\/ or https:\/\/ URL/],
      [[{ path: 'a', url: `${base}/x`, sha256: 'nothex' }], /hex sha256/],
      [Array.from({ length: 65 }, (_, i) => ({ path: `f${i}`, cid })), /inputs/]
    ]
    for (const [inputs, why] of cases) {
      const err = await client.submit({ engine: 'js', source: READER, inputs } as any).then(() => undefined, (e: unknown) => e)
      expect(err, JSON.stringify(inputs).slice(0, 80)).to.be.instanceOf(MercatoApiError)
      expect((err as MercatoApiError).status).to.equal(400)
      expect((err as MercatoApiError).message).to.match(why)
    }
    const unknown = await client.submit({ engine: 'js', source: READER, inputs: [{ path: 'a', cid: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku' }] } as any).then(() => undefined, (e: unknown) => e)
    expect((unknown as MercatoApiError).code).to.equal('unknown-input')
  })
})
