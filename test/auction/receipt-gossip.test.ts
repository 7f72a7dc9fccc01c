/**
 * Receipts are gossiped in batches, gathered for longer in a larger mesh, so what the receipts
 * topic costs each node stays flat as the mesh grows. In-memory network.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { randomSigner } from '../../src/crypto/index.js'
import { ADVERTS_TOPIC, RECEIPTS_TOPIC } from '../../src/auction/index.js'
import { RECEIPT_BATCHES_PER_SEC, RECEIPT_GOSSIP_BOOK_MAX_DELAY_MS, RECEIPT_GOSSIP_DELAY_MS, RECEIPT_GOSSIP_MAX_DELAY_MS, RECEIPT_MESH_FREE } from '../../src/auction/constants.js'
import { encodeBatch, sign } from '../../src/auction/protocol/messages.js'
import { RecentPublishers, receiptGossipDelayMs } from '../../src/auction/requester/settle.js'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import { waitFor } from '../helpers/nodes.js'
import { MemoryHub } from '../helpers/memory-network.js'
import { startMemoryMesh, stopMemoryMarkets, type MemoryMarket } from '../helpers/memory-market.js'

describe('market: receipt gossip is gathered for longer in a larger mesh', function () {
  this.timeout(60_000)
  let executor: Executor | undefined
  const started: MemoryMarket[] = []
  after(async () => {
    await stopMemoryMarkets(started)
    await executor?.stop()
  })

  /** A requester and one provider on a fresh in-memory hub, and a raw node on it to publish with. */
  async function mesh (): Promise<{ hub: MemoryHub, r: MemoryMarket, crowd: ReturnType<MemoryHub['createNode']> }> {
    if (executor == null) {
      executor = createExecutor({ poolSize: 1 })
      await executor.start()
    }
    const hub = new MemoryHub()
    const { requester: r } = await startMemoryMesh(hub, executor, started, [{ price: 2 }])
    return { hub, r, crowd: hub.createNode(randomSigner().peerId) }
  }

  /** Run a job on `r`; how long after it settled `r` gossiped its receipt. */
  async function receiptDelay (hub: MemoryHub, r: MemoryMarket): Promise<number> {
    const receiptsFromR = (): number => hub.gossipLog.filter(g => g.topic === RECEIPTS_TOPIC && g.from === r.peerId).length
    const before = receiptsFromR()
    const { id } = await r.market.submit({ engine: 'js', source: 'function main (i) { return i + 1 }', input: 1, maxPrice: 50, queueTimeoutMs: 0 })
    const done = await r.market.waitFor(id, { signal: AbortSignal.timeout(20_000) })
    expect(done.status).to.equal('completed')
    const settledAt = Date.now()
    await waitFor(() => receiptsFromR() > before, 30_000, 20)
    return Date.now() - settledAt
  }

  it('the rule: a second up to RECEIPT_MESH_FREE nodes, then in proportion, at most RECEIPT_GOSSIP_BOOK_MAX_DELAY_MS', () => {
    expect(receiptGossipDelayMs(1)).to.equal(RECEIPT_GOSSIP_DELAY_MS)
    expect(receiptGossipDelayMs(RECEIPT_MESH_FREE)).to.equal(RECEIPT_GOSSIP_DELAY_MS)
    expect(receiptGossipDelayMs(4 * RECEIPT_MESH_FREE)).to.equal(4 * RECEIPT_GOSSIP_DELAY_MS)
    expect(receiptGossipDelayMs(5000)).to.equal(RECEIPT_GOSSIP_BOOK_MAX_DELAY_MS)
    // batches a node hears per second from a mesh where one node in fifty submits: flat past RECEIPT_MESH_FREE
    const perNode = (n: number): number => (n / 50) / (receiptGossipDelayMs(n) / 1000)
    expect(perNode(60)).to.be.closeTo(perNode(120), 1e-9)
  })

  it('and at least the other publishers / RECEIPT_BATCHES_PER_SEC: the batches of all requesters together stay flat, up to RECEIPT_GOSSIP_MAX_DELAY_MS', () => {
    // alone, or with one other: the book decides, as before
    expect(receiptGossipDelayMs(1, 1)).to.equal(RECEIPT_GOSSIP_DELAY_MS)
    expect(receiptGossipDelayMs(5000, 1)).to.equal(RECEIPT_GOSSIP_BOOK_MAX_DELAY_MS)
    expect(receiptGossipDelayMs(1, 2)).to.equal(1000 / RECEIPT_BATCHES_PER_SEC)
    expect(receiptGossipDelayMs(1000, 21)).to.equal(20_000 / RECEIPT_BATCHES_PER_SEC)
    expect(receiptGossipDelayMs(1000, 10_000)).to.equal(RECEIPT_GOSSIP_MAX_DELAY_MS)
    // what a node hears from p requesters that each have receipts at all times: between the target and twice it
    const batchesPerSec = (p: number): number => p / (receiptGossipDelayMs(1000, p) / 1000)
    for (const p of [6, 20, 30]) expect(batchesPerSec(p)).to.be.within(RECEIPT_BATCHES_PER_SEC * 0.99, 2 * RECEIPT_BATCHES_PER_SEC)
  })

  it('RecentPublishers: counts who was heard within the window, itself included, bounded, the least recently heard forgotten first', () => {
    const p = new RecentPublishers(1000, 3)
    expect(p.count('me', 0)).to.equal(1)
    expect(p.count(undefined, 0)).to.equal(0)
    p.heard('a', 0)
    p.heard('b', 500)
    expect(p.count('me', 600)).to.equal(3)
    p.heard('me', 700)
    expect(p.count('me', 800)).to.equal(3) // heard, not counted twice
    expect(p.count('me', 1200)).to.equal(2) // 'a' is out of the window
    p.heard('b', 1300) // heard again: the newest
    p.heard('c', 1400)
    p.heard('d', 1450) // past the bound: 'me' (heard least recently) goes
    expect(p.count(undefined, 1500)).to.equal(3)
    expect(p.count('me', 1500)).to.equal(4)
    expect(p.count(undefined, 2320)).to.equal(2) // 'b' at 1300 is out
  })

  it('a requester that hears three other requesters publish receipts gathers its own for 6 s', async () => {
    const { hub, r, crowd } = await mesh()
    crowd.subscribe(RECEIPTS_TOPIC, () => {})
    const others = [randomSigner(), randomSigner(), randomSigner()]
    for (const [i, s] of others.entries()) {
      await crowd.publish(RECEIPTS_TOPIC, encodeBatch([sign(s, 'receipt', {
        v: 1, jobId: `bafyreiotherrequester${i}otherrequesterotherrequesterother`, requester: s.peerId, provider: randomSigner().peerId, resultId: 'bafyreiresultresultresultresultresultresultresultresultres', resultHash: '0'.repeat(64), price: 1, status: 'paid', ts: Date.now()
      })]))
    }
    const wait = receiptGossipDelayMs(2, 4)
    expect(wait).to.equal(3000 / RECEIPT_BATCHES_PER_SEC)
    // a lower bound only: a loaded machine can make it later, never earlier
    expect(await receiptDelay(hub, r)).to.be.at.least(wait - 1000)
  })

  it('a requester whose book holds 60 providers gossips a receipt about 4 s after the job, not 1 s', async () => {
    const { hub, r, crowd } = await mesh()
    // 59 more providers in the book (wasm only: they take no part in a js job)
    crowd.subscribe(ADVERTS_TOPIC, () => {})
    for (let i = 0; i < 59; i++) {
      const s = randomSigner()
      const now = Date.now()
      await crowd.publish(ADVERTS_TOPIC, encodeBatch([sign(s, 'advert', {
        v: 1, provider: s.peerId, engines: ['wasm'], ask: 1, slots: 1, caps: { timeoutMs: 60_000, memoryMb: 512, outputBytes: 1 << 20 }, addrs: [], seq: now, ts: now, expires: now + 120_000
      })]))
    }
    await waitFor(() => r.market.providers().filter(x => x.advert != null).length >= 60, 20_000)
    const wait = receiptGossipDelayMs(61)
    expect(wait).to.be.greaterThan(3 * RECEIPT_GOSSIP_DELAY_MS)
    // a lower bound only: a loaded machine can make it later, never earlier
    expect(await receiptDelay(hub, r)).to.be.at.least(wait - 1000)
  })
})
