/**
 * The ledger's wire messages, one zod schema and one codec each. All are
 * canonical DAG-CBOR. Decoders check size, encoding, schema and (where the
 * message is signed) the signature, cheapest first, and throw
 * InvalidMessageError; nothing else sees an unchecked message.
 */
import { z } from 'zod'
import {
  canonicalDecode, canonicalEncode, isCid, isPeerId, signMessage, verifyMessage, type Signed, type Signer
} from '../crypto/index.js'
import { InvalidMessageError } from '../errors.js'
import { HEAD_DOMAIN, MAX_HEAD_BYTES, MAX_LOG_REQUEST_BYTES, MAX_PROOF_BYTES, MAX_RANGE_LIMIT } from './constants.js'
import { checkRecord, type LedgerRecord } from './record.js'

const peerId = z.string().refine(isPeerId, { message: 'a PeerId' })
const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, { message: 'bytes' })
const seq = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)

// ---------------------------------------------------------------- heads

export const headPayloadSchema = z.strictObject({
  seq,
  id: z.string().max(128).refine(isCid, { message: 'a CID' }),
  ts: z.number().int().nonnegative()
})
/** What a signed head says: the log's last record is `seq`, with id `id`, at time `ts`. */
export type HeadPayload = z.infer<typeof headPayloadSchema>
export type SignedHead = Signed<HeadPayload>

export const signedHeadSchema = z.strictObject({
  domain: z.literal(HEAD_DOMAIN),
  signer: peerId,
  payload: headPayloadSchema,
  sig: bytes.refine((b) => b.length === 64, { message: '64 bytes' })
})

export function signHead (signer: Signer, payload: HeadPayload): SignedHead {
  return signMessage(signer, HEAD_DOMAIN, payload)
}

export function encodeHead (head: SignedHead): Uint8Array {
  return canonicalEncode(head)
}

/** Check a signed head object (schema and signature); throws InvalidMessageError. */
export function checkHead (value: unknown): SignedHead {
  const parsed = signedHeadSchema.safeParse(value)
  if (!parsed.success) throw new InvalidMessageError('Head does not match its schema', 'invalid-head')
  if (!verifyMessage(value, HEAD_DOMAIN)) throw new InvalidMessageError('Head signature does not verify', 'bad-head-signature')
  return value as SignedHead
}

/** Decode and check a gossiped head: size, encoding, schema, signature. */
export function decodeHead (data: Uint8Array): SignedHead {
  if (data.length > MAX_HEAD_BYTES) throw new InvalidMessageError('Head too large', 'too-large')
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new InvalidMessageError('Head is not canonical DAG-CBOR', 'bad-encoding') }
  return checkHead(value)
}

// ---------------------------------------------------------------- log protocol

export const logRequestSchema = z.strictObject({
  /** whose log (default: the serving node's own; it serves no other) */
  signer: peerId.optional(),
  from: seq,
  limit: z.number().int().min(1).max(MAX_RANGE_LIMIT)
})
export type LogRequest = z.infer<typeof logRequestSchema>

export function encodeLogRequest (req: LogRequest): Uint8Array {
  return canonicalEncode(req)
}

export function decodeLogRequest (data: Uint8Array): LogRequest {
  if (data.length > MAX_LOG_REQUEST_BYTES) throw new InvalidMessageError('Log request too large', 'too-large')
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new InvalidMessageError('Log request is not canonical DAG-CBOR', 'bad-encoding') }
  const parsed = logRequestSchema.safeParse(value)
  if (!parsed.success) throw new InvalidMessageError('Log request does not match its schema', 'invalid-log-request')
  return parsed.data
}

export const logPageSchema = z.strictObject({
  signer: peerId,
  from: seq,
  /** canonical bytes of records from..from+n-1, exactly as stored */
  records: z.array(bytes).max(MAX_RANGE_LIMIT),
  /** the server's current signed head (null when its log is empty) */
  head: z.unknown(),
  /** true when records after this page exist */
  more: z.boolean()
})
export interface LogPageWire { signer: string, from: number, records: Uint8Array[], head: SignedHead | null, more: boolean }

export function encodeLogPage (page: LogPageWire): Uint8Array {
  return canonicalEncode(page)
}

// ---------------------------------------------------------------- equivocation proofs

/** One of two contradicting items signed by the same signer for the same seq. */
export type Evidence = { kind: 'head', head: SignedHead } | { kind: 'record', record: LedgerRecord }

export interface EquivocationProof {
  v: 1
  /** the signer who equivocated */
  peer: string
  seq: number
  a: Evidence
  b: Evidence
}

const evidenceSchema = z.union([
  z.strictObject({ kind: z.literal('head'), head: z.unknown() }),
  z.strictObject({ kind: z.literal('record'), record: z.unknown() })
])
export const proofSchema = z.strictObject({ v: z.literal(1), peer: peerId, seq, a: evidenceSchema, b: evidenceSchema })

/** The id an evidence item commits to for (peer, seq), or undefined when it is not validly signed by peer for seq. */
export function evidenceId (e: Evidence, peer: string, seqNo: number): string | undefined {
  if (e.kind === 'head') {
    try { checkHead(e.head) } catch { return undefined }
    return e.head.signer === peer && e.head.payload.seq === seqNo ? e.head.payload.id : undefined
  }
  const c = checkRecord(e.record, peer)
  return c.problem == null && c.seq === seqNo ? c.id : undefined
}

/** True when a proof holds two validly signed, contradicting items. */
export function isValidProof (p: EquivocationProof): boolean {
  const a = evidenceId(p.a, p.peer, p.seq)
  const b = evidenceId(p.b, p.peer, p.seq)
  return a != null && b != null && a !== b
}

export function encodeProof (p: EquivocationProof): Uint8Array {
  return canonicalEncode(p)
}

/** Decode a gossiped proof's envelope: size, encoding, schema; no signature is checked (isValidProof does). */
export function parseProof (data: Uint8Array): EquivocationProof {
  if (data.length > MAX_PROOF_BYTES) throw new InvalidMessageError('Proof too large', 'too-large')
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new InvalidMessageError('Proof is not canonical DAG-CBOR', 'bad-encoding') }
  if (!proofSchema.safeParse(value).success) throw new InvalidMessageError('Proof does not match its schema', 'invalid-proof')
  return value as EquivocationProof
}

/** Decode and check a gossiped proof: size, encoding, schema, both signatures, contradiction. */
export function decodeProof (data: Uint8Array): EquivocationProof {
  const p = parseProof(data)
  if (!isValidProof(p)) throw new InvalidMessageError('Proof does not show two signed, different items for one seq', 'invalid-proof')
  return p
}
