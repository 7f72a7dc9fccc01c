/**
 * A provider staging URL inputs (src/auction/provider/inputs.ts), against a local HTTP server:
 * the hostile cases one by one, each a named failure with nothing left on disk. The provider
 * context is the part staging reads (its config and logger); the market tests run it on real nodes.
 */
import { expect } from 'chai'
import { createHash, randomBytes } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { createServer, type Server } from 'node:http'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { InputFailure, inputFetchMs, stageInputs } from '../../src/auction/provider/inputs.js'
import type { ProviderContext } from '../../src/auction/provider/state.js'
import { specSchema, type Offer } from '../../src/auction/protocol/messages.js'
import { logger } from '../../src/logger.js'
import { decide, type StrategyContext } from '../../src/auction/provider/strategy.js'
import { canRun, type InviteJob } from '../../src/auction/requester/invite.js'
import type { BookEntry } from '../../src/auction/requester/book.js'
import { INPUT_FETCH_BASE_MS, INPUT_FETCH_MIN_BYTES_PER_SEC, MAX_INPUT_BLOB_BYTES } from '../../src/auction/constants.js'
import { BlobStore } from '../../src/auction/blobs.js'

const sha256 = (b: string | Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('provider: staging URL inputs', function () {
  this.timeout(20_000)
  let server: Server
  let base: string
  let root: string
  let hits = 0

  before(async () => {
    server = createServer((req, res) => {
      hits++
      if (req.url === '/ok') { res.end('ok bytes'); return }
      if (req.url === '/gzip-bomb') { const z = gzipSync(Buffer.alloc(10 * 1024 * 1024)); res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': String(z.length) }); res.end(z); return }
      if (req.url === '/loop') { res.writeHead(302, { location: '/loop' }); res.end(); return }
      if (req.url === '/to-data') { res.writeHead(301, { location: 'data:text/plain,hi' }); res.end(); return }
      if (req.url === '/declared-huge') { res.writeHead(200, { 'content-length': String(10 * 1024 * 1024) }); res.write('x'); return }
      if (req.url === '/drip') { res.writeHead(200); const t = setInterval(() => { if (res.destroyed) clearInterval(t); else res.write('d') }, 20); res.on('close', () => { clearInterval(t) }); return }
      res.writeHead(404); res.end()
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'mercato-stage-')) })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })
  after(async () => {
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  })

  const ctx = (cfg: Record<string, unknown> = {}): ProviderContext => ({
    cfg: { dialPrivateAddresses: true, inputsDir: root, inputs: { maxFileBytes: 1024 * 1024, urlTimeoutMs: 1000 }, ...cfg },
    log: logger('test:inputs')
  }) as unknown as ProviderContext
  const offer = (inputs: unknown[]): Offer => ({ jobId: 'job-stage-test', spec: { inputs } }) as unknown as Offer
  const stage = async (inputs: unknown[], cfg?: Record<string, unknown>, signal = new AbortController().signal): Promise<unknown> =>
    await stageInputs(ctx(cfg), offer(inputs), 'requester', signal).then(s => s, (e: unknown) => e)
  const empty = async (): Promise<void> => { expect(await readdir(root)).to.deep.equal([]) }

  it('stages a good input in a folder of the job, removed on request', async () => {
    const s = await stage([{ path: 'a', url: `${base}/ok`, sha256: sha256('ok bytes'), size: 8 }]) as any
    expect(s, String(s?.message ?? s)).to.not.be.instanceOf(Error)
    expect(s.inputs).to.have.length(1)
    expect(await readFile(s.inputs[0].file, 'utf8')).to.equal('ok bytes')
    await s.remove()
    await empty()
  })

  it('refuses loopback and private hosts unless the provider allows private addresses, without a request', async () => {
    const before = hits
    for (const url of [`${base}/ok`, `http://localhost:${new URL(base).port}/ok`, 'http://10.1.2.3/x', 'http://[::1]/x', 'http://169.254.169.254/latest/meta-data/', 'http://[::ffff:127.0.0.1]/x']) {
      const e = await stage([{ path: 'a', url, sha256: sha256('ok bytes') }], { dialPrivateAddresses: false }) as InputFailure
      expect(e, url).to.be.instanceOf(InputFailure)
      expect(e.code).to.equal('input-unreachable')
      expect(e.message).to.match(/is a private address/)
    }
    expect(hits).to.equal(before)
    // a name is checked where it is connected to (no second lookup a rebinding DNS could answer
    // differently): one that resolves nowhere is named as such
    const nowhere = await stage([{ path: 'a', url: 'http://mercato-test.invalid/x', sha256: sha256('') }], { dialPrivateAddresses: false }) as InputFailure
    expect(nowhere.code).to.equal('input-unreachable')
    expect(nowhere.message).to.match(/mercato-test\.invalid does not resolve/)
    await empty()
  })

  it('names redirect loops and redirects to data: as input-unreachable', async () => {
    const loop = await stage([{ path: 'a', url: `${base}/loop`, sha256: sha256('') }]) as InputFailure
    expect(loop.code).to.equal('input-unreachable')
    expect(loop.message).to.match(/more than 5 redirects/)
    const data = await stage([{ path: 'a', url: `${base}/to-data`, sha256: sha256('hi') }]) as InputFailure
    expect(data.message).to.match(/redirected to a data: URL/)
    await empty()
  })

  it('stops at a declared Content-Length over the cap without reading the body', async () => {
    const e = await stage([{ path: 'a', url: `${base}/declared-huge`, sha256: sha256('') }]) as InputFailure
    expect(e.code).to.equal('input-too-large')
    await empty()
  })

  it('a gzip bomb (10 KiB on the wire, 10 MiB decoded) is cut at the cap on its decoded bytes', async () => {
    const e = await stage([{ path: 'a', url: `${base}/gzip-bomb`, sha256: sha256('') }]) as InputFailure
    expect(e.code).to.equal('input-too-large')
    await empty()
  })

  it('a size other than the spec names is input-mismatch', async () => {
    const e = await stage([{ path: 'a', url: `${base}/ok`, sha256: sha256('ok bytes'), size: 9 }]) as InputFailure
    expect(e.code).to.equal('input-mismatch')
    expect(e.message).to.match(/8 bytes .* not 9/)
    await empty()
  })

  it('a slow drip is cut at the timeout (input-unreachable); a withdrawn award passes its reason through', async () => {
    const started = Date.now()
    const e = await stage([{ path: 'a', url: `${base}/drip`, sha256: sha256('') }]) as InputFailure
    expect(e.code).to.equal('input-unreachable')
    expect(e.message).to.match(/not fetched within 1000 ms/)
    expect(Date.now() - started).to.be.below(3000)
    const ac = new AbortController()
    setTimeout(() => { ac.abort(new Error('award withdrawn')) }, 200)
    const w = await stage([{ path: 'a', url: `${base}/drip`, sha256: sha256('') }], {}, ac.signal) as Error
    expect(w).to.not.be.instanceOf(InputFailure)
    expect(w.message).to.equal('award withdrawn')
    await empty()
  })
})

