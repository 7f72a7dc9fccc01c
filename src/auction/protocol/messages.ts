/**
 * The market's signed messages: one zod schema and one codec each. Together
 * with `frames.ts` (answers, award-channel frames, status, blob requests)
 * this is everything that crosses a topic, a request or a stream, decoded
 * here and nowhere else.
 *
 * Every message is a {@link Signed} envelope (domain-separated Ed25519 over
 * the canonical DAG-CBOR payload), carrying a version, the signer, a
 * timestamp and an expiry. {@link decodeSigned} checks size, encoding,
 * schema, domain, signature and freshness — in that order, cheapest first —
 * before anything else sees the message.
 */
import { z } from 'zod'
import { canonicalDecode, canonicalEncode, isPeerId, messageId, signMessage, verifyMessage, type Signed, type Signer } from '../../crypto/index.js'
import { InvalidMessageError } from '../../errors.js'
import { ENGINES } from '../../engines.js'
import { constraintsSchema, labelsSchema } from '../../labels.js'
import { ADVERT_TTL_MS, BID_TTL_MS, DOMAIN, MAX_ADVERT_ADDRS, MAX_BLOB_BYTES, MAX_CLOCK_SKEW_MS, MAX_INLINE_BYTES, MAX_INPUT_BLOB_BYTES, MAX_INPUT_URL_CHARS, MAX_INPUTS_SPEC_CHARS, MAX_RESULT_OUTPUT_BYTES, MAX_RESULT_OUTPUT_FILE_BYTES, MAX_RESULT_OUTPUTS, OFFER_TTL_MS } from '../constants.js'
import { inputListProblem, outputListProblem } from '../../executor/index.js'
import { MAX_JOB_INPUTS } from '../../executor/constants.js'

export const peerId = z.string().refine(isPeerId, { message: 'a PeerId' })
export const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, { message: 'bytes' })
export const cid = z.string().min(8).max(128)
export const jobId = z.string().min(8).max(128)
export const ts = z.number().int().nonnegative()
const price = z.number().finite().nonnegative().max(1e12)

export const limitsSchema = z.strictObject({
  timeoutMs: z.number().int().min(1).max(24 * 3600_000),
  memoryMb: z.number().int().min(1).max(65536),
  outputBytes: z.number().int().min(0).max(64 * 1024 * 1024)
})

/** An http(s) URL, as a provider will fetch it (nothing else: no file:, data:, ftp:). */
export const httpUrl = z.string().min(1).max(MAX_INPUT_URL_CHARS).refine(u => {
  try { const p = new URL(u).protocol; return p === 'http:' || p === 'https:' } catch { return false }
}, { message: 'an http:// or https:// URL' })

/**
 * A job's input file, as the signed offer names it: a blob (CID and size, fetched over the blob
 * protocol from the requester or a holder) or a URL (fetched by the provider, its bytes pinned by
 * sha256; `size` when known, so a provider can decline what it would not hold).
 */
export const inputRefSchema = z.union([
  z.strictObject({ path: z.string().min(1).max(1024), cid: z.string().regex(/^b[a-z2-7]{20,100}$/), size: z.number().int().min(1).max(MAX_INPUT_BLOB_BYTES) }),
  z.strictObject({ path: z.string().min(1).max(1024), url: httpUrl, sha256: z.string().regex(/^[0-9a-f]{64}$/, { message: 'a hex sha256' }), size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional() })
])
export type InputRef = z.infer<typeof inputRefSchema>

/** A job's inputs: plain relative paths, none twice, no file/directory clash, within the count and the offer's room. */
export const inputsSchema = z.array(inputRefSchema).min(1).max(MAX_JOB_INPUTS).superRefine((list, ctx) => {
  const problem = inputListProblem(list.map(i => i.path))
  if (problem != null) ctx.addIssue({ code: 'custom', message: problem })
  const chars = list.reduce((n, i) => n + i.path.length + ('url' in i ? i.url.length : 0), 0)
  if (chars > MAX_INPUTS_SPEC_CHARS) ctx.addIssue({ code: 'custom', message: `input paths and URLs total ${chars} characters, over ${MAX_INPUTS_SPEC_CHARS}` })
})

