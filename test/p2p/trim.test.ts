import '../../src/polyfill.js'
import { expect } from 'chai'
import { createNetwork, type NetworkNode } from '../../src/p2p/index.js'
import { chooseTrims, isHousekeeping, type PeerState } from '../../src/p2p/trim.js'
import { DHT_PROTOCOL } from '../../src/p2p/constants.js'
import { LOOPBACK, waitFor } from '../helpers/nodes.js'

const LIMITS = { high: 6, low: 4, graceMs: 1000 }
const NOW = 1_000_000

function peer (name: string, over: Partial<PeerState> = {}): PeerState {
  return { peer: name, openedAt: NOW - 60_000, value: 0, busy: false, protected: false, ...over }
}

describe('p2p: trimming peers (rule)', () => {
  it('trims nothing at or below the high mark', () => {
    const peers = Array.from({ length: 6 }, (_, i) => peer(`p${i}`))
    expect(chooseTrims(peers, LIMITS, NOW)).to.deep.equal([])
  })

  it('past the high mark, trims down to the low mark: least valued first, then the oldest', () => {
    const peers = [
      peer('mesh', { value: 200 }),
      peer('kad', { value: 51 }),
      peer('old', { openedAt: NOW - 90_000 }),
      peer('older', { openedAt: NOW - 120_000 }),
      peer('plain'),
      peer('mesh2', { value: 100 }),
      peer('kad2', { value: 1 })
    ]
    // 7 peers, low 4: three go, the three with the least value, the older before the newer
    expect(chooseTrims(peers, LIMITS, NOW)).to.deep.equal(['older', 'old', 'plain'])
  })

  it('never trims a busy, protected or young peer, even if that leaves more than the low mark', () => {
    const peers = [
      peer('busy', { busy: true }),
      peer('relay', { protected: true }),
      peer('young', { openedAt: NOW - 500 }),
      peer('a', { value: 300 }),
      peer('b', { value: 300 }),
      peer('c', { value: 300 }),
      peer('d', { value: 300 }),
      peer('e', { value: 300 })
    ]
    const chosen = chooseTrims(peers, LIMITS, NOW)
    expect(chosen).to.have.length(4) // 8 - low 4
    expect(chosen).to.not.include.members(['busy', 'relay', 'young'])
    const onlyUntouchable = [peer('busy', { busy: true }), peer('relay', { protected: true }), ...Array.from({ length: 5 }, (_, i) => peer(`y${i}`, { openedAt: NOW }))]
    expect(chooseTrims(onlyUntouchable, LIMITS, NOW)).to.deep.equal([])
  })

  it('counts only the mesh\'s own housekeeping streams as idle', () => {
    for (const p of ['/meshsub/1.2.0', '/floodsub/1.0.0', '/ipfs/id/1.0.0', '/ipfs/id/push/1.0.0', '/ipfs/ping/1.0.0', DHT_PROTOCOL, undefined]) expect(isHousekeeping(p), String(p)).to.equal(true)
    for (const p of ['/mercato/bids/1.0.0', '/mercato/award/1.0.0', '/libp2p/circuit/relay/0.2.0/hop', '/meshsubx']) expect(isHousekeeping(p), p).to.equal(false)
  })
})

describe('p2p: trimming peers (real nodes)', function () {
  this.timeout(60_000)
  const nodes: NetworkNode[] = []
  afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => await n.stop().catch(() => {}))) })

  it('a node past its maxPeers closes idle connections down to its target, keeps a peer with an open channel, and is not dialled back', async () => {
    const hub = await createNetwork({ allow: LOOPBACK, discovery: { minPeers: 0, targetPeers: 4, maxPeers: 6, trimGraceMs: 500, trimIntervalMs: 200 } })
    nodes.push(hub)
    await hub.handleChannel('/test/work/1.0.0', async (ch) => { for await (const m of ch) await ch.send(m) })
    hub.subscribe('t', () => {})
    const received: string[] = []
    const others: NetworkNode[] = []
    for (let i = 0; i < 10; i++) {
      // these never dial anyone on their own (targetPeers 0): only what the test dials, and libp2p's redials, connect them
      const o = await createNetwork({ allow: LOOPBACK, discovery: { minPeers: 0, targetPeers: 0 } })
      o.subscribe('t', (m) => { received.push(o.peerId + ':' + new TextDecoder().decode(m.value)) })
      others.push(o)
      nodes.push(o)
      await o.dial(hub.addresses()[0])
    }
    // one peer holds work open with the hub: a channel of a market protocol
    const worker = others[0]
    const ch = await worker.openChannel(hub.peerId, '/test/work/1.0.0')
    await ch.send(new Uint8Array([1]))
    await waitFor(() => hub.peers().length <= 4, 10_000)
    expect(hub.isConnected(worker.peerId), 'the peer with an open channel').to.equal(true)
    // the trimmed peers stay away: nobody redials them (the DHT's keep-alive tag is dropped)
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(hub.peers().length).to.equal(4)
    // the channel still works, and gossip still reaches the peers that remain
    await ch.send(new Uint8Array([2]))
    const echoed: number[] = []
    for await (const m of ch) { echoed.push(m[0]); if (echoed.length === 2) break }
    expect(echoed).to.deep.equal([1, 2])
    const kept = others.filter(o => hub.isConnected(o.peerId))
    await waitFor(async () => { await hub.publish('t', new TextEncoder().encode('hi')); return kept.every(o => received.includes(o.peerId + ':hi')) }, 10_000, 300)
    await ch.close()
  })
})
