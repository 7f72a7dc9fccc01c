/**
 * Noise whose connections decrypt a frame that spans two socket reads without joining it first.
 *
 * A Noise frame on the wire is at most 65,537 bytes (a 2-byte length and 65,535 of ciphertext) and
 * Node reads a TCP socket 65,536 bytes at a time, so during a bulk transfer nearly every frame
 * arrives in two pieces. @libp2p/noise (17.x) decrypts each frame with `decrypt(frame, dst)`, where
 * `dst` (an output buffer for the in-place AssemblyScript cipher) is `frame.subarray(…)`: for a frame
 * in two pieces that joins them into a new 64 KiB array, which Node's cipher, used for frames of
 * 1,200 bytes and more, then ignores. In bench:data's fetch leg that join was 43–94 ms of the
 * fetching node's main thread per 100 MiB, and every joined frame is external memory that brings
 * V8's next full collection closer. Here `dst` is given only when it is a view (a frame in one
 * piece); a frame in pieces is decrypted piece by piece into a list of plaintexts, as before.
 *
 * The wrapper reaches into the connection Noise returns (`decrypt`, `handshake`); a connection
 * without them (a changed release) is used unchanged.
 */
import { noise } from '@libp2p/noise'
import { Uint8ArrayList } from 'uint8arraylist'
import { withOverrides } from './wrap.js'

/** the largest Noise message (ciphertext and its tag), and the tag */
const NOISE_MAX_BYTES = 65535
const TAG_BYTES = 16

type Bytes = Uint8Array | Uint8ArrayList

/** What the decrypt path needs of Noise's connection; anything else is left alone. */
interface DecryptingConnection {
  decrypt?: (chunk: Bytes) => Uint8ArrayList
  handshake?: { decrypt?: (ciphertext: Bytes, dst?: Uint8Array) => Bytes }
  metrics?: { decryptedPackets?: { increment: () => void }, decryptErrors?: { increment: () => void } }
}

/**
 * Make a Noise connection decrypt frames without joining those that arrived in pieces.
 * Returns whether it could (the connection has the members the replacement uses).
 */
export function decryptInPieces (conn: unknown): boolean {
  if (conn == null || typeof conn !== 'object') return false
  const c = conn as DecryptingConnection
  const handshake = c.handshake
  if (typeof c.decrypt !== 'function' || handshake == null || typeof handshake.decrypt !== 'function') return false
  const decrypt = handshake.decrypt.bind(handshake)
  c.decrypt = (chunk: Bytes): Uint8ArrayList => {
    const output = new Uint8ArrayList()
    const whole = chunk instanceof Uint8Array
    for (let i = 0; i < chunk.byteLength; i += NOISE_MAX_BYTES) {
      const end = Math.min(i + NOISE_MAX_BYTES, chunk.byteLength)
      if (end - TAG_BYTES < i) throw new Error('Invalid chunk')
      const frame = whole ? chunk.subarray(i, end) : chunk.sublist(i, end)
      // in place where that is a view: the AssemblyScript cipher (small frames) writes there
      const dst = whole ? chunk.subarray(i, end - TAG_BYTES) : undefined
      try {
        output.append(decrypt(frame, dst))
        c.metrics?.decryptedPackets?.increment()
      } catch (err) {
        c.metrics?.decryptErrors?.increment()
        throw err
      }
    }
    return output
  }
  return true
}

/** `noise()` whose connections decrypt frames in the pieces they arrived in (see the module's comment). */
export function piecewiseNoise (): ReturnType<typeof noise> {
  const make = noise()
  return (components) => {
    const inner = make(components)
    return withOverrides(inner, {
      secureInbound: async (conn, opts) => {
        const secured = await inner.secureInbound(conn, opts)
        decryptInPieces(secured.connection)
        return secured
      },
      secureOutbound: async (conn, opts) => {
        const secured = await inner.secureOutbound(conn, opts)
        decryptInPieces(secured.connection)
        return secured
      }
    })
  }
}