describe('provider: bid strategy on input files', () => {
  const ctx: StrategyContext = {
    enabled: true, engines: ['js'], labels: {}, price: 1, maxTimeoutMs: 10_000, maxMemoryMb: 64, maxOutputBytes: 65536, maxModuleBytes: 1 << 24,
    inputsSupported: true, maxInputFiles: 2, maxInputFileBytes: 100, maxInputTotalBytes: 150, freeSlots: 1, isFlagged: () => false
  }
  const offer = (inputs?: unknown[], engine = 'js'): Offer => ({ requester: 'r', maxPrice: 10, spec: { engine, limits: { timeoutMs: 1000, memoryMb: 8, outputBytes: 10 }, ...(inputs != null ? { inputs } : {}) } }) as unknown as Offer
  const blob = (path: string, size: number): unknown => ({ path, cid: 'bafkrei', size })
  const url = (path: string, size?: number): unknown => ({ path, url: 'https://example.org/x', sha256: '0'.repeat(64), ...(size != null ? { size } : {}) })

  it('bids on jobs without inputs, and on inputs within the limits (a URL without a size is checked as it arrives)', () => {
    expect(decide(offer(), ctx)).to.deep.equal({ bid: true })
    expect(decide(offer([blob('a', 100), url('b', 50)]), ctx)).to.deep.equal({ bid: true })
    expect(decide(offer([url('a'), url('b')]), ctx)).to.deep.equal({ bid: true })
  })

  it('declines input-too-large: too many files, a file over the cap, the total over the cap', () => {
    for (const [inputs, why] of [
      [[blob('a', 1), blob('b', 1), blob('c', 1)], /3 input files, over 2/],
      [[blob('a', 101)], /input a of 101 B over 100 B/],
      [[url('a', 101)], /input a of 101 B over 100 B/],
      [[blob('a', 100), url('b', 51)], /inputs of 151 B over 150 B in total/]
    ] as Array<[unknown[], RegExp]>) {
      const d = decide(offer(inputs), ctx) as { bid: false, reason: string, detail: string }
      expect(d.reason).to.equal('input-too-large')
      expect(d.detail).to.match(why)
    }
  })

  it('declines inputs-unsupported on a backend without input files (Slurm)', () => {
    const d = decide(offer([blob('a', 1)]), { ...ctx, inputsSupported: false }) as { bid: false, reason: string }
    expect(d.reason).to.equal('inputs-unsupported')
    expect(decide(offer(), { ...ctx, inputsSupported: false })).to.deep.equal({ bid: true })
  })
})

