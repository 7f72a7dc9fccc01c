/**
 * Yamux (src/p2p/yamux.ts). Window updates at half window: a stream grants its peer more window
 * once half of its receive window is used, not after every frame (a fake stream for the rule, then
 * two real nodes on 127.0.0.1 counting the socket writes the receiving end makes). Liveness: yamux
 * PINGs find a connection whose peer stopped answering (a fake muxer, then a real connection whose
 * far end stops reading its socket).
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { createNetwork, type NetworkNode } from '../../src/p2p/index.js'
import net from 'node:net'
import { deferWindowUpdates, halfWindowUpdates, PingTimeoutError, watchLiveness } from '../../src/p2p/yamux.js'
import { waitFor } from '../helpers/nodes.js'
import { socketWritesDuring } from '../helpers/sockets.js'

/** yamux's StreamState values (dist/src/stream.js) */
const State = { Init: 0, SYNSent: 1, SYNReceived: 2, Established: 3, Finished: 4, Paused: 5 }

describe('p2p: yamux: window updates at half window, liveness by PING', function () {
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
      // a new connection's own traffic first (identify, the DHT, pings), at its own pace on a loaded
      // machine: measured from a quarter second in which B wrote nothing (in one run, 8 writes)
      const quiet = async (): Promise<boolean> => await socketWritesDuring(s => s.localPort === bPort, async () => { await new Promise(resolve => setTimeout(resolve, 250)) }) === 0
      await waitFor(quiet, 10_000, 0)

      // each message in its own turn, the next sent once the last arrived: before, each one made B
      // write a window update back to A
      const small = await socketWritesDuring(s => s.localPort === bPort, async () => {
        for (let i = 0; i < 50; i++) {
          await ch.send(new Uint8Array(200).fill(i))
          await waitFor(() => count === 2 + i, 5000, 1)
        }
      })
      // (before: a window update back for each, 50 or more)
      expect(small, 'B\'s socket writes while it received 50 messages').to.be.below(5)

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

  describe('liveness', () => {
    /** A muxer whose pings are answered (or not) as the test says, and a connection that records its abort. */
    function fakes (answer: boolean) {
      const muxer = {
        status: 'open',
        pings: 0,
        async ping (o?: { signal?: AbortSignal }): Promise<number> {
          muxer.pings++
          if (answer) return 1
          return await new Promise((_resolve, reject) => { o?.signal?.addEventListener('abort', () => { reject(o.signal?.reason) }) })
        }
      }
      const conn = {
        aborted: undefined as Error | undefined,
        closed: [] as Array<() => void>,
        abort (err: Error): void { conn.aborted = err },
        addEventListener (type: string, fn: () => void): void { if (type === 'close') conn.closed.push(fn) }
      }
      return { muxer, conn }
    }

    it('pings at once and every interval; a ping not answered in time aborts the connection', async () => {
      const live = fakes(true)
      expect(watchLiveness(live.muxer, live.conn as any, { intervalMs: 30, timeoutMs: 50 })).to.equal(true)
      expect(live.muxer.pings).to.equal(1)
      await new Promise(resolve => setTimeout(resolve, 200))
      expect(live.muxer.pings).to.be.greaterThan(3)
      expect(live.conn.aborted).to.equal(undefined)
      // the connection closed: no more pings
      for (const fn of live.conn.closed) fn()
      const after = live.muxer.pings
      await new Promise(resolve => setTimeout(resolve, 100))
      expect(live.muxer.pings).to.equal(after)

      const dead = fakes(false)
      watchLiveness(dead.muxer, dead.conn as any, { intervalMs: 1000, timeoutMs: 50 })
      await waitFor(() => dead.conn.aborted != null, 2000, 5)
      expect(dead.conn.aborted).to.be.instanceOf(PingTimeoutError)
      for (const fn of dead.conn.closed) fn()
    })

    it('a muxer that is closing is not a dead connection; what has no ping is left alone', async () => {
      const closing = fakes(false)
      watchLiveness(closing.muxer, closing.conn as any, { intervalMs: 1000, timeoutMs: 30 })
      closing.muxer.status = 'closing'
      await new Promise(resolve => setTimeout(resolve, 100))
      expect(closing.conn.aborted).to.equal(undefined)
      for (const fn of closing.conn.closed) fn()
      expect(watchLiveness({}, closing.conn as any)).to.equal(false)
      expect(watchLiveness(null, closing.conn as any)).to.equal(false)
    })

    describe('two nodes on 127.0.0.1', () => {
      const nodes: NetworkNode[] = []
      after(async () => { await Promise.all(nodes.map(async n => { await n.stop() })) })

      it('an idle connection that answers stays; one whose far end stops reading is dropped within the interval and the timeout', async () => {
        const liveness = { intervalMs: 100, timeoutMs: 400 }
        const a = await createNetwork({ mdns: false, liveness })
        const b = await createNetwork({ mdns: false, liveness })
        nodes.push(a, b)
        const bAddr = b.addresses()[0]
        const bPort = Number(bAddr.split('/tcp/')[1].split('/')[0])
        await a.dial(bAddr)
        await waitFor(() => a.isConnected(b.peerId) && b.isConnected(a.peerId), 5000)
        // a dozen pings each way, none late
        await new Promise(resolve => setTimeout(resolve, 1200))
        expect(a.isConnected(b.peerId), 'A still connected to B').to.equal(true)
        expect(b.isConnected(a.peerId), 'B still connected to A').to.equal(true)

        // B stops reading its end (as a frozen process or a cut cable would): A's pings go unanswered
        const bSide = (process as any)._getActiveHandles().filter((h: unknown) => h instanceof net.Socket && h.localPort === bPort) as net.Socket[]
        expect(bSide.length, 'B\'s socket from A').to.equal(1)
        bSide[0].pause()
        const t0 = Date.now()
        await waitFor(() => !a.isConnected(b.peerId), 5000, 10)
        const ms = Date.now() - t0
        expect(ms, 'dropped within an interval and a timeout (and slack)').to.be.below(100 + 400 + 1500)
      })
    })
  })
})
