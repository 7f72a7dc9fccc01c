import '../../src/polyfill.js'
import { expect } from 'chai'
import { createNetwork, type NetworkNode, MessageTooLargeError, RequestTimeoutError, RemoteError } from '../../src/p2p/index.js'

async function waitFor (cond: () => boolean, timeoutMs: number, stepMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, stepMs))
  }
}

describe('p2p: mesh formation and gossip (6 nodes, one process)', function () {
  this.timeout(30_000)
  const nodes: NetworkNode[] = []

  after(async () => { await Promise.all(nodes.map(async n => n.stop())) })

  it('nodes bootstrapped only to node 0 find each other and gossip reaches all', async () => {
    nodes.push(await createNetwork())
    const boot = nodes[0].addresses()[0]
    for (let i = 1; i < 6; i++) nodes.push(await createNetwork({ bootstrap: [boot] }))
    const started = Date.now()
    await waitFor(() => nodes.every(n => n.peers().length >= 4), 10_000)
    const meshMs = Date.now() - started
    expect(meshMs).to.be.lessThan(10_000)

    const got = new Map<number, string>()
    nodes.forEach((n, i) => n.subscribe('test/topic', (msg) => { got.set(i, new TextDecoder().decode(msg.data)) }))
    await waitFor(() => nodes[5].topicPeers('test/topic').length >= 2, 5000)
    // retry publishing until all received (subscriptions propagate asynchronously)
    const deadline = Date.now() + 8000
    let k = 0
    while (got.size < 5 && Date.now() < deadline) {
      await nodes[5].publish('test/topic', new TextEncoder().encode(`hello ${k++}`))
      await new Promise(resolve => setTimeout(resolve, 300))
    }
    for (let i = 0; i < 5; i++) expect(got.get(i), `node ${i}`).to.match(/^hello /)
  })
})

