import '../../src/polyfill.js'
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId, PeerInfo } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { createNetwork, identityFromSeed, type NetworkNode } from '../../src/p2p/index.js'
import { RANDOM_WALK_PAUSE_MS } from '../../src/p2p/constants.js'
import { dhtClosestPeers, type ClosestPeers } from '../../src/p2p/walk.js'
import { waitFor } from '../helpers/nodes.js'
import { generateNetworkKeyText, parseNetworkKey } from '../../src/p2p/pnet.js'
import { pacedRandomWalk, reachabilityOf, relaysOf, hasPublicAddress } from '../../src/p2p/nat.js'
import { addressesOf, circuitsVia } from '../../src/p2p/multiaddr.js'
import { relaysIn, StrangerDials } from '../../src/p2p/public-address.js'

describe('p2p: private-network keys', () => {
  it('parses a generated key, and names what is wrong with a bad one', () => {
    const text = generateNetworkKeyText()
    const key = parseNetworkKey(text)
    expect(key.fingerprint).to.match(/^[0-9a-f]{16}$/)
    expect(parseNetworkKey(text.replace(/\n/g, '\r\n')).fingerprint).to.equal(key.fingerprint)
    expect(() => parseNetworkKey('hello')).to.throw(/first line must be/)
    expect(() => parseNetworkKey('/key/swarm/psk/1.0.0/\n/base64/\nabc')).to.throw(/second line/)
    expect(() => parseNetworkKey('/key/swarm/psk/1.0.0/\n/base16/\nabcd')).to.throw(/64 hex digits/)
  })
})

describe('p2p: reachability', () => {
  const m = (s: string): ReturnType<typeof multiaddr> => multiaddr(s)
  it('public with a verified public address, private with none or with a relay slot, unknown otherwise', () => {
    expect(reachabilityOf([{ multiaddr: m('/ip4/11.0.0.10/tcp/4010'), verified: true }])).to.equal('public')
    expect(reachabilityOf([{ multiaddr: m('/ip4/192.168.1.2/tcp/4010'), verified: true }])).to.equal('private')
    expect(reachabilityOf([{ multiaddr: m('/ip4/11.0.1.1/tcp/5555'), verified: false }])).to.equal('unknown')
    expect(reachabilityOf([
      { multiaddr: m('/ip4/11.0.1.1/tcp/5555'), verified: false },
      { multiaddr: m('/ip4/11.0.0.10/tcp/4010/p2p/12D3KooWL5jMrHyGnrL9BBeqeHQpU7j8KbEwK8s63zSx2XP4RDfN/p2p-circuit'), verified: true }
    ])).to.equal('private')
    expect(relaysOf([m('/ip4/11.0.0.10/tcp/4010/p2p/12D3KooWL5jMrHyGnrL9BBeqeHQpU7j8KbEwK8s63zSx2XP4RDfN/p2p-circuit/p2p/12D3KooWM4yu3nwurqBVmoxFPsAu9ZTe5X9SvZQhbq2pfkVJFpqa')]))
      .to.deep.equal(['/ip4/11.0.0.10/tcp/4010/p2p/12D3KooWL5jMrHyGnrL9BBeqeHQpU7j8KbEwK8s63zSx2XP4RDfN'])
    // one entry per relay, its public address rather than the loopback one it also reaches us by
    expect(relaysOf([
      m('/ip4/127.0.0.1/tcp/4010/p2p/12D3KooWL5jMrHyGnrL9BBeqeHQpU7j8KbEwK8s63zSx2XP4RDfN/p2p-circuit/p2p/12D3KooWM4yu3nwurqBVmoxFPsAu9ZTe5X9SvZQhbq2pfkVJFpqa'),
      m('/ip4/11.0.0.10/tcp/4010/p2p/12D3KooWL5jMrHyGnrL9BBeqeHQpU7j8KbEwK8s63zSx2XP4RDfN/p2p-circuit/p2p/12D3KooWM4yu3nwurqBVmoxFPsAu9ZTe5X9SvZQhbq2pfkVJFpqa')
    ])).to.deep.equal(['/ip4/11.0.0.10/tcp/4010/p2p/12D3KooWL5jMrHyGnrL9BBeqeHQpU7j8KbEwK8s63zSx2XP4RDfN'])
    expect(hasPublicAddress(['/ip4/127.0.0.1/tcp/0'], [])).to.equal(false)
    expect(hasPublicAddress(['/ip4/127.0.0.1/tcp/0'], ['/ip4/11.0.0.10/tcp/4010'])).to.equal(true)
  })

  it('the paced random walk lets the event loop run when the DHT answers at once with nobody', async () => {
    let queries = 0
    const peerRouting: any = { async * getClosestPeers () { queries++ } }
    const controller = new AbortController()
    const walking = (async () => { for await (const _ of pacedRandomWalk((key, options) => peerRouting.getClosestPeers(key, options)).walk({ signal: controller.signal })) { /* none */ } })()
    // libp2p's own walk loops without yielding here: this timer would never fire
    const fired = await new Promise<boolean>((resolve) => { setTimeout(() => { resolve(true) }, 20) })
    controller.abort()
    await walking
    expect(fired).to.equal(true)
    expect(queries).to.be.within(1, 3)
  })
})

