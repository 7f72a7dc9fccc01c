// Ledger verify worker: checks records on its own (decode, shape, signer,
// Ed25519 signature, id) so the main thread only checks sequence and links.
// Plain JavaScript on purpose: it runs in a worker thread with or without a
// TypeScript loader. It must stay in step with checkRecord() in record.ts
// (the shared test suite runs both paths over the same tampered logs).
import { parentPort, workerData } from 'node:worker_threads'
import { createHash, createPublicKey, verify } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const RECORD_KEYS = ['body', 'prev', 'seq', 'sig', 'signer', 'ts', 'type', 'v']

/** @type {{ signer: string, publicKey: Uint8Array | null, domain: string, types: string[], version: number }} */
const cfg = workerData
const types = new Set(cfg.types)
const key = cfg.publicKey != null
  ? createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, cfg.publicKey]), format: 'der', type: 'spki' })
  : null
const prefix = Buffer.from(cfg.domain + '\0', 'utf8')

function isPlainMap (v) {
  return v != null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && CID.asCID(v) == null
}

function isRecordShape (o) {
  if (!isPlainMap(o)) return false
  const keys = Object.keys(o)
  if (keys.length !== RECORD_KEYS.length) return false
  for (const k of RECORD_KEYS) if (!(k in o)) return false
  return o.v === cfg.version &&
    Number.isSafeInteger(o.seq) && o.seq >= 0 &&
    (o.prev === null || typeof o.prev === 'string') &&
    typeof o.type === 'string' && types.has(o.type) &&
    Number.isSafeInteger(o.ts) &&
    isPlainMap(o.body) &&
    typeof o.signer === 'string' &&
    o.sig instanceof Uint8Array && o.sig.length === 64
}

// same as stripSig() in record.ts: canonical key order is v, ts, seq, sig, body, prev, type, signer
function intHeadLength (b, i) {
  const ai = b[i] & 0x1f
  return ai < 24 ? 1 : ai === 24 ? 2 : ai === 25 ? 3 : ai === 26 ? 5 : 9
}
const SIG_ENTRY_BYTES = 6 + 64
function stripSig (full) {
  let at = 1 + 3
  at += 3 + intHeadLength(full, at + 3)
  at += 4 + intHeadLength(full, at + 4)
  const out = Buffer.allocUnsafe(prefix.length + full.length - SIG_ENTRY_BYTES)
  prefix.copy(out, 0)
  out[prefix.length] = 0xa7
  out.set(full.subarray(1, at), prefix.length + 1)
  out.set(full.subarray(at + SIG_ENTRY_BYTES), prefix.length + at)
  return out
}

function check (bytes) {
  let r
  try { r = dagCbor.decode(bytes) } catch { return { problem: 'bad-encoding' } }
  if (!isRecordShape(r)) return { problem: 'bad-encoding' }
  let id, unsigned
  try {
    const full = dagCbor.encode(r)
    unsigned = stripSig(full) // domain prefix included
    const digest = createHash('sha256').update(full).digest()
    id = CID.createV1(dagCbor.code, createDigest(0x12, new Uint8Array(digest))).toString()
  } catch {
    return { problem: 'bad-encoding' }
  }
  const out = { seq: r.seq, id, prev: r.prev }
  if (r.signer !== cfg.signer) {
    out.problem = 'wrong-signer'
  } else {
    let ok = false
    try { ok = key != null && verify(null, unsigned, key, r.sig) } catch { ok = false }
    if (!ok) out.problem = 'bad-signature'
  }
  return out
}

parentPort.on('message', (msg) => {
  const checks = msg.chunk.map(check)
  parentPort.postMessage({ id: msg.id, checks })
})
