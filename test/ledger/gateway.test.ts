import { expect } from 'chai'
import Fastify, { type FastifyInstance } from 'fastify'
import { randomSigner, signMessage } from '../../src/crypto/index.js'
import { createLedgerAudit, openLedger, type Ledger, type LedgerAudit } from '../../src/ledger/index.js'
import { ledgerRoutes } from '../../src/gateway/routes/ledger.js'
import { MemoryHub } from '../helpers/memory-network.js'

describe('gateway ledger routes', () => {
  let ledger: Ledger
  let app: FastifyInstance
  const cleanup: Array<() => Promise<void>> = []

  beforeEach(async () => {
    const signer = randomSigner()
    const other = randomSigner()
    ledger = await openLedger({ signer })
    for (let i = 0; i < 12; i++) {
      await ledger.append(i % 3 === 0 ? 'bid' : 'job', { jobId: `job-${i % 2}`, i, bid: signMessage(other, 'mercato/v1/bid', { i }), raw: Uint8Array.of(1, 2, 3) })
    }
    app = Fastify()
    await app.register(ledgerRoutes({ ledger }))
  })

  afterEach(async () => {
    await app.close()
    await ledger.close()
    for (const c of cleanup.splice(0)) await c()
  })

  it('GET /v1/ledger pages records as JSON (bytes as base64)', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/ledger?from=2&limit=5' })
    expect(res.statusCode).to.equal(200)
    const body = res.json()
    expect(body.signer).to.equal(ledger.signer)
    expect(body.head).to.deep.equal(ledger.head())
    expect(body.records.map((r: any) => r.seq)).to.deep.equal([2, 3, 4, 5, 6])
    expect(body.next).to.equal(7)
    const r = body.records[1]
    expect(r.id).to.be.a('string')
    expect(Buffer.from(r.sig, 'base64').length).to.equal(64)
    expect(r.body.raw).to.equal('AQID')
    expect(r.body.bid.domain).to.equal('mercato/v1/bid')
    const last = (await app.inject({ method: 'GET', url: '/v1/ledger?from=10' })).json()
    expect(last.records.length).to.equal(2)
    expect(last.next).to.equal(null)
  })

  it('filters by type and job', async () => {
    const bids = (await app.inject({ method: 'GET', url: '/v1/ledger?type=bid' })).json()
    expect(bids.records.map((r: any) => r.seq)).to.deep.equal([0, 3, 6, 9])
    const job1 = (await app.inject({ method: 'GET', url: '/v1/ledger?job=job-1&type=job&limit=3' })).json()
    expect(job1.records.map((r: any) => r.seq)).to.deep.equal([1, 5, 7])
  })

  it('refuses bad queries with a JSON error', async () => {
    for (const url of ['/v1/ledger?from=-1', '/v1/ledger?limit=0', '/v1/ledger?limit=x', '/v1/ledger?type=nope']) {
      const res = await app.inject({ method: 'GET', url })
      expect(res.statusCode, url).to.equal(400)
      expect(res.json().error.code).to.equal('invalid-request')
    }
  })

  it('GET /v1/ledger/verify, /head and /records/:id', async () => {
    const v = (await app.inject({ method: 'GET', url: '/v1/ledger/verify' })).json()
    expect(v).to.include({ ok: true, count: 12, headId: ledger.head().id, signer: ledger.signer })
    expect((await app.inject({ method: 'GET', url: '/v1/ledger/head' })).json()).to.deep.equal({ signer: ledger.signer, ...ledger.head() })
    const byId = await app.inject({ method: 'GET', url: `/v1/ledger/records/${ledger.head().id as string}` })
    expect(byId.json().seq).to.equal(11)
    expect((await app.inject({ method: 'GET', url: '/v1/ledger/records/3' })).json().seq).to.equal(3)
    const missing = await app.inject({ method: 'GET', url: '/v1/ledger/records/bafynope' })
    expect(missing.statusCode).to.equal(404)
    expect(missing.json().error.code).to.equal('not-found')
  })

  it('GET /v1/ledger/audit/:peer: 503 without the audit service, a verdict with it', async () => {
    const res = await app.inject({ method: 'GET', url: `/v1/ledger/audit/${ledger.signer}` })
    expect(res.statusCode).to.equal(503)
    expect(res.json().error.code).to.equal('unavailable')

    const hub = new MemoryHub()
    const mk = async (l: Ledger, signer = randomSigner()): Promise<LedgerAudit> => {
      const a = createLedgerAudit({ ledger: l, network: hub.createNode(signer.peerId), signer })
      await a.start()
      cleanup.push(async () => { await a.stop() })
      return a
    }
    const aSigner = randomSigner()
    const aLedger = await openLedger({ signer: aSigner })
    cleanup.push(async () => { await aLedger.close() })
    for (let i = 0; i < 5; i++) await aLedger.append('job', { i })
    await mk(aLedger, aSigner)
    const bSigner = randomSigner()
    const bLedger = await openLedger({ signer: bSigner })
    cleanup.push(async () => { await bLedger.close() })
    const bAudit = await mk(bLedger, bSigner)
    const app2 = Fastify()
    cleanup.push(async () => { await app2.close() })
    await app2.register(ledgerRoutes({ ledger: bLedger, audit: bAudit }))
    const ok = await app2.inject({ method: 'GET', url: `/v1/ledger/audit/${aSigner.peerId}` })
    expect(ok.statusCode).to.equal(200)
    expect(ok.json()).to.include({ peer: aSigner.peerId, ok: true, count: 5, headId: aLedger.head().id, flagged: false })
    const bad = await app2.inject({ method: 'GET', url: '/v1/ledger/audit/not-a-peer' })
    expect(bad.statusCode).to.equal(400)
    expect(bad.json().error.code).to.equal('invalid-peer')
    const gone = await app2.inject({ method: 'GET', url: `/v1/ledger/audit/${randomSigner().peerId}` })
    expect(gone.statusCode).to.equal(502)
    expect(gone.json().error.code).to.equal('peer-unreachable')
    expect((await app2.inject({ method: 'GET', url: '/v1/ledger/flagged' })).json()).to.deep.equal({ flagged: [] })
  })
})
