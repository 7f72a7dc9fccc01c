import '../../src/polyfill.js'
import { expect } from 'chai'
import { createNetwork, type NetworkNode } from '../../src/p2p/index.js'
import { chooseTrims, isHousekeeping, peerStates, trimTarget, type PeerState } from '../../src/p2p/trim.js'
import { DHT_PROTOCOL, MIN_MAX_PEERS, MIN_PEERS } from '../../src/p2p/constants.js'
import { LOOPBACK, waitFor } from '../helpers/nodes.js'

const LIMITS = { high: 6, low: 4, keep: 0, graceMs: 1000 }
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

  it('never trims a busy, protected or young peer', () => {
    const peers = [
      peer('busy', { busy: true }),
      peer('relay', { protected: true }),
      peer('young', { openedAt: NOW - 500 }),
      ...['a', 'b', 'c', 'd', 'e'].map(name => peer(name, { value: 300 }))
    ]
    // 7 settled, low 4: three go, none of the untouchable ones
    const chosen = chooseTrims(peers, LIMITS, NOW)
    expect(chosen).to.have.length(3)
    expect(chosen).to.not.include.members(['busy', 'relay', 'young'])
  })

  it('young peers do not count: a stranger reconnecting before its grace ends cannot push settled peers out', () => {
    const settled = Array.from({ length: 5 }, (_, i) => peer(`s${i}`))
    const churners = Array.from({ length: 40 }, (_, i) => peer(`y${i}`, { openedAt: NOW - 999 }))
    expect(chooseTrims([...settled, ...churners], LIMITS, NOW)).to.deep.equal([])
  })

  it('busy strangers cannot empty the node of idle peers: the `keep` most valued idle ones stay', () => {
    const busy = Array.from({ length: 30 }, (_, i) => peer(`b${i}`, { busy: true }))
    const idle = Array.from({ length: 5 }, (_, i) => peer(`i${i}`, { value: i * 100 }))
    // 35 settled, low 4: 31 would go, but only idle ones may, and 3 of those stay
    expect(chooseTrims([...busy, ...idle], { ...LIMITS, keep: 3 }, NOW)).to.deep.equal(['i0', 'i1'])
    expect(chooseTrims([...busy, ...idle.slice(0, 3)], { ...LIMITS, keep: 3 }, NOW)).to.deep.equal([])
  })

  it('trims down to halfway between 8 and maxPeers, at most 16: room for peers to come and go on either side', () => {
    expect([16, 17, 18, 20, 23, 24, 25, 100, 1000].map(m => trimTarget(m))).to.deep.equal([12, 12, 13, 14, 15, 16, 16, 16, 16])
    // the least maxPeers the config takes keeps 4 peers of room on each side of its target
    expect(trimTarget(MIN_MAX_PEERS) - MIN_PEERS).to.be.at.least(4)
    expect(MIN_MAX_PEERS - trimTarget(MIN_MAX_PEERS)).to.be.at.least(4)
    // a caller's own floor, and never above maxPeers
    expect([trimTarget(6, 0), trimTarget(6, 2), trimTarget(10, 12)]).to.deep.equal([3, 4, 10])
    // at maxPeers 16 a node trims to 12: it takes 4 newcomers before it trims again, and loses 4 before it walks the DHT
    const limits = { high: 16, low: trimTarget(16), keep: 8, graceMs: 1000 }
    expect(chooseTrims(Array.from({ length: 16 }, (_, i) => peer(`p${i}`)), limits, NOW)).to.deep.equal([])
    expect(chooseTrims(Array.from({ length: 17 }, (_, i) => peer(`p${i}`)), limits, NOW)).to.have.length(5)
  })

  it('counts only the mesh\'s own housekeeping streams as idle; a stream still negotiating is not', () => {
    for (const p of ['/meshsub/1.2.0', '/floodsub/1.0.0', '/ipfs/id/1.0.0', '/ipfs/id/push/1.0.0', '/ipfs/ping/1.0.0', DHT_PROTOCOL]) expect(isHousekeeping(p), p).to.equal(true)
    for (const p of ['/mercato/bids/1.0.0', '/mercato/award/1.0.0', '/libp2p/circuit/relay/0.2.0/hop', '/meshsubx', '', undefined]) expect(isHousekeeping(p), String(p)).to.equal(false)
  })
})

