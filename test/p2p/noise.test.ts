/**
 * Noise frames decrypted in the pieces they arrived in (src/p2p/noise.ts): a real Noise handshake
 * between two encrypters over an in-memory connection pair whose bytes are delivered in odd-sized
 * pieces, so frames span deliveries as they span socket reads; then the rule on a fake connection.
 */
import '../../src/polyfill.js'
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { equals } from 'uint8arrays/equals'
import { concat } from 'uint8arrays/concat'
import { decryptInPieces, piecewiseNoise } from '../../src/p2p/noise.js'

async function encrypter (): Promise<{ noise: ReturnType<ReturnType<typeof piecewiseNoise>>, peerId: ReturnType<typeof peerIdFromPrivateKey> }> {
  const privateKey = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(privateKey)
  const upgrader = { getStreamMuxers: () => new Map() } as any
  return { noise: piecewiseNoise()({ peerId, privateKey, logger: defaultLogger(), upgrader }), peerId }
}

/** Deliver every message `conn` sends in pieces of `size` bytes (as TCP reads cut a frame). */
function sendInPieces (conn: any, size: number): void {
  const send = conn.send.bind(conn)
  conn.send = (data: Uint8Array | Uint8ArrayList): boolean => {
    const bytes = data instanceof Uint8Array ? data : concat([...data])
    let ok = true
    for (let i = 0; i < bytes.byteLength; i += size) ok = send(bytes.subarray(i, i + size))
    return ok
  }
}

describe('p2p: Noise frames decrypted in pieces', function () {
  this.timeout(30_000)

  it('a 1 MiB message over a real handshake, its frames cut into 997-byte deliveries, arrives whole and unjoined', async () => {
    const [outbound, inbound] = multiaddrConnectionPair({ capacity: 100_000, delay: 0 })
    sendInPieces(outbound, 997)
    const a = await encrypter()
    const b = await encrypter()
    const [sa, sb] = await Promise.all([
      a.noise.secureOutbound(outbound, { remotePeer: b.peerId, skipStreamMuxerNegotiation: true }),
      b.noise.secureInbound(inbound, { skipStreamMuxerNegotiation: true })
    ])
    expect(sb.remotePeer.equals(a.peerId)).to.equal(true)
    // the replacement is on the connections Noise returned
    expect(Object.hasOwn(sb.connection, 'decrypt')).to.equal(true)

    const pieces: Uint8Array[] = []
    sb.connection.addEventListener('message', (evt) => {
      const data = evt.data
      if (data instanceof Uint8Array) pieces.push(data)
      else pieces.push(...data)
    })
    // count the lists of pieces joined into one array of 1 KiB or more while the message travels
    const joins: number[] = []
    const subarray = Uint8ArrayList.prototype.subarray
    Uint8ArrayList.prototype.subarray = function (this: Uint8ArrayList, ...args: [number?, number?]): Uint8Array {
      const out = subarray.apply(this, args)
      if ([...this].length > 1 && out.byteLength >= 1024 && ![...this].some(p => p.buffer === out.buffer)) joins.push(out.byteLength)
      return out
    }
    const sent = randomBytes(1024 * 1024)
    try {
      sa.connection.send(sent)
      const deadline = Date.now() + 10_000
      while (pieces.reduce((n, p) => n + p.byteLength, 0) < sent.byteLength && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    } finally {
      Uint8ArrayList.prototype.subarray = subarray
    }
    expect(equals(concat(pieces), sent)).to.equal(true)
    // 17 frames of ≤ 65,519 bytes, each in 66 deliveries: decrypted piece by piece, none joined first
    expect(pieces.length).to.be.greaterThan(17 * 10)
    expect(joins, 'bytes of each join').to.deep.equal([])
    await Promise.all([sa.connection.close(), sb.connection.close()])
  })

  it('passes dst only for a frame in one piece; a frame shorter than its tag is refused', () => {
    const calls: Array<{ pieces: number, dst: Uint8Array | undefined }> = []
    const conn = {
      decrypt: (_chunk: Uint8Array | Uint8ArrayList): Uint8ArrayList => new Uint8ArrayList(),
      handshake: {
        decrypt: (ct: Uint8Array | Uint8ArrayList, dst?: Uint8Array) => {
          calls.push({ pieces: ct instanceof Uint8Array ? 1 : [...ct].length, dst })
          return ct instanceof Uint8Array ? ct.subarray(0, ct.byteLength - 16) : ct.sublist(0, ct.byteLength - 16)
        }
      }
    }
    expect(decryptInPieces(conn)).to.equal(true)
    const whole = new Uint8Array(100)
    expect(conn.decrypt(whole as any).byteLength).to.equal(84)
    expect(calls[0].pieces).to.equal(1)
    expect(calls[0].dst?.buffer).to.equal(whole.buffer)
    const split = new Uint8ArrayList(new Uint8Array(60), new Uint8Array(40))
    const out = conn.decrypt(split as any)
    expect(out.byteLength).to.equal(84)
    expect([...out].length, 'pieces of the plaintext').to.equal(2)
    expect(calls[1]).to.deep.equal({ pieces: 2, dst: undefined })
    expect(() => conn.decrypt(new Uint8Array(10) as any)).to.throw('Invalid chunk')
  })

  it('leaves a connection without the members it uses as it is', () => {
    const decrypt = (): void => {}
    const conn = { decrypt }
    expect(decryptInPieces(conn)).to.equal(false)
    expect(conn.decrypt).to.equal(decrypt)
    expect(decryptInPieces({ decrypt, handshake: {} })).to.equal(false)
    expect(decryptInPieces(null)).to.equal(false)
  })
})
