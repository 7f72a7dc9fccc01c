/**
 * Mercato's one canonical encoding and its signatures.
 *
 * - Canonical encoding: deterministic DAG-CBOR (@ipld/dag-cbor): map keys are
 *   sorted, integers minimal, no indefinite lengths, so the same value always
 *   encodes to the same bytes on every node. `undefined` members are dropped.
 * - Signatures: Ed25519 (node:crypto, ≈ 2× faster than a JS implementation)
 *   over `utf8(domain) || 0x00 || canonical(payload)`. The domain names the
 *   message kind (`mercato/v1/bid`, `mercato/v1/record`, ...), so a signature
 *   over one kind can never be replayed as another.
 * - Identity: a signer is named by its libp2p PeerId. Ed25519 PeerIds embed the
 *   public key (identity multihash), so a verifier needs nothing but the PeerId.
 * - Content ids: CIDv1, dag-cbor or raw codec, sha2-256.
 *
 * This module does not import libp2p; `src/p2p/identity.ts` turns the node's
 * libp2p key into a {@link Signer}.
 */
import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { base58btc } from 'multiformats/bases/base58'
import { create as createDigest } from 'multiformats/hashes/digest'
import * as raw from 'multiformats/codecs/raw'

export const SHA256_CODE = 0x12

/** Something that can sign as a PeerId. */
export interface Signer {
  readonly peerId: string
  readonly publicKey: Uint8Array
  sign (data: Uint8Array): Uint8Array
}

// ---------------------------------------------------------------- encoding

/** True when a value holds an `undefined` member somewhere (DAG-CBOR cannot encode one). */
function hasUndefined (value: unknown): boolean {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return false
  if (Array.isArray(value)) {
    for (const v of value) if (v === undefined || hasUndefined(v)) return true
    return false
  }
  if (CID.asCID(value) != null) return false
  for (const k in value) {
    const v = (value as Record<string, unknown>)[k]
    if (v === undefined || hasUndefined(v)) return true
  }
  return false
}

/** A copy without `undefined` members; the value itself when it has none (the common case). */
function strip (value: unknown): unknown {
  if (!hasUndefined(value)) return value
  return stripCopy(value)
}

function stripCopy (value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value
  if (value instanceof Uint8Array || CID.asCID(value) != null) return value
  if (Array.isArray(value)) return value.map(stripCopy)
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    if (v !== undefined) out[k] = stripCopy(v)
  }
  return out
}

/** Deterministic DAG-CBOR bytes of a value (undefined members dropped). */
export function canonicalEncode (value: unknown): Uint8Array {
  return dagCbor.encode(strip(value))
}

/** Decode DAG-CBOR bytes; throws on anything that is not strict DAG-CBOR. */
export function canonicalDecode<T = unknown> (bytes: Uint8Array): T {
  return dagCbor.decode<T>(bytes)
}

// ---------------------------------------------------------------- hashing

/** sha256 of `data`, or of the pieces of one message in order (a block as it arrived, auction/chunks.ts). */
export function sha256 (data: Uint8Array | readonly Uint8Array[]): Uint8Array {
  const h = createHash('sha256')
  if (data instanceof Uint8Array) h.update(data)
  else for (const piece of data) h.update(piece)
  return new Uint8Array(h.digest())
}

/** CIDv1 (dag-cbor) of a value's canonical encoding, as a string. */
export function cidOfValue (value: unknown): string {
  return cidOfBytes(canonicalEncode(value), dagCbor.code)
}

/** CIDv1 of bytes (raw codec by default; given whole or in pieces), as a string. */
export function cidOfBytes (bytes: Uint8Array | readonly Uint8Array[], codec: number = raw.code): string {
  return flat(CID.createV1(codec, createDigest(SHA256_CODE, sha256(bytes))).toString())
}

/**
 * The same ASCII text as one flat string. multiformats builds a CID's text a character at a
 * time, so V8 keeps it as a chain of ~50 concatenation nodes: 1.6 KB per id instead of ~100 bytes,
 * in every set and map that keeps ids (jobs held, receipts seen, gossip replay checks).
 */
function flat (ascii: string): string {
  return Buffer.from(ascii, 'latin1').toString('latin1')
}

