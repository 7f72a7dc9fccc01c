/**
 * Private markets: a pre-shared network key (libp2p pnet, the "swarm.key"
 * format IPFS private networks use):
 *
 * ```
 * /key/swarm/psk/1.0.0/
 * /base16/
 * <64 hex digits>
 * ```
 *
 * Every connection is wrapped in XSalsa20 with this key before Noise starts,
 * so a node without the same key sees only noise: its handshake fails and no
 * Mercato message ever crosses. The key is a shared secret (mode 0600); its
 * fingerprint (the first bytes of its SHA-256) names the market in status
 * output without revealing it.
 */
import { readFile, writeFile, stat } from 'node:fs/promises'
import { connect } from 'node:net'
import { preSharedKey, generateKey } from '@libp2p/pnet'
import type { ConnectionProtector } from '@libp2p/interface'
import { sha256 } from '../crypto/index.js'
import { NetworkKeyError } from './errors.js'

/** The largest key file read: the format is 91 bytes; room for CRLFs and trailing space. */
const MAX_KEY_FILE_BYTES = 1024
const HEADER = '/key/swarm/psk/1.0.0/'

export interface NetworkKey {
  /** the key file's bytes in the canonical three-line form */
  psk: Uint8Array
  /** hex of the first 8 bytes of SHA-256 over the 32 key bytes: names the market, reveals nothing */
  fingerprint: string
}

/** Parse and check a key file's text; throws NetworkKeyError naming what is wrong. */
export function parseNetworkKey (text: string, source = 'network key'): NetworkKey {
  const lines = text.split(/\r\n|\r|\n/).map(l => l.trim()).filter(l => l !== '')
  if (lines[0] !== HEADER) throw new NetworkKeyError(`${source}: first line must be ${HEADER} (generate one with \`mercato network-key FILE\`)`)
  if (lines[1] !== '/base16/') throw new NetworkKeyError(`${source}: second line must be /base16/, got ${JSON.stringify((lines[1] ?? '').slice(0, 40))}`)
  const hex = lines[2] ?? ''
  if (!/^[0-9a-fA-F]{64}$/.test(hex) || lines.length !== 3) throw new NetworkKeyError(`${source}: third line must be the 32-byte key as 64 hex digits`)
  const keyBytes = Uint8Array.from(Buffer.from(hex, 'hex'))
  return {
    psk: new TextEncoder().encode(`${HEADER}\n/base16/\n${hex.toLowerCase()}`),
    fingerprint: Buffer.from(sha256(keyBytes).subarray(0, 8)).toString('hex')
  }
}

/** Read a key file (refusing anything but a small regular file). */
export async function loadNetworkKey (file: string): Promise<NetworkKey> {
  let text: string
  try {
    const st = await stat(file)
    if (!st.isFile()) throw new NetworkKeyError(`network key ${file}: not a regular file`)
    if (st.size > MAX_KEY_FILE_BYTES) throw new NetworkKeyError(`network key ${file}: ${st.size} bytes; a key file is under ${MAX_KEY_FILE_BYTES}`)
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    if (err instanceof NetworkKeyError) throw err
    throw new NetworkKeyError(`network key ${file}: cannot read it (${err?.code ?? err?.message})`, err)
  }
  return parseNetworkKey(text, `network key ${file}`)
}

/** A new random key in the key-file format. */
export function generateNetworkKeyText (): string {
  const buf = new Uint8Array(95)
  generateKey(buf)
  return new TextDecoder().decode(buf).replace(/\0+$/, '') + '\n'
}

/** Write a new key file (mode 0600); refuses to overwrite one. */
export async function writeNetworkKey (file: string): Promise<NetworkKey> {
  const text = generateNetworkKeyText()
  try {
    await writeFile(file, text, { mode: 0o600, flag: 'wx' })
  } catch (err: any) {
    if (err?.code === 'EEXIST') throw new NetworkKeyError(`network key ${file}: the file exists; refusing to overwrite a key (delete it first)`)
    throw new NetworkKeyError(`network key ${file}: cannot write it (${err?.code ?? err?.message})`, err)
  }
  return parseNetworkKey(text, `network key ${file}`)
}

/** The libp2p connection protector for a key. */
export function networkProtector (key: NetworkKey): (components: any) => ConnectionProtector {
  return preSharedKey({ psk: key.psk })
}

/** How long the TCP probe behind a failed dial may take. */
const PROBE_TIMEOUT_MS = 2_000

/** Can a plain TCP connection be opened to this /ip4|ip6/.../tcp/... address? */
async function tcpAccepts (addr: string): Promise<boolean> {
  const m = /^\/ip[46]\/([^/]+)\/tcp\/(\d+)/.exec(addr)
  if (m == null) return false
  return await new Promise<boolean>((resolve) => {
    const sock = connect({ host: m[1], port: Number(m[2]), timeout: PROBE_TIMEOUT_MS })
    const done = (ok: boolean): void => { sock.destroy(); resolve(ok) }
    sock.once('connect', () => { done(true) })
    sock.once('timeout', () => { done(false) })
    sock.once('error', () => { done(false) })
  })
}

/**
 * Why a dial to `addr` failed, in words a user can act on. With a private
 * network key, a peer outside the market accepts TCP and then the handshake
 * fails or stalls (its bytes are noise to us): a TCP probe tells that apart
 * from a peer that is down or unreachable. Without a key, a failed encryption
 * handshake suggests the peer is in a private market.
 */
export async function explainDialFailure (addr: string, err: any, key: NetworkKey | undefined): Promise<string> {
  const base = String(err?.cause?.message ?? err?.message ?? err).slice(0, 200)
  const timedOut = err?.name === 'TimeoutError' || err?.cause?.name === 'TimeoutError' || err?.name === 'AbortError' || /timeout|aborted/i.test(base)
  // a handshake that failed on garbage (not one that ran out of time on a busy peer)
  const handshake = !timedOut && (err?.name === 'EncryptionFailedError' || err?.cause?.name === 'EncryptionFailedError')
  if (key != null) {
    if (handshake) {
      return `the private-network handshake failed: the peer does not hold this market's key (ours has fingerprint ${key.fingerprint}); every node of a private market needs the same --network-key file (${base})`
    }
    if (await tcpAccepts(addr)) {
      return `the peer accepted the connection but the private-network handshake did not complete: most likely it does not hold this market's key (ours has fingerprint ${key.fingerprint}); every node of a private market needs the same --network-key file (${base})`
    }
    return `no connection (${base}); the peer is down or unreachable`
  }
  if (handshake) return `the encryption handshake failed: the peer may be in a private market (started with --network-key), which this node is not (${base})`
  if (timedOut && await tcpAccepts(addr)) return `the peer accepted the connection but the handshake did not complete in time: the peer is overloaded, or it is in a private market (started with --network-key) which this node is not in (${base})`
  return base
}
