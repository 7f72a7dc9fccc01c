/**
 * The node's identity: an Ed25519 libp2p key kept in `<dataDir>/identity.key`
 * (libp2p protobuf encoding, file mode 0600). Its PeerId names the node
 * everywhere; the same key signs every Mercato message and record.
 */
import { mkdir, readFile, writeFile, chmod, stat, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyFromRaw, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { signerFromSeed, type Signer } from '../crypto/index.js'
import { MercatoError } from '../errors.js'

export const IDENTITY_FILE = 'identity.key'

export interface Identity {
  peerId: string
  /** 32-byte Ed25519 seed */
  seed: Uint8Array
  signer: Signer
}

export class IdentityError extends MercatoError {
  constructor (message: string, cause?: unknown) {
    super(message, { code: 'identity', name: 'IdentityError', cause })
  }
}

/** Load the node's key from the data dir, creating it (mode 0600) if there is none. */
export async function loadOrCreateIdentity (dataDir: string): Promise<Identity> {
  const file = join(dataDir, IDENTITY_FILE)
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  let key: PrivateKey
  try {
    const bytes = await readFile(file)
    try {
      key = privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new IdentityError(`${file} is not a libp2p private key`, err)
    }
    if (key.type !== 'Ed25519') throw new IdentityError(`${file} holds a ${key.type} key; Mercato needs Ed25519`)
    const st = await stat(file)
    if ((st.mode & 0o077) !== 0) await chmod(file, 0o600)
  } catch (err: any) {
    if (err?.code !== 'ENOENT') throw err
    key = await generateKeyPair('Ed25519')
    const tmp = `${file}.${process.pid}.tmp`
    await writeFile(tmp, privateKeyToProtobuf(key), { mode: 0o600 })
    await rename(tmp, file)
  }
  return identityFromSeed(key.raw.subarray(0, 32))
}

export function identityFromSeed (seed: Uint8Array): Identity {
  const signer = signerFromSeed(seed)
  return { peerId: signer.peerId, seed: new Uint8Array(seed), signer }
}

/** The libp2p form of the key (only src/p2p needs it). */
export async function libp2pKeyFromSeed (seed: Uint8Array): Promise<PrivateKey> {
  // seed ‖ public key, the public key derived by node:crypto: @libp2p/crypto derives it in pure JS,
  // whose first derivation builds its tables (≈ 40 ms of a node's start)
  const raw = new Uint8Array(64)
  raw.set(seed, 0)
  raw.set(signerFromSeed(seed).publicKey, 32)
  return privateKeyFromRaw(raw)
}