describe('p2p: request/response', function () {
  this.timeout(20_000)
  let a: NetworkNode
  let b: NetworkNode

  before(async () => {
    a = await createNetwork()
    b = await createNetwork()
    await a.handle('/test/echo/1.0.0', (req) => req, { maxRequestBytes: 1024 })
    await a.handle('/test/slow/1.0.0', async () => { await new Promise(resolve => setTimeout(resolve, 2000)); return new Uint8Array() })
    await a.handle('/test/throws/1.0.0', () => { throw Object.assign(new Error('boom'), { code: 'bad-thing' }) })
  })
  after(async () => { await Promise.all([a?.stop(), b?.stop()]) })

  it('round trips', async () => {
    const res = await b.request(a.addresses()[0], '/test/echo/1.0.0', new TextEncoder().encode('ping'))
    expect(new TextDecoder().decode(res)).to.equal('ping')
    // by PeerId once connected
    const again = await b.request(a.peerId, '/test/echo/1.0.0', Uint8Array.of(1, 2, 3))
    expect([...again]).to.deep.equal([1, 2, 3])
  })

  it('an oversize request fails with MessageTooLargeError', async () => {
    try {
      await b.request(a.peerId, '/test/echo/1.0.0', new Uint8Array(4096))
      expect.fail('should have thrown')
    } catch (err: any) {
      expect(err.name).to.equal('MessageTooLargeError')
      expect(err).to.be.instanceOf(MessageTooLargeError)
    }
  })

  it('an oversize response fails with MessageTooLargeError', async () => {
    try {
      await b.request(a.peerId, '/test/echo/1.0.0', new Uint8Array(1000), { maxResponseBytes: 100 })
      expect.fail('should have thrown')
    } catch (err: any) {
      expect(err.name).to.equal('MessageTooLargeError')
    }
  })

  it('honours a timeout', async () => {
    const start = Date.now()
    try {
      await b.request(a.peerId, '/test/slow/1.0.0', new Uint8Array(1), { timeoutMs: 300 })
      expect.fail('should have thrown')
    } catch (err: any) {
      expect(err).to.be.instanceOf(RequestTimeoutError)
      expect(Date.now() - start).to.be.lessThan(1500)
    }
  })

  it('a handler that throws answers with an error and the node keeps serving', async () => {
    try {
      await b.request(a.peerId, '/test/throws/1.0.0', new Uint8Array(1))
      expect.fail('should have thrown')
    } catch (err: any) {
      expect(err).to.be.instanceOf(RemoteError)
      expect(err.remoteCode).to.equal('bad-thing')
    }
    const res = await b.request(a.peerId, '/test/echo/1.0.0', Uint8Array.of(9))
    expect([...res]).to.deep.equal([9])
  })

  it('channels carry messages both ways and end cleanly', async () => {
    const seen: number[] = []
    await a.handleChannel('/test/chan/1.0.0', async (ch) => {
      for await (const msg of ch) { seen.push(msg[0]); await ch.send(Uint8Array.of(msg[0] * 2)) }
      await ch.close()
    })
    const ch = await b.openChannel(a.peerId, '/test/chan/1.0.0')
    const replies: number[] = []
    await ch.send(Uint8Array.of(1))
    await ch.send(Uint8Array.of(2))
    const it = ch[Symbol.asyncIterator]()
    replies.push((await it.next()).value[0], (await it.next()).value[0])
    await ch.close()
    expect(replies).to.deep.equal([2, 4])
    expect((await it.next()).done).to.equal(true)
    expect(seen).to.deep.equal([1, 2])
  })

  it('sendMany carries each message whole, a message of parts joined, and keeps the size cap', async () => {
    const seen: string[] = []
    let ended: (() => void) | undefined
    const done = new Promise<void>(resolve => { ended = resolve })
    await a.handleChannel('/test/parts/1.0.0', async (ch) => {
      try {
        for await (const msg of ch) seen.push(Buffer.from(msg).toString())
      } catch (err: any) { seen.push(`error ${err.code ?? err.name}`) }
      ended?.()
    }, { maxMessageBytes: 8 })
    const ch = await b.openChannel(a.peerId, '/test/parts/1.0.0')
    const big = new TextEncoder().encode('-world')
    await ch.sendMany([Uint8Array.of(0x61), [Uint8Array.of(0x68), big.subarray(0, 3), big.subarray(3)], new Uint8Array(0), [Uint8Array.of(0x7a)]])
    // one message of parts over the reader's cap (9 bytes of 8) is refused like any other
    await ch.sendMany([[new Uint8Array(4), new Uint8Array(5)]])
    await done
    expect(seen).to.deep.equal(['a', 'h-world', '', 'z', 'error message-too-large'])
    ch.abort()
  })

  it('parts() gives a large message in the pieces it arrived in, which join to the bytes sent', async () => {
    const got: Uint8Array[][] = []
    let ended: (() => void) | undefined
    const done = new Promise<void>(resolve => { ended = resolve })
    await a.handleChannel('/test/pieces/1.0.0', async (ch) => {
      for await (const pieces of ch.parts()) got.push(pieces)
      ended?.()
    }, { maxMessageBytes: 1024 * 1024 })
    const ch = await b.openChannel(a.peerId, '/test/pieces/1.0.0')
    const big = new Uint8Array(300 * 1024).map((_, i) => i % 251)
    await ch.send(big)
    await ch.send(Uint8Array.of(7))
    await ch.close()
    await done
    expect(got).to.have.length(2)
    // 300 KiB cannot come in one noise frame (at most 64 KiB)
    expect(got[0].length).to.be.above(1)
    expect(Buffer.concat(got[0]).equals(big)).to.equal(true)
    expect(Buffer.concat(got[1])).to.deep.equal(Buffer.of(7))
  })

  it('finds DHT providers', async () => {
    // the routing tables fill in the background after connecting: ask again until they have
    let found: string[] = []
    const end = Date.now() + 15_000
    while (!found.includes(a.peerId) && Date.now() < end) {
      await a.provide('mercato:test:key', { signal: AbortSignal.timeout(5000) }).catch(() => {})
      found = await b.findProviders('mercato:test:key', { signal: AbortSignal.timeout(5000) })
      if (!found.includes(a.peerId)) await new Promise(resolve => setTimeout(resolve, 250))
    }
    expect(found).to.include(a.peerId)
  })
})
