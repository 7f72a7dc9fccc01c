import '../../src/polyfill.js'
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { buildNetworkNode, createNetwork, identityFromSeed, type NetworkNode } from '../../src/p2p/index.js'
import { jitter, PeerKeeper, peerLimits } from '../../src/p2p/discovery.js'
import { QUICK_WALKS_AFTER_CONNECT, WALK_MIN_GAP_MS } from '../../src/p2p/constants.js'
import { logger } from '../../src/logger.js'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { freePort } from '../helpers/ports.js'

const LOOPBACK = ['/ip4/127.0.0.1', '/ip6/::1']

async function waitFor (cond: () => boolean, timeoutMs: number, stepMs = 100): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met in ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, stepMs))
  }
}


describe('p2p: discovery (bootstrap redial)', function () {
  this.timeout(120_000)
  const nodes: NetworkNode[] = []
  afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => n.stop().catch(() => {}))) })

  it('peer counts: a node configured with maxPeers dials and trims to halfway between minPeers and it; one without, to 16 past 24', () => {
    const of = (init: Parameters<typeof peerLimits>[0]): number[] => { const l = peerLimits(init); return [l.minPeers, l.targetPeers, l.trim.low, l.trim.high, l.trim.keep] }
    // [minPeers, targetPeers, trim low, trim high, keep]
    expect(of({})).to.deep.equal([8, 16, 16, 24, 8])
    expect(of({ maxPeers: 24 })).to.deep.equal([8, 16, 16, 24, 8])
    expect(of({ maxPeers: 16 })).to.deep.equal([8, 12, 12, 16, 8])
    expect(of({ maxPeers: 100 })).to.deep.equal([8, 16, 16, 100, 8])
    // the caller's own minPeers and targetPeers are kept; low never above high
    expect(of({ minPeers: 0, maxPeers: 6 })).to.deep.equal([0, 3, 3, 6, 0])
    expect(of({ minPeers: 0, targetPeers: 4, maxPeers: 6 })).to.deep.equal([0, 4, 4, 6, 0])
    expect(of({ targetPeers: 30, maxPeers: 24 })).to.deep.equal([8, 30, 30, 30, 8])
  })

  it('spreads redials: jitter stays within ±25 %', () => {
    expect(jitter(1000, () => 0)).to.equal(750)
    expect(jitter(1000, () => 1)).to.equal(1250)
    expect(jitter(1000, () => 0.5)).to.equal(1000)
  })

  it('a node whose bootstrap peer starts 5 s after it still joins it', async () => {
    const seedA = randomBytes(32)
    const idA = identityFromSeed(seedA).peerId
    const port = await freePort()
    const addrA = `/ip4/127.0.0.1/tcp/${port}/p2p/${idA}`
    const b = await createNetwork({ bootstrap: [addrA], allow: LOOPBACK })
    nodes.push(b)
    await new Promise(resolve => setTimeout(resolve, 5000))
    expect(b.peers()).to.have.length(0) // A is down: the first dials failed
    const a = await createNetwork({ seed: seedA, listen: [`/ip4/127.0.0.1/tcp/${port}`], allow: LOOPBACK })
    nodes.push(a)
    const t0 = Date.now()
    // before the redial, B stayed alone for good; with it, B's next redial (≤ 4 s + jitter) reaches A
    await waitFor(() => b.isConnected(idA), 30_000)
    console.log(`      B joined A ${Date.now() - t0} ms after A started`)
  })

  it('12 peers discovered at once: all are dialled (4 at a time), none dropped for want of a free dial', async () => {
    const found: NetworkNode[] = []
    for (let i = 0; i < 12; i++) found.push(await createNetwork({ allow: LOOPBACK, discovery: { minPeers: 0, targetPeers: 0 } }))
    // no walks (minPeers 0): what it dials is what it is told of
    const x = await createNetwork({ allow: LOOPBACK, discovery: { minPeers: 0 } })
    nodes.push(...found, x)
    const { multiaddr } = await import('@multiformats/multiaddr')
    const { peerIdFromString } = await import('@libp2p/peer-id')
    // what mDNS or a DHT answer reports: twelve peers in one burst
    const libp2p = (x as any).node
    for (const n of found) {
      libp2p.dispatchEvent(new CustomEvent('peer:discovery', { detail: { id: peerIdFromString(n.peerId), multiaddrs: n.addresses().map(a => multiaddr(a)) } }))
    }
    // before, the first four were dialled and the other eight forgotten (the peer store knew them: never reported again)
    await waitFor(() => found.every(n => x.isConnected(n.peerId)), 20_000).catch(() => {
      throw new Error(`connected to ${found.filter(n => x.isConnected(n.peerId)).length} of 12`)
    })
  })

  it('20 nodes started at once, all bootstrapped to node 0 (which comes up last), all end with peers', async () => {
    const seed0 = randomBytes(32)
    const id0 = identityFromSeed(seed0).peerId
    const port = await freePort()
    const boot = `/ip4/127.0.0.1/tcp/${port}/p2p/${id0}`
    const others: NetworkNode[] = []
    for (let i = 1; i < 20; i++) others.push(await buildNetworkNode({ bootstrap: [boot], allow: LOOPBACK }))
    const node0 = await buildNetworkNode({ seed: seed0, listen: [`/ip4/127.0.0.1/tcp/${port}`], allow: LOOPBACK })
    nodes.push(...others, node0)
    // 20 nodes in one process on a loaded machine: pings time out and connections drop and come back,
    // so what is asserted is that every node joined the mesh, not that all are connected at one instant
    const joined = new Set<number>()
    others.forEach((n, i) => n.addEventListener('peer:connect', () => { joined.add(i) }))
    const t0 = Date.now()
    await Promise.all([
      ...others.map(async n => { await n.start() }),
      // node 0 is a moment late, as one process among many often is: every first bootstrap dial fails
      (async () => { await new Promise(resolve => setTimeout(resolve, 1000)); await node0.start() })()
    ])
    await waitFor(() => joined.size === others.length, 90_000).catch(err => {
      throw new Error(`${err.message}: ${others.length - joined.size} of 19 never found a peer`)
    })
    console.log(`      all 19 found peers within ${Date.now() - t0} ms; now node 0 has ${node0.peers().length} peers, ${others.filter(n => n.peers().length === 0).length} nodes alone`)
  })
})

