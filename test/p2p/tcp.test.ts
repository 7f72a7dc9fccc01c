/**
 * Coalesced TCP writes (src/p2p/tcp.ts): the frames of one event-loop turn leave in one socket
 * write. A fake connection for the cork/uncork rules, then two real nodes on 127.0.0.1 counting
 * the socket writes a burst of channel messages costs.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { createNetwork, type NetworkNode } from '../../src/p2p/index.js'
import { coalesceWrites } from '../../src/p2p/tcp.js'
import { waitFor } from '../helpers/nodes.js'
import { socketWritesDuring } from '../helpers/sockets.js'

describe('p2p: coalesced TCP writes', function () {
  this.timeout(30_000)

  it('corks the socket on the first write of a turn and uncorks it once, after the turn', async () => {
    const calls: string[] = []
    const conn = {
      socket: { destroyed: false, cork: () => { calls.push('cork') }, uncork: () => { calls.push('uncork') } },
      sendData (this: any, data: string): { sentBytes: number } { calls.push(`send ${data}`); expect(this).to.equal(conn); return { sentBytes: data.length } }
    }
    expect(coalesceWrites(conn)).to.equal(true)
    // writes from promise jobs chained in one turn (as the muxer's are)
    let answer: unknown
    await Promise.resolve().then(() => { answer = conn.sendData('a') }).then(() => { conn.sendData('bc') })
    expect(answer).to.deep.equal({ sentBytes: 1 })
    expect(calls).to.deep.equal(['cork', 'send a', 'send bc'])
    await new Promise(resolve => setImmediate(resolve))
    expect(calls).to.deep.equal(['cork', 'send a', 'send bc', 'uncork'])
    // the next turn corks again
    conn.sendData('d')
    await new Promise(resolve => setImmediate(resolve))
    expect(calls.slice(4)).to.deep.equal(['cork', 'send d', 'uncork'])
    // bulk data flushes what the turn corked and is not corked itself
    conn.sendData('f')
    conn.sendData({ byteLength: 64 * 1024 } as any)
    conn.sendData('g')
    await new Promise(resolve => setImmediate(resolve))
    expect(calls.slice(7)).to.deep.equal(['cork', 'send f', 'uncork', 'send [object Object]', 'cork', 'send g', 'uncork'])
    calls.splice(7)
    // a destroyed socket is not corked; the write still goes to the connection
    conn.socket.destroyed = true
    conn.sendData('e')
    await new Promise(resolve => setImmediate(resolve))
    expect(calls.slice(7)).to.deep.equal(['send e'])
  })

  it('leaves a connection without a corkable socket as it is', () => {
    const send = (): void => {}
    const conn = { sendData: send }
    expect(coalesceWrites(conn)).to.equal(false)
    expect(conn.sendData).to.equal(send)
    expect(coalesceWrites({ socket: {}, sendData: send })).to.equal(false)
    expect(coalesceWrites(null)).to.equal(false)
  })

  describe('two nodes on 127.0.0.1', () => {
    const nodes: NetworkNode[] = []
    after(async () => { await Promise.all(nodes.map(async n => { await n.stop() })) })

    it('a burst of 40 channel messages sent in one turn leaves in a few socket writes, all delivered', async () => {
      const a = await createNetwork({ mdns: false })
      const b = await createNetwork({ mdns: false })
      nodes.push(a, b)
      const got: number[] = []
      await b.handleChannel('/mercato/test/burst/1', async (ch) => { for await (const m of ch) got.push(m[0]) })
      const bAddr = b.addresses()[0]
      const bPort = Number(bAddr.split('/tcp/')[1].split('/')[0])
      await a.dial(bAddr)
      const ch = await a.openChannel(b.peerId, '/mercato/test/burst/1')
      await ch.send(Uint8Array.of(255))
      await waitFor(() => got.length === 1, 5000)

      // count the writes of A's socket to B while the burst goes out
      const writes = await socketWritesDuring(s => s.remotePort === bPort, async () => {
        await Promise.all(Array.from({ length: 40 }, async (_, i) => { await ch.send(Uint8Array.of(i, 1, 2, 3)) }))
        await waitFor(() => got.length === 41, 5000)
      })
      expect(got.slice(1)).to.deep.equal(Array.from({ length: 40 }, (_, i) => i))
      expect(writes).to.be.greaterThan(0)
      expect(writes, 'socket writes for 40 messages').to.be.below(8)
      await ch.close()
    })

    it('bulk data is not held back: 32 MiB in 256 KiB messages reaches a reader with an 8 MiB buffer whole, twice', async () => {
      const [a, b] = nodes
      const PIECE = 256 * 1024
      const SIZE = 32 * 1024 * 1024
      let got = 0
      let failed: unknown
      await b.handleChannel('/mercato/test/bulk/1', async (ch) => {
        try { for await (const m of ch) got += m.length } catch (err) { failed = err }
      }, { maxMessageBytes: PIECE, maxBufferBytes: 8 * 1024 * 1024 })
      const piece = new Uint8Array(PIECE).fill(7)
      for (let pass = 0; pass < 2; pass++) {
        got = 0
        const ch = await a.openChannel(b.peerId, '/mercato/test/bulk/1', { maxMessageBytes: PIECE })
        for (let sent = 0; sent < SIZE; sent += PIECE) await ch.send(piece)
        await waitFor(() => got === SIZE || failed != null, 20_000)
        expect(failed, String(failed)).to.equal(undefined)
        await ch.close()
      }
    })
  })
})
