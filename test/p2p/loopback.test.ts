/**
 * A node reaches itself through the Network like any peer: requests, channels, gossip and DHT
 * records addressed to its own PeerId come back to its own handlers, with the same checks.
 */
import { expect } from 'chai'
import { withLoopback, MessageTooLargeError, RemoteError, RequestTimeoutError, type TopicVerdict } from '../../src/p2p/index.js'
import { MemoryHub } from '../helpers/memory-network.js'

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)
const tick = async (ms = 10): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('p2p: loopback', () => {
  function setup (): { net: ReturnType<typeof withLoopback>, other: ReturnType<MemoryHub['createNode']> } {
    const hub = new MemoryHub()
    const inner = hub.createNode()
    const other = hub.createNode()
    return { net: withLoopback(inner), other }
  }

  it('a request to ourselves reaches our own handler, named as coming from us', async () => {
    const { net, other } = setup()
    const froms: string[] = []
    await net.handle('/echo/1.0.0', (req, ctx) => { froms.push(ctx.from); return enc(`echo ${dec(req)}`) })
    expect(dec(await net.request(net.peerId, '/echo/1.0.0', enc('a')))).to.equal('echo a')
    expect(dec(await net.request(net.addresses()[0], '/echo/1.0.0', enc('b')))).to.equal('echo b')
    // the same handler still answers other peers through the wrapped network
    expect(dec(await other.request(net.peerId, '/echo/1.0.0', enc('c')))).to.equal('echo c')
    expect(froms).to.deep.equal([net.peerId, net.peerId, other.peerId])
  })

  it('requests to ourselves keep the caps, the error frames and the timeout', async () => {
    const { net } = setup()
    await net.handle('/small/1.0.0', () => new Uint8Array(100), { maxRequestBytes: 8 })
    await net.handle('/fails/1.0.0', () => { throw Object.assign(new Error('nope'), { code: 'bad-thing' }) })
    await net.handle('/slow/1.0.0', async () => { await tick(500); return new Uint8Array(0) })
    const tooBig = await net.request(net.peerId, '/small/1.0.0', new Uint8Array(9)).catch(e => e)
    expect(tooBig).to.be.instanceOf(MessageTooLargeError)
    const bigAnswer = await net.request(net.peerId, '/small/1.0.0', new Uint8Array(1), { maxResponseBytes: 10 }).catch(e => e)
    expect(bigAnswer).to.be.instanceOf(MessageTooLargeError)
    const failed = await net.request(net.peerId, '/fails/1.0.0', new Uint8Array(0)).catch(e => e)
    expect(failed).to.be.instanceOf(RemoteError)
    expect(failed.remoteCode).to.equal('bad-thing')
    const unknown = await net.request(net.peerId, '/none/1.0.0', new Uint8Array(0)).catch(e => e)
    expect(unknown).to.be.instanceOf(RemoteError)
    const slow = await net.request(net.peerId, '/slow/1.0.0', new Uint8Array(0), { timeoutMs: 50 }).catch(e => e)
    expect(slow).to.be.instanceOf(RequestTimeoutError)
  })

  it('a channel to ourselves carries messages both ways, ends cleanly, resets both ends and caps sizes', async () => {
    const { net } = setup()
    const got: string[] = []
    await net.handleChannel('/chat/1.0.0', async (ch) => {
      expect(ch.remotePeer).to.equal(net.peerId)
      for await (const m of ch) { got.push(dec(m)); await ch.send(enc(`re ${dec(m)}`)) }
      await ch.close()
    }, { maxMessageBytes: 16 })
    const ch = await net.openChannel(net.peerId, '/chat/1.0.0', { maxMessageBytes: 1024 })
    await ch.send(enc('one'))
    await ch.send(enc('two'))
    const it = ch[Symbol.asyncIterator]()
    expect(dec((await it.next()).value)).to.equal('re one')
    expect(dec((await it.next()).value)).to.equal('re two')
    const big = await ch.send(new Uint8Array(17)).catch(e => e)
    expect(big).to.be.instanceOf(MessageTooLargeError)
    await ch.close()
    expect((await it.next()).done).to.equal(true)
    expect(got).to.deep.equal(['one', 'two'])

    const reset = await net.openChannel(net.peerId, '/chat/1.0.0')
    const reader = reset[Symbol.asyncIterator]().next()
    reset.abort(new Error('gone'))
    const err = await reader.catch(e => e)
    expect(err.message).to.equal('gone')
  })

  it('what we publish reaches our own subscription through its decoder, and we count as a topic peer', async () => {
    const { net, other } = setup()
    const mine: number[] = []
    const theirs: string[] = []
    const decode = (msg: { data: Uint8Array }): TopicVerdict<number> => {
      const n = Number(dec(msg.data))
      return Number.isInteger(n) ? { result: 'accept', value: n } : { result: 'reject' }
    }
    expect(net.topicPeers('t')).to.deep.equal([])
    net.subscribe('t', decode, (msg) => { mine.push(msg.value) })
    other.subscribe('t', (msg) => { theirs.push(dec(msg.value)) })
    expect(net.topicPeers('t').sort()).to.deep.equal([net.peerId, other.peerId].sort())
    await net.publish('t', enc('7'))
    await net.publish('t', enc('garbage'))
    await tick(20)
    expect(mine).to.deep.equal([7])
    expect(theirs).to.deep.equal(['7', 'garbage'])
    net.unsubscribe('t')
    await net.publish('t', enc('8'))
    await tick(20)
    expect(mine).to.deep.equal([7])
    expect(net.topicPeers('t')).to.deep.equal([other.peerId])
  })

  it('we find ourselves among the providers of keys we provide; we are connected to ourselves', async () => {
    const { net, other } = setup()
    await net.provide('mercato:engine:js')
    expect(await net.findProviders('mercato:engine:js')).to.deep.equal([net.peerId])
    expect(await other.findProviders('mercato:engine:js')).to.deep.equal([net.peerId])
    expect(await net.findProviders('mercato:engine:wasm')).to.deep.equal([])
    expect(net.isConnected(net.peerId)).to.equal(true)
    expect(await net.dial(net.addresses()[0])).to.equal(net.peerId)
  })
})
