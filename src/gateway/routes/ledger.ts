/**
 * Ledger routes.
 *
 *   GET /v1/ledger?from=N&limit=M[&type=T][&job=ID][&check=true]
 *                                                     records (JSON view), oldest first; with check, each record
 *                                                     says whether its signature verifies and its `prev` names
 *                                                     the record before it (at most LEDGER_CHECK_MAX records)
 *   GET /v1/ledger/head                               { signer, seq, id, count }
 *   GET /v1/ledger/verify                             verify the whole log: { ok, count, headId, firstBad? }
 *   GET /v1/ledger/records/:id                        one record by id (or by seq, all digits)
 *   GET /v1/ledger/flagged                            peers flagged for equivocation
 *   GET /v1/ledger/audit/:peer                        fetch and verify a peer's log (PeerId or URL-encoded multiaddr)
 *
 * Errors: `{ "error": { "code", "message" } }` with the status of the error.
 */
import type { FastifyPluginAsync } from 'fastify'
import { z } from 'zod'
import { InvalidInputError, NotFoundError, MercatoError } from '../../errors.js'
import { gatewayErrorHandler } from '../errors.js'
import { isPeerId } from '../../crypto/index.js'
import { isRecordType, checkRecord, recordId, RECORD_TYPES, MAX_RANGE_LIMIT, type Ledger, type LedgerAudit, type LedgerRecord } from '../../ledger/index.js'
import { LEDGER_CHECK_MAX } from '../constants.js'
import { liftIdleTimeout } from '../idle.js'
import { recordToJson } from '../../ledger/json.js'
import { SHARED_SCHEMAS, zodValidated } from '../schemas.js'

const DEFAULT_LIMIT = 100

const listQuery = z.object({
  from: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_RANGE_LIMIT).optional(),
  type: z.string().refine(isRecordType, { message: `one of ${RECORD_TYPES.join(', ')}` }).optional(),
  job: z.string().min(1).max(256).optional(),
  check: z.union([z.boolean(), z.enum(['true', 'false'])]).optional()
})

// Route schemas (the OpenAPI document). Self-contained (no $ref), so the
// plugin also runs on a bare fastify; zod above remains the judge of queries.
const errorShape = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } }, additionalProperties: false } },
  additionalProperties: false
}
const headShape = {
  type: 'object',
  properties: { seq: { type: 'integer', description: '-1 when empty' }, id: { type: ['string', 'null'] }, count: { type: 'integer' } },
  additionalProperties: true
}
const recordShape = {
  type: 'object',
  description: 'A record as JSON: bytes as base64, CIDs as strings',
  properties: {
    id: { type: 'string' },
    v: { type: 'integer' },
    seq: { type: 'integer' },
    prev: { type: ['string', 'null'] },
    type: { type: 'string', enum: [...RECORD_TYPES] },
    ts: { type: 'number' },
    signer: { type: 'string' },
    body: { type: 'object', additionalProperties: true },
    sig: { type: 'string' },
    check: {
      type: 'object',
      description: 'with `check=true`: the signature (`ok` or the problem) and the link to the record before (`ok`, `broken`)',
      properties: { sig: { type: 'string' }, link: { type: 'string', enum: ['ok', 'broken'] } },
      additionalProperties: false
    }
  },
  additionalProperties: true
}
const firstBadShape = { type: 'object', properties: { seq: { type: 'integer' }, reason: { type: 'string' } }, additionalProperties: true }
const routeSchemas = {
  list: {
    tags: ['ledger'],
    summary: 'Records of this node\'s ledger, oldest first',
    querystring: {
      type: 'object',
      properties: {
        from: { type: 'integer', minimum: 0, default: 0 },
        limit: { type: 'integer', minimum: 1, maximum: MAX_RANGE_LIMIT, default: DEFAULT_LIMIT },
        type: { type: 'string', enum: [...RECORD_TYPES] },
        job: { type: 'string', minLength: 1, maxLength: 256 },
        check: { type: 'boolean', description: `check each record's signature and link (at most ${LEDGER_CHECK_MAX} records)` }
      }
    },
    response: {
      200: {
        type: 'object',
        properties: { signer: { type: 'string' }, head: headShape, records: { type: 'array', items: recordShape }, next: { type: ['integer', 'null'], description: 'the next `from`, when more records follow' } },
        additionalProperties: true
      },
      400: errorShape
    }
  },
  head: {
    tags: ['ledger'],
    summary: 'The ledger head',
    response: { 200: { ...headShape, properties: { signer: { type: 'string' }, ...headShape.properties } } }
  },
  verify: {
    tags: ['ledger'],
    summary: 'Verify the whole log (signatures and chain)',
    response: {
      200: {
        type: 'object',
        properties: { signer: { type: 'string' }, ok: { type: 'boolean' }, count: { type: 'integer' }, headId: { type: ['string', 'null'] }, firstBad: firstBadShape, ms: { type: 'integer' } },
        additionalProperties: true
      }
    }
  },
  record: {
    tags: ['ledger'],
    summary: 'One record, by id or by seq (all digits)',
    params: { type: 'object', properties: { id: { type: 'string' } } },
    response: { 200: recordShape, 404: errorShape }
  },
  flagged: {
    tags: ['ledger'],
    summary: 'Peers flagged for equivocation',
    response: { 200: { type: 'object', properties: { flagged: { type: 'array', items: { type: 'string' } } }, additionalProperties: true } }
  },
  audit: {
    tags: ['ledger'],
    summary: "Fetch and verify a peer's log against its signed heads",
    params: { type: 'object', properties: { peer: { type: 'string', description: 'a PeerId or a URL-encoded multiaddr' } } },
    response: {
      200: {
        type: 'object',
        properties: {
          peer: { type: 'string' },
          ok: { type: 'boolean' },
          count: { type: 'integer' },
          headId: { type: ['string', 'null'] },
          head: { type: ['object', 'null'], additionalProperties: true },
          firstBad: firstBadShape,
          flagged: { type: 'boolean' },
          pages: { type: 'integer' },
          ms: { type: 'integer' }
        },
        additionalProperties: true
      },
      400: errorShape,
      503: errorShape,
      504: errorShape
    }
  }
}