describe('p2p: DHT walks', () => {
  const peerId = (): PeerId => peerIdFromString(identityFromSeed(randomBytes(32)).peerId)
  const info = (id: PeerId, port: number): PeerInfo => ({ id, multiaddrs: [multiaddr(`/ip4/127.0.0.1/tcp/${port}/p2p/${id.toString()}`)] })

  it('the paced walk slows down while its turns meet only peers it has met, and speeds up for a new one', async function () {
    this.timeout(20_000)
    const known = [info(peerId(), 1), info(peerId(), 2)]
    let fresh: PeerInfo | undefined
    const turns: number[] = []
    const closest: ClosestPeers = async function * () {
      turns.push(Date.now())
      yield * known
      if (fresh != null) { yield fresh; fresh = undefined }
    }
    const controller = new AbortController()
    const t0 = Date.now()
    const walking = (async () => { for await (const _ of pacedRandomWalk(closest).walk({ signal: controller.signal })) { /* met */ } })()
    try {
      // turns at 0 (new peers: 1 s pause), 1 s (none new: 2 s), 3 s (none new: 4 s); before, one a second
      await new Promise(resolve => setTimeout(resolve, 4_500))
      expect(turns.length, 'turns in 4.5 s').to.be.within(2, 3)
      // a peer it has not met: the next pause is short again
      fresh = info(peerId(), 3)
      await waitFor(() => fresh == null, 10_000)
      const met = turns.length
      await waitFor(() => turns.length > met, 3_000)
      expect(turns[met] - turns[met - 1], 'pause after meeting a new peer').to.be.below(RANDOM_WALK_PAUSE_MS * 2)
    } finally {
      controller.abort()
      await walking
    }
    expect(Date.now() - t0).to.be.below(20_000)
  })

  it('a DHT walk yields the peers the answers name, each once, with addresses, never ourselves', async () => {
    const self = peerId()
    const [a, b, c] = [peerId(), peerId(), peerId()]
    let asked = 0
    const dht: any = {
      async * getClosestPeers () {
        asked++
        yield { name: 'PEER_RESPONSE', closer: [info(a, 1), info(b, 2), info(self, 9)] }
        yield { name: 'QUERY_ERROR' }
        yield { name: 'PEER_RESPONSE', closer: [info(b, 2), { id: c, multiaddrs: [] }, info(a, 1)] }
        yield { name: 'FINAL_PEER', peer: { id: c, multiaddrs: [] } }
      }
    }
    let fallbacks = 0
    const fallback: ClosestPeers = async function * () { fallbacks++ }
    const met: PeerInfo[] = []
    for await (const p of dhtClosestPeers(() => dht, self, fallback)(new Uint8Array(32), {})) met.push(p)
    expect(met.map(p => p.id.toString())).to.deep.equal([a.toString(), b.toString()])
    expect(met.every(p => p.multiaddrs.length === 1)).to.equal(true)
    expect([asked, fallbacks]).to.deep.equal([1, 0])
    // before the node (and its DHT) exists, the walk asks libp2p's peer routing
    for await (const _ of dhtClosestPeers(() => undefined, self, fallback)(new Uint8Array(32), {})) { /* none */ }
    expect(fallbacks).to.equal(1)
  })
})

