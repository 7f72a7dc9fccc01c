/**
 * Yamux that grants receive window when half of it is used, not after every frame, and that finds
 * a dead connection by its own PING frames.
 *
 * Window updates.
 * @libp2p/yamux (8.x) answers every data frame a stream receives with a window update: a small
 * message (a bid, an invitation, an award, a result) costs its receiver a frame back, which is its
 * own noise message, its own socket write and, on the other end, its own read, decryption and
 * parse. In the 10-process market benchmark that was about one socket write in three. The yamux
 * spec leaves the timing to the receiver; go-yamux and rust-yamux send the update once half the
 * window is used (rust-yamux#100), which is what this does: a stream that has used less than half
 * of its receive window sends nothing back. The sender then still has at least half a window of
 * credit, so it never waits on an update it would have had before; bulk transfers get an update
 * every half window, and the window still grows with the measured round trip as before.
 *
 * Frames that carry a flag (a stream's SYN or ACK) and a paused stream are left to yamux as they
 * are. The wrapper reaches into yamux's muxer (`_newStream`) and streams (`state`, `recvWindow`,
 * `recvWindowCapacity`, `sendWindowUpdate`); a release without them is used unchanged.
 *
 * Liveness. A connection that died without a FIN (a partition, a peer frozen or gone with its
 * machine) is found by pinging it. libp2p's connection monitor does that with a new stream per ping
 * (protocol negotiation, 32 bytes each way, a close): with 39 peers that was about a third of an
 * idle node's CPU in a 40-process mesh. A yamux PING is one frame each way on the connection as it
 * is, and yamux already sent one every 30 s (its keep-alive, for the round trip its window growth
 * uses) but only logged a ping that never came back. Here each muxer pings at once and then every
 * `intervalMs`, and a ping not answered within `timeoutMs` aborts the connection; yamux's own
 * keep-alive and libp2p's monitor are off.
 */
import { yamux, type YamuxMuxerInit } from '@libp2p/yamux'
import type { AbortOptions, MultiaddrConnection, StreamMuxerFactory } from '@libp2p/interface'
import { CONNECTION_PING_INTERVAL_MS, CONNECTION_PING_TIMEOUT_MS } from './constants.js'
import { withOverrides } from './wrap.js'

/** How often a connection is pinged, and how long an answer may take before the connection is dropped. */
export interface LivenessInit {
  intervalMs?: number
  timeoutMs?: number
}

/** Thrown into a connection whose ping was not answered in time. */
export class PingTimeoutError extends Error {
  override name = 'PingTimeoutError'
}

/** yamux's StreamState values in which an update carries no flag (dist/src/stream.js) */
const SYN_SENT = 1
const ESTABLISHED = 3

/** What the window rule reads of a yamux stream; anything else is left alone. */
interface WindowedStream {
  state: number
  recvWindow: number
  recvWindowCapacity: number
  sendWindowUpdate: () => void
}

function isWindowed (s: unknown): s is WindowedStream {
  if (s == null || typeof s !== 'object') return false
  const w = s as Partial<WindowedStream>
  return typeof w.state === 'number' && typeof w.recvWindow === 'number' && typeof w.recvWindowCapacity === 'number' && typeof w.sendWindowUpdate === 'function'
}

/**
 * Make a yamux stream send a window update only once half of its receive window is used (or when
 * the update carries a flag). Returns whether it could.
 */
export function halfWindowUpdates (stream: unknown): boolean {
  if (!isWindowed(stream)) return false
  const send = stream.sendWindowUpdate
  stream.sendWindowUpdate = function (this: WindowedStream): void {
    // in these states an update carries no flag: it only grants window
    const plain = this.state === SYN_SENT || this.state === ESTABLISHED
    if (plain && this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2) return
    send.call(this)
  }
  return true
}

interface StreamMaking {
  _newStream?: (...args: unknown[]) => unknown
}

/** Make every stream a yamux muxer creates follow {@link halfWindowUpdates}. Returns whether it could. */
export function deferWindowUpdates (muxer: unknown): boolean {
  if (muxer == null || typeof muxer !== 'object') return false
  const m = muxer as StreamMaking
  const make = m._newStream
  if (typeof make !== 'function') return false
  m._newStream = function (this: unknown, ...args: unknown[]): unknown {
    const stream = make.apply(this, args)
    halfWindowUpdates(stream)
    return stream
  }
  return true
}

interface Pinging {
  ping: (options?: AbortOptions) => Promise<number>
  status?: string
}

/**
 * Ping a connection through its yamux muxer at once and then every `intervalMs`; a ping not
 * answered within `timeoutMs` aborts the connection. Stops when the connection closes. Returns
 * whether it could (the muxer has `ping`).
 */
export function watchLiveness (muxer: unknown, conn: Pick<MultiaddrConnection, 'abort' | 'addEventListener'>, init: LivenessInit = {}): boolean {
  const m = muxer as Partial<Pinging>
  if (m == null || typeof m.ping !== 'function') return false
  const ping = m.ping.bind(m)
  const intervalMs = init.intervalMs ?? CONNECTION_PING_INTERVAL_MS
  const timeoutMs = init.timeoutMs ?? CONNECTION_PING_TIMEOUT_MS
  // a muxer closing or closed is not a dead connection; only silence is
  const open = (): boolean => m.status == null || m.status === 'open'
  const check = (): void => {
    if (!open()) { clearInterval(timer); return }
    const signal = AbortSignal.timeout(timeoutMs)
    ping({ signal }).catch(() => {
      if (signal.aborted && open()) conn.abort(new PingTimeoutError(`no answer to a ping in ${timeoutMs} ms`))
    })
  }
  const timer = setInterval(check, intervalMs)
  timer.unref()
  conn.addEventListener('close', () => { clearInterval(timer) }, { once: true })
  // the first at once: yamux grows a stream's window by the measured round trip
  check()
  return true
}

/** `yamux()` whose streams grant window at half use and whose connections are pinged (see the module's comment). */
export function halfWindowYamux (init: YamuxMuxerInit = {}, liveness: LivenessInit = {}): () => StreamMuxerFactory {
  const make = yamux({ ...init, enableKeepAlive: false })
  return () => {
    const inner = make()
    return withOverrides(inner, {
      createStreamMuxer: (maConn) => {
        const muxer = inner.createStreamMuxer(maConn)
        deferWindowUpdates(muxer)
        watchLiveness(muxer, maConn, liveness)
        return muxer
      }
    })
  }
}
