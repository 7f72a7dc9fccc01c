import '../../src/polyfill.js'
import { expect } from 'chai'
import { runCli, startNodeProcess, stopAll, getJson, waitFor, type NodeProcess } from '../helpers/cli.js'

describe('nodes as separate processes through the real CLI', function () {
  this.timeout(90_000)
  const nodes: NodeProcess[] = []
  after(stopAll)

  it('join by --bootstrap, see each other, gossip crosses them, and stop on SIGTERM within 2 s', async () => {
    nodes.push(await startNodeProcess())
    const boot = nodes[0].addresses[0]
    expect(boot).to.match(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3KooW/)
    const [b, c] = await Promise.all([startNodeProcess(['--bootstrap', boot]), startNodeProcess(['--bootstrap', boot])])
    nodes.push(b, c)

    const node = await getJson(`${nodes[0].gatewayUrl}/v1/node`)
    expect(node.status).to.equal(200)
    expect(node.body.peerId).to.equal(nodes[0].peerId)
    expect(node.body.addresses).to.include(boot)
    expect(node.body.provider).to.have.property('enabled')
    expect(node.body.version).to.be.a('string')

    // everyone sees the other two (b and c find each other through the DHT, not config)
    await waitFor(async () => {
      const views = await Promise.all(nodes.map(async n => (await getJson(`${n.gatewayUrl}/v1/peers`)).body as Array<{ peerId: string }>))
      return views.every((peers, i) => nodes.filter((_, j) => j !== i).every(o => peers.some(p => p.peerId === o.peerId)))
    }, 20_000)

    // gossip: b runs a job of its own, so its ledger grows and its signed head is published on
    // the heads topic; the head crosses the mesh to c
    const submitted = await getJson(`${b.gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ engine: 'js', source: 'function main () { return 1 }' }) })
    expect(submitted.status).to.equal(202)
    await waitFor(async () => {
      const peers = (await getJson(`${c.gatewayUrl}/v1/peers`)).body as Array<{ peerId: string, head?: { seq: number } }>
      return peers.some(p => p.peerId === b.peerId && p.head != null)
    }, 20_000)

    for (const n of nodes) {
      const res = await n.stop('SIGTERM')
      expect(res.code, n.stderr()).to.equal(0)
      expect(res.ms).to.be.lessThan(2000)
    }
  })

  it('mercato connect introduces two nodes that have no bootstrap; a bad address is refused with its reason', async () => {
    const [a, b] = await Promise.all([startNodeProcess(), startNodeProcess()])
    nodes.push(a, b)
    expect((await getJson(`${a.gatewayUrl}/v1/peers`)).body).to.deep.equal([])
    const ok = await runCli(['connect', b.addresses[0], '--api', a.gatewayUrl])
    expect(ok.code, ok.stderr).to.equal(0)
    expect(ok.stdout.trim()).to.equal(`connected to ${b.peerId}`)
    const seen = (await getJson(`${b.gatewayUrl}/v1/peers`)).body as Array<{ peerId: string }>
    expect(seen.map(p => p.peerId)).to.include(a.peerId)
    const bad = await runCli(['connect', '/ip4/127.0.0.1/tcp/1', '--api', a.gatewayUrl])
    expect(bad.code).to.not.equal(0)
    expect(bad.stderr).to.match(/multiaddr ending in \/p2p\//)
  })
})