describe('p2p: the addresses a dial to a peer takes', () => {
  const peer = '12D3KooWBJKNTGpfJGhmD8MGPSDu9ntNEsVrqpZesH57RJQkEoM3'
  const relay = '12D3KooWCxQjHXSWRPK5RV9XkPKDv4vtKZor6R9e2nt8QToAZrJ8'
  it('relay addresses as identify reports them get the peer\'s id; another peer\'s address is dropped', () => {
    const out = addressesOf(peer, [
      multiaddr('/ip4/11.0.0.10/tcp/4010'),
      multiaddr(`/ip4/11.0.0.10/tcp/4010/p2p/${relay}/p2p-circuit`),
      multiaddr(`/ip4/11.0.0.11/tcp/4010/p2p/${relay}/p2p-circuit/p2p/${peer}`),
      multiaddr(`/ip4/11.0.0.12/tcp/4010/p2p/${relay}`)
    ]).map(a => a.toString())
    expect(out).to.deep.equal([
      `/ip4/11.0.0.10/tcp/4010/p2p/${peer}`,
      `/ip4/11.0.0.10/tcp/4010/p2p/${relay}/p2p-circuit/p2p/${peer}`,
      `/ip4/11.0.0.11/tcp/4010/p2p/${relay}/p2p-circuit/p2p/${peer}`
    ])
    // every address names the same peer: what libp2p requires of a multi-address dial
    for (const a of out) expect(a.endsWith(`/p2p/${peer}`)).to.equal(true)
  })

  it('while a stranger\'s dial runs, only public addresses of its peers (and the circuits we built) pass the gater', () => {
    const gate = new StrangerDials()
    const priv = multiaddr(`/ip4/127.0.0.1/tcp/6379/p2p/${relay}`)
    const pub = multiaddr(`/ip4/11.0.0.10/tcp/4010/p2p/${relay}`)
    const ours = multiaddr(`/ip4/127.0.0.1/tcp/4010/p2p/${relay}/p2p-circuit/p2p/${peer}`)
    expect(gate.denies(priv), 'no dial of a stranger in flight').to.equal(false)
    const circuits = [multiaddr(`/ip4/11.0.0.10/tcp/4010/p2p/${relay}/p2p-circuit/p2p/${peer}`), ours]
    expect(relaysIn(circuits)).to.deep.equal([relay, relay])
    const end = gate.open([peer, ...relaysIn(circuits)], [ours])
    const again = gate.open([relay])
    expect(gate.denies(priv)).to.equal(true)
    expect(gate.denies(pub)).to.equal(false)
    expect(gate.denies(ours), 'a circuit built on our own connection').to.equal(false)
    expect(gate.denies(multiaddr(`/ip4/192.168.1.2/tcp/1/p2p/${peer}`))).to.equal(true)
    expect(gate.denies(multiaddr('/ip4/127.0.0.1/tcp/1/p2p/12D3KooWL5jMrHyGnrL9BBeqeHQpU7j8KbEwK8s63zSx2XP4RDfN')), 'another peer').to.equal(false)
    end()
    end() // twice: counted once
    expect(gate.denies(priv), 'the relay is still held by the other dial').to.equal(true)
    expect(gate.denies(multiaddr(`/ip4/192.168.1.2/tcp/1/p2p/${peer}`))).to.equal(false)
    again()
    expect(gate.denies(priv)).to.equal(false)
  })

  it('an offer\'s circuit addresses are used only through a relay we are connected to, on our own connection to it', () => {
    const other = '12D3KooWL5jMrHyGnrL9BBeqeHQpU7j8KbEwK8s63zSx2XP4RDfN'
    const connected = new Map([[relay, multiaddr(`/ip4/11.0.0.10/tcp/4010/p2p/${relay}`)]])
    const via = (hints: string[]): string[] => circuitsVia(peer, hints, (r) => connected.get(r)).map(a => a.toString())
    // the stranger's host and port are replaced by the address we reach the relay at
    expect(via([`/ip4/6.6.6.6/tcp/666/p2p/${relay}/p2p-circuit/p2p/${peer}`])).to.deep.equal([`/ip4/11.0.0.10/tcp/4010/p2p/${relay}/p2p-circuit/p2p/${peer}`])
    expect(via([
      `/ip4/11.0.0.11/tcp/4010/p2p/${other}/p2p-circuit/p2p/${peer}`, // a relay we are not connected to
      `/ip4/11.0.0.10/tcp/4010/p2p/${relay}/p2p-circuit/p2p/${other}`, // a circuit to someone else
      `/ip4/11.0.0.10/tcp/4010/p2p/${relay}/p2p-circuit`, // no destination
      `/ip4/11.0.0.10/tcp/4010/p2p/${peer}`, // direct: a host and port a stranger named
      `/ip4/1.2.3.4/tcp/1/p2p/${relay}/p2p-circuit/p2p/${relay}/p2p-circuit/p2p/${peer}`, // two hops
      'not a multiaddr', ''
    ])).to.deep.equal([])
    // one address per relay however often it is named
    expect(via([`/ip4/1.1.1.1/tcp/1/p2p/${relay}/p2p-circuit/p2p/${peer}`, `/ip4/2.2.2.2/tcp/2/p2p/${relay}/p2p-circuit/p2p/${peer}`])).to.have.length(1)
    // a relay we reach only through another relay is not used
    connected.set(relay, multiaddr(`/ip4/11.0.0.11/tcp/4010/p2p/${other}/p2p-circuit/p2p/${relay}`))
    expect(via([`/ip4/11.0.0.10/tcp/4010/p2p/${relay}/p2p-circuit/p2p/${peer}`])).to.deep.equal([])
  })
})

