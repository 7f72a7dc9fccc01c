/**
 * Ledger routes.
 *
 *   GET /v1/ledger?from=N&limit=M[&type=T][&job=ID]   records (JSON view), oldest first
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
import { isMercatoError, InvalidInputError, NotFoundError, MercatoError } from '../../errors.js'
import { isPeerId } from '../../crypto/index.js'
import { isRecordType, RECORD_TYPES, MAX_RANGE_LIMIT, type Ledger, type LedgerAudit } from '../../ledger/index.js'
import { recordToJson } from '../../ledger/json.js'

const DEFAULT_LIMIT = 100

const listQuery = z.object({
  from: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_RANGE_LIMIT).optional(),
  type: z.string().refine(isRecordType, { message: `one of ${RECORD_TYPES.join(', ')}` }).optional(),
  job: z.string().min(1).max(256).optional()
})

function parse<T> (schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new InvalidInputError(`${issue.path.join('.') || 'query'}: ${issue.message}`, 'invalid-request')
  }
  return r.data
}

export interface LedgerRoutesDeps {
  ledger: Ledger
  audit?: LedgerAudit
}

export function ledgerRoutes (deps: LedgerRoutesDeps): FastifyPluginAsync {
  const { ledger, audit } = deps
  return async (app) => {
    // the same error shape as the gateway, also when this plugin runs on its own
    app.setErrorHandler((err: any, _req, reply) => {
      if (isMercatoError(err)) return reply.status(err.status).send({ error: { code: err.code, message: err.message } })
      if (err?.name === 'AbortError' || err?.name === 'TimeoutError') return reply.status(504).send({ error: { code: 'timeout', message: String(err.message) } })
      return reply.status(500).send({ error: { code: 'internal', message: 'Internal error' } })
    })

    app.get('/v1/ledger', async (req) => {
      const q = parse(listQuery, req.query)
      const from = q.from ?? 0
      const limit = q.limit ?? DEFAULT_LIMIT
      let records
      if (q.job != null) {
        records = (await ledger.byJob(q.job)).filter((r) => r.seq >= from && (q.type == null || r.type === q.type)).slice(0, limit)
      } else if (q.type != null && isRecordType(q.type)) {
        records = (await ledger.byType(q.type)).filter((r) => r.seq >= from).slice(0, limit)
      } else {
        records = await ledger.range(from, limit)
      }
      const head = ledger.head()
      const last = records[records.length - 1]
      const next = q.job == null && q.type == null && last != null && last.seq < head.seq ? last.seq + 1 : null
      return { signer: ledger.signer, head, records: records.map((r) => recordToJson(r)), next }
    })

    app.get('/v1/ledger/head', async () => ({ signer: ledger.signer, ...ledger.head() }))

    app.get('/v1/ledger/verify', async () => {
      const t0 = Date.now()
      const report = await ledger.verify()
      return { signer: ledger.signer, ...report, ms: Date.now() - t0 }
    })

    app.get('/v1/ledger/records/:id', async (req) => {
      const { id } = req.params as { id: string }
      const r = /^\d+$/.test(id) ? await ledger.get(Number(id)) : await ledger.getById(id)
      if (r == null) throw new NotFoundError(`no record ${id}`, 'not-found')
      return recordToJson(r)
    })

    app.get('/v1/ledger/flagged', async () => ({ flagged: audit?.flagged() ?? [] }))

    app.get('/v1/ledger/audit/:peer', async (req) => {
      if (audit == null) throw new MercatoError('Audit is not running on this node', { code: 'unavailable', status: 503 })
      const { peer } = req.params as { peer: string }
      if (!peer.startsWith('/') && !isPeerId(peer)) throw new InvalidInputError('peer: a PeerId or a multiaddr', 'invalid-peer')
      return await audit.audit(peer, { signal: AbortSignal.timeout(120_000) })
    })
  }
}
