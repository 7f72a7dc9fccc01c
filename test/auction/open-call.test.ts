/**
 * An open call (the book too thin to invite) reaches the book's providers that are not on the jobs
 * topic yet: in a mesh a second old a provider's subscription may not have reached the requester,
 * and the call used to close on the bids of the providers that had; nor on a dearer provider's bid
 * while a cheaper one of the book is still to answer. In-memory network.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import type { JobView, Market } from '../../src/auction/index.js'
import { INVITE_ANSWER_GRACE_MS, JOBS_TOPIC } from '../../src/auction/constants.js'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import { waitFor } from '../helpers/nodes.js'
import { MemoryHub } from '../helpers/memory-network.js'
import { delayOffers, startMemoryMesh, stopMemoryMarkets, type MemoryMarket } from '../helpers/memory-market.js'

describe('market: an open call reaches the providers the book holds', function () {
  this.timeout(30_000)
  let executor: Executor
  const started: MemoryMarket[] = []
  before(async () => {
    executor = createExecutor({ poolSize: 1 })
    await executor.start()
  })
  after(async () => {
    await stopMemoryMarkets(started)
    await executor?.stop()
  })

  it('a cheaper provider known only from its advert (not on the jobs topic) gets the offer directly, is waited for, and wins', async () => {
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

  it('a cheaper book provider that answers after the bid window is waited for (up to INVITE_CHEAPER_WAIT_MS) and wins, not the dearer one that answered first', async () => {
    const { requester: r, providers: [b, c] } = await startMemoryMesh(new MemoryHub(), executor, started, [{ price: 5 }, { price: 3 }])
    // c's offers arrive 300 ms late, directly and by gossip (a loaded machine); the window is 50 ms
    delayOffers(c.net, 300, { gossip: true })
    const t0 = Date.now()
    const { id } = await r.market.submit({ engine: 'js', source: 'function main (i) { return i + 1 }', input: 1, maxPrice: 50, queueTimeoutMs: 0 })
    let view!: JobView
    await waitFor(async () => { view = await r.market.get(id); return ['completed', 'failed', 'no-bids'].includes(view.status) }, 20_000, 10)
    expect(view.status, JSON.stringify(view)).to.equal('completed')
    expect(view.bids.map(x => x.provider)).to.include.members([b.peerId, c.peerId])
    expect(view.provider, 'the cheaper provider won').to.equal(c.peerId)
    expect(Date.now() - t0, 'waited for c, not for the whole INVITE_CHEAPER_WAIT_MS and more').to.be.below(5_000)
    // both answered: neither is struck in the book once the answer grace is over (a silent one would be)
    await new Promise(resolve => setTimeout(resolve, INVITE_ANSWER_GRACE_MS + 300))
    const strikes = Object.fromEntries(r.market.providers().filter(p => p.advert != null).map(p => [p.peerId === c.peerId ? 'c' : 'b', p.advert?.strikes]))
    expect(strikes).to.deep.equal({ b: 0, c: 0 })
  })
})
