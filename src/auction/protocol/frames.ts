/**
 * What travels on the market's streams besides single signed messages: a
 * provider's answers (one or a batch), award-channel frames, status
 * requests and replies, blob requests. One codec and one zod validator each;
 * a signed message inside is checked by `messages.ts` before anyone sees it.
 */
import { z } from 'zod'
import { canonicalDecode, canonicalEncode, type Signed } from '../../crypto/index.js'
import { DOMAIN, LIVE_LOG_FRAME_BYTES, MAX_BATCH_ITEMS, MAX_BID_BYTES, MAX_CHANNEL_BYTES } from '../constants.js'
import {
  bytes, checkSigned, cid, jobId, RefusedMessageError, ts,
  type Accept, type Advert, type Award, type Bid, type Decline, type Receipt, type Refuse, type Result
} from './messages.js'

/** Frames on the award channel, as they travel (signed messages inside are checked by {@link decodeFrame}). */
const channelFrameSchema = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('award'), m: z.unknown() }),
  z.strictObject({ t: z.literal('accept'), m: z.unknown() }),
  z.strictObject({ t: z.literal('refuse'), m: z.unknown() }),
  z.strictObject({ t: z.literal('hb'), ts, state: z.enum(['fetching', 'queued', 'running']) }),
  z.strictObject({ t: z.literal('result'), m: z.unknown() }),
  z.strictObject({ t: z.literal('receipt'), m: z.unknown() }),
  /** provider → requester: live output of the running job (not signed, not logged; see provider/logs.ts) */
  z.strictObject({
    t: z.literal('log'),
    fd: z.union([z.literal(1), z.literal(2)]),
    data: bytes.refine(b => b.length <= LIVE_LOG_FRAME_BYTES, { message: 'log chunk too large' }),
    dropped: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
  }),
  /** requester → provider: stop, the award is withdrawn (cancelled, handed over, quorum in) */
  z.strictObject({ t: z.literal('cancel'), reason: z.string().max(128) })
])

// ---------------------------------------------------------------- a provider's answers (bid, decline, advert)

/**
 * What a provider sends a requester directly: a bid or a decline for one of its jobs, or its
 * capacity advert when a slot frees after it turned that requester's offers away (a wake for the
 * requester's queued jobs, sent to the requesters waiting for it instead of gossiped to the mesh).
 */
export type Answer = Signed<Bid> | Signed<Decline> | Signed<Advert>

/** Is this answer a capacity advert (not an answer to one job)? */
export function isAdvertAnswer (m: Answer): m is Signed<Advert> { return m.domain === DOMAIN.advert }

/** Check one answer: a signed Bid, Decline or Advert (told apart by the envelope's domain). */
export function checkAnswer (value: unknown, opts: { now?: number } = {}): Answer {
  const domain = (value as { domain?: unknown } | null)?.domain
  if (domain === DOMAIN.decline) return checkSigned(value, 'decline', opts)
  if (domain === DOMAIN.advert) return checkSigned(value, 'advert', opts)
  return checkSigned(value, 'bid', opts)
}

/** One answer sent as a request on the bid protocol (`precheck`: as for {@link decodeAnswers}; a refusal it returns is thrown). */
export function decodeAnswer (data: Uint8Array, opts: { now?: number, precheck?: (item: unknown) => RefusedMessageError | undefined } = {}): Answer {
  if (data.length > MAX_BID_BYTES) throw new RefusedMessageError('too-large', `answer: ${data.length} bytes exceeds ${MAX_BID_BYTES}`)
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new RefusedMessageError('bad-encoding', 'answer: not canonical CBOR') }
  const early = opts.precheck?.(value)
  if (early != null) throw early
  return checkAnswer(value, opts)
}

const answerBatchSchema = z.strictObject({ b: z.array(z.unknown()).min(1).max(MAX_BATCH_ITEMS) })

/**
 * A frame on a provider's bid stream: the answers it produced in one turn, `{ b: [signed, …] }`.
 * Each item is checked on its own: a bad item is returned as its refusal and does not spoil the
 * others (they are signed one by one). A frame that is not a batch throws. `precheck` looks at
 * each item as decoded, before its schema and signature are: a refusal it returns stands for the item.
 */
