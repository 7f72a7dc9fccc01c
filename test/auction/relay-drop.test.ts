/**
 * An award channel that rides a relay dies with the relay while the provider
 * lives on (behind its NAT, reachable through another relay). The requester
 * follows the job by status polls instead of handing it over, and collects
 * the provider's result; a provider that is really gone is still handed
 * over. On a direct channel a drop means the provider is gone: handed over
 * at once, as before. In-memory network: `dropChannels` resets the channels
 * between two nodes and leaves them reachable.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import type { JobEvent, JobView, Market } from '../../src/auction/index.js'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import { waitFor } from '../helpers/nodes.js'
import { MemoryHub } from '../helpers/memory-network.js'
import { startMemoryMarket, stopMemoryMarkets, type MemoryMarket } from '../helpers/memory-market.js'

// runs a second or two: long enough to cut its channel while it runs
const SLOW = { engine: 'js' as const, source: 'function main () { let s = 0; for (let i = 0; i < 20000000; i++) s = (s + i) % 1000003; return s }', maxPrice: 50, queueTimeoutMs: 0, limits: { timeoutMs: 30_000, memoryMb: 64, outputBytes: 65536 } }

describe('market: an award channel that dies with its relay', function () {
  this.timeout(90_000)
  let executor: Executor
  const started: MemoryMarket[] = []

  before(async () => {
    executor = createExecutor({ poolSize: 1 })
    await executor.start()
  })
  after(async () => { await executor.stop() })
  afterEach(async () => { await stopMemoryMarkets(started) })

  async function pair (relayedChannels: boolean): Promise<{ hub: MemoryHub, requester: Market, requesterId: string, providerId: string }> {
    const hub = new MemoryHub({ relayedChannels, dialable: true })
    const requester = await startMemoryMarket(hub, executor)
    const provider = await startMemoryMarket(hub, executor, { price: 1, maxTimeoutMs: 30_000 })
    started.push(requester, provider)
    return { hub, requester: requester.market, requesterId: requester.peerId, providerId: provider.peerId }
  }

  /** Submit, cut the channels once the job runs, and wait for the end. */
  async function runAndCut (requester: Market, cut: () => void): Promise<{ view: JobView, events: JobEvent[] }> {
    const events: JobEvent[] = []
    let id = ''
    let cutDone = false
    const on = (e: JobEvent): void => {
      if (e.jobId !== id) return
      events.push(e)
      if (e.type === 'running' && !cutDone) { cutDone = true; setTimeout(cut, 100) }
    }
    requester.events.on('job', on)
    try {
      id = (await requester.submit(SLOW)).id
      let view!: JobView
      await waitFor(async () => { view = await requester.get(id); return ['completed', 'failed', 'no-bids', 'cancelled'].includes(view.status) }, 60_000, 50)
      expect(cutDone, 'the job ran and its channel was cut').to.equal(true)
      return { view, events }
    } finally {
      requester.events.off('job', on)
    }
  }

  it('relayed: the job is followed by status and completes on the same provider, with no handover', async () => {
    const { hub, requester, requesterId, providerId } = await pair(true)
    let dropped = 0
    const { view, events } = await runAndCut(requester, () => { dropped = hub.dropChannels(requesterId, providerId) })
    expect(dropped).to.be.at.least(1)
    expect(view.status, JSON.stringify(events.map(e => e.type))).to.equal('completed')
    expect(view.provider).to.equal(providerId)
    expect(view.attempts).to.have.length(1)
    const types = events.map(e => e.type)
    expect(types).to.include('rerouted')
    expect(types).to.not.include('handover')
  })

  it('relayed, but the provider is gone: handed over once it stays unreachable', async () => {
    const { hub, requester, requesterId, providerId } = await pair(true)
    const { view, events } = await runAndCut(requester, () => { hub.dropChannels(requesterId, providerId); hub.remove(providerId) })
    const types = events.map(e => e.type)
    expect(types).to.include('rerouted')
    expect(types).to.include('handover')
    const handover = events.find(e => e.type === 'handover')
    expect(String(handover?.reason)).to.match(/unreachable/)
    // nobody else provides: the job ends without a result rather than waiting forever
    expect(view.status).to.not.equal('completed')
  })

  it('direct: a dropped channel means the provider is gone, handed over at once', async () => {
    const { hub, requester, requesterId, providerId } = await pair(false)
    const { events } = await runAndCut(requester, () => { hub.dropChannels(requesterId, providerId) })
    const types = events.map(e => e.type)
    expect(types).to.not.include('rerouted')
    expect(types).to.include('handover')
  })
})
