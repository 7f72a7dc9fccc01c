/**
 * The record format and its checks. A record is
 *
 *   { v: 1, seq, prev, type, ts, body, signer, sig }
 *
 * `sig` is Ed25519 by `signer` over `utf8('mercato/v1/record') || 0x00 ||
 * dagCbor(record without sig)`; the record's id is the CIDv1 (dag-cbor,
 * sha2-256) of the whole record including `sig`; `prev` is the id of record
 * `seq - 1` (null for seq 0). A record with any extra or missing field is
 * bad-encoding: otherwise a field outside the signature could change the id.
 */
import { CID } from 'multiformats/cid'
import { code as DAG_CBOR_CODE } from '@ipld/dag-cbor'
import {
  canonicalDecode, canonicalEncode, cidOfBytes, isSignedShape, signingBytes,
  verifyMessage, verifyPayload, type Signer
} from '../crypto/index.js'
import { RECORD_DOMAIN, RECORD_VERSION } from './constants.js'
import { InvalidEvidenceError } from './errors.js'

export const RECORD_TYPES = ['job', 'offer', 'bid', 'decline', 'award', 'accept', 'handover', 'result', 'receipt', 'mismatch', 'head', 'equivocation'] as const
export type RecordType = typeof RECORD_TYPES[number]
const TYPE_SET = new Set<string>(RECORD_TYPES)

export function isRecordType (t: unknown): t is RecordType {
  return typeof t === 'string' && TYPE_SET.has(t)
}

export interface LedgerRecord {
  v: 1
  seq: number
  /** id of the previous record; null for seq 0 */
  prev: string | null
  type: RecordType
  /** milliseconds since the epoch, the signer's clock */
  ts: number
  body: Record<string, unknown>
  /** PeerId of the log's owner */
  signer: string
  sig: Uint8Array
}

/** Why a record fails. */
export type VerifyReason = 'bad-signature' | 'broken-link' | 'gap' | 'bad-encoding' | 'wrong-signer'

export interface VerifyReport {
  /** true when every record verified */
  ok: boolean
  /** records that verified, counted from the start (the valid prefix) */
  count: number
  /** id of the last record that verified (null when none did) */
  headId: string | null
  /** the first record that failed, and why */
  firstBad?: { seq: number, reason: VerifyReason }
}

/**
 * The outcome of checking one record on its own (no link check). `problem`
 * is absent when the record is well formed, signed by the expected signer and
 * its signature verifies. `seq`, `id` and `prev` are known unless the record
 * is bad-encoding.
 */
export interface RecordCheck {
  problem?: 'bad-encoding' | 'wrong-signer' | 'bad-signature'
  seq?: number
  id?: string
  prev?: string | null
}

const RECORD_KEYS = ['body', 'prev', 'seq', 'sig', 'signer', 'ts', 'type', 'v']

/** True when `r` has exactly the record's fields with the right types. */
export function isRecordShape (r: unknown): r is LedgerRecord {
  if (r == null || typeof r !== 'object' || Array.isArray(r) || r instanceof Uint8Array) return false
  const o = r as Record<string, unknown>
  const keys = Object.keys(o)
  if (keys.length !== RECORD_KEYS.length) return false
  for (const k of RECORD_KEYS) if (!(k in o)) return false
  return o.v === RECORD_VERSION &&
    Number.isSafeInteger(o.seq) && (o.seq as number) >= 0 &&
    (o.prev === null || typeof o.prev === 'string') &&
    isRecordType(o.type) &&
    Number.isSafeInteger(o.ts) &&
    isPlainMap(o.body) &&
    typeof o.signer === 'string' &&
    o.sig instanceof Uint8Array && o.sig.length === 64
}

export function isPlainMap (v: unknown): v is Record<string, unknown> {
  return v != null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && CID.asCID(v) == null
}

/** The id of a record: CIDv1 (dag-cbor) of its canonical encoding, sig included. */
export function recordId (r: LedgerRecord): string {
  return cidOfBytes(canonicalEncode(r), DAG_CBOR_CODE)
}

/** Byte length of a CBOR integer head (major types 0 and 1) starting at `b[i]`. */
function intHeadLength (b: Uint8Array, i: number): number {
  const ai = b[i] & 0x1f
  return ai < 24 ? 1 : ai === 24 ? 2 : ai === 25 ? 3 : ai === 26 ? 5 : 9
}

// canonical key order (length first, then bytes): v, ts, seq, sig, body, prev, type, signer
const SIG_ENTRY_HEAD = Uint8Array.of(0x63, 0x73, 0x69, 0x67, 0x58, 0x40) // "sig", bytes(64)
const SIG_ENTRY_BYTES = SIG_ENTRY_HEAD.length + 64