export function decodeAnswers (data: Uint8Array, opts: { now?: number, precheck?: (item: unknown) => RefusedMessageError | undefined } = {}): Array<Answer | RefusedMessageError> {
  if (data.length > MAX_BID_BYTES * MAX_BATCH_ITEMS) throw new RefusedMessageError('too-large', `answers: ${data.length} bytes`)
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new RefusedMessageError('bad-encoding', 'answers: not canonical CBOR') }
  const parsed = answerBatchSchema.safeParse(value)
  if (!parsed.success) throw new RefusedMessageError('bad-schema', `answers: expected { b: [1..${MAX_BATCH_ITEMS} items] }`)
  return parsed.data.b.map((item) => {
    const early = opts.precheck?.(item)
    if (early != null) return early
    try {
      return checkAnswer(item, opts)
    } catch (err) {
      if (err instanceof RefusedMessageError) return err
      throw err
    }
  })
}

// ---------------------------------------------------------------- award channel frames

/** A frame on the award channel, its signed message (if any) checked. */
export type Frame =
  | { t: 'award', m: Signed<Award> }
  | { t: 'accept', m: Signed<Accept> }
  | { t: 'refuse', m: Signed<Refuse> }
  | { t: 'hb', ts: number, state: 'fetching' | 'queued' | 'running' }
  | { t: 'result', m: Signed<Result> }
  | { t: 'receipt', m: Signed<Receipt> }
  /** provider → requester: live output (`fd` 1 stdout, 2 stderr); `dropped`: bytes left out (caps) before this chunk */
  | { t: 'log', fd: 1 | 2, data: Uint8Array, dropped: number }
  /** requester → provider: stop, the award is withdrawn (cancelled, handed over, quorum in) */
  | { t: 'cancel', reason: string }

export function encodeFrame (frame: Frame): Uint8Array {
  return canonicalEncode(frame)
}

/**
 * Decode an award-channel frame: size, encoding, frame schema, then the signed message it carries
 * (schema, domain, signature, freshness). Throws {@link RefusedMessageError}; `inner` is set when
 * the frame itself was well formed and the message inside it was refused.
 */
export function decodeFrame (data: Uint8Array, opts: { now?: number } = {}): Frame {
  if (data.length > MAX_CHANNEL_BYTES) throw new RefusedMessageError('too-large', `frame: ${data.length} bytes exceeds ${MAX_CHANNEL_BYTES}`)
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new RefusedMessageError('bad-encoding', 'frame: not canonical CBOR') }
  const parsed = channelFrameSchema.safeParse(value)
  if (!parsed.success) throw new RefusedMessageError('bad-schema', 'frame: unknown type or bad fields')
  const f = parsed.data
  try {
    switch (f.t) {
      case 'hb': case 'cancel': case 'log': return f
      case 'award': return { t: f.t, m: checkSigned(f.m, 'award', opts) }
      case 'accept': return { t: f.t, m: checkSigned(f.m, 'accept', opts) }
      case 'refuse': return { t: f.t, m: checkSigned(f.m, 'refuse', opts) }
      case 'result': return { t: f.t, m: checkSigned(f.m, 'result', opts) }
      case 'receipt': return { t: f.t, m: checkSigned(f.m, 'receipt', opts) }
    }
  } catch (err) {
    if (err instanceof RefusedMessageError) err.inner = true
    throw err
  }
}

// ---------------------------------------------------------------- status

/** What a provider says about a job it was awarded. */
export const STATUS_STATES = ['unknown', 'fetching', 'queued', 'running', 'done'] as const
export type StatusState = typeof STATUS_STATES[number]
export interface StatusReply { state: StatusState, result?: Signed<Result> }

const statusRequestSchema = z.strictObject({ jobId, awardId: cid.optional() })
export type StatusRequest = z.infer<typeof statusRequestSchema>
const statusReplySchema = z.strictObject({ state: z.enum(STATUS_STATES), result: z.unknown().optional() })

export const MAX_STATUS_REQUEST_BYTES = 1024

export function encodeStatusRequest (req: StatusRequest): Uint8Array {
  return canonicalEncode(req)
}

export function decodeStatusRequest (data: Uint8Array): StatusRequest {
  if (data.length > MAX_STATUS_REQUEST_BYTES) throw new RefusedMessageError('too-large', 'status request: too large')
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new RefusedMessageError('bad-encoding', 'status request: not canonical CBOR') }
  const parsed = statusRequestSchema.safeParse(value)
  if (!parsed.success) throw new RefusedMessageError('bad-schema', 'status request is not { jobId, awardId? }')
  return parsed.data
}

export function encodeStatusReply (reply: StatusReply): Uint8Array {
  return canonicalEncode(reply.result != null ? reply : { state: reply.state })
}