/** What a job runs: the part of the spec every provider sees. */
export const specSchema = z.strictObject({
  engine: z.enum(ENGINES),
  module: z.strictObject({ cid, size: z.number().int().min(1) }).optional(),
  source: z.string().max(MAX_INLINE_BYTES).optional(),
  args: z.array(z.string().max(4096)).max(256),
  env: z.record(z.string().max(256), z.string().max(4096)),
  stdin: bytes.refine(b => b.length <= MAX_INLINE_BYTES, { message: `at most ${MAX_INLINE_BYTES} bytes` }).optional(),
  input: z.unknown().optional(),
  limits: limitsSchema,
  /** input files (absent when none): signed with the offer, so every replica reads the same bytes */
  inputs: inputsSchema.optional()
})
export type JobSpecWire = z.infer<typeof specSchema>

export const offerSchema = z.strictObject({
  v: z.literal(1),
  jobId,
  requester: peerId,
  /** multiaddrs where the requester can be reached (to send bids, fetch blobs) */
  addrs: z.array(z.string().max(512)).max(16),
  spec: specSchema,
  maxPrice: price,
  replicas: z.number().int().min(1).max(15),
  bidWindowMs: z.number().int().min(1).max(60_000),
  ts,
  expires: ts,
  /** re-announcement counter (restart, failover with no bids left) */
  round: z.number().int().min(0).max(1000),
  /** placement: the labels a provider must carry (src/labels.ts); absent: any provider */
  constraints: constraintsSchema.min(1).optional()
})
export type Offer = z.infer<typeof offerSchema>

export const bidSchema = z.strictObject({
  v: z.literal(1),
  jobId,
  offerId: cid,
  provider: peerId,
  price,
  /** when the provider expects to start, ms after award */
  estStartMs: z.number().int().min(0).max(24 * 3600_000),
  /**
   * for a constrained offer: the provider's labels on the keys its constraints name (absent keys
   * left out). What the requester matches the constraints against, and compares with the
   * provider's advert; the award's bid digests make the match re-checkable from the log.
   */
  labels: labelsSchema.optional(),
  ts,
  expires: ts
})
export type Bid = z.infer<typeof bidSchema>

export const DECLINE_REASONS = ['engine', 'timeout-over-cap', 'memory-over-cap', 'output-over-cap', 'price', 'no-slot', 'requester-flagged', 'not-providing', 'module-too-large', 'constraint', 'input-too-large', 'inputs-unsupported'] as const
export type DeclineReason = typeof DECLINE_REASONS[number]

export const declineSchema = z.strictObject({
  v: z.literal(1),
  jobId,
  offerId: cid,
  provider: peerId,
  reason: z.enum(DECLINE_REASONS),
  detail: z.string().max(512).optional(),
  ts
})
export type Decline = z.infer<typeof declineSchema>

export const awardSchema = z.strictObject({
  v: z.literal(1),
  jobId,
  offerId: cid,
  requester: peerId,
  provider: peerId,
  /** digest of the winning bid */
  bidId: cid,
  /** digests of every bid considered, so anyone can re-check the winner */
  bids: z.array(cid).max(1024),
  /** what the provider will be paid (second price) */
  price,
  attempt: z.number().int().min(0).max(100),
  ts,
  expires: ts
})
export type Award = z.infer<typeof awardSchema>

export const acceptSchema = z.strictObject({
  v: z.literal(1),
  jobId,
  awardId: cid,
  provider: peerId,
  ts
})
export type Accept = z.infer<typeof acceptSchema>

export const refuseSchema = z.strictObject({
  v: z.literal(1),
  jobId,
  awardId: cid,
  provider: peerId,
  reason: z.string().max(128),
  ts
})
export type Refuse = z.infer<typeof refuseSchema>

/** An output file a result names: its path in the job's output directory, its CID (UnixFS; raw sha2-256 in older results) and size. */
export const outputRefSchema = z.strictObject({
  path: z.string().min(1).max(1024),
  cid: z.string().regex(/^b[a-z2-7]{20,100}$/),
  size: z.number().int().min(0).max(MAX_RESULT_OUTPUT_FILE_BYTES)
})

/** A result's outputs: plain relative paths, sorted, no duplicates, within the count and total caps. */
export const outputsSchema = z.array(outputRefSchema).max(MAX_RESULT_OUTPUTS).superRefine((list, ctx) => {
  const problem = outputListProblem(list.map(o => o.path))
  if (problem != null) ctx.addIssue({ code: 'custom', message: problem })
  const total = list.reduce((n, o) => n + o.size, 0)
  if (total > MAX_RESULT_OUTPUT_BYTES) ctx.addIssue({ code: 'custom', message: `outputs total ${total} bytes, over ${MAX_RESULT_OUTPUT_BYTES}` })
})