describe('p2p: trimming peers (real nodes)', function () {
  this.timeout(60_000)
  const nodes: NetworkNode[] = []
  afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => await n.stop().catch(() => {}))) })

  it('a node past its maxPeers closes idle connections down to its target, keeps a peer with an open channel, and is not dialled back', async () => {
    const hub = await createNetwork({ allow: LOOPBACK, discovery: { minPeers: 0, targetPeers: 4, maxPeers: 6, trimGraceMs: 500, trimIntervalMs: 3_600_000 } })
    nodes.push(hub)
    await hub.handleChannel('/test/busy/1.0.0', async (ch) => { for await (const m of ch) await ch.send(m) })
    hub.subscribe('t', () => {})
    const received = new Set<string>()
    const join = async (): Promise<NetworkNode> => {
      // its keeper never dials (targetPeers 0): what connects it is the test's dial, and any redial libp2p makes
      const o = await createNetwork({ allow: LOOPBACK, discovery: { minPeers: 0, targetPeers: 0 } })
      nodes.push(o)
      o.subscribe('t', () => { received.add(o.peerId) })
      await o.dial(hub.addresses()[0])
      return o
    }
    // one peer holds work open with the hub, a channel of a market protocol, from before anyone can be trimmed
    const worker = await join()
    const ch = await worker.openChannel(hub.peerId, '/test/busy/1.0.0')
    await ch.send(new Uint8Array([1]))
    const others = [worker]
    for (let i = 0; i < 9; i++) others.push(await join())
    // every peer has joined and is past its grace: one trim, run here rather than on its timer (on a
    // loaded machine the timer's trims interleave with slow joins, and a hub that never exceeds 6
    // settled peers at once rightly trims nothing)
    await waitFor(() => hub.peers().length === 10, 15_000)
    // ...and the DHT of each has tagged its closest peers (the hub among them) keep-alive: it does so every 5 s
    await new Promise(resolve => setTimeout(resolve, 6000))
    const trimmed: number = await (hub as any).keeper.trim()
    if (hub.peers().length !== 4) {
      // what kept the hub above its target: each peer's state and open streams
      const libp2p = (hub as any).node
      const states = await peerStates(libp2p)
      const streams = (p: string): string[] => libp2p.getConnections().filter((c: any) => c.remotePeer.toString() === p).flatMap((c: any) => c.streams.map((x: any) => x.protocol === '' ? '(negotiating)' : x.protocol))
      expect.fail(`trimmed ${trimmed}, ${hub.peers().length} peers left: ${JSON.stringify(states.map(st => ({ ...st, ageMs: Date.now() - st.openedAt, streams: streams(st.peer) })))}`)
    }
    expect(trimmed).to.equal(6)
    expect(hub.isConnected(worker.peerId), 'the peer with an open channel').to.equal(true)
    // the trimmed peers stay away: none redials the hub, because the DHT's keep-alive tag is dropped as
    // it is set (with it, libp2p redialled the hub at once)
    const t0 = Date.now()
    while (Date.now() - t0 < 7000) {
      expect(hub.peers().length, 'peers of the hub').to.equal(4)
      await new Promise(resolve => setTimeout(resolve, 250))
    }
    // the channel still works, and gossip still reaches the peers that remain
    await ch.send(new Uint8Array([2]))
    const echoed: number[] = []
    for await (const m of ch) { echoed.push(m[0]); if (echoed.length === 2) break }
    expect(echoed).to.deep.equal([1, 2])
    const kept = others.filter(o => hub.isConnected(o.peerId))
    expect(kept.length).to.be.at.least(1)
    let n = 0
    await waitFor(async () => { await hub.publish('t', new TextEncoder().encode(`hi ${n++}`)); return kept.every(o => received.has(o.peerId)) }, 10_000, 300)
    await ch.close()
  })
})