/** True when `cid` names exactly these bytes (sha2-256, any codec). */
export function bytesMatchCid (bytes: Uint8Array, cid: string): boolean {
  let parsed: CID
  try { parsed = CID.parse(cid) } catch { return false }
  if (parsed.multihash.code !== SHA256_CODE) return false
  const digest = sha256(bytes)
  const expected = parsed.multihash.digest
  if (expected.length !== digest.length) return false
  for (let i = 0; i < digest.length; i++) if (digest[i] !== expected[i]) return false
  return true
}

export function isCid (value: string): boolean {
  try { CID.parse(value); return true } catch { return false }
}

export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

// ---------------------------------------------------------------- peer ids

// libp2p PublicKey protobuf for Ed25519: field 1 (KeyType) = 1, field 2 (Data) = 32 bytes
const ED25519_PUBKEY_PB_PREFIX = Uint8Array.of(0x08, 0x01, 0x12, 0x20)
// identity multihash (code 0x00) of the 36-byte protobuf
const IDENTITY_MH_PREFIX = Uint8Array.of(0x00, 0x24)
// DER SPKI prefix for an Ed25519 public key (RFC 8410)
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

/** The PeerId string of an Ed25519 public key (what libp2p prints). */
export function peerIdFromEd25519 (publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new TypeError('Ed25519 public key must be 32 bytes')
  const mh = new Uint8Array(2 + 4 + 32)
  mh.set(IDENTITY_MH_PREFIX, 0)
  mh.set(ED25519_PUBKEY_PB_PREFIX, 2)
  mh.set(publicKey, 6)
  // libp2p prints PeerIds as base58btc without the multibase prefix
  return base58btc.encode(mh).slice(1)
}

/** The Ed25519 public key inside a PeerId, or undefined when it holds none. */
export function ed25519FromPeerId (peerId: string): Uint8Array | undefined {
  if (typeof peerId !== 'string' || peerId.length > 64 || !peerId.startsWith('12D3KooW')) return undefined
  let mh: Uint8Array
  try { mh = base58btc.decode('z' + peerId) } catch { return undefined }
  if (mh.length !== 38) return undefined
  for (let i = 0; i < 2; i++) if (mh[i] !== IDENTITY_MH_PREFIX[i]) return undefined
  for (let i = 0; i < 4; i++) if (mh[2 + i] !== ED25519_PUBKEY_PB_PREFIX[i]) return undefined
  return mh.slice(6)
}

/** True when the string is a well-formed Ed25519 PeerId. */
export function isPeerId (value: unknown): value is string {
  return typeof value === 'string' && ed25519FromPeerId(value) != null
}

// ---------------------------------------------------------------- signing

const keyCache = new Map<string, KeyObject>()
const KEY_CACHE_MAX = 4096

function publicKeyObject (peerId: string): KeyObject | undefined {
  let key = keyCache.get(peerId)
  if (key != null) return key
  const pub = ed25519FromPeerId(peerId)
  if (pub == null) return undefined
  key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, pub]), format: 'der', type: 'spki' })
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value as string)
  keyCache.set(peerId, key)
  return key
}

/** A signer from a 32-byte Ed25519 seed (private key). */
export function signerFromSeed (seed: Uint8Array): Signer {
  if (seed.length !== 32) throw new TypeError('Ed25519 seed must be 32 bytes')
  const priv = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' })
  const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' })
  const publicKey = new Uint8Array(spki.subarray(spki.length - 32))
  const peerId = peerIdFromEd25519(publicKey)
  return {
    peerId,
    publicKey,
    sign: (data) => new Uint8Array(edSign(null, data, priv))
  }
}

/** A fresh random signer (tests, throw-away identities). */
export function randomSigner (): Signer {
  const seed = new Uint8Array(32)
  globalThis.crypto.getRandomValues(seed)
  return signerFromSeed(seed)
}

const encoder = new TextEncoder()
const domainCache = new Map<string, Uint8Array>()

/** The bytes a signature covers: utf8(domain) || 0x00 || canonical(payload). */
export function signingBytes (domain: string, payload: unknown): Uint8Array {
  let prefix = domainCache.get(domain)
  if (prefix == null) {
    const d = encoder.encode(domain)
    prefix = new Uint8Array(d.length + 1)
    prefix.set(d)
    domainCache.set(domain, prefix)
  }
  const body = payload instanceof Uint8Array ? payload : canonicalEncode(payload)
  const out = new Uint8Array(prefix.length + body.length)
  out.set(prefix)
  out.set(body, prefix.length)
  return out
}