function parse<T> (schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new InvalidInputError(`${issue.path.join('.') || 'query'}: ${issue.message}`, 'invalid-request')
  }
  return r.data
}

/** Each record as JSON with its check: signature verified, `prev` equal to the id of the record before it. */
async function checked (ledger: Ledger, records: LedgerRecord[]): Promise<Array<ReturnType<typeof recordToJson> & { check: { sig: string, link: 'ok' | 'broken' } }>> {
  const ids = new Map<number, string>()
  const out = []
  for (const r of records) {
    const c = checkRecord(r, ledger.signer)
    if (c.id != null) ids.set(r.seq, c.id)
    let prevId: string | null | undefined = r.seq === 0 ? null : ids.get(r.seq - 1)
    if (prevId === undefined) {
      const before = await ledger.get(r.seq - 1)
      prevId = before == null ? undefined : recordId(before) // its id only: its own signature is its own row's check
    }
    out.push({ ...recordToJson(r, c.id), check: { sig: c.problem ?? 'ok', link: prevId !== undefined && r.prev === prevId ? 'ok' as const : 'broken' as const } })
  }
  return out
}

export interface LedgerRoutesDeps {
  ledger: Ledger
  audit?: LedgerAudit
}

export function ledgerRoutes (deps: LedgerRoutesDeps): FastifyPluginAsync {
  const { ledger, audit } = deps
  return async (app) => {
    // the shared schemas ($ref 'Error#', ...) when this plugin runs on its own, outside buildGateway
    for (const schema of SHARED_SCHEMAS) if (app.getSchema(schema.$id) == null) app.addSchema(schema)
    // the same error shape as the gateway, also when this plugin runs on its own
    app.setErrorHandler(gatewayErrorHandler)

    app.get('/v1/ledger', { schema: routeSchemas.list, ...zodValidated }, async (req) => {
      const q = parse(listQuery, req.query)
      const from = q.from ?? 0
      const limit = q.limit ?? DEFAULT_LIMIT
      let records
      if (q.job != null) {
        records = (await ledger.byJob(q.job)).filter((r) => r.seq >= from && (q.type == null || r.type === q.type)).slice(0, limit)
      } else if (q.type != null && isRecordType(q.type)) {
        records = await ledger.byType(q.type, { from, limit })
      } else {
        records = await ledger.range(from, limit)
      }
      const check = q.check === true || q.check === 'true'
      if (check) records = records.slice(0, LEDGER_CHECK_MAX)
      const head = ledger.head()
      const last = records[records.length - 1]
      const next = q.job == null && q.type == null && last != null && last.seq < head.seq ? last.seq + 1 : null
      if (!check) return { signer: ledger.signer, head, records: records.map((r) => recordToJson(r)), next }
      return { signer: ledger.signer, head, records: await checked(ledger, records), next }
    })

    app.get('/v1/ledger/head', { schema: routeSchemas.head }, async () => ({ signer: ledger.signer, ...ledger.head() }))

    app.get('/v1/ledger/verify', { schema: routeSchemas.verify }, async () => {
      const t0 = Date.now()
      const report = await ledger.verify()
      return { signer: ledger.signer, ...report, ms: Date.now() - t0 }
    })

    app.get('/v1/ledger/records/:id', { schema: routeSchemas.record }, async (req) => {
      const { id } = req.params as { id: string }
      const r = /^\d+$/.test(id) ? await ledger.get(Number(id)) : await ledger.getById(id)
      if (r == null) throw new NotFoundError(`no record ${id}`, 'not-found')
      return recordToJson(r)
    })

    app.get('/v1/ledger/flagged', { schema: routeSchemas.flagged }, async () => ({ flagged: audit?.flagged() ?? [] }))

    app.get('/v1/ledger/audit/:peer', { schema: routeSchemas.audit }, async (req) => {
      if (audit == null) throw new MercatoError('Audit is not running on this node', { code: 'unavailable', status: 503 })
      const { peer } = req.params as { peer: string }
      if (!peer.startsWith('/') && !isPeerId(peer)) throw new InvalidInputError('peer: a PeerId or a multiaddr', 'invalid-peer')
      // fetching a peer's log may be quiet for a while: bounded by its own timeout, not the idle one
      const restoreIdle = liftIdleTimeout(req)
      try {
        return await audit.audit(peer, { signal: AbortSignal.timeout(120_000) })
      } finally {
        restoreIdle()
      }
    })
  }
}
