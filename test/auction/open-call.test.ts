/**
 * An open call (the book too thin to invite) reaches the book's providers that are not on the jobs
 * topic yet: in a mesh a second old a provider's subscription may not have reached the requester,
 * and the call used to close on the bids of the providers that had. In-memory network.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import type { JobView, Market } from '../../src/auction/index.js'
import { JOBS_TOPIC } from '../../src/auction/constants.js'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import { waitFor } from '../helpers/nodes.js'
import { MemoryHub } from '../helpers/memory-network.js'
import { startMemoryMesh, stopMemoryMarkets, type MemoryMarket } from '../helpers/memory-market.js'

describe('market: an open call reaches the providers the book holds', function () {
  this.timeout(30_000)
  let executor: Executor
  const started: MemoryMarket[] = []
  after(async () => {
    await stopMemoryMarkets(started)
    await executor?.stop()
  })

  it('a cheaper provider known only from its advert (not on the jobs topic) gets the offer directly, is waited for, and wins', async () => {
    executor = createExecutor({ poolSize: 1 })
    await executor.start()
    const { requester: r, providers: [b, c] } = await startMemoryMesh(new MemoryHub(), executor, started, [{ price: 5 }, { price: 3 }])
    const requester: Market = r.market
    // c is off the jobs topic: gossip does not reach it, and the requester does not count it as a topic peer
    c.net.unsubscribe(JOBS_TOPIC)
    expect(r.net.topicPeers(JOBS_TOPIC)).to.not.include(c.peerId)
    const { id } = await requester.submit({ engine: 'js', source: 'function main (i) { return i + 1 }', input: 1, maxPrice: 50, queueTimeoutMs: 0 })
    let view!: JobView
    await waitFor(async () => { view = await requester.get(id); return ['completed', 'failed', 'no-bids'].includes(view.status) }, 20_000, 10)
    expect(view.status, JSON.stringify(view)).to.equal('completed')
    expect(view.bids.map(x => x.provider)).to.include(c.peerId)
    expect(view.provider, 'the cheaper provider won').to.equal(c.peerId)
  })
})
