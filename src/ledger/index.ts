/**
 * Mercato's ledger: one signed, hash-chained, append-only log per node, and
 * the open audit that lets any peer check any other node's log.
 *
 * Record: `{ v: 1, seq, prev, type, ts, body, signer, sig }`. `sig` is the
 * owner's Ed25519 signature (domain `mercato/v1/record`) over the canonical
 * DAG-CBOR of the record without `sig`; the record's id is the CID of the
 * whole record; `prev` is the id of record `seq - 1`. Bodies embed the
 * counter-party's signed messages (a provider's Bid inside the requester's
 * `bid` record), verified on append, so a log holds evidence signed by others.
 *
 * Audit: each node gossips its signed head `{ seq, id, ts }` (domain
 * `mercato/v1/head`) on `mercato/heads/1`; peers fetch pages of its log over
 * `/mercato/log/1.0.0` and verify them against the head. Two validly signed
 * heads or records from one signer for the same seq are an equivocation: the
 * proof is stored as an `equivocation` record, gossiped on
 * `mercato/equivocations/1`, and the signer is flagged. See docs/LEDGER.md.
 *
 * @example
 * ```ts
 * const ledger = await openLedger({ signer, path: join(dataDir, 'ledger') })
 * await ledger.append('bid', { jobId, bid: signedBid })
 * const report = await ledger.verify() // { ok, count, headId, firstBad? }
 * const audit = createLedgerAudit({ ledger, network, signer })
 * await audit.start()
 * const verdict = await audit.audit(peerId)
 * ```
 */
export { openLedger, recordKey, idKey, LedgerImpl, type Ledger, type LedgerHead, type LedgerInit } from './ledger.js'
export {
  RECORD_TYPES, isRecordType, isRecordShape, checkRecord, checkRecordBytes, createRecord, decodeRecord, recordId,
  verifyEmbedded, spliceSig, stripSig, MAX_BODY_DEPTH,
  type LedgerRecord, type RecordType, type VerifyReason, type VerifyReport, type RecordCheck
} from './record.js'
export { recordToJson, toJsonValue, type RecordJson, type JsonValue } from './json.js'
export { verifyRecords, verifyEncoded, ChainChecker, type VerifyRecordsOptions, type VerifyEncodedOptions } from './verify.js'
export {
  createLedgerAudit, LedgerAuditService, headSpacing, headStretch, refillBucket,
  type LedgerAudit, type LedgerAuditInit, type AuditReport, type AuditReason, type LogPage, type FlagInfo
} from './audit.js'
export {
  signHead, encodeHead, decodeHead, checkHead, encodeLogRequest, decodeLogRequest, encodeLogPage, encodeProof, decodeProof,
  evidenceId, isValidProof,
  type HeadPayload, type SignedHead, type LogRequest, type LogPageWire, type Evidence, type EquivocationProof
} from './wire.js'
export { MemoryBackend, type LedgerBackend, type BackendOp, type IterateOptions } from './backend.js'
export { LevelBackend } from './level-backend.js'
export * from './errors.js'
export * from './constants.js'
