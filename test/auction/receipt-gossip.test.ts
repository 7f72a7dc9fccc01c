/**
 * Receipts are gossiped in batches, gathered for longer in a larger mesh, so what the receipts
 * topic costs each node stays flat as the mesh grows. In-memory network.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { randomSigner } from '../../src/crypto/index.js'
import { ADVERTS_TOPIC, RECEIPTS_TOPIC } from '../../src/auction/index.js'
import { RECEIPT_GOSSIP_DELAY_MS, RECEIPT_GOSSIP_MAX_DELAY_MS, RECEIPT_MESH_FREE } from '../../src/auction/constants.js'
import { encodeBatch, sign } from '../../src/auction/protocol/messages.js'
import { receiptGossipDelayMs } from '../../src/auction/requester/settle.js'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import { waitFor } from '../helpers/nodes.js'
import { MemoryHub } from '../helpers/memory-network.js'
import { startMemoryMesh, stopMemoryMarkets, type MemoryMarket } from '../helpers/memory-market.js'

describe('market: receipt gossip is gathered for longer in a larger mesh', function () {
  this.timeout(30_000)
  let executor: Executor | undefined
  const started: MemoryMarket[] = []
  after(async () => {
    await stopMemoryMarkets(started)
    await executor?.stop()
  })

  it('the rule: a second up to RECEIPT_MESH_FREE nodes, then in proportion, at most RECEIPT_GOSSIP_MAX_DELAY_MS', () => {
    expect(receiptGossipDelayMs(1)).to.equal(RECEIPT_GOSSIP_DELAY_MS)
    expect(receiptGossipDelayMs(RECEIPT_MESH_FREE)).to.equal(RECEIPT_GOSSIP_DELAY_MS)
    expect(receiptGossipDelayMs(4 * RECEIPT_MESH_FREE)).to.equal(4 * RECEIPT_GOSSIP_DELAY_MS)
    expect(receiptGossipDelayMs(5000)).to.equal(RECEIPT_GOSSIP_MAX_DELAY_MS)
    // batches a node hears per second from a mesh where one node in fifty submits: flat past RECEIPT_MESH_FREE
    const perNode = (n: number): number => (n / 50) / (receiptGossipDelayMs(n) / 1000)
    expect(perNode(60)).to.be.closeTo(perNode(120), 1e-9)
  })

  it('a requester whose book holds 60 providers gossips a receipt about 4 s after the job, not 1 s', async () => {
    executor = createExecutor({ poolSize: 1 })
    await executor.start()
    const hub = new MemoryHub()
    const { requester: r } = await startMemoryMesh(hub, executor, started, [{ price: 2 }])
    // 59 more providers in the book (wasm only: they take no part in a js job)
    const crowd = hub.createNode(randomSigner().peerId)
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
    const receiptsFromR = (): number => hub.gossipLog.filter(g => g.topic === RECEIPTS_TOPIC && g.from === r.peerId).length
    const before = receiptsFromR()
    const { id } = await r.market.submit({ engine: 'js', source: 'function main (i) { return i + 1 }', input: 1, maxPrice: 50, queueTimeoutMs: 0 })
    const done = await r.market.waitFor(id, { signal: AbortSignal.timeout(20_000) })
    expect(done.status).to.equal('completed')
    const settledAt = Date.now()
    await waitFor(() => receiptsFromR() > before, 20_000, 20)
    // a lower bound only: a loaded machine can make it later, never earlier
    expect(Date.now() - settledAt).to.be.at.least(wait - 1000)
  })
})
