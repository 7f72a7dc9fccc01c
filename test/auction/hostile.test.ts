/**
 * A hostile client against the market (issue 9, items 8, 10, 11, 12): offers that name
 * addresses to dial, offer floods from one key, replayed batches, garbage and silence on the
 * bid stream, and a requester-only node that must relay job gossip.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { createServer, type Server, type Socket } from 'node:net'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { createNetwork, type NetworkNode, type MessageChannel } from '../../src/p2p/index.js'
import { canonicalEncode, cidOfValue, randomSigner, signatureChecks, signerFromSeed, type Signed, type Signer } from '../../src/crypto/index.js'
import { BID_PROTOCOL, BID_STREAM_PROTOCOL, JOBS_TOPIC, MAX_OFFER_BYTES, OFFER_STREAM_PROTOCOL, createMarket, type Market, type Offer } from '../../src/auction/index.js'
import { sign, encodeBatch } from '../../src/auction/protocol/messages.js'
import { openLedger } from '../../src/ledger/index.js'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { MemoryHub, type MemoryNetwork } from '../helpers/memory-network.js'

const SOURCE = 'function main (i) { return i.x + 1 }'

/** A signed offer from `signer` naming `addrs` (which no provider may dial). */
function offerFrom (signer: Signer, addrs: string[], over: Partial<Offer> = {}): Signed<Offer> {
  const now = Date.now()
  const jobId = `bafyrei${Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(30))).toString('hex').slice(0, 52)}`
  return sign(signer, 'offer', {
    v: 1, jobId, requester: signer.peerId, addrs,
    spec: { engine: 'js', source: SOURCE, input: { x: 1 }, args: [], env: {}, limits: { timeoutMs: 1000, memoryMb: 16, outputBytes: 1024 } },
    maxPrice: 50, replicas: 1, bidWindowMs: 50, ts: now, expires: now + 60_000, round: 0, ...over
  })
}

/** A TCP listener on 127.0.0.1 that counts the connections made to it. */
async function countingListener (): Promise<{ server: Server, port: number, connections: () => number }> {
  let n = 0
  const sockets: Socket[] = []
  const server = createServer((s) => { n++; sockets.push(s); s.on('error', () => {}); s.destroy() })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  return { server, port, connections: () => n }
}