export const resultSchema = z.strictObject({
  v: z.literal(1),
  jobId,
  awardId: cid,
  provider: peerId,
  exitCode: z.number().int(),
  stdout: bytes,
  stderr: bytes,
  output: z.unknown().optional(),
  /** the files the job wrote (absent when none); the result hash covers them */
  outputs: outputsSchema.optional(),
  truncated: z.boolean(),
  resultHash: z.string().regex(/^[0-9a-f]{64}$/),
  usage: z.strictObject({ wallMs: z.number().min(0), memoryBytes: z.number().min(0), outputBytes: z.number().min(0), fuel: z.number().min(0).optional() }),
  error: z.strictObject({ name: z.string().max(64), message: z.string().max(1024) }).optional(),
  ts
})
export type Result = z.infer<typeof resultSchema>

/**
 * A provider's capacity advert (`mercato/adverts/1`): what it runs, its base ask, its slots and
 * the largest job it takes. Requesters keep the freshest one per provider in their book and
 * invite the providers that can plausibly win a job instead of calling the whole mesh. Sent on
 * start, on change, and every ADVERT_REFRESH_MS; `seq` orders one provider's adverts.
 */
export const advertSchema = z.strictObject({
  v: z.literal(1),
  provider: peerId,
  engines: z.array(z.enum(ENGINES)).min(1).max(ENGINES.length),
  /** base ask per job while a slot is free (a bid may ask more when busy) */
  ask: price,
  slots: z.number().int().min(1).max(100_000),
  /** slots free at the base ask when it was signed (absent from older providers): a queued job wakes on an advert with one */
  free: z.number().int().min(0).max(100_000).optional(),
  /** the largest limits it accepts */
  caps: limitsSchema,
  /** its input file limits: how many, bytes per file, bytes in total (absent from older providers) */
  inputs: z.strictObject({ files: z.number().int().min(0).max(MAX_JOB_INPUTS), fileBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), totalBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }).optional(),
  addrs: z.array(z.string().max(256)).max(MAX_ADVERT_ADDRS),
  /** what it says of itself (`region=eu`): matched against job constraints; absent: none */
  labels: labelsSchema.optional(),
  seq: z.number().int().nonnegative(),
  ts,
  expires: ts
})
export type Advert = z.infer<typeof advertSchema>

export const receiptSchema = z.strictObject({
  v: z.literal(1),
  jobId,
  requester: peerId,
  provider: peerId,
  resultId: cid,
  resultHash: z.string().regex(/^[0-9a-f]{64}$/),
  price,
  status: z.enum(['paid', 'superseded', 'failed']),
  ts
})
export type Receipt = z.infer<typeof receiptSchema>

/** Longest lifetime (expires − ts) accepted per kind. */
const MAX_LIFETIME_MS: Partial<Record<string, number>> = { offer: OFFER_TTL_MS, bid: BID_TTL_MS, award: BID_TTL_MS, advert: ADVERT_TTL_MS }

const SCHEMAS = {
  offer: offerSchema,
  bid: bidSchema,
  decline: declineSchema,
  award: awardSchema,
  accept: acceptSchema,
  refuse: refuseSchema,
  result: resultSchema,
  receipt: receiptSchema,
  advert: advertSchema
} as const

export type Kind = keyof typeof SCHEMAS
export type PayloadOf<K extends Kind> = z.infer<typeof SCHEMAS[K]>

/** Reasons a message is refused, counted per reason. */
export type RefusalReason = 'too-large' | 'bad-encoding' | 'bad-schema' | 'bad-signature' | 'expired' | 'future' | 'wrong-sender' | 'unknown-job' | 'replay' | 'wrong-state' | 'bad-hash' | 'unmet-constraint' | 'label-mismatch' | 'outputs-unavailable'

/** A counter of refusals by reason, into `map` (the gossip gates and both roles count this way). */
export function countInto (map: Map<RefusalReason, number>): (reason: RefusalReason) => void {
  return (reason) => { map.set(reason, (map.get(reason) ?? 0) + 1) }
}

export class RefusedMessageError extends InvalidMessageError {
  readonly reason: RefusalReason
  /** set by {@link decodeFrame}: the frame was well formed, the signed message inside it was refused */
  inner = false
  constructor (reason: RefusalReason, message: string) {
    super(message, `refused-${reason}`)
    this.name = 'RefusedMessageError'
    this.reason = reason
  }
}

export function sign<K extends Kind> (signer: Signer, kind: K, payload: PayloadOf<K>): Signed<PayloadOf<K>> {
  return signMessage(signer, DOMAIN[kind], payload)
}