describe('requester: invitations respect advertised input limits', () => {
  const entry = (inputs?: { files: number, fileBytes: number, totalBytes: number }): BookEntry => ({
    advert: { provider: 'p', engines: ['js'], ask: 1, slots: 1, caps: { timeoutMs: 10_000, memoryMb: 64, outputBytes: 65536 }, ...(inputs != null ? { inputs } : {}) }
  }) as unknown as BookEntry
  const job = (inputs?: unknown[]): InviteJob => ({ id: 'j', maxPrice: 10, need: 1, excluded: new Set(), spec: { engine: 'js', limits: { timeoutMs: 1000, memoryMb: 8, outputBytes: 10 }, ...(inputs != null ? { inputs } : {}) } }) as unknown as InviteJob

  it('invites a provider whose limits the known sizes fit, not one they exceed; an advert without limits is not ruled out', () => {
    const limits = { files: 2, fileBytes: 100, totalBytes: 150 }
    expect(canRun(entry(limits), job())).to.equal(true)
    expect(canRun(entry(limits), job([{ path: 'a', cid: 'x', size: 100 }]))).to.equal(true)
    expect(canRun(entry(limits), job([{ path: 'a', cid: 'x', size: 101 }]))).to.equal(false)
    expect(canRun(entry(limits), job([{ path: 'a', cid: 'x', size: 100 }, { path: 'b', cid: 'y', size: 51 }]))).to.equal(false)
    expect(canRun(entry(limits), job([{ path: 'a' }, { path: 'b' }, { path: 'c' }]))).to.equal(false)
    expect(canRun(entry(), job([{ path: 'a', cid: 'x', size: 1e9 }]))).to.equal(true)
  })
})

describe('wire: a signed offer\'s inputs are checked before use', () => {
  const spec = (inputs: unknown): unknown => ({ engine: 'js', source: '1', args: [], env: {}, limits: { timeoutMs: 1000, memoryMb: 8, outputBytes: 10 }, inputs })
  const cid = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'
  const problem = (inputs: unknown): string | undefined => {
    const r = specSchema.safeParse(spec(inputs))
    return r.success ? undefined : r.error.issues.map(i => i.message).join('; ')
  }

  it('takes blob and URL inputs with plain paths', () => {
    expect(problem([{ path: 'a', cid, size: 1 }, { path: 'd/b', url: 'https://x.org/b', sha256: '0'.repeat(64) }])).to.equal(undefined)
  })

  it('refuses escaping, duplicate and clashing paths, non-http URLs, oversize blobs, too many inputs, too many characters', () => {
    const url = (path: string, u = 'https://x.org/b'): unknown => ({ path, url: u, sha256: '0'.repeat(64) })
    expect(problem([url('../a')])).to.match(/not a plain relative path/)
    expect(problem([url('a/./b')])).to.match(/canonical form/)
    expect(problem([url('a'), url('a')])).to.match(/listed twice/)
    expect(problem([url('a'), url('a/b')])).to.match(/both a file and a directory/)
    expect(problem([url('a', 'file:///etc/passwd')])).to.match(/http/)
    expect(problem([url('a', 'javascript:alert(1)')])).to.match(/http/)
    expect(problem([{ path: 'a', cid, size: MAX_INPUT_BLOB_BYTES + 1 }])).to.match(/Too big|less than or equal/i)
    expect(problem(Array.from({ length: 65 }, (_, i) => url(`f${i}`)))).to.match(/Too big|at most|64/i)
    expect(problem(Array.from({ length: 20 }, (_, i) => url(`f${i}`, `https://x.org/${'a'.repeat(2000)}`)))).to.match(/over 32768/)
    expect(problem([])).to.match(/Too small|at least/i)
  })
})

