/**
 * The JSON view of records (gateway, `mercato ledger show|export`): byte
 * strings become base64 strings, CIDs their string form; each record gains its
 * `id`. It is for reading: the canonical DAG-CBOR form is what verifies.
 */
import { CID } from 'multiformats/cid'
import { recordId, type LedgerRecord } from './record.js'

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue }

export function toJsonValue (v: unknown): JsonValue {
  if (v === null || v === undefined) return null
  if (typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v
  if (typeof v === 'bigint') return v.toString()
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')
  const cid = CID.asCID(v)
  if (cid != null) return cid.toString()
  if (Array.isArray(v)) return v.map(toJsonValue)
  if (typeof v === 'object') {
    const out: Record<string, JsonValue> = {}
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = toJsonValue(x)
    return out
  }
  return String(v)
}

export interface RecordJson {
  id: string
  v: number
  seq: number
  prev: string | null
  type: string
  ts: number
  signer: string
  body: Record<string, JsonValue>
  /** base64 */
  sig: string
}

export function recordToJson (r: LedgerRecord, id: string = recordId(r)): RecordJson {
  return {
    id,
    v: r.v,
    seq: r.seq,
    prev: r.prev,
    type: r.type,
    ts: r.ts,
    signer: r.signer,
    body: toJsonValue(r.body) as Record<string, JsonValue>,
    sig: toJsonValue(r.sig) as string
  }
}