describe('p2p: discovery (DHT walks, the keeper on a stand-in libp2p node)', function () {
  this.timeout(30_000)

  /** What the keeper uses of a libp2p node: peers, dials (each one connects) and DHT walks (counted). */
  class StandIn extends EventTarget {
    readonly peerId = peerIdFromString(identityFromSeed(randomBytes(32)).peerId)
    readonly peers: PeerId[] = []
    readonly walks: number[] = []
    /** how many peers each walk met */
    readonly walkMet: number[] = []
    readonly dialled: string[] = []
    /** what a walk meets */
    closest: PeerId[] = []
    readonly peerRouting = {
      getClosestPeers: (_key: Uint8Array) => {
        this.walks.push(Date.now())
        this.walkMet.push(this.closest.length)
        const met = this.closest.map(id => ({ id, multiaddrs: [] }))
        return (async function * () { yield * met })()
      }
    }

    getPeers (): PeerId[] { return this.peers }
    getConnections (id: PeerId): unknown[] { return this.isConnectedTo(id) ? [{}] : [] }
    isConnectedTo (id: PeerId): boolean { return this.peers.some(p => p.equals(id)) }
    connect (id: PeerId): void {
      this.peers.push(id)
      this.dispatchEvent(new CustomEvent('peer:connect', { detail: id }))
    }

    async dial (target: PeerId): Promise<void> {
      this.dialled.push(target.toString())
      this.connect(target)
    }
  }
  const aPeer = (): PeerId => peerIdFromString(identityFromSeed(randomBytes(32)).peerId)
  const keepers: PeerKeeper[] = []
  afterEach(() => { for (const k of keepers.splice(0)) k.stop() })
  /** walks only when a connection brings one forward (the regular wait is a minute) */
  const keeperOn = (node: StandIn): PeerKeeper => {
    const k = new PeerKeeper(node as any, { walkIntervalMs: 60_000 }, logger('test:discovery'))
    keepers.push(k)
    k.start()
    return k
  }

  it('with minPeers or more, the walk loop sleeps without counting peers until a disconnect takes the node below', async () => {
    const node = new StandIn()
    for (let i = 0; i < 9; i++) node.peers.push(aPeer())
    let counts = 0
    const getPeers = node.getPeers.bind(node)
    node.getPeers = () => { counts++; return getPeers() }
    const keeper = new PeerKeeper(node as any, { walkIntervalMs: 100, walkMinGapMs: 50 }, logger('test:discovery'))
    keepers.push(keeper)
    keeper.start()
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(node.walks, 'walks with 9 peers').to.have.length(0)
    // before, the loop counted the peers every walk interval (here 10 times a second)
    expect(counts, 'peer counts in ten walk intervals').to.be.at.most(2)
    // a disconnect that leaves 8: one look, no walk, asleep again
    node.peers.splice(0, 1)
    node.dispatchEvent(new CustomEvent('peer:disconnect', { detail: aPeer() }))
    const before = counts
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(node.walks, 'walks with 8 peers').to.have.length(0)
    expect(counts - before, 'peer counts after a disconnect that leaves 8').to.be.at.most(2)
    // one more goes: 7, below minPeers (8), and the loop wakes
    node.peers.splice(0, 1)
    node.dispatchEvent(new CustomEvent('peer:disconnect', { detail: aPeer() }))
    await waitFor(() => node.walks.length >= 1, 5_000)
  })

  it('asleep, a connection while below minPeers still brings a walk forward', async () => {
    const node = new StandIn()
    for (let i = 0; i < 9; i++) node.peers.push(aPeer())
    // asleep there is no timer but the minute's backstop: only the connection can bring the walk within the test
    const keeper = new PeerKeeper(node as any, { walkIntervalMs: 100, walkMinGapMs: 50 }, logger('test:discovery'))
    keepers.push(keeper)
    keeper.start()
    await waitFor(() => (keeper as any).walkParked === true, 5_000)
    // three peers go without a word (nothing wakes the loop), then one connects: 7, below 8
    node.peers.splice(0, 3)
    node.connect(aPeer())
    await waitFor(() => node.walks.length >= 1, 5_000)
  })

  it('a first connection brings the next walk forward, and the peers it meets are dialled', async () => {
    const node = new StandIn()
    const others = [aPeer(), aPeer(), aPeer()]
    node.closest = others
    keeperOn(node)
    node.connect(aPeer())
    // before, the first walk came DISCOVERY_INTERVAL_MS after start whatever happened (here: a minute)
    await waitFor(() => node.walks.length >= 1, 10_000)
    await waitFor(() => others.every(o => node.dialled.includes(o.toString())), 10_000)
  })

  it('a burst of connections starts one walk, and walks begin at least WALK_MIN_GAP_MS apart', async () => {
    const node = new StandIn()
    const keeper = keeperOn(node)
    node.closest = [aPeer()]
    for (let i = 0; i < 5; i++) node.connect(aPeer())
    await waitFor(() => node.walks.length >= 1 && !(keeper as any).walking, 10_000)
    // (the quick walks after a connection follow WALK_MIN_GAP_MS apart, not at once)
    expect(node.walks.filter(t => t < node.walks[0] + WALK_MIN_GAP_MS - 5).length, 'walks within the gap after a burst of five connections').to.equal(1)
    // one more connection right after the walk: the next one comes, but not before the gap
    node.connect(aPeer())
    await waitFor(() => node.walks.length >= 2, 10_000)
    expect(node.walks[1] - node.walks[0]).to.be.at.least(WALK_MIN_GAP_MS - 5)
  })

  it('a connected bootstrap peer is not redialled, nor looked at 20 times a second; losing it redials at once', async () => {
    const node = new StandIn()
    const boot = aPeer()
    node.connect(boot)
    let looks = 0
    const getPeers = node.getPeers.bind(node)
    node.getPeers = () => { looks++; return getPeers() }
    // dials of the bootstrap address connect its peer
    node.dial = async (target: any) => {
      node.dialled.push(target.toString())
      node.connect(peerIdFromString(target.getComponents().findLast((c: any) => c.name === 'p2p').value))
    }
    const keeper = new PeerKeeper(node as any, { bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${boot.toString()}`], walkIntervalMs: 60_000 }, logger('test:discovery'))
    keepers.push(keeper)
    keeper.start()
    await new Promise(resolve => setTimeout(resolve, 1000))
    // one peer, below minPeers: before, the keeper woke every 50 ms to skip the connected bootstrap peer
    expect(looks, 'looks at the peer list in 1 s').to.be.below(5)
    expect(node.dialled, 'dials of a connected bootstrap peer').to.deep.equal([])
    node.peers.splice(0)
    node.dispatchEvent(new CustomEvent('peer:disconnect', { detail: boot }))
    await waitFor(() => node.dialled.length === 1, 5_000)
    expect(node.isConnectedTo(boot)).to.equal(true)
  })

  it(`a connection while below minPeers brings ${QUICK_WALKS_AFTER_CONNECT} more walks the least gap apart: a peer that learns of the mesh a moment later is asked again soon`, async () => {
    const node = new StandIn()
    // walks 300 ms apart at least, not 1 s: the same rules, a shorter test
    const GAP = 300
    const keeper = new PeerKeeper(node as any, { walkIntervalMs: 60_000, walkMinGapMs: GAP }, logger('test:discovery'))
    keepers.push(keeper)
    keeper.start()
    node.connect(aPeer())
    // the first walk comes before the peer knows anyone
    await waitFor(() => node.walks.length >= 1 && !(keeper as any).walking, 10_000)
    const others = [aPeer(), aPeer()]
    node.closest = others
    await waitFor(() => others.every(o => node.dialled.includes(o.toString())), 15_000)
    // met by a quick walk, seconds after the first, not at the regular wait (a minute here)
    expect(Date.now() - node.walks[0], 'ms from the first walk to the dials').to.be.below(15_000)
    // the connections those dials made count too: that many quick walks after the walk that met
    // them (meeting nobody new), then no more
    const metAt = node.walkMet.findIndex(n => n > 0)
    await waitFor(() => node.walks.length >= metAt + 1 + QUICK_WALKS_AFTER_CONNECT, 20_000)
    await new Promise(resolve => setTimeout(resolve, 3 * GAP))
    expect(node.walks.length, 'walks in all').to.equal(metAt + 1 + QUICK_WALKS_AFTER_CONNECT)
    for (let i = 1; i < node.walks.length; i++) expect(node.walks[i] - node.walks[i - 1], `gap before walk ${i}`).to.be.at.least(GAP - 5)
    expect((keeper as any).walkDelay, 'the regular wait is kept').to.equal(60_000)
  })

  it('a walk brought forward that meets no one does not double the wait before the next', async () => {
    const node = new StandIn()
    const keeper = keeperOn(node)
    node.connect(aPeer())
    await waitFor(() => node.walks.length >= 1, 10_000)
    await waitFor(() => !(keeper as any).walking, 10_000)
    expect((keeper as any).walkDelay).to.equal(60_000)
  })
})