/** Sign a payload under a domain. */
export function signPayload (signer: Signer, domain: string, payload: unknown): Uint8Array {
  return signer.sign(signingBytes(domain, payload))
}

/**
 * Signatures already checked in this process, by content: sha-256 over the signer, the signature
 * and the bytes signed, so a copy decoded afresh (a receipt that comes on the award channel and
 * again in gossip, our own gossip delivered back to us through the loopback) is a hash and a lookup,
 * not a second Ed25519 verification. Only valid signatures enter (verified, or made here); a key
 * matches only the exact signer, signature and bytes. First in, first out, bounded.
 */
const checkedSignatures = new Set<string>()
const CHECKED_SIGNATURES_MAX = 8192
/** Ed25519 verifications done, and those answered from {@link checkedSignatures} (metrics, tests). */
export const signatureChecks = { verified: 0, cached: 0 }

function signatureKey (peerId: string, bytes: Uint8Array, signature: Uint8Array): string {
  return createHash('sha256').update(peerId).update(signature).update(bytes).digest('base64')
}

function rememberSignature (key: string): void {
  if (checkedSignatures.size >= CHECKED_SIGNATURES_MAX) checkedSignatures.delete(checkedSignatures.values().next().value as string)
  checkedSignatures.add(key)
}

/** Verify that `peerId` signed `payload` under `domain`. Never throws. */
export function verifyPayload (peerId: string, domain: string, payload: unknown, signature: Uint8Array): boolean {
  try {
    if (!(signature instanceof Uint8Array) || signature.length !== 64) return false
    const key = publicKeyObject(peerId)
    if (key == null) return false
    const bytes = signingBytes(domain, payload)
    const known = signatureKey(peerId, bytes, signature)
    if (checkedSignatures.has(known)) { signatureChecks.cached++; return true }
    signatureChecks.verified++
    if (!edVerify(null, bytes, key, signature)) return false
    rememberSignature(known)
    return true
  } catch {
    return false
  }
}

// ---------------------------------------------------------------- signed messages

/**
 * A self-contained signed message: what peers send each other and what ledger
 * bodies embed as evidence signed by someone else. `payload` carries its own
 * version, timestamp and expiry or nonce where replay matters.
 */
export interface Signed<T = unknown> {
  domain: string
  signer: string
  payload: T
  sig: Uint8Array
}

/**
 * Signed messages already checked in this process, by object identity. A message is verified when
 * it arrives, and again when the ledger appends the record that embeds it; the second check is a
 * lookup. Signed objects are treated as immutable once made or verified.
 */
const verified = new WeakSet<object>()

export function signMessage<T> (signer: Signer, domain: string, payload: T): Signed<T> {
  const bytes = signingBytes(domain, payload)
  const m = { domain, signer: signer.peerId, payload, sig: signer.sign(bytes) }
  verified.add(m)
  // a copy of it that comes back (our own gossip, through the loopback) is not verified again
  rememberSignature(signatureKey(signer.peerId, bytes, m.sig))
  return m
}

/** True when `m` is shaped like a {@link Signed} message (not that it verifies). */
export function isSignedShape (m: unknown): m is Signed {
  if (m == null || typeof m !== 'object') return false
  const s = m as Record<string, unknown>
  return typeof s.domain === 'string' && typeof s.signer === 'string' && s.sig instanceof Uint8Array && 'payload' in s
}

/** Verify a signed message, optionally requiring its domain. Never throws. */
export function verifyMessage (m: unknown, domain?: string): m is Signed {
  if (!isSignedShape(m)) return false
  if (domain != null && m.domain !== domain) return false
  if (verified.has(m)) return true
  const ok = verifyPayload(m.signer, m.domain, m.payload, m.sig)
  if (ok) verified.add(m)
  return ok
}

/** Digest (CID string) of a signed message: the id others use to refer to it. */
export function messageId (m: Signed): string {
  return cidOfValue(m)
}

/** {@link messageId} from the message's canonical encoding, when it is already at hand. */
export function messageIdOfEncoded (encoded: Uint8Array): string {
  return cidOfBytes(encoded, dagCbor.code)
}
