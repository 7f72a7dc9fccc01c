/**
 * Job and blob routes: the contract apps and tests rely on.
 *
 *   POST   /v1/blobs               raw bytes → 201 { cid, size }
 *   GET    /v1/blobs/:cid          the bytes
 *   POST   /v1/jobs                job spec (JSON) → 202 { id, status }
 *   GET    /v1/jobs                list (?status=&limit=)
 *   GET    /v1/jobs/:id            the job, its bids, attempts, declines
 *   GET    /v1/jobs/:id/result     the result (409 while not finished)
 *   GET    /v1/jobs/:id/events     server-sent events: past ones, then live
 *   DELETE /v1/jobs/:id            cancel
 *   GET    /v1/providers           known providers with standing
 *   GET    /v1/balance             this node's credits earned and spent
 */
import type { FastifyPluginAsync } from 'fastify'
import { z } from 'zod'
import type { Market, JobEvent } from '../../auction/index.js'
import { InvalidInputError } from '../../errors.js'
import { GatewayError } from '../errors.js'

const limits = z.strictObject({
  timeoutMs: z.number().int().min(1).optional(),
  memoryMb: z.number().int().min(1).optional(),
  outputBytes: z.number().int().min(0).optional()
})

export const jobBodySchema = z.strictObject({
  engine: z.enum(['wasm', 'js']),
  module: z.string().min(1).max(128).optional(),
  source: z.string().optional(),
  args: z.array(z.string()).max(256).optional(),
  env: z.record(z.string(), z.string()).optional(),
  stdin: z.string().max(200_000).regex(/^[A-Za-z0-9+/]*={0,2}$/, { message: 'base64' }).optional(),
  input: z.unknown().optional(),
  limits: limits.optional(),
  maxPrice: z.number().min(0).optional(),
  replicas: z.number().int().min(1).max(15).optional(),
  minBids: z.number().int().min(1).max(100).optional(),
  bidWindowMs: z.number().int().min(1).max(60_000).optional()
})

const STATUSES = ['bidding', 'awarded', 'running', 'completed', 'failed', 'no-bids', 'cancelled'] as const
const listQuery = z.object({
  status: z.enum(STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional()
})

export function parseJobBody (body: unknown): z.infer<typeof jobBodySchema> {
  if (body == null || typeof body !== 'object' || Array.isArray(body)) throw new InvalidInputError('the body must be a JSON object (a job spec)', 'invalid-spec')
  const parsed = jobBodySchema.safeParse(body)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const field = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : issue.path.join('.')
    throw new InvalidInputError(`${field || 'spec'}: ${issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message}`, 'invalid-spec')
  }
  return parsed.data
}

export function jobRoutes (deps: { market: Market }): FastifyPluginAsync {
  const { market } = deps
  return async (app) => {
    app.post('/v1/blobs', async (req, reply) => {
      const body = req.body
      if (!(body instanceof Uint8Array)) throw new GatewayError('unsupported-media-type', 'upload raw bytes with Content-Type: application/octet-stream')
      const cid = await market.uploadBlob(new Uint8Array(body.buffer, body.byteOffset, body.byteLength))
      return await reply.status(201).send({ cid, size: body.byteLength })
    })

    app.get<{ Params: { cid: string } }>('/v1/blobs/:cid', async (req, reply) => {
      const bytes = await market.blobs.get(req.params.cid)
      if (bytes == null) throw new GatewayError('not-found', `no blob ${req.params.cid}`)
      return await reply.type('application/octet-stream').send(Buffer.from(bytes))
    })

    app.post('/v1/jobs', async (req, reply) => {
      const spec = parseJobBody(req.body)
      const job = await market.submit({ ...spec, stdin: spec.stdin != null ? new Uint8Array(Buffer.from(spec.stdin, 'base64')) : undefined })
      return await reply.status(202).send({ id: job.id, status: job.status })
    })

    app.get('/v1/jobs', async (req) => {
      const q = listQuery.safeParse(req.query)
      if (!q.success) throw new InvalidInputError(`${q.error.issues[0].path.join('.')}: ${q.error.issues[0].message}`, 'invalid-request')
      return market.list(q.data)
    })

    app.get<{ Params: { id: string } }>('/v1/jobs/:id', async (req) => market.get(req.params.id))

    app.get<{ Params: { id: string } }>('/v1/jobs/:id/result', async (req) => market.result(req.params.id))

    app.delete<{ Params: { id: string } }>('/v1/jobs/:id', async (req) => await market.cancel(req.params.id))

    app.get<{ Params: { id: string } }>('/v1/jobs/:id/events', async (req, reply) => {
      const id = req.params.id
      const past = market.jobEvents(id) // 404 when unknown
      reply.hijack()
      const res = reply.raw
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' })
      const write = (e: JobEvent): void => { res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`) }
      for (const e of past) write(e)
      const finish = (): void => {
        cleanup()
        res.write('event: end\ndata: {}\n\n')
        res.end()
      }
      const onEvent = (e: JobEvent): void => { if (e.jobId === id) write(e) }
      const onDone = (doneId: string): void => { if (doneId === id) setImmediate(finish) }
      const ping = setInterval(() => { res.write(': ping\n\n') }, 15_000)
      const cleanup = (): void => {
        clearInterval(ping)
        market.events.off('job', onEvent)
        market.events.off('done', onDone)
      }
      req.raw.on('close', cleanup)
      if (market.requester.isTerminal(id)) { finish(); return }
      market.events.on('job', onEvent)
      market.events.on('done', onDone)
    })

    app.get('/v1/providers', async () => {
      const standings = new Map(market.standings().map(s => [s.peerId, s]))
      return market.requester.knownProviderList().map(p => ({ ...p, standing: standings.get(p.peerId) ?? null }))
    })

    app.get('/v1/balance', async () => market.balance())
  }
}
