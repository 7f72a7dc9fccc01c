import { MercatoError } from '../errors.js'
import type { VerifyReason } from './record.js'

/** A body embeds a signed message that does not verify. */
export class InvalidEvidenceError extends MercatoError {
  /** where in the body, e.g. `body.bid` */
  readonly path: string
  constructor (path: string, message = `Embedded signed message at ${path} does not verify`) {
    super(message, { code: 'invalid-evidence', status: 400, name: 'InvalidEvidenceError' })
    this.path = path
  }
}

/** The record to append is malformed (unknown type, body not a map, too large, bad jobId). */
export class InvalidRecordError extends MercatoError {
  constructor (message = 'Invalid record') {
    super(message, { code: 'invalid-record', status: 400, name: 'InvalidRecordError' })
  }
}

/** The ledger is closed (or closing). */
export class LedgerClosedError extends MercatoError {
  constructor (message = 'Ledger is closed') {
    super(message, { code: 'ledger-closed', status: 503, name: 'LedgerClosedError' })
  }
}

/** The stored log fails verification in a way that is not a torn tail; opening is refused. */
export class LedgerCorruptError extends MercatoError {
  readonly seq: number
  readonly reason: VerifyReason
  constructor (seq: number, reason: VerifyReason, message = `Ledger fails verification at seq ${seq}: ${reason}`) {
    super(message, { code: 'ledger-corrupt', status: 500, name: 'LedgerCorruptError' })
    this.seq = seq
    this.reason = reason
  }
}

/** A page fetched from a peer is malformed (envelope, or a record that does not decode). */
export class InvalidLogPageError extends MercatoError {
  constructor (message = 'Invalid log page') {
    super(message, { code: 'invalid-log-page', status: 502, name: 'InvalidLogPageError' })
  }
}

/** An operation was aborted through its AbortSignal: the one shared class (src/errors.ts). */
export { AbortError } from '../errors.js'
