/**
 * A job of two replicas whose second provider answers late: after the first replica is awarded,
 * the job is announced again for the second. The provider that ran the first is free again and
 * bids at once; its bid cannot win (it has an attempt at the job) and must not close the round,
 * or the late provider's bid is always "for an older offer" and the job fails after four rounds
 * (seen under load in test/auction/inputs.test.ts). In-memory network; the late provider's offers
 * (gossip and direct) reach it 200 ms late, as a loaded machine delays them.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import type { JobView, Market } from '../../src/auction/index.js'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import { waitFor } from '../helpers/nodes.js'
import { MemoryHub } from '../helpers/memory-network.js'
import { delayOffers, startMemoryMarket, stopMemoryMarkets, type MemoryMarket } from '../helpers/memory-market.js'

describe('market: a replica announced again waits for a late provider', function () {
  this.timeout(60_000)
  let executor: Executor
  const started: MemoryMarket[] = []
  let requester: Market
  let fast: string
  let late: string

  before(async () => {
    executor = createExecutor({ poolSize: 2 })
    await executor.start()
    const hub = new MemoryHub()
    const r = await startMemoryMarket(hub, executor)
    started.push(r)
    requester = r.market
    // two slots: the fast provider is free to bid again while (or after) it runs the first replica
    const f = await startMemoryMarket(hub, executor, { price: 1, slots: 2 })
    const l = await startMemoryMarket(hub, executor, { price: 2, slots: 2 })
    started.push(f, l)
    fast = f.peerId
    late = l.peerId
    delayOffers(l.net, 200, { gossip: true })
    await waitFor(() => [fast, late].every(p => requester.providers().some(k => k.peerId === p && k.advert != null)), 20_000)
  })
  after(async () => {
    await stopMemoryMarkets(started)
    await executor.stop()
  })

  it('the bid of the provider that ran the first replica does not close the round; the late one runs the second', async () => {
    for (let i = 0; i < 3; i++) {
      const { id } = await requester.submit({ engine: 'js', source: 'function main (i) { return i.x * 2 }', input: { x: i }, replicas: 2, maxPrice: 50, queueTimeoutMs: 0 })
      let view!: JobView
      await waitFor(async () => { view = await requester.get(id); return ['completed', 'failed', 'no-bids'].includes(view.status) }, 20_000, 10)
      expect(view.status, JSON.stringify(view)).to.equal('completed')
      expect([...view.attempts.map(a => a.provider)].sort()).to.deep.equal([fast, late].sort())
    }
  })
})
