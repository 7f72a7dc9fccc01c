import '../../src/polyfill.js'
import { expect } from 'chai'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createNetwork, type NetworkNode } from '../../src/p2p/index.js'
import { CHANNEL_CLOSE_GRACE_MS, MAX_INBOUND_CONNECTIONS_PER_IP, MAX_MESSAGE_PARTS } from '../../src/p2p/constants.js'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** A plain libp2p node (TCP, Noise, yamux): a stranger that does not play by Mercato's rules. */
async function plainClient (maxConnections?: number): Promise<Libp2p> {
  return await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], connectionManager: maxConnections != null ? { maxConnections } : undefined })
}

describe('p2p: connection limits hold for local peers too', function () {
  this.timeout(60_000)
  let victim: NetworkNode | undefined
  let attacker: Libp2p | undefined
  after(async () => { await attacker?.stop(); await victim?.stop() })

  it('a node with default settings refuses connections from 127.0.0.1 beyond maxConnections', async () => {
    const maxConnections = 10
    victim = await createNetwork({ maxConnections }) // p2p.allow left at its default
    // a plain libp2p client on this machine opening one connection after another to the same node
    attacker = await plainClient(1000)
    const target = multiaddr(victim.addresses()[0])
    let accepted = 0
    const tries = 40
    for (let i = 0; i < tries; i++) {
      // slower than the inbound rate limit (50/s per host): what refuses them must be maxConnections
      const conn = await attacker.dial(target, { force: true, signal: AbortSignal.timeout(5000) }).catch(() => null)
      if (conn != null) {
        await sleep(20)
        if (conn.status === 'open') accepted++
      }
      await sleep(40)
    }
    await sleep(500)
    const held = attacker.getConnections().filter(c => c.status === 'open').length
    console.log(`      ${tries} dials: ${accepted} open right after the dial, ${held} still open; the node holds ${victim.peers()[0]?.addresses.length ?? 0} connections`)
    expect(held, 'connections the node kept').to.be.at.most(maxConnections)
    expect(accepted, 'connections the node accepted').to.be.at.most(maxConnections + 2)
  })
})

describe('p2p: a message cut into tiny frames', function () {
  this.timeout(60_000)
  let victim: NetworkNode | undefined
  let attacker: Libp2p | undefined
  after(async () => { await attacker?.stop(); await victim?.stop() })

  it('parts() hands over a message in at most MAX_MESSAGE_PARTS pieces: one cut into more, smaller frames comes joined', async () => {
    victim = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'] })
    const got: Uint8Array[][] = []
    let ended: (() => void) | undefined
    const done = new Promise<void>(resolve => { ended = resolve })
    await victim.handleChannel('/test/tiny/1.0.0', async (ch) => {
      try { for await (const pieces of ch.parts()) got.push(pieces) } finally { ended?.() }
    })
    attacker = await plainClient()
    const stream = await attacker.dialProtocol(multiaddr(victim.addresses()[0]), '/test/tiny/1.0.0', { signal: AbortSignal.timeout(5000) })
    // each byte its own write, a turn apart: its own yamux frame and noise frame
    const dribble = async (bytes: Uint8Array): Promise<void> => {
      for (const b of bytes) { stream.send(Uint8Array.of(b)); await sleep(1) }
    }
    const small = Uint8Array.from({ length: 40 }, (_, i) => i)
    const large = Uint8Array.from({ length: 200 }, (_, i) => 255 - i)
    await dribble(Uint8Array.of(small.length, ...small))
    await dribble(Uint8Array.of(0xc8, 0x01, ...large)) // varint 200
    await stream.close()
    await done
    expect(got).to.have.length(2)
    expect(Buffer.concat(got[0]).equals(small)).to.equal(true)
    expect(got[0].length, 'pieces of the small message').to.be.above(1).and.at.most(MAX_MESSAGE_PARTS)
    expect(got[1], 'the large one, joined').to.have.length(1)
    expect(Buffer.from(got[1][0]).equals(large)).to.equal(true)
  })
})

describe('p2p: what one host and a silent peer can hold', function () {
  this.timeout(60_000)
  let victim: NetworkNode | undefined
  const clients: Libp2p[] = []
  afterEach(async () => {
    await Promise.all(clients.splice(0).map(async c => { await c.stop() }))
    await victim?.stop()
    victim = undefined
  })

  it('a channel we close is reset CHANNEL_CLOSE_GRACE_MS later when the other end never closes its side (it kept its connection busy for good)', async () => {
    victim = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'] })
    let closedAt = 0
    await victim.handleChannel('/test/close/1.0.0', async (ch) => { await ch.close(); closedAt = Date.now() })
    const client = await plainClient()
    clients.push(client)
    // a stranger that opens the stream and then neither reads nor closes
    const stream = await client.dialProtocol(multiaddr(victim.addresses()[0]), '/test/close/1.0.0', { signal: AbortSignal.timeout(5000) })
    const t0 = Date.now()
    while (stream.status === 'open' && Date.now() - t0 < CHANNEL_CLOSE_GRACE_MS + 5000) await sleep(100)
    expect(stream.status, 'the stranger\'s stream').to.be.oneOf(['reset', 'aborted', 'closed'])
    expect(closedAt, 'the handler\'s close returned').to.be.greaterThan(0)
    expect(Date.now() - t0, 'reset after the grace').to.be.within(CHANNEL_CLOSE_GRACE_MS - 1000, CHANNEL_CLOSE_GRACE_MS + 5000)
  })

  it(`one host gets MAX_INBOUND_CONNECTIONS_PER_IP (${MAX_INBOUND_CONNECTIONS_PER_IP}) connections, however many identities it has; an allowed one gets more`, async () => {
    const connect = async (target: string, n: number): Promise<number> => {
      let open = 0
      for (let i = 0; i < n; i++) {
        const c = await plainClient()
        clients.push(c)
        // slower than the inbound rate limit (50/s per host): what refuses them must be the cap
        const conn = await c.dial(multiaddr(target), { signal: AbortSignal.timeout(5000) }).catch(() => null)
        await sleep(30)
        if (conn?.status === 'open') open++
      }
      await sleep(300)
      return clients.filter(c => c.getConnections().some(x => x.status === 'open')).length
    }
    victim = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], maxConnections: 100 })
    const held = await connect(victim.addresses()[0], MAX_INBOUND_CONNECTIONS_PER_IP + 6)
    expect(held).to.equal(MAX_INBOUND_CONNECTIONS_PER_IP)
    expect(victim.peers().length).to.equal(MAX_INBOUND_CONNECTIONS_PER_IP)
    await Promise.all(clients.splice(0).map(async c => { await c.stop() }))
    await victim.stop()
    victim = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], maxConnections: 100, allow: ['/ip4/127.0.0.1'] })
    expect(await connect(victim.addresses()[0], MAX_INBOUND_CONNECTIONS_PER_IP + 6)).to.equal(MAX_INBOUND_CONNECTIONS_PER_IP + 6)
  })
})