describe('p2p: private markets on loopback', function () {
  this.timeout(60_000)
  const nodes: NetworkNode[] = []
  after(async () => { await Promise.all(nodes.map(async n => n.stop())) })

  it('same key connects; a different key or none never completes a connection, and the error says why', async () => {
    const k1 = parseNetworkKey(generateNetworkKeyText())
    const k2 = parseNetworkKey(generateNetworkKeyText())
    const a = await createNetwork({ networkKey: k1 })
    const same = await createNetwork({ networkKey: k1 })
    const other = await createNetwork({ networkKey: k2 })
    nodes.push(a, same, other)
    expect(await same.dial(a.addresses()[0])).to.equal(a.peerId)
    let err: any
    try { await other.dial(a.addresses()[0]) } catch (e) { err = e }
    expect(err?.name).to.equal('PeerUnreachableError')
    expect(err.message).to.match(/does not hold this market's key/)
    expect(a.peers().map(p => p.peerId)).to.not.include(other.peerId)
  })
})

describe('p2p: stale peer addresses', function () {
  this.timeout(60_000)
  const nodes: NetworkNode[] = []
  after(async () => { await Promise.all(nodes.map(async n => n.stop())) })

  // A node behind NAT is first heard of by its private addresses, and by its relay address only
  // once it holds a slot: a peer that kept the first record could neither answer its offers nor
  // reach it, and libp2p dials what the peer store holds without asking the DHT again.
  it('a request to a peer whose stored addresses are dead asks the DHT afresh and gets through', async () => {
    const allow = ['/ip4/127.0.0.1']
    const hub = await createNetwork({ allow })
    nodes.push(hub)
    const boot = `${hub.addresses()[0]}`
    const a = await createNetwork({ bootstrap: [boot], allow })
    const b = await createNetwork({ bootstrap: [boot], allow })
    nodes.push(a, b)
    await a.handle('/test/echo/1', async (req) => req)
    const deadline = Date.now() + 20_000
    // the hub's DHT knows a, and b's DHT knows the hub (routing tables fill after identify)
    const tableSize = (n: NetworkNode): number => (n as any).node.services.dht.routingTable.size
    while (!(tableSize(hub) >= 2 && tableSize(b) >= 1) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
    // b holds only a dead address for a (a closed port), and no connection to it
    const closed = await createNetwork({ allow })
    const deadAddr = multiaddr(closed.addresses()[0].split('/p2p/')[0])
    await closed.stop()
    const libp2pB = (b as any).node // the libp2p node inside (test set-up only: plant a stale record)
    if (b.isConnected(a.peerId)) await b.hangUp(a.peerId)
    const { peerIdFromString } = await import('@libp2p/peer-id')
    await libp2pB.peerStore.save(peerIdFromString(a.peerId), { multiaddrs: [deadAddr] })
    expect(b.isConnected(a.peerId)).to.equal(false)
    const reply = await b.request(a.peerId, '/test/echo/1', new TextEncoder().encode('hi'), { timeoutMs: 10_000 })
    expect(new TextDecoder().decode(reply)).to.equal('hi')
  })
})