describe('hostile: offers never make a provider dial the addresses they name (item 8)', function () {
  this.timeout(90_000)
  let provider: MercatoNode
  let strict: MercatoNode
  let attacker: NetworkNode
  let listener: Awaited<ReturnType<typeof countingListener>>

  before(async () => {
    listener = await countingListener()
    provider = await startTestNode({ price: 1 })
    // the production default: answers never dial loopback or private addresses
    strict = await startTestNode({ price: 1, bootstrap: [provider.network.addresses()[0]], config: { provider: { dialPrivateAddresses: false } } })
    attacker = await createNetwork({ bootstrap: [provider.network.addresses()[0], strict.network.addresses()[0]] })
    attacker.subscribe(JOBS_TOPIC, () => {})
    await waitFor(() => attacker.topicPeers(JOBS_TOPIC).includes(provider.peerId) && attacker.topicPeers(JOBS_TOPIC).includes(strict.peerId), 15_000)
  })
  after(async () => { await attacker?.stop(); await stopNodes(); listener?.server.close() })

  it('100 offers from throwaway keys naming a local port: zero connections to it', async () => {
    const target = `/ip4/127.0.0.1/tcp/${listener.port}`
    for (let i = 0; i < 100; i++) {
      const key = randomSigner()
      // direct addresses, and relay circuits through a peer the providers are connected to (the
      // attacker) at the listener's host and port: a circuit is tried on the provider's own
      // connection to that peer, never at the address the offer names
      const addrs = Array.from({ length: 16 }, (_, j) => j % 2 === 0 ? `${target}/p2p/${key.peerId}` : `${target}/p2p/${attacker.peerId}/p2p-circuit/p2p/${key.peerId}`)
      await attacker.publish(JOBS_TOPIC, encodeBatch([offerFrom(key, addrs)]))
    }
    // every answer has been given up as undeliverable (or, before the fix, the dials began)
    const unreachable = (): number => provider.market.answersUndelivered()
    await waitFor(() => listener.connections() > 0 || (unreachable() >= 100 && strict.market.answersUndelivered() >= 100), 30_000).catch(() => {})
    expect(listener.connections(), 'TCP connections to the port the offers named').to.equal(0)
    expect(unreachable()).to.equal(100)
  })

  it('a key whose own identify names a local port: the strict provider dials no private address; dials are bounded', async () => {
    // record (and pass on) every dial the providers make
    const spy = (node: MercatoNode): { calls: Array<{ target: string, publicOnly: boolean }>, maxInFlight: () => number } => {
      const calls: Array<{ target: string, publicOnly: boolean }> = []
      let inFlight = 0
      let max = 0
      const dial = node.network.dial.bind(node.network)
      node.network.dial = async (target, opts) => {
        calls.push({ target, publicOnly: opts?.publicOnly === true })
        max = Math.max(max, ++inFlight)
        try { return await dial(target, opts) } finally { inFlight-- }
      }
      return { calls, maxInFlight: () => max }
    }
    const lax = spy(provider)
    const tight = spy(strict)
    // a real node whose identify announces only the listener's address
    const seed = globalThis.crypto.getRandomValues(new Uint8Array(32))
    const liar = await createNetwork({ seed, announce: [`/ip4/127.0.0.1/tcp/${listener.port}`] })
    const key = signerFromSeed(seed)
    await liar.dial(provider.network.addresses()[0])
    await liar.dial(strict.network.addresses()[0])
    await waitFor(() => provider.network.isConnected(key.peerId) && strict.network.isConnected(key.peerId), 10_000)
    await new Promise(resolve => setTimeout(resolve, 500)) // identify has run
    await liar.stop()
    await waitFor(() => !provider.network.isConnected(key.peerId) && !strict.network.isConnected(key.peerId), 10_000)
    const strictUnreachable = strict.market.answersUndelivered()
    for (let i = 0; i < 50; i++) await attacker.publish(JOBS_TOPIC, encodeBatch([offerFrom(key, [])]))
    await waitFor(() => strict.market.answersUndelivered() - strictUnreachable >= 50, 20_000)
    // 50 offers from one unreachable key: one dial (then a backoff), never one per offer
    expect(lax.calls.filter(c => c.target === key.peerId)).to.have.length(1)
    expect(tight.calls.filter(c => c.target === key.peerId)).to.have.length(1)
    // the strict provider (the default) dials public addresses only: the liar's loopback address is out
    expect(tight.calls.every(c => c.publicOnly)).to.equal(true)
    expect(lax.calls.every(c => !c.publicOnly)).to.equal(true)
    expect(Math.max(lax.maxInFlight(), tight.maxInFlight())).to.be.at.most(4)
  })

  it('a circuit through a relay that is gone: libp2p dials the relay by PeerId, and none of its private addresses is dialled', async () => {
    // plain libp2p peers (identify only, no DHT: no lookup of ours can reach them, only the dial under test)
    const bare = async (announce: string[]): Promise<Libp2p> => await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'], announce }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify() }
    })
    // its own listener: the providers above learned the shared one as the liar's address, and may
    // redial it (peer keeping, DHT) while this test counts
    const own = await countingListener()
    // R claims (over identify) only that listener's address; A claims a circuit through R at a public address nobody answers at
    const relay = await bare([`/ip4/127.0.0.1/tcp/${own.port}`])
    const relayId = relay.peerId.toString()
    const a = await bare([`/ip4/11.0.0.10/tcp/4010/p2p/${relayId}/p2p-circuit`])
    const aId = a.peerId.toString()
    // the dialling side: a node that dials nobody on its own (no peer keeping), so every dial is this test's
    const dialler = await createNetwork({ discovery: { minPeers: 0, targetPeers: 0 } })
    try {
      for (const n of [relay, a]) await n.dial(multiaddr(dialler.addresses()[0]))
      await waitFor(() => dialler.isConnected(relayId) && dialler.isConnected(aId), 10_000)
      await new Promise(resolve => setTimeout(resolve, 500)) // identify has run
      await relay.stop()
      await a.stop()
      await waitFor(() => !dialler.isConnected(relayId) && !dialler.isConnected(aId), 10_000)
      const before = own.connections()
      // what a strict provider does to answer A: a public-only dial of its PeerId (here with a hint too)
      const err = await dialler.dial(aId, { publicOnly: true, signal: AbortSignal.timeout(3000), hints: [`/ip4/127.0.0.1/tcp/${own.port}/p2p/${relayId}/p2p-circuit/p2p/${aId}`] }).then(() => undefined, (e: Error) => e)
      expect(err?.message).to.match(/could not dial/)
      await new Promise(resolve => setTimeout(resolve, 200))
      expect(own.connections() - before, 'connections to the address the gone relay claimed').to.equal(0)
    } finally {
      await Promise.all([dialler.stop(), relay.stop(), a.stop()])
      own.server.close()
    }
  })
})

