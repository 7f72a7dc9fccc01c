import '../../src/polyfill.js'
import { expect } from 'chai'
import { JOBS_TOPIC, rankBids, settlementPrice, type Bid, type Award, type Signed } from '../../src/auction/index.js'
import { messageId } from '../../src/crypto/index.js'
import type { MercatoNode } from '../../src/node.js'
import { startLiarAndTwoHonest, startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'

const JS_DOUBLE = 'function main (input) { console.log("doubling", input.x); return { y: input.x * 2 } }'

describe('market: five nodes, three providers', function () {
  this.timeout(60_000)
  let nodes: MercatoNode[] = []
  let requester: MercatoNode
  let cheap: MercatoNode, middle: MercatoNode, dear: MercatoNode

  before(async () => {
    requester = await startTestNode({ provide: false })
    const boot = [requester.network.addresses()[0]]
    const other = await startTestNode({ provide: false, bootstrap: boot })
    ;[cheap, middle, dear] = await Promise.all([
      startTestNode({ price: 3, bootstrap: boot }),
      startTestNode({ price: 5, bootstrap: boot }),
      startTestNode({ price: 8, bootstrap: boot })
    ])
    nodes = [requester, other, cheap, middle, dear]
    // every node relays the jobs topic (providers or not): wait for the three providers by name
    await waitFor(() => [cheap, middle, dear].every(p => requester.network.topicPeers(JOBS_TOPIC).includes(p.peerId)), 15_000)
  })
  after(stopNodes)

  it('the cheapest provider wins, is paid the second price, and the award re-checks', async () => {
    const submitted = await requester.market.submit({ engine: 'js', source: JS_DOUBLE, input: { x: 21 }, maxPrice: 20, bidWindowMs: 3000 })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(20_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect(job.provider).to.equal(cheap.peerId)
    expect(job.price).to.equal(5)
    expect(job.bids.map(b => b.price)).to.deep.equal([3, 5, 8])
    const result = await requester.market.result(job.id)
    expect(result.output).to.deep.equal({ y: 42 })
    expect(result.stdout).to.equal('doubling 21\n')
    expect(result.provider).to.equal(cheap.peerId)

    // the award lists every bid considered; re-run the winner rule from the log alone
    const records = await requester.ledger.byJob(job.id)
    const bidRecords = records.filter(r => r.type === 'bid')
    expect(bidRecords).to.have.length(1) // one record holds every bid of the round
    const bids = (bidRecords[0].body as any).bids as Array<Signed<Bid>>
    const award = records.find(r => r.type === 'award')?.body.award as Signed<Award>
    expect(bids).to.have.length(3)
    expect(award.payload.bids).to.deep.equal(bids.map(b => messageId(b)).sort())
    const ranked = rankBids(job.id, bids.map(b => ({ provider: b.signer, price: b.payload.price, estStartMs: b.payload.estStartMs, id: messageId(b) })))
    expect(ranked[0].provider).to.equal(award.payload.provider)
    expect(ranked[0].id).to.equal(award.payload.bidId)
    expect(settlementPrice(ranked, 1, 0, 20)).to.equal(award.payload.price)

    // both parties' logs hold every step; every log verifies
    const types = records.map(r => r.type)
    for (const t of ['job', 'offer', 'bid', 'award', 'accept', 'result', 'receipt']) expect(types, `requester ${t}`).to.include(t)
    await waitFor(async () => (await cheap.ledger.byJob(job.id)).some(r => r.type === 'receipt'), 5000)
    const winnerTypes = (await cheap.ledger.byJob(job.id)).map(r => r.type)
    for (const t of ['bid', 'award', 'accept', 'result', 'receipt']) expect(winnerTypes, `provider ${t}`).to.include(t)
    const loserRecords = await dear.ledger.byJob(job.id)
    expect(loserRecords.map(r => r.type)).to.not.include('award')
    const loserBid = loserRecords.find(r => r.type === 'bid')
    expect((loserBid?.body as any).offerId).to.equal(award.payload.offerId) // names the offer it answered
    expect((loserBid?.body as any).bid.signer).to.equal(dear.peerId)
    const winnerAward = (await cheap.ledger.byJob(job.id)).find(r => r.type === 'award')
    expect((winnerAward?.body as any).offer.signer).to.equal(requester.peerId) // the winner keeps the signed offer
    for (const n of nodes) {
      const report = await n.ledger.verify()
      expect(report.ok, JSON.stringify(report)).to.equal(true)
    }
    // balances follow the receipt
    await waitFor(() => cheap.market.balance().earned === 5, 5000)
    expect(requester.market.balance().spent).to.equal(5)
  })

  it('no capable provider: the job ends no-bids with each provider\'s reason', async () => {
    const submitted = await requester.market.submit({ engine: 'js', source: JS_DOUBLE, input: { x: 1 }, limits: { memoryMb: 4096 }, queueTimeoutMs: 0 })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(20_000) })
    expect(job.status).to.equal('no-bids')
    expect(job.declines).to.have.length(3)
    expect(new Set(job.declines.map(d => d.provider))).to.deep.equal(new Set([cheap.peerId, middle.peerId, dear.peerId]))
    for (const d of job.declines) expect(d.reason).to.equal('memory-over-cap')
    const tooCheap = await requester.market.submit({ engine: 'js', source: JS_DOUBLE, input: { x: 1 }, maxPrice: 1, queueTimeoutMs: 0 })
    const job2 = await requester.market.waitFor(tooCheap.id, { signal: AbortSignal.timeout(20_000) })
    expect(job2.status).to.equal('no-bids')
    expect(job2.declines.map(d => d.reason)).to.deep.equal(['price', 'price', 'price'])
  })

  it('a cancel during the bid window sticks: no award, no payment', async () => {
    const submitted = await requester.market.submit({ engine: 'js', source: JS_DOUBLE, input: { x: 2 }, bidWindowMs: 300 })
    await requester.market.cancel(submitted.id)
    await new Promise(resolve => setTimeout(resolve, 800))
    const job = await requester.market.get(submitted.id)
    expect(job.status).to.equal('cancelled')
    expect(job.attempts.filter(a => a.state !== 'cancelled')).to.deep.equal([])
    const records = await requester.ledger.byJob(submitted.id)
    expect(records.filter(r => r.type === 'receipt')).to.deep.equal([])
  })

  it('a wasm module travels by CID over the blob protocol', async () => {
    const { readFile } = await import('node:fs/promises')
    const wasm = new Uint8Array(await readFile(new URL('../fixtures/wasm/hello.wasm', import.meta.url)))
    const cid = await requester.market.uploadBlob(wasm)
    const submitted = await requester.market.submit({ engine: 'wasm', module: cid, args: ['world'] })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(20_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    const result = await requester.market.result(job.id)
    expect(result.exitCode).to.equal(0)
    expect(result.stdout).to.match(/world/)
    expect(await cheap.market.getBlob(cid) != null).to.equal(true)
  })

  it('a module uploaded as a multi-block UnixFS DAG (dag-pb CID) runs like any other', async () => {
    const { readFile } = await import('node:fs/promises')
    const hello = new Uint8Array(await readFile(new URL('../fixtures/wasm/hello.wasm', import.meta.url)))
    // pad the module past one 256 KiB chunk with a custom section (id 0, LEB128 size, name "pad")
    const pad = new Uint8Array(300 * 1024)
    const body = new Uint8Array([3, ...new TextEncoder().encode('pad'), ...pad])
    const leb: number[] = []
    for (let n = body.length; ; n >>>= 7) { const byte = n & 0x7f; if (n >>> 7 === 0) { leb.push(byte); break } leb.push(byte | 0x80) }
    const wasm = new Uint8Array([...hello, 0, ...leb, ...body])
    const { cid, size } = await requester.market.uploadBlobStream((async function * () { yield wasm })())
    expect(size).to.equal(wasm.length)
    expect(cid).to.match(/^bafybei/) // dag-pb root over 256 KiB raw leaves
    const submitted = await requester.market.submit({ engine: 'wasm', module: cid, args: ['dag'] })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(20_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect((await requester.market.result(job.id)).stdout).to.match(/dag/)
  })
})

describe('market: replicas', function () {
  this.timeout(60_000)
  after(stopNodes)

  it('replicas that disagree with no one left to break the tie end failed, not stuck', async () => {
    const requester = await startTestNode({ provide: false, config: { auction: { maxAttempts: 2 } } })
    const boot = [requester.network.addresses()[0]]
    await Promise.all([
      startTestNode({ price: 1, bootstrap: boot, corruptResults: true }),
      startTestNode({ price: 2, bootstrap: boot })
    ])
    await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).length === 2, 15_000)
    const submitted = await requester.market.submit({ engine: 'js', source: JS_DOUBLE, input: { x: 1 }, replicas: 2, maxPrice: 10, bidWindowMs: 500 })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(30_000) })
    expect(job.status, JSON.stringify(job)).to.equal('failed')
    await stopNodes()
  })

  it('replicas 3 with one lying provider: the majority wins, the liar gets a mismatch record', async () => {
    const { requester, liar, honest1, honest2 } = await startLiarAndTwoHonest()
    const submitted = await requester.market.submit({ engine: 'js', source: JS_DOUBLE, input: { x: 5 }, replicas: 3, maxPrice: 10, bidWindowMs: 3000 })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(20_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    const result = await requester.market.result(job.id)
    expect(result.stdout).to.equal('doubling 5\n')
    expect(result.providers).to.have.length.greaterThanOrEqual(2)
    for (const p of result.providers) expect([honest1.peerId, honest2.peerId]).to.include(p)
    // the liar's replica may finish after the quorum is in: it is judged when it does
    await waitFor(async () => (await requester.ledger.byJob(job.id)).some(r => r.type === 'mismatch'), 10_000)
    const records = await requester.ledger.byJob(job.id)
    const mismatches = records.filter(r => r.type === 'mismatch')
    expect(mismatches).to.have.length(1)
    expect(mismatches[0].body.provider).to.equal(liar.peerId)
    const paid = records.filter(r => r.type === 'receipt' && (r.body as any).receipt.payload.status === 'paid')
    expect(paid.map(r => (r.body as any).receipt.payload.provider).sort()).to.deep.equal([honest1.peerId, honest2.peerId].sort())
    expect(requester.market.reputation.get(liar.peerId).mismatched).to.equal(1)
  })
})
