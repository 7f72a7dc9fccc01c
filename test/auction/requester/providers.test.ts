/**
 * The requester's provider list (`GET /v1/providers`, the dashboard's asks): a bidder's last ask
 * and engines are remembered as its bids arrive, not found again by scanning every job held in
 * memory (that scan ran at each finished job, over up to FINISHED_JOBS_IN_MEMORY jobs). In-memory network.
 */
import '../../../src/polyfill.js'
import { expect } from 'chai'
import { createExecutor, type Executor } from '../../../src/executor/index.js'
import { waitFor } from '../../helpers/nodes.js'
import { MemoryHub } from '../../helpers/memory-network.js'
import { startMemoryMarket, stopMemoryMarkets, type MemoryMarket } from '../../helpers/memory-market.js'

describe('requester: the provider list', function () {
  this.timeout(60_000)
  let executor: Executor
  const started: MemoryMarket[] = []
  after(async () => { await stopMemoryMarkets(started); await executor?.stop() })

  it("keeps each bidder's last ask and engines after the jobs it bid on have left memory", async () => {
    executor = createExecutor({ poolSize: 1 })
    await executor.start()
    const hub = new MemoryHub()
    // no finished job stays in memory: the list cannot come from the jobs
    const requester = await startMemoryMarket(hub, executor, { requester: { finishedJobsInMemory: 0, minBids: 2, bidWindowMs: 2000 } })
    started.push(requester)
    const cheap = await startMemoryMarket(hub, executor, { price: 2 })
    const dear = await startMemoryMarket(hub, executor, { price: 4 })
    started.push(cheap, dear)
    for (let i = 0; i < 2; i++) {
      const { id } = await requester.market.submit({ engine: 'js', source: 'function main (i) { return i + 1 }', input: i, maxPrice: 10, queueTimeoutMs: 0 })
      const done = await requester.market.waitFor(id, { signal: AbortSignal.timeout(20_000) })
      expect(done.status).to.equal('completed')
      expect(done.bids.length).to.equal(2)
    }
    await waitFor(() => requester.market.list({}).length === 0, 5000)
    const listed = new Map(requester.market.providers().map(p => [p.peerId, p]))
    expect(listed.get(cheap.peerId)?.lastAsk).to.equal(2)
    expect(listed.get(dear.peerId)?.lastAsk).to.equal(4)
    expect(listed.get(dear.peerId)?.engines).to.deep.equal(['js'])
  })
})