describe('provider: staging blob inputs', function () {
  this.timeout(20_000)
  let root: string
  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'mercato-stage-blob-')) })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  /** A provider context with its blob store (a blob already held: staging pulls nothing) and a backend that reads in place, or not. */
  const ctx = (blobs: BlobStore, readsInPlace: boolean): ProviderContext => ({
    cfg: { inputsDir: join(root, 'inputs'), inputs: { maxFileBytes: 64 * 1024 * 1024 } },
    log: logger('test:inputs'),
    deps: { blobs },
    backend: { readsInPlace },
    network: {}
  }) as unknown as ProviderContext
  const offer = (cid: string, size: number): Offer => ({ jobId: 'job-stage-blob', spec: { inputs: [{ path: 'in.bin', cid, size }] } }) as unknown as Offer
  const readExtents = async (extents: Array<{ file: string, offset: number, length: number }>): Promise<Buffer> =>
    Buffer.concat(await Promise.all(extents.map(async x => (await readFile(x.file)).subarray(x.offset, x.offset + x.length))))

  it('an executor that reads in place gets ranges of the store\'s packs, no copy; the blob is held and its packs kept until the job is over', async () => {
    const blobs = new BlobStore(join(root, 'blobs'))
    await blobs.start()
    const bytes = randomBytes(3 * 1024 * 1024 + 5)
    const cid = await blobs.putStream([bytes])
    const s = await stageInputs(ctx(blobs, true), offer(cid, bytes.length), 'requester', new AbortController().signal)
    const input = s!.inputs[0] as { path: string, extents: Array<{ file: string, offset: number, length: number }> }
    expect(input.path).to.equal('in.bin')
    expect(input.extents.length).to.be.within(1, 3)
    expect((await readExtents(input.extents)).equals(bytes)).to.equal(true)
    expect(await readdir(s!.dir), 'nothing copied into the job\'s folder').to.deep.equal([])
    // while the job runs, the collector leaves it (held) and its packs stay where the job reads them
    blobs.gc.start({ maxBytes: 0, graceMs: 0, intervalMs: 0 })
    expect((await blobs.gc.collect()).removedBlocks).to.equal(0)
    expect((await readExtents(input.extents)).equals(bytes)).to.equal(true)
    // over: released, cache like any fetched input
    await s!.remove()
    expect((await blobs.gc.collect()).removedBlocks).to.equal(14)
    await blobs.gc.stop()
    expect(await readdir(join(root, 'inputs'))).to.deep.equal([])
  })

  it('an executor that does not (an isolated pool), or a store in memory: the input is copied into the job\'s folder', async () => {
    for (const [blobs, readsInPlace] of [[new BlobStore(join(root, 'blobs')), false], [new BlobStore(), true]] as const) {
      await blobs.start()
      const bytes = randomBytes(600 * 1024)
      const cid = await blobs.putStream([bytes])
      const s = await stageInputs(ctx(blobs, readsInPlace), offer(cid, bytes.length), 'requester', new AbortController().signal)
      const input = s!.inputs[0] as { path: string, file: string }
      expect((await readFile(input.file)).equals(bytes)).to.equal(true)
      await s!.remove()
    }
  })
})

describe('provider: how long a blob input may take to arrive', () => {
  it('a base, plus its bytes at INPUT_FETCH_MIN_BYTES_PER_SEC: a 256 MiB input at most 522 s (a holder dripping 28 KB/s held one for 2.6 h)', () => {
    expect(inputFetchMs(0)).to.equal(INPUT_FETCH_BASE_MS)
    expect(inputFetchMs(INPUT_FETCH_MIN_BYTES_PER_SEC)).to.equal(INPUT_FETCH_BASE_MS + 1000)
    expect(inputFetchMs(256 * 1024 * 1024)).to.equal(522_000)
  })
})
