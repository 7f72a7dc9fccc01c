import '../../src/polyfill.js'
import { expect } from 'chai'
import { STATUS_PROTOCOL, JOBS_TOPIC } from '../../src/auction/index.js'
import { canonicalDecode, canonicalEncode } from '../../src/crypto/index.js'
import { startTestNode, stopNode, stopNodes, waitFor } from '../helpers/nodes.js'

describe('market: status protocol', function () {
  this.timeout(60_000)
  after(stopNodes)

  it('a provider that restarted still answers for a finished job from its log, and only to its requester', async () => {
    const requester = await startTestNode({ provide: false })
    const provider = await startTestNode({ price: 1, bootstrap: [requester.network.addresses()[0]] })
    const stranger = await startTestNode({ provide: false, bootstrap: [requester.network.addresses()[0]] })
    // every node relays the jobs topic (the stranger too): wait for the provider by name
    await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).includes(provider.peerId), 15_000)
    const submitted = await requester.market.submit({ engine: 'js', source: 'function main (i) { return i.x * 3 }', input: { x: 5 } })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(20_000) })
    expect(job.status).to.equal('completed')
    const resultHash = (await requester.market.result(job.id)).resultHash

    // the provider restarts with the same identity and log; its memory of the job is gone
    const dataDir = provider.config.dataDir
    await stopNode(provider)
    const again = await startTestNode({ price: 1, dataDir, bootstrap: [requester.network.addresses()[0]] })
    expect(again.peerId).to.equal(provider.peerId)
    await waitFor(() => requester.network.isConnected(again.peerId), 10_000)

    const ask = async (from: typeof requester): Promise<any> => canonicalDecode(await from.network.request(again.peerId, STATUS_PROTOCOL, canonicalEncode({ jobId: job.id })))
    const answer = await ask(requester)
    expect(answer.state).to.equal('done')
    expect(answer.result.payload.resultHash).to.equal(resultHash)
    expect(answer.result.signer).to.equal(again.peerId)
    await stranger.network.dial(again.network.addresses()[0])
    expect((await ask(stranger)).state).to.equal('unknown')
  })
})

describe('market: withdrawing an award', function () {
  this.timeout(60_000)
  after(stopNodes)

  it('a cancel stops the provider\'s run and frees its slot', async () => {
    const requester = await startTestNode({ provide: false })
    const provider = await startTestNode({ price: 1, slots: 1, bootstrap: [requester.network.addresses()[0]] })
    await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).length === 1, 15_000)
    const long = { engine: 'js' as const, source: 'function main (i) { let s = 0; for (let k = 0; k < i.n; k++) s = (s + k) % 1000003; return s }', input: { n: 300_000_000 }, limits: { timeoutMs: 60_000 } }
    const submitted = await requester.market.submit(long)
    await waitFor(async () => (await requester.market.get(submitted.id)).status === 'running', 15_000)
    expect(provider.market.capacity().busy).to.equal(1)
    const t0 = Date.now()
    await requester.market.cancel(submitted.id)
    await waitFor(() => provider.market.capacity().busy === 0, 5_000)
    expect(Date.now() - t0).to.be.lessThan(5_000) // the job alone would run for many seconds
    expect(provider.executor.stats().busy).to.equal(0)
  })
})