describe('hostile: an offer flood from one key while an honest requester runs jobs (item 10)', function () {
  this.timeout(180_000)
  let requester: MercatoNode
  let providers: MercatoNode[]
  let attacker: NetworkNode
  const seed = new Uint8Array(32).fill(11)
  const key = signerFromSeed(seed)

  before(async () => {
    // liveness is not under test here: a loaded machine must not make providers look lost
    requester = await startTestNode({ provide: false, config: { auction: { suspectAfterMs: 5000, lostAfterMs: 15_000 } } })
    const boot = [requester.network.addresses()[0]]
    providers = await Promise.all([1, 2].map(async price => await startTestNode({ price, bootstrap: boot })))
    // the flooder is a real requester: reachable, it takes every bid (the worst case for providers)
    attacker = await createNetwork({ seed, bootstrap: [...boot, ...providers.map(p => p.network.addresses()[0])] })
    await attacker.handleChannel(BID_STREAM_PROTOCOL, async (ch: MessageChannel) => { for await (const _ of ch) { /* take it */ } }, { maxInboundStreams: 16 })
    await attacker.handle(BID_PROTOCOL, () => new Uint8Array(0))
    attacker.subscribe(JOBS_TOPIC, () => {})
    await waitFor(() => providers.every(p => attacker.topicPeers(JOBS_TOPIC).includes(p.peerId) && requester.network.topicPeers(JOBS_TOPIC).includes(p.peerId)), 15_000)
  })
  after(async () => { await attacker?.stop(); await stopNodes() })

  it('2,000 spam offers: honest jobs all complete; provider logs grow with honest jobs, not spam', async () => {
    const recordsBefore = providers.map(p => p.ledger.head().count)
    // honest jobs whose bid window spans the flood (their offers must survive it), and short ones during it
    const long = await Promise.all(Array.from({ length: 4 }, async () => await requester.market.submit({ engine: 'js', source: SOURCE, input: { x: 1 }, maxPrice: 50, bidWindowMs: 6000, minBids: 3 })))
    const flood = (async () => {
      for (let i = 0; i < 2000; i += 50) {
        await attacker.publish(JOBS_TOPIC, encodeBatch(Array.from({ length: 50 }, () => offerFrom(key, attacker.addresses()))))
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    })()
    const short: string[] = []
    for (let i = 0; i < 6; i++) {
      // a window that closes when both providers answered, with room for a machine under load
      short.push((await requester.market.submit({ engine: 'js', source: SOURCE, input: { x: 1 }, maxPrice: 50, bidWindowMs: 10_000, minBids: 2 })).id)
      await new Promise(resolve => setTimeout(resolve, 500))
    }
    await flood
    const jobs = await Promise.all([...long.map(j => j.id), ...short].map(async id => await requester.market.waitFor(id, { signal: AbortSignal.timeout(60_000) })))
    for (const job of jobs) expect(job.status, JSON.stringify(job)).to.equal('completed')
    await new Promise(resolve => setTimeout(resolve, 1000)) // late appends (receipts) land
    const recordsAfter = providers.map(p => p.ledger.head().count)
    const growth = recordsAfter.map((n, i) => n - recordsBefore[i])
    // eslint-disable-next-line no-console
    console.log(`      provider log records before ${recordsBefore.join(', ')} → after ${recordsAfter.join(', ')} (10 honest jobs, 2,000 spam offers)`)
    // per honest job at most: bid, award, accept, result, receipt; plus the shared budget for
    // unproven requesters (32)
    for (const g of growth) expect(g).to.be.at.most(10 * 5 + 32 + 8)
  })
})

// ---------------------------------------------------------------- markets on the memory network

interface MemoryMarket { signer: Signer, net: MemoryNetwork, market: Market }

describe('hostile: replays, the bid stream, and relaying the jobs topic (items 11, 12)', function () {
  this.timeout(60_000)
  let hub: MemoryHub
  let executor: Executor
  const markets: MemoryMarket[] = []

  before(async () => {
    executor = createExecutor({ poolSize: 1 })
    await executor.start()
  })
  after(async () => { await executor.stop() })
  afterEach(async () => {
    for (const m of markets.splice(0)) await m.market.stop().catch(() => {})
  })

  async function memoryMarket (opts: { provide: boolean, bidStreamIdleMs?: number, bidRefusals?: { perSec: number, burst: number } }): Promise<MemoryMarket> {
    const signer = randomSigner()
    const net = hub.createNode(signer.peerId)
    const ledger = await openLedger({ signer })
    const market = createMarket({
      network: net,
      signer,
      ledger,
      executor,
      requester: { bidWindowMs: 50, minBids: 3, maxAttempts: 4, heartbeatMs: 250, suspectAfterMs: 2000, lostAfterMs: 5000, defaultMaxPrice: 100, minReputation: -3, bidStreamIdleMs: opts.bidStreamIdleMs, bidRefusals: opts.bidRefusals },
      provider: { enabled: opts.provide, price: 1, slots: 1, engines: ['js'], maxTimeoutMs: 10_000, maxMemoryMb: 64, maxOutputBytes: 65536, heartbeatMs: 250, resultRetentionMs: 60_000, dialPrivateAddresses: true }
    })
    await market.start()
    const m = { signer, net, market }
    markets.push(m)
    return m
  }

  it('replays: known items are ignored, an item twice in one batch is rejected (offers and receipts)', async () => {
    hub = new MemoryHub()
    const provider = await memoryMarket({ provide: true })
    const attacker = hub.createNode()
    const results = (): string[] => hub.gossipLog.filter(r => r.to === provider.signer.peerId).map(r => `${r.topic}:${r.result}`)
    const x = offerFrom(randomSigner(), [])
    const y = offerFrom(randomSigner(), [])
    await attacker.publish(JOBS_TOPIC, encodeBatch([x]))
    await attacker.publish(JOBS_TOPIC, canonicalEncode({ b: [x, x] })) // a new gossip id, one item twice
    await attacker.publish(JOBS_TOPIC, canonicalEncode({ b: [x] })) // the same item again
    await attacker.publish(JOBS_TOPIC, encodeBatch([y, y].slice(0, 1)))
    await waitFor(() => results().length === 4, 5000)
    expect(results()).to.deep.equal([`${JOBS_TOPIC}:accept`, `${JOBS_TOPIC}:reject`, `${JOBS_TOPIC}:ignore`, `${JOBS_TOPIC}:accept`])
    const requester = randomSigner()
    const receipt = sign(requester, 'receipt', { v: 1, jobId: x.payload.jobId, requester: requester.peerId, provider: provider.signer.peerId, resultId: 'bafyreiresultresultresultresultresultresultresultresultre', resultHash: '0'.repeat(64), price: 1, status: 'paid', ts: Date.now() })
    await attacker.publish('mercato/receipts/1', encodeBatch([receipt]))
    await attacker.publish('mercato/receipts/1', canonicalEncode({ b: [receipt, receipt] }))
    await attacker.publish('mercato/receipts/1', canonicalEncode({ b: [receipt] }))
    await waitFor(() => results().length === 7, 5000)
    expect(results().slice(4)).to.deep.equal(['mercato/receipts/1:accept', 'mercato/receipts/1:reject', 'mercato/receipts/1:ignore'])
    expect(provider.market.reputation.get(provider.signer.peerId).heardPaid).to.equal(1)
  })

  it('the bid stream: a garbage frame closes it, and so does silence', async () => {
    hub = new MemoryHub()
    const requester = await memoryMarket({ provide: false, bidStreamIdleMs: 300 })
    const attacker = hub.createNode()
    const closed = async (ch: MessageChannel): Promise<string> => {
      const it = ch[Symbol.asyncIterator]()
      const r = await Promise.race([
        it.next().then(() => 'closed', (err: Error) => `closed: ${err.message}`),
        new Promise<string>(resolve => setTimeout(() => { resolve('still open') }, 5000))
      ])
      return r
    }
    const garbage = await attacker.openChannel(requester.signer.peerId, BID_STREAM_PROTOCOL)
    await garbage.send(Uint8Array.of(0xff, 0x00, 0x13))
    expect(await closed(garbage)).to.match(/^closed: garbage frame/)
    const forged = await attacker.openChannel(requester.signer.peerId, BID_STREAM_PROTOCOL)
    await forged.send(canonicalEncode({ b: [{ domain: 'mercato/v1/bid', signer: attacker.peerId, payload: {}, sig: new Uint8Array(64) }] }))
    expect(await closed(forged)).to.match(/^closed: refused answer/)
    const t0 = Date.now()
    const idle = await attacker.openChannel(requester.signer.peerId, BID_STREAM_PROTOCOL)
    expect(await closed(idle)).to.match(/^closed: idle/)
    expect(Date.now() - t0).to.be.at.least(250)
  })

  it('the bid stream: answers for no job of ours cost no signature check, a peer past its budget of refused answers has its streams closed, and one signed by another key closes it at once', async () => {
    hub = new MemoryHub()
    // a budget that does not refill within the test (the default refills 256 a second): the count is exact however slow the machine
    const burst = 500
    const requester = await memoryMarket({ provide: false, bidRefusals: { perSec: 0.001, burst } })
    const key = randomSigner()
    const attacker = hub.createNode(key.peerId)
    const ended = async (ch: MessageChannel): Promise<string> => {
      const it = ch[Symbol.asyncIterator]()
      return await Promise.race([
        (async () => { try { while ((await it.next()).done !== true) {} return 'closed' } catch (err: any) { return `closed: ${String(err?.message)}` } })(),
        new Promise<string>(resolve => setTimeout(() => { resolve('still open') }, 10_000))
      ])
    }
    const refused = (reason: string): number => requester.market.refusals().requester.get(reason as any) ?? 0
    // one signed decline for a job the requester never had, 64 copies a frame, written on and on
    const decline = sign(key, 'decline', { v: 1, jobId: cidOfValue({ no: 'job' }), offerId: cidOfValue({ no: 'offer' }), provider: key.peerId, reason: 'price', ts: Date.now() })
    const frame = canonicalEncode({ b: Array(64).fill(decline) })
    const checks = signatureChecks.verified + signatureChecks.cached
    const ch = await attacker.openChannel(requester.signer.peerId, BID_STREAM_PROTOCOL)
    const outcome = ended(ch)
    for (let i = 0; i < 16; i++) await ch.send(frame).catch(() => {})
    expect(await outcome).to.equal('closed: too many refused answers')
    // the budget, and the item past it
    expect(refused('unknown-job')).to.equal(burst + 1)
    expect(signatureChecks.verified + signatureChecks.cached - checks, 'signatures checked').to.equal(0)
    // the budget is the peer's, not the stream's: a new stream of its is closed unread
    const again = await attacker.openChannel(requester.signer.peerId, BID_STREAM_PROTOCOL)
    expect(await ended(again)).to.equal('closed: too many refused answers')
    // a decline signed by another key than the stream's peer closes it at once, unchecked
    const key2 = randomSigner()
    const attacker2 = hub.createNode(key2.peerId)
    const other = randomSigner()
    const theirs = sign(other, 'decline', { ...decline.payload, provider: other.peerId })
    const ch2 = await attacker2.openChannel(requester.signer.peerId, BID_STREAM_PROTOCOL)
    await ch2.send(canonicalEncode({ b: [theirs] }))
    expect(await ended(ch2)).to.equal('closed: refused answer: wrong-sender')
    expect(signatureChecks.verified + signatureChecks.cached - checks, 'signatures checked').to.equal(0)
  })

  it('the offer stream: a garbage or forged frame closes it and is counted, an oversize one is refused; the provider still takes invitations', async () => {
    hub = new MemoryHub()
    const provider = await memoryMarket({ provide: true })
    const attacker = hub.createNode()
    const ended = async (ch: MessageChannel): Promise<string> => {
      const it = ch[Symbol.asyncIterator]()
      return await Promise.race([
        it.next().then(() => 'closed', (err: Error) => `closed: ${err.message}`),
        new Promise<string>(resolve => setTimeout(() => { resolve('still open') }, 5000))
      ])
    }
    const refused = (reason: string): number => provider.market.refusals().provider.get(reason as any) ?? 0
    const garbage = await attacker.openChannel(provider.signer.peerId, OFFER_STREAM_PROTOCOL)
    await garbage.send(Uint8Array.of(0xff, 0x00, 0x13))
    expect(await ended(garbage)).to.match(/^closed/)
    expect(refused('bad-encoding') + refused('bad-schema')).to.equal(1)
    const forged = await attacker.openChannel(provider.signer.peerId, OFFER_STREAM_PROTOCOL)
    await forged.send(canonicalEncode({ domain: 'mercato/v1/offer', signer: attacker.peerId, payload: {}, sig: new Uint8Array(64) }))
    expect(await ended(forged)).to.match(/^closed/)
    expect(refused('bad-signature') + refused('bad-schema')).to.be.at.least(1)
    // a frame over MAX_OFFER_BYTES is refused by the channel itself (here at the sender; over libp2p the reader's cap)
    const big = await attacker.openChannel(provider.signer.peerId, OFFER_STREAM_PROTOCOL)
    let tooLarge: unknown
    await big.send(new Uint8Array(MAX_OFFER_BYTES + 1)).catch((err) => { tooLarge = err })
    expect((tooLarge as Error)?.name).to.equal('MessageTooLargeError')
    // and an honest requester's invitations still reach it (on a stream of their own)
    const requester = await memoryMarket({ provide: false })
    await waitFor(() => requester.market.providers().some(p => p.peerId === provider.signer.peerId && p.advert != null), 10_000)
    const job = await requester.market.submit({ engine: 'js', source: SOURCE, input: { x: 41 }, minBids: 1 })
    const done = await requester.market.waitFor(job.id, { signal: AbortSignal.timeout(20_000) })
    expect(done.status).to.equal('completed')
    expect(done.provider).to.equal(provider.signer.peerId)
  })

  it('relay: in a line A — R — B where R only requests, A\'s job reaches provider B and completes', async () => {
    hub = new MemoryHub({ relay: true, dialable: true })
    const a = await memoryMarket({ provide: false })
    const r = await memoryMarket({ provide: false })
    const b = await memoryMarket({ provide: true })
    hub.disconnect(a.signer.peerId, b.signer.peerId) // B is reached only through R
    hub.providers.clear() // and no DHT shortcut: job gossip must cross R
    const job = await a.market.submit({ engine: 'js', source: SOURCE, input: { x: 41 }, bidWindowMs: 2000, minBids: 1 })
    const done = await a.market.waitFor(job.id, { signal: AbortSignal.timeout(20_000) })
    expect(done.status, JSON.stringify(done)).to.equal('completed')
    expect(done.provider).to.equal(b.signer.peerId)
    expect((await a.market.result(job.id)).output).to.equal(42)
    expect(r.net.subs.has(JOBS_TOPIC)).to.equal(true)
  })
})

describe('hostile: what counts as a public address (answer dials without dialPrivateAddresses)', () => {
  it('loopback, private, shared, link-local, unique-local, multicast and DNS names are not public', async () => {
    const { isPublicAddress } = await import('../../src/p2p/public-address.js')
    for (const a of ['/ip4/127.0.0.1/tcp/1', '/ip4/10.1.2.3/tcp/1', '/ip4/172.16.0.1/tcp/1', '/ip4/192.168.1.1/tcp/1', '/ip4/100.64.0.1/tcp/1', '/ip4/169.254.1.1/tcp/1', '/ip4/0.0.0.0/tcp/1', '/ip4/224.0.0.251/tcp/1', '/ip6/::1/tcp/1', '/ip6/fe80::1/tcp/1', '/ip6/fd00::1/tcp/1', '/dns4/localhost/tcp/1', '/dns4/example.com/tcp/1', 'not an address']) {
      expect(isPublicAddress(a), a).to.equal(false)
    }
    for (const a of ['/ip4/11.0.0.1/tcp/4010', '/ip4/8.8.8.8/tcp/1/p2p/12D3KooWJ5Ggt1mZg9C2vfemCQi2EXUsgb4wzYAK3LWH7c2pn3E8', '/ip6/2001:4860::8888/tcp/1']) {
      expect(isPublicAddress(a), a).to.equal(true)
    }
  })
})
