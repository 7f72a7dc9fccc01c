/**
 * TCP with one socket write per turn of the event loop instead of one per frame.
 *
 * Under @libp2p/tcp every yamux frame (a window update, a stream's open, a message, its close)
 * becomes its own noise message and its own `socket.write`, and with Nagle off each write is a
 * syscall of its own: a job's bid or award path wrote dozens of small packets, and writing them
 * was an eighth of a busy requester's CPU. Here each connection's socket is corked on the first
 * write of a turn and uncorked once the turn's promise jobs have run (`process.nextTick`), so the
 * frames of one turn leave in one `writev`. Nothing waits longer than the current turn.
 *
 * Bulk data (a write of FLUSH_BYTES or more) is not held: it flushes what the turn corked and goes
 * out as it would uncorked. Holding it made a fast sender's data reach the reader in bursts the size
 * of the whole yamux window (16 MiB): yamux grants window on receipt, not on reading, so a
 * channel's read buffer (8 MiB in the data benchmark) overflowed and the stream was aborted.
 *
 * The wrapper reaches into the connection @libp2p/tcp hands its upgrader (`socket`, `sendData`);
 * a connection without them (another transport, a changed release) is used unchanged.
 */
import { tcp, type TCPComponents, type TCPOptions } from '@libp2p/tcp'
import type { Transport, Upgrader } from '@libp2p/interface'
import { withOverrides } from './wrap.js'

/** a write at least this big is bulk data: sent at once, not corked */
const FLUSH_BYTES = 16 * 1024

interface Corkable {
  cork: () => void
  uncork: () => void
  destroyed: boolean
}

/** What the write path needs of a connection; anything else is left alone. */
interface SocketConnection {
  socket?: Partial<Corkable>
  sendData?: (...args: any[]) => unknown
}

/**
 * Make a connection's writes of one event-loop turn leave as one socket write.
 * Returns whether it could (the connection has a socket that corks).
 */
export function coalesceWrites (conn: unknown): boolean {
  if (conn == null || typeof conn !== 'object') return false
  const c = conn as SocketConnection
  const socket = c.socket
  const send = c.sendData
  if (socket == null || typeof socket.cork !== 'function' || typeof socket.uncork !== 'function' || typeof send !== 'function') return false
  const s = socket as Corkable
  let corked = false
  const uncork = (): void => {
    if (!corked) return // flushed early by bulk data
    corked = false
    s.uncork()
  }
  c.sendData = function (this: unknown, ...args: unknown[]): unknown {
    const bytes = (args[0] as { byteLength?: number } | undefined)?.byteLength ?? 0
    if (bytes >= FLUSH_BYTES) {
      // bulk data goes out as it would uncorked (after the small frames before it)
      uncork()
      return send.apply(this, args)
    }
    if (!corked && !s.destroyed) {
      corked = true
      s.cork()
      process.nextTick(uncork)
    }
    return send.apply(this, args)
  }
  return true
}

/** The upgrader with every connection it upgrades made to coalesce its writes first. */
function coalescingUpgrader (upgrader: Upgrader): Upgrader {
  return withOverrides(upgrader, {
    upgradeInbound: async (maConn, opts) => { coalesceWrites(maConn); return await upgrader.upgradeInbound(maConn, opts) },
    upgradeOutbound: async (maConn, opts) => { coalesceWrites(maConn); return await upgrader.upgradeOutbound(maConn, opts) }
  })
}

/** `tcp()` whose connections write once per turn (see the module's comment). */
export function coalescingTcp (init?: TCPOptions): (components: TCPComponents) => Transport {
  const make = tcp(init)
  return (components) => {
    const inner = make(components)
    return withOverrides(inner, {
      dial: async (ma, opts) => await inner.dial(ma, { ...opts, upgrader: coalescingUpgrader(opts.upgrader) }),
      createListener: (opts) => inner.createListener({ ...opts, upgrader: coalescingUpgrader(opts.upgrader) })
    })
  }
}
