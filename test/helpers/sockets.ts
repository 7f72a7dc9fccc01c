/**
 * Counting the socket writes a node makes (tests of the write path: src/p2p/tcp.ts, src/p2p/yamux.ts).
 */
import net from 'node:net'

/**
 * The writes (`_write` and `_writev`, one each per syscall's worth) of the sockets `match` picks,
 * made while `fn` runs. Every socket of the process is watched, so `match` should name one
 * connection (by its ports).
 */
export async function socketWritesDuring (match: (socket: net.Socket) => boolean, fn: () => Promise<void>): Promise<number> {
  const proto = net.Socket.prototype as any
  const write = proto._write
  const writev = proto._writev
  let writes = 0
  proto._write = function (this: net.Socket, ...args: unknown[]) { if (match(this)) writes++; return write.apply(this, args) }
  proto._writev = function (this: net.Socket, ...args: unknown[]) { if (match(this)) writes++; return writev.apply(this, args) }
  try {
    await fn()
  } finally {
    proto._write = write
    proto._writev = writev
  }
  return writes
}