/** A provider's status reply; a result in it is checked like one on the award channel. */
export function decodeStatusReply (data: Uint8Array, opts: { now?: number } = {}): StatusReply {
  if (data.length > MAX_CHANNEL_BYTES) throw new RefusedMessageError('too-large', 'status reply: too large')
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new RefusedMessageError('bad-encoding', 'status reply: not canonical CBOR') }
  const parsed = statusReplySchema.safeParse(value ?? { state: 'unknown' })
  if (!parsed.success) throw new RefusedMessageError('bad-schema', 'status reply is not { state, result? }')
  const { state, result } = parsed.data
  return result != null ? { state, result: checkSigned(result, 'result', opts) } : { state }
}

// ---------------------------------------------------------------- blobs

const blobRequestSchema = z.strictObject({ cid: z.string().max(128) })
export const MAX_BLOB_REQUEST_BYTES = 512

export function encodeBlobRequest (cid: string): Uint8Array {
  return canonicalEncode({ cid })
}

export function decodeBlobRequest (data: Uint8Array): string {
  if (data.length > MAX_BLOB_REQUEST_BYTES) throw new RefusedMessageError('too-large', 'blob request: too large')
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new RefusedMessageError('bad-encoding', 'blob request: not canonical CBOR') }
  const parsed = blobRequestSchema.safeParse(value)
  if (!parsed.success) throw new RefusedMessageError('bad-schema', 'blob request is not { cid }')
  return parsed.data.cid
}

/** Most CIDs one `/mercato/blob/2.1.0` request may name (the server refuses more). */
export const MAX_BLOB_BATCH = 64
/** Largest `/mercato/blob/2.1.0` request: MAX_BLOB_BATCH CIDs of ≤ 128 characters, with room for CBOR. */
export const MAX_BLOB_BATCH_REQUEST_BYTES = 16 * 1024
const blobBatchSchema = z.strictObject({ cids: z.array(z.string().max(128)).min(1).max(MAX_BLOB_BATCH) })

export function encodeBlobBatch (cids: string[]): Uint8Array {
  return canonicalEncode({ cids })
}

/** A batch request `{ cids }` (1 to MAX_BLOB_BATCH CIDs); throws RefusedMessageError otherwise. */
export function decodeBlobBatch (data: Uint8Array): string[] {
  if (data.length > MAX_BLOB_BATCH_REQUEST_BYTES) throw new RefusedMessageError('too-large', 'blob batch: too large')
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new RefusedMessageError('bad-encoding', 'blob batch: not canonical CBOR') }
  const parsed = blobBatchSchema.safeParse(value)
  if (!parsed.success) throw new RefusedMessageError('bad-schema', `blob batch is not { cids: 1 to ${MAX_BLOB_BATCH} CIDs }`)
  return parsed.data.cids
}

// ---------------------------------------------------------------- output push (/mercato/output-push/1.0.0)

/** Largest message a pushing provider sends first, and a requester's reply: a job id and a few bytes of CBOR. */
export const MAX_PUSH_CONTROL_BYTES = 512

const pushHelloSchema = z.strictObject({ v: z.literal(1), jobId })
const pushReplySchema = z.union([
  /** the bytes of blocks stored so far (0: the push is accepted) */
  z.strictObject({ stored: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }),
  /** the push is refused; the requester closes */
  z.strictObject({ refused: z.string().max(64) })
])
export type PushReply = z.infer<typeof pushReplySchema>

/** A control message of an output push: size-capped canonical CBOR of `schema`. */
function decodePushControl<T> (data: Uint8Array, schema: z.ZodType<T>, what: string, shape: string): T {
  if (data.length > MAX_PUSH_CONTROL_BYTES) throw new RefusedMessageError('too-large', `${what}: ${data.length} bytes`)
  let value: unknown
  try { value = canonicalDecode(data) } catch { throw new RefusedMessageError('bad-encoding', `${what}: not canonical CBOR`) }
  const parsed = schema.safeParse(value)
  if (!parsed.success) throw new RefusedMessageError('bad-schema', `${what} is not ${shape}`)
  return parsed.data
}

/** A provider's first message on an output push: the job whose outputs follow. */
export const encodePushHello = (id: string): Uint8Array => canonicalEncode({ v: 1, jobId: id })
export const decodePushHello = (data: Uint8Array): string => decodePushControl(data, pushHelloSchema, 'push hello', '{ v: 1, jobId }').jobId

export const encodePushReply = (reply: PushReply): Uint8Array => canonicalEncode(reply)
export const decodePushReply = (data: Uint8Array): PushReply => decodePushControl(data, pushReplySchema, 'push reply', '{ stored } or { refused }')