/** Offset of the `sig` entry in a canonical record encoding (with or without sig): after v, ts and seq. */
function sigOffset (b: Uint8Array): number {
  let i = 1 + 3 // map head, "v" 1
  i += 3 + intHeadLength(b, i + 3) // "ts" n
  i += 4 + intHeadLength(b, i + 4) // "seq" n
  return i
}

/**
 * The canonical encoding of a record, from the canonical encoding of its
 * unsigned part and the signature: DAG-CBOR sorts keys by length, so `sig`
 * sits right after `seq`. Saves a second encoding per record.
 */
export function spliceSig (unsigned: Uint8Array, sig: Uint8Array): Uint8Array {
  const at = sigOffset(unsigned)
  const out = new Uint8Array(unsigned.length + SIG_ENTRY_BYTES)
  out[0] = 0xa8
  out.set(unsigned.subarray(1, at), 1)
  out.set(SIG_ENTRY_HEAD, at)
  out.set(sig, at + SIG_ENTRY_HEAD.length)
  out.set(unsigned.subarray(at), at + SIG_ENTRY_BYTES)
  return out
}

/** The inverse of {@link spliceSig}: the unsigned part's encoding from a canonical record encoding. */
export function stripSig (full: Uint8Array): Uint8Array {
  const at = sigOffset(full)
  const out = new Uint8Array(full.length - SIG_ENTRY_BYTES)
  out[0] = 0xa7
  out.set(full.subarray(1, at), 1)
  out.set(full.subarray(at + SIG_ENTRY_BYTES), at)
  return out
}

/** Build and sign a record; returns it with its canonical bytes and id. */
export function createRecord (signer: Signer, seq: number, prev: string | null, type: RecordType, body: Record<string, unknown>, ts = Date.now()): { record: LedgerRecord, bytes: Uint8Array, id: string } {
  const unsigned = { v: RECORD_VERSION as 1, seq, prev, type, ts, body, signer: signer.peerId }
  const unsignedBytes = canonicalEncode(unsigned)
  const sig = signer.sign(signingBytes(RECORD_DOMAIN, unsignedBytes))
  const record: LedgerRecord = { ...unsigned, sig }
  const bytes = spliceSig(unsignedBytes, sig)
  return { record, bytes, id: cidOfBytes(bytes, DAG_CBOR_CODE) }
}

/** Check one record object on its own: shape, signer, signature; gives its id. */
export function checkRecord (r: unknown, expectedSigner: string): RecordCheck {
  if (!isRecordShape(r)) return { problem: 'bad-encoding' }
  let unsignedBytes: Uint8Array
  let id: string
  try {
    const full = canonicalEncode(r)
    id = cidOfBytes(full, DAG_CBOR_CODE)
    unsignedBytes = stripSig(full)
  } catch {
    return { problem: 'bad-encoding' }
  }
  const out: RecordCheck = { seq: r.seq, id, prev: r.prev }
  if (r.signer !== expectedSigner) out.problem = 'wrong-signer'
  else if (!verifyPayload(r.signer, RECORD_DOMAIN, unsignedBytes, r.sig)) out.problem = 'bad-signature'
  return out
}

/** Check the canonical bytes of one record (as stored or served). */
export function checkRecordBytes (bytes: Uint8Array, expectedSigner: string): RecordCheck {
  let r: unknown
  try { r = canonicalDecode(bytes) } catch { return { problem: 'bad-encoding' } }
  return checkRecord(r, expectedSigner)
}

/** Decode stored bytes into a record, or undefined when they are not one. */
export function decodeRecord (bytes: Uint8Array): LedgerRecord | undefined {
  try {
    const r = canonicalDecode(bytes)
    return isRecordShape(r) ? r : undefined
  } catch {
    return undefined
  }
}

/**
 * Deepest a value may sit in a record body (the body's own fields are at depth 1): deeper is refused
 * by {@link verifyEmbedded}, so an append never recurses without bound. What a user puts in a body
 * (a job's `input`) is held to it when it is submitted (auction/requester/job.ts).
 */
export const MAX_BODY_DEPTH = 64

/**
 * Verify every signed message embedded anywhere in a body (including inside
 * other signed messages' payloads). Throws {@link InvalidEvidenceError}
 * naming the first one that fails.
 */
export function verifyEmbedded (value: unknown, path = 'body', depth = 0): void {
  if (depth > MAX_BODY_DEPTH) throw new InvalidEvidenceError(path, `Body nests deeper than ${MAX_BODY_DEPTH} levels at ${path}`)
  if (value == null || typeof value !== 'object' || value instanceof Uint8Array || CID.asCID(value) != null) return
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) verifyEmbedded(value[i], `${path}[${i}]`, depth + 1)
    return
  }
  if (isSignedShape(value)) {
    if (!verifyMessage(value)) throw new InvalidEvidenceError(path)
    verifyEmbedded(value.payload, `${path}.payload`, depth + 1)
    return
  }
  for (const [k, v] of Object.entries(value)) verifyEmbedded(v, `${path}.${k}`, depth + 1)
}
