/**
 * Window updates at half window (src/p2p/yamux.ts): a yamux stream grants its peer more window once
 * half of its receive window is used, not after every frame. A fake stream for the rule, then two
 * real nodes on 127.0.0.1 counting the socket writes the receiving end makes.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { createNetwork, type NetworkNode } from '../../src/p2p/index.js'
import { deferWindowUpdates, halfWindowUpdates } from '../../src/p2p/yamux.js'
import { waitFor } from '../helpers/nodes.js'
import { socketWritesDuring } from '../helpers/sockets.js'

/** yamux's StreamState values (dist/src/stream.js) */
const State = { Init: 0, SYNSent: 1, SYNReceived: 2, Established: 3, Finished: 4, Paused: 5 }

describe('p2p: yamux window updates at half window', function () {
  this.timeout(30_000)

  function fakeStream (state: number, used: number): { state: number, recvWindow: number, recvWindowCapacity: number, sendWindowUpdate: () => void, sent: number } {
    const s = {
      state,
      recvWindow: 256 * 1024,
      recvWindowCapacity: 256 * 1024 - used,
      sent: 0,
      sendWindowUpdate (this: { sent: number }): void { this.sent++ }
    }
    expect(halfWindowUpdates(s)).to.equal(true)
    return s
  }

  it('an established stream sends an update only once half its window is used', () => {
    for (const state of [State.SYNSent, State.Established]) {
      const s = fakeStream(state, 0)
      s.sendWindowUpdate()
      s.recvWindowCapacity -= 64 * 1024
      s.sendWindowUpdate()
      s.recvWindowCapacity = 128 * 1024 + 1
      s.sendWindowUpdate()
      expect(s.sent, `state ${state}, under half used`).to.equal(0)
      s.recvWindowCapacity = 128 * 1024
      s.sendWindowUpdate()
      expect(s.sent, `state ${state}, half used`).to.equal(1)
    }
  })

  it('an update that carries a flag, or of a paused or finished stream, is yamux\'s own', () => {
    for (const state of [State.Init, State.SYNReceived, State.Finished, State.Paused]) {
      const s = fakeStream(state, 0)
      s.sendWindowUpdate()
      expect(s.sent, `state ${state}`).to.equal(1)
    }
  })

  it('leaves what is not a yamux stream or muxer as it is', () => {
    const send = (): void => {}
    const s = { state: 3, recvWindow: 10, sendWindowUpdate: send }
    expect(halfWindowUpdates(s)).to.equal(false)
    expect(s.sendWindowUpdate).to.equal(send)
    expect(halfWindowUpdates(null)).to.equal(false)
    expect(deferWindowUpdates({})).to.equal(false)
    expect(deferWindowUpdates(undefined)).to.equal(false)
  })

  describe('two nodes on 127.0.0.1', () => {
    const nodes: NetworkNode[] = []
    after(async () => { await Promise.all(nodes.map(async n => { await n.stop() })) })

    it('50 small messages, one at a time, cost their receiver no write back; 24 MiB still flows', async () => {
      const a = await createNetwork({ mdns: false })
      const b = await createNetwork({ mdns: false })
      nodes.push(a, b)
      let count = 0
      let bytes = 0
      await b.handleChannel('/mercato/test/window/1', async (ch) => { for await (const m of ch) { count++; bytes += m.length } }, { maxMessageBytes: 256 * 1024, maxBufferBytes: 8 * 1024 * 1024 })
      const bAddr = b.addresses()[0]
      const bPort = Number(bAddr.split('/tcp/')[1].split('/')[0])
      await a.dial(bAddr)
      const ch = await a.openChannel(b.peerId, '/mercato/test/window/1', { maxMessageBytes: 256 * 1024 })
      await ch.send(Uint8Array.of(1))
      await waitFor(() => count === 1, 5000)

      // each message in its own turn, the next sent once the last arrived: before, each one made B
      // write a window update back to A
      const small = await socketWritesDuring(s => s.localPort === bPort, async () => {
        for (let i = 0; i < 50; i++) {
          await ch.send(new Uint8Array(200).fill(i))
          await waitFor(() => count === 2 + i, 5000, 1)
        }
      })
      expect(small, 'B\'s socket writes while it received 50 messages').to.be.below(3)

      // bulk data: the window is granted as it is used, so a sender never stalls
      const piece = new Uint8Array(256 * 1024).fill(9)
      const before = bytes
      const bulk = await socketWritesDuring(s => s.localPort === bPort, async () => {
        for (let sent = 0; sent < 24 * 1024 * 1024; sent += piece.length) await ch.send(piece)
        await waitFor(() => bytes - before === 24 * 1024 * 1024, 20_000)
      })
      expect(bulk, 'B\'s window updates for 24 MiB').to.be.greaterThan(0)
      await ch.close()
    })
  })
})
