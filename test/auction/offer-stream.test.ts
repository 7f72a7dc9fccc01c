/**
 * Invitations on offer streams (`/mercato/offers/1.0.0`): a requester keeps one long-lived stream
 * per provider and sends each invitation as a frame on it, instead of a request (a new stream and
 * its protocol negotiation) per invitation; a provider without the protocol still gets them by
 * request. In-memory network.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { OFFER_PROTOCOL, OFFER_STREAM_PROTOCOL, type JobView, type Market } from '../../src/auction/index.js'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import { waitFor } from '../helpers/nodes.js'
import { MemoryHub } from '../helpers/memory-network.js'
import { startMemoryMarket, stopMemoryMarkets, type MemoryMarket } from '../helpers/memory-market.js'

const JOB = { engine: 'js' as const, source: 'function main (i) { return i.x * 2 }', input: { x: 21 }, maxPrice: 50, queueTimeoutMs: 0 }

describe('market: invitations on offer streams', function () {
  this.timeout(60_000)
  let executor: Executor
  let hub: MemoryHub
  const started: MemoryMarket[] = []
  let requester: MemoryMarket
  const providers: MemoryMarket[] = []
  /** offer streams the requester tried to open, by provider */
  const opened: string[] = []
  /** offers each provider took by request/response */
  const byRequest = new Map<string, number>()

  async function run (market: Market): Promise<JobView> {
    const { id } = await market.submit(JOB)
    let view!: JobView
    await waitFor(async () => { view = await market.get(id); return ['completed', 'failed', 'no-bids'].includes(view.status) }, 20_000, 10)
    return view
  }

  before(async () => {
    executor = createExecutor({ poolSize: 2 })
    await executor.start()
    hub = new MemoryHub()
    // a long window: an invited round still closes the moment every invitee has answered, and a
    // loaded machine's late answer is not cut off by the 50 ms default once a bidder is proven
    requester = await startMemoryMarket(hub, executor, { requester: { bidWindowMs: 5000 } })
    started.push(requester)
    for (const price of [1, 3, 5]) {
      const p = await startMemoryMarket(hub, executor, { price, slots: 2 })
      started.push(p)
      providers.push(p)
      const h = p.net.handlers.get(OFFER_PROTOCOL)
      if (h == null) throw new Error('no offer handler')
      p.net.handlers.set(OFFER_PROTOCOL, { ...h, handler: async (data, ctx) => { byRequest.set(p.peerId, (byRequest.get(p.peerId) ?? 0) + 1); return await h.handler(data, ctx) } })
    }
    // the third provider is of an older release: no offer streams
    providers[2].net.channelHandlers.delete(OFFER_STREAM_PROTOCOL)
    const open = requester.net.openChannel.bind(requester.net)
    requester.net.openChannel = async (peer, protocol, opts) => {
      if (protocol === OFFER_STREAM_PROTOCOL) opened.push(peer)
      return await open(peer, protocol, opts)
    }
    await waitFor(() => requester.market.providers().filter(p => p.advert != null).length === 3, 20_000)
  })
  after(async () => {
    await stopMemoryMarkets(started)
    await executor.stop()
  })

  it('five jobs: one offer stream per provider that takes them, every invitation a frame on it; the other gets requests', async () => {
    for (let i = 0; i < 5; i++) {
      const view = await run(requester.market)
      expect(view.status, JSON.stringify(view)).to.equal('completed')
      expect(view.bids.map(b => b.provider).sort(), 'every invitee bid').to.deep.equal(providers.map(p => p.peerId).sort())
      expect(view.provider).to.equal(providers[0].peerId)
    }
    const streams = [...hub.channels].filter(c => c.a === requester.peerId && c.end.protocol === OFFER_STREAM_PROTOCOL).map(c => c.b)
    expect(streams.sort(), 'one stream each').to.deep.equal([providers[0].peerId, providers[1].peerId].sort())
    expect(byRequest.get(providers[0].peerId) ?? 0).to.equal(0)
    expect(byRequest.get(providers[1].peerId) ?? 0).to.equal(0)
    // the provider without the protocol: every invitation by request, and one failed stream attempt, not one per job
    expect(byRequest.get(providers[2].peerId)).to.equal(5)
    expect(opened.filter(p => p === providers[2].peerId)).to.have.length(1)
    expect(opened).to.have.length(3)
  })
})
