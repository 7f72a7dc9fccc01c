/**
 * The requester's gossiped offers: one job alone goes out on the next turn of the event loop; while
 * other auctions are open, offers wait OFFER_BATCH_DELAY_MS so that one gossip message carries
 * several. In-memory network, no provider: every job is an open call.
 */
import '../../../src/polyfill.js'
import { expect } from 'chai'
import { JOBS_TOPIC } from '../../../src/auction/index.js'
import { createExecutor, type Executor } from '../../../src/executor/index.js'
import { MemoryHub } from '../../helpers/memory-network.js'
import { startMemoryMarket, stopMemoryMarkets, type MemoryMarket } from '../../helpers/memory-market.js'

const JOB = { engine: 'js' as const, source: 'function main (i) { return i }', input: 1, maxPrice: 10, queueTimeoutMs: 0 }

describe('requester: gossiped offers', function () {
  this.timeout(30_000)
  let executor: Executor
  const started: MemoryMarket[] = []
  after(async () => { await stopMemoryMarkets(started); await executor?.stop() })

  it('a lone open call is published on the next turn; offers made while others are open are batched', async () => {
    executor = createExecutor({ poolSize: 1 })
    await executor.start()
    const hub = new MemoryHub()
    // a long bid window: the first auction stays open while the next jobs are announced
    const requester = await startMemoryMarket(hub, executor, { requester: { bidWindowMs: 3000, minBids: 1 } })
    started.push(requester)
    const published: number[] = []
    const publish = requester.net.publish.bind(requester.net)
    requester.net.publish = async (topic: string, data: Uint8Array): Promise<number> => {
      if (topic === JOBS_TOPIC) published.push(data.length)
      return await publish(topic, data)
    }
    // the offer joins the batch right after its 'announced' event, in the same turn: a check queued
    // (setImmediate) once that turn's code is done runs after the batch's own setImmediate, and
    // before any timer (a held batch's setTimeout) could fire
    const announcedThenTurn = async (): Promise<number> => await new Promise((resolve) => {
      const onEvent = (e: { type: string }): void => {
        if (e.type !== 'announced') return
        requester.market.events.off('job', onEvent)
        queueMicrotask(() => { setImmediate(() => { resolve(published.length) }) })
      }
      requester.market.events.on('job', onEvent)
    })
    const first = announcedThenTurn()
    await requester.market.submit(JOB)
    // published on the next turn, not held OFFER_BATCH_DELAY_MS (it was, before: one auction open, its own)
    expect(await first).to.equal(1)

    // the first auction is open: two more offers made in one turn wait and leave together
    const before = published.length
    await Promise.all([requester.market.submit({ ...JOB, input: 2 }), requester.market.submit({ ...JOB, input: 3 })])
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(published.length - before).to.equal(1)
  })
})