export function encodeSigned (m: Signed): Uint8Array {
  return canonicalEncode(m)
}

const envelopeSchema = z.strictObject({ domain: z.string().max(64), signer: peerId, payload: z.unknown(), sig: bytes })

/**
 * Check a signed message of one kind from already-decoded data: schema,
 * domain, signature, freshness. Throws {@link RefusedMessageError}.
 */
export function checkSigned<K extends Kind> (value: unknown, kind: K, opts: { now?: number } = {}): Signed<PayloadOf<K>> {
  const env = envelopeSchema.safeParse(value)
  if (!env.success) throw new RefusedMessageError('bad-schema', `${kind}: not a signed envelope`)
  if (env.data.domain !== DOMAIN[kind]) throw new RefusedMessageError('bad-schema', `${kind}: wrong domain ${env.data.domain}`)
  const parsed = SCHEMAS[kind].safeParse(env.data.payload)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new RefusedMessageError('bad-schema', `${kind}: ${issue.path.join('.')}: ${issue.message}`)
  }
  const m = env.data as Signed<PayloadOf<K>>
  // what costs nothing first: a stale, future or over-long message, or one signed by somebody else
  // than the party it names, is refused without a signature check (a stranger resending a stale
  // message must not cost us one each time)
  const p = m.payload as any
  const signerField = p.provider ?? p.requester
  if ((kind === 'offer' || kind === 'award' || kind === 'receipt') ? p.requester !== m.signer : signerField !== m.signer) {
    throw new RefusedMessageError('bad-signature', `${kind}: signed by ${m.signer}, not by the party it names`)
  }
  const now = opts.now ?? Date.now()
  if (p.ts > now + MAX_CLOCK_SKEW_MS) throw new RefusedMessageError('future', `${kind}: timestamp in the future`)
  if (typeof p.expires === 'number' && p.expires < now) throw new RefusedMessageError('expired', `${kind}: expired`)
  // a message may not live longer than its kind allows (an offer signed to last a year is a replay tool)
  const lifetime = MAX_LIFETIME_MS[kind]
  if (lifetime != null && typeof p.expires === 'number' && p.expires - p.ts > lifetime + MAX_CLOCK_SKEW_MS) {
    throw new RefusedMessageError('bad-schema', `${kind}: lifetime over ${lifetime} ms`)
  }
  if (!verifyMessage(m, DOMAIN[kind])) throw new RefusedMessageError('bad-signature', `${kind}: bad signature`)
  return m
}

/** Size-cap, decode and check bytes from the network. */
export function decodeSigned<K extends Kind> (data: Uint8Array, kind: K, maxBytes: number, opts: { now?: number } = {}): Signed<PayloadOf<K>> {
  if (data.length > maxBytes) throw new RefusedMessageError('too-large', `${kind}: ${data.length} bytes exceeds ${maxBytes}`)
  let value: unknown
  try {
    value = canonicalDecode(data)
  } catch {
    throw new RefusedMessageError('bad-encoding', `${kind}: not canonical CBOR`)
  }
  return checkSigned(value, kind, opts)
}

export { messageId }

/** Several signed messages of one kind in one gossip message or stream frame: `{ b: [...] }`. */
export function encodeBatch (items: Signed[]): Uint8Array {
  return canonicalEncode({ b: items })
}

/**
 * Size-cap and decode a batch; every item is checked as {@link checkSigned} does. Items that are
 * merely expired are dropped (an honest late delivery); any other bad item refuses the whole batch.
 */
export function decodeBatch<K extends Kind> (data: Uint8Array, kind: K, maxBytes: number, maxItems: number, opts: { now?: number } = {}): Array<Signed<PayloadOf<K>>> {
  if (data.length > maxBytes) throw new RefusedMessageError('too-large', `${kind} batch: ${data.length} bytes exceeds ${maxBytes}`)
  let value: any
  try {
    value = canonicalDecode(data)
  } catch {
    throw new RefusedMessageError('bad-encoding', `${kind} batch: not canonical CBOR`)
  }
  const items = value?.b
  if (!Array.isArray(items) || items.length === 0 || items.length > maxItems || Object.keys(value).length !== 1) {
    throw new RefusedMessageError('bad-schema', `${kind} batch: expected { b: [1..${maxItems} items] }`)
  }
  const out: Array<Signed<PayloadOf<K>>> = []
  for (const item of items) {
    try {
      out.push(checkSigned(item, kind, opts))
    } catch (err) {
      if (err instanceof RefusedMessageError && err.reason === 'expired') continue
      throw err
    }
  }
  return out
}
