/**
 * Job and blob routes: the contract apps and tests rely on.
 *
 *   POST   /v1/blobs               raw bytes → 201 { cid, size }
 *   GET    /v1/blobs/:cid          the bytes
 *   DELETE /v1/blobs/:cid          stop keeping an upload (it becomes cache: blobs.cacheMaxBytes)
 *   POST   /v1/jobs                job spec (JSON) → 202 { id, status }; an array of specs (a batch,
 *                                   at most JOBS_BATCH_MAX) → 200, one { id, status } or { error } per item
 *   GET    /v1/schema/job.json     the job spec as a JSON Schema (from the zod schema below)
 *   GET    /v1/jobs                list (?status=&label=k=v&limit=): the jobs held in memory
 *   GET    /v1/jobs/:id            the job, its bids, attempts, declines (?wait=ms: once it is
 *                                   finished, or after that long, whichever comes first)
 *   GET    /v1/jobs/:id/result     the result (409 while not finished)
 *   GET    /v1/jobs/:id/outputs    its output files: [{ path, cid, size }] (409 while not finished)
 *   GET    /v1/jobs/:id/outputs/*  one output file's bytes (Range: 206 / 416; never active content)
 *   GET    /v1/jobs/:id/events     server-sent events: past ones, then live; `log` events
 *                                   carry a running job's live output (the last 16 KiB replayed)
 *   DELETE /v1/jobs/:id            cancel
 *   GET    /v1/jobs/:id/history    the job's events so far (JSON), oldest first
 *
 * A node holds its unfinished jobs and its most recent finished ones in
 * memory (`auction.finishedJobsInMemory`, `auction.finishedJobBytesInMemory`);
 * an older job is read back from the log by id (`/v1/jobs/:id`, `/result`),
 * not listed. Its events are not kept: `/history` is `[]` and `/events`
 * ends at once.
 *   GET    /v1/events              server-sent events of every job, live
 *   GET    /v1/events/recent       the latest events of the newest jobs (JSON), newest first
 *   GET    /v1/market/history      asks, prices and latencies of the last 15 minutes
 *   GET    /v1/providers           known providers with standing
 *   GET    /v1/balance             this node's credits earned and spent
 *
 * The bodies and queries are checked by zod here (the message names the bad
 * field); the route schemas describe them for the OpenAPI document.
 */
import type { FastifyPluginAsync } from 'fastify'
import { Readable } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import { z } from 'zod'
import { BlobTooLargeError, MAX_UPLOAD_BYTES, type Market, type JobEvent, type LogEvent } from '../../auction/index.js'
import { LogTails } from '../log-tail.js'
import { MarketHistory } from '../market-history.js'
import { InvalidInputError, isMercatoError } from '../../errors.js'
import { MAX_LABELS, parseLabels, toConstraints, type Constraint } from '../../labels.js'
import { GatewayError } from '../errors.js'
import { errorResponses, documented, zodValidated, EVENT_STREAM, JOB_STATUSES } from '../schemas.js'
import { openEventStream } from '../sse.js'
import { liftIdleTimeout } from '../idle.js'
import { contentDisposition, OUTPUT_CSP, outputContentType, parseRange } from '../outputs.js'
import { JOB_WAIT_MAX_MS, RECENT_EVENTS_JOBS, RECENT_EVENTS_MAX, JOBS_BATCH_MAX, UPLOAD_DRAIN_MS } from '../constants.js'
import { jobBodySchema, jobSpecJsonSchema, describeIssue } from '../job-spec.js'

export { jobBodySchema, jobSpecJsonSchema, describeIssue } from '../job-spec.js'

const recentQuery = z.object({
  limit: z.coerce.number().int().min(1).max(RECENT_EVENTS_MAX).optional()
})

const listQuery = z.object({
  status: z.enum(JOB_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  /** `label=k=v`, repeatable: jobs carrying every one */
  label: z.union([z.string(), z.array(z.string()).max(MAX_LABELS)]).optional()
})

export function parseJobBody (body: unknown): z.infer<typeof jobBodySchema> {
  if (body == null || typeof body !== 'object' || Array.isArray(body)) throw new InvalidInputError('the body must be a JSON object (a job spec)', 'invalid-spec')
  // constraints first, in either form: a bad operator or selector is named as such (invalid-selector)
  const raw = body as Record<string, unknown>
  if (raw.constraints !== undefined) body = { ...raw, constraints: toConstraints(raw.constraints) }
  const parsed = jobBodySchema.safeParse(body)
  if (!parsed.success) {
    const { field, message } = describeIssue(parsed.error.issues[0])
    throw new InvalidInputError(`${field}: ${message}`, 'invalid-spec')
  }
  return parsed.data
}

type SubmitAnswer = { id: string, status: string } | { error: { code: string, message: string } }

/** Submit one checked spec. */
async function submitOne (market: Market, spec: z.infer<typeof jobBodySchema>): Promise<{ id: string, status: string }> {
  const job = await market.submit({ ...spec, constraints: spec.constraints as Constraint[] | undefined, stdin: spec.stdin != null ? new Uint8Array(Buffer.from(spec.stdin, 'base64')) : undefined })
  return { id: job.id, status: job.status }
}

/** One item of a batch: its job, or its own error (a bad item never fails the others). */
async function submitItem (market: Market, body: unknown): Promise<SubmitAnswer> {
  try {
    return await submitOne(market, parseJobBody(body))
  } catch (err: any) {
    if (isMercatoError(err) && err.status < 500) return { error: { code: err.code, message: err.message } }
    throw err
  }
}

/** After a refused upload: let the client finish sending (discarded) for UPLOAD_DRAIN_MS at most, then drop the connection. */
function drainThenClose (raw: IncomingMessage): void {
  if (raw.readableEnded) return
  // destroying the request destroys its socket (an injected request in tests has no real socket)
  const timer = setTimeout(() => { raw.destroy() }, UPLOAD_DRAIN_MS)
  timer.unref()
  const clear = (): void => { clearTimeout(timer) }
  raw.once('end', clear)
  raw.once('close', clear)
}

export function jobRoutes (deps: { market: Market, maxUploadBytes?: number }): FastifyPluginAsync {
  const { market } = deps
  const maxUploadBytes = deps.maxUploadBytes ?? MAX_UPLOAD_BYTES
  const jobBodyJsonSchema = documented(jobSpecJsonSchema())
  const submitted = { type: 'object', required: ['id', 'status'], properties: { id: { type: 'string' }, status: { type: 'string', enum: JOB_STATUSES } }, additionalProperties: false }
  const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'the job id' } } }
  return async (app) => {
    // live logs of running jobs, for subscribers that come late
    const tails = new LogTails(market)
    tails.start()
    // the market's last 15 minutes, for charts on a page opened just now
    const history = new MarketHistory(market)
    history.start()
    app.addHook('onClose', async () => { tails.stop(); history.stop() })

    // uploads stream: in this scope an octet-stream body is handed over as the request stream, read a
    // chunk at a time into the importer (never whole), up to maxUploadBytes
    await app.register(async (scope) => {
      scope.removeContentTypeParser('application/octet-stream')
      scope.addContentTypeParser('application/octet-stream', (_req, payload, done) => { done(null, payload) })
      scope.post('/v1/blobs', {
        schema: {
          tags: ['jobs'],
          summary: `Upload a module or data (raw bytes, Content-Type: application/octet-stream, streamed; at most gateway.maxUploadBytes, default ${MAX_UPLOAD_BYTES / 1024 / 1024} MiB); returns its CID, the one \`ipfs add --cid-version 1\` computes`,
          body: { content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary', description: 'raw bytes' } } } },
          response: { 201: { type: 'object', required: ['cid', 'size'], properties: { cid: { type: 'string' }, size: { type: 'integer' } }, additionalProperties: false } }
        },
        ...zodValidated
      }, async (req, reply) => {
        const body = req.body as unknown
        if (!(body instanceof Readable)) throw new GatewayError('unsupported-media-type', 'upload raw bytes with Content-Type: application/octet-stream')
        const declared = Number(req.headers['content-length'])
        if (Number.isFinite(declared) && declared > maxUploadBytes) {
          // refused before a byte is read; node's HTTP server then reads and discards the body (never
          // stored) so that every client reads the answer: one still sending when the socket closes
          // (EPIPE) would never see it. A client that keeps sending past UPLOAD_DRAIN_MS is cut off.
          drainThenClose(req.raw)
          throw new BlobTooLargeError(`the upload is ${declared} bytes; this node takes at most ${maxUploadBytes} (gateway.maxUploadBytes)`)
        }
        // a client that goes away mid-upload aborts the import (its blocks are dropped)
        const gone = new AbortController()
        const onClose = (): void => { if (!body.readableEnded) gone.abort(new GatewayError('invalid-request', 'the upload was cut short')) }
        req.raw.on('close', onClose)
        try {
          // read without destroying the request on an early stop: the 413 still has to go out on its socket
          const chunks = body.iterator({ destroyOnReturn: false }) as AsyncIterable<Uint8Array>
          const { cid, size } = await market.uploadBlobStream(chunks, { maxBytes: maxUploadBytes, signal: gone.signal })
          return await reply.status(201).send({ cid, size })
        } catch (err) {
          // a client that went away (or was cut by the idle timeout): the body's reader fails with
          // Node's 'aborted' (ECONNRESET), often before the request's 'close' aborts the import. Not
          // the node's error: answered (to no one) as the cut-short upload it is
          if (!body.readableEnded && (gone.signal.aborted || req.raw.destroyed)) throw new GatewayError('invalid-request', 'the upload was cut short')
          if (isMercatoError(err) && err.code === 'blob-too-large') {
            drainThenClose(req.raw)
            throw new BlobTooLargeError(`the upload exceeds ${maxUploadBytes} bytes (gateway.maxUploadBytes)`)
          }
          throw err
        } finally {
          req.raw.off('close', onClose)
        }
      })
    })

    app.get<{ Params: { cid: string }, Querystring: { from?: string } }>('/v1/blobs/:cid', {
      schema: {
        tags: ['jobs'],
        summary: 'The bytes of a blob, streamed; one not held here is fetched first, block by block, from `from` or the holders the DHT names (at most gateway.maxUploadBytes)',
        params: { type: 'object', required: ['cid'], properties: { cid: { type: 'string', maxLength: 128 } } },
        querystring: { type: 'object', properties: { from: { type: 'string', maxLength: 2048, description: 'comma-separated PeerIds or multiaddrs to fetch from' } }, additionalProperties: false },
        response: { 200: { description: 'the bytes', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } }, ...errorResponses(400, 404, 413, 502) }
      }
    }, async (req, reply) => {
      const { cid } = req.params
      const from = req.query.from?.split(',').map(p => p.trim()).filter(p => p !== '').slice(0, 8)
      // one not held is streamed as its blocks arrive; a client that goes away stops the fetch
      const left = new AbortController()
      const onClose = (): void => { if (!reply.raw.writableFinished) left.abort(new Error('client closed the request')) }
      reply.raw.on('close', onClose)
      const blob = await market.streamBlob(cid, { from, maxBytes: maxUploadBytes, signal: left.signal })
      reply.type('application/octet-stream').header('content-length', blob.size)
      // HEAD: the size is known once the root is here; the rest is not fetched for nobody
      if (req.method === 'HEAD') { left.abort(new Error('HEAD')); return await reply.send(Readable.from([])) }
      return await reply.send(Readable.from(blob.content))
    })

    app.delete<{ Params: { cid: string } }>('/v1/blobs/:cid', {
      schema: {
        tags: ['jobs'],
        summary: 'Stop keeping a blob this node\'s user uploaded (or an output file of its jobs): it stays readable until the collector needs its room (blobs.cacheMaxBytes, oldest first); 404 when it was not kept',
        params: { type: 'object', required: ['cid'], properties: { cid: { type: 'string', maxLength: 128 } } },
        response: { 200: { type: 'object', required: ['cid', 'pinned'], properties: { cid: { type: 'string' }, pinned: { type: 'boolean' } } }, ...errorResponses(404) }
      }
    }, async (req) => {
      const { cid } = req.params
      if (!market.unpinBlob(cid)) throw new GatewayError('not-found', `blob ${cid} is not kept by this node (never uploaded, or already released)`)
      return { cid, pinned: false }
    })

    app.post('/v1/jobs', {
      schema: {
        tags: ['jobs'],
        summary: `Submit a job (202 { id, status }), or a batch of 1 to ${JOBS_BATCH_MAX} jobs as an array (200, one answer per item in order: { id, status } or { error })`,
        body: { oneOf: [jobBodyJsonSchema, { type: 'array', minItems: 1, maxItems: JOBS_BATCH_MAX, items: jobBodyJsonSchema }] },
        response: {
          202: submitted,
          200: { type: 'array', items: { oneOf: [submitted, { $ref: 'Error#' }] } },
          ...errorResponses(400)
        }
      },
      ...zodValidated
    }, async (req, reply) => {
      if (req.body instanceof Uint8Array) throw new GatewayError('unsupported-media-type', 'a job spec is JSON: Content-Type: application/json')
      if (Array.isArray(req.body)) {
        const items: unknown[] = req.body
        if (items.length === 0 || items.length > JOBS_BATCH_MAX) throw new InvalidInputError(`a batch holds 1 to ${JOBS_BATCH_MAX} job specs, got ${items.length}`, 'invalid-request')
        // in parallel: each resolves once announced; the answers keep the order of the items
        return await reply.status(200).send(await Promise.all(items.map(async (item) => await submitItem(market, item))))
      }
      return await reply.status(202).send(await submitOne(market, parseJobBody(req.body)))
    })

    app.get('/v1/schema/job.json', {
      schema: {
        tags: ['jobs'],
        summary: 'The job spec as a JSON Schema (draft 2020-12): what POST /v1/jobs and `mercato submit job.yaml` accept',
        response: { 200: { type: 'object', additionalProperties: true } }
      }
    }, async (_req, reply) => await reply.type('application/schema+json').send(JSON.stringify({ ...jobSpecJsonSchema(), $id: 'job.json', title: 'Mercato job spec' })))

    app.get('/v1/jobs', {
      schema: {
        tags: ['jobs'],
        summary: 'Jobs submitted by this node and held in memory (unfinished, and the most recent finished ones), newest first; older ones are read by id',
        querystring: {
          type: 'object',
          properties: {
            status: { type: 'string', enum: JOB_STATUSES },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            label: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }], description: 'key=value, repeatable: only jobs carrying every one of these labels' }
          }
        },
        response: { 200: { type: 'array', items: { $ref: 'JobView#' } }, ...errorResponses(400) }
      },
      ...zodValidated
    }, async (req) => {
      const q = listQuery.safeParse(req.query)
      if (!q.success) throw new InvalidInputError(`${q.error.issues[0].path.join('.')}: ${q.error.issues[0].message}`, 'invalid-request')
      const { label, ...rest } = q.data
      const labels = label != null ? parseLabels(typeof label === 'string' ? [label] : label, 'label') : undefined
      return market.list({ ...rest, labels })
    })

    app.get<{ Params: { id: string }, Querystring: { wait?: number } }>('/v1/jobs/:id', {
      schema: {
        tags: ['jobs'],
        summary: `One job: its bids, attempts and declines. With \`wait\` (ms, at most ${JOB_WAIT_MAX_MS}) an unfinished job is answered once it ends or when that time is up, whichever comes first (a long poll: one answer instead of an event stream, for a client that only wants the end)`,
        params: idParams,
        querystring: { type: 'object', properties: { wait: { type: 'integer', minimum: 0, maximum: JOB_WAIT_MAX_MS } } },
        response: { 200: { $ref: 'JobView#' }, ...errorResponses(400, 404) }
      }
    }, async (req, reply) => {
      const { id } = req.params
      const wait = req.query.wait ?? 0
      // its end, for at most `wait` and while the client is there (one that left before we got here is not waited for)
      if (wait > 0 && !reply.raw.destroyed) {
        // one controller and a plain timer: on Node 20 an AbortSignal.timeout inside AbortSignal.any
        // can be collected before it fires, and the poll then never ended (seen in the suite)
        const stop = new AbortController()
        const onClose = (): void => { stop.abort() }
        reply.raw.once('close', onClose)
        const timer = setTimeout(() => { stop.abort() }, wait)
        const signal = stop.signal
        // quiet for up to `wait` on purpose: not cut by the gateway's idle timeout meanwhile
        const restoreIdle = liftIdleTimeout(req)
        try {
          return await market.waitFor(id, { signal })
        } catch (err) {
          if (!signal.aborted) throw err
        } finally {
          clearTimeout(timer)
          restoreIdle()
          reply.raw.off('close', onClose)
        }
      }
      return await market.get(id)
    })

    app.get<{ Params: { id: string } }>('/v1/jobs/:id/result', {
      schema: { tags: ['jobs'], summary: 'The result of a finished job (409 while it is not finished)', params: idParams, response: { 200: { $ref: 'ResultView#' }, ...errorResponses(404, 409) } }
    }, async (req) => await market.result(req.params.id))

    app.get<{ Params: { id: string } }>('/v1/jobs/:id/outputs', {
      schema: {
        tags: ['jobs'],
        summary: 'The output files of a finished job, by path, CID and size (sorted by path; 409 while it is not finished)',
        params: idParams,
        response: { 200: { type: 'array', items: { $ref: 'OutputRef#' } }, ...errorResponses(404, 409) }
      }
    }, async (req) => (await market.result(req.params.id)).outputs)

    app.get<{ Params: { id: string, '*': string } }>('/v1/jobs/:id/outputs/*', {
      schema: {
        tags: ['jobs'],
        summary: 'One output file of a finished job, by its path (URL-encoded segments). Supports Range (206, 416); served as plain text, JSON, CSV or an image when its name says so, else as an octet-stream attachment, never as active content',
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string' }, '*': { type: 'string' } } },
        response: {
          200: { description: 'the bytes', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
          206: { description: 'the requested range', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
          ...errorResponses(404, 409, 416)
        }
      }
    }, async (req, reply) => {
      const path = req.params['*']
      const ref = (await market.result(req.params.id)).outputs.find(o => o.path === path)
      if (ref == null) throw new GatewayError('not-found', `job ${req.params.id} has no output ${JSON.stringify(path.slice(0, 256))}`)
      // streamed from the blob store, block by block (each was checked against its CID when it was stored)
      const size = ref.size
      const range = parseRange(req.headers.range, size)
      if (range === 'unsatisfiable') {
        void reply.header('content-range', `bytes */${size}`)
        throw new GatewayError('range-not-satisfiable', `range ${req.headers.range ?? ''} lies outside the ${size} bytes of ${path}`)
      }
      let content: AsyncIterable<Uint8Array> | undefined
      if (size > 0) {
        const blob = await market.catBlob(ref.cid, range != null ? { offset: range.start, length: range.end - range.start + 1 } : {})
        if (blob == null) throw new GatewayError('not-found', `output ${path} (${ref.cid}) is no longer in this node's blob store`)
        if (blob.size !== size) throw new GatewayError('not-found', `output ${path} (${ref.cid}) holds ${blob.size} bytes here, not ${size}`)
        content = blob.content
      }
      const { type, inline } = outputContentType(path)
      void reply
        .header('accept-ranges', 'bytes')
        .header('etag', `"${ref.cid}"`)
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', OUTPUT_CSP)
        .header('content-disposition', contentDisposition(path, inline))
        .type(type)
      if (content == null) return await reply.header('content-length', 0).send(Buffer.alloc(0))
      if (range == null) return await reply.header('content-length', size).send(Readable.from(content))
      return await reply.status(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', range.end - range.start + 1).send(Readable.from(content))
    })

    app.delete<{ Params: { id: string } }>('/v1/jobs/:id', {
      schema: { tags: ['jobs'], summary: 'Cancel a job (409 when it is already over)', params: idParams, response: { 200: { $ref: 'JobView#' }, ...errorResponses(404, 409) } }
    }, async (req) => await market.cancel(req.params.id))

    app.get<{ Params: { id: string } }>('/v1/jobs/:id/events', {
      schema: { tags: ['jobs'], summary: "A job's events as server-sent events: past ones replayed, then live ones, then `end` (at once for a finished job no longer held in memory). While the job runs, `log` events carry its live output (stream, text, attempt; the last few KiB are replayed to a late subscriber); they are not signed, and a job's last few KiB are replayed for 10 s after it ends, then dropped: the full stdout/stderr are in the result", params: idParams, response: { 200: EVENT_STREAM, ...errorResponses(404) } }
    }, async (req, reply) => {
      const id = req.params.id
      // read and subscribe in one turn, so no event falls between them
      const past = market.heldEvents(id)
      if (past == null) {
        // not held: a finished job read from the log, whose events are not kept (404 when unknown)
        await market.get(id)
        openEventStream(req, reply, () => {}).end()
        return
      }
      const onEvent = (e: JobEvent | LogEvent): void => { if (e.jobId === id) stream.send(e.type, e) }
      const onDone = (doneId: string): void => { if (doneId === id) setImmediate(() => { stream.end() }) }
      const stream = openEventStream(req, reply, () => {
        market.events.off('job', onEvent)
        market.events.off('log', onEvent)
        market.events.off('done', onDone)
      })
      // the job's steps and the tail of its live logs, each log where it came among the steps
      for (const e of tails.replay(id, past)) stream.send(e.type, e)
      if (market.isTerminal(id)) { stream.end(); return }
      market.events.on('job', onEvent)
      market.events.on('log', onEvent)
      market.events.on('done', onDone)
    })

    app.get<{ Params: { id: string } }>('/v1/jobs/:id/history', {
      schema: { tags: ['jobs'], summary: "A job's events so far, oldest first (what the job page draws); [] for a finished job no longer held in memory", params: idParams, response: { 200: { type: 'array', items: { $ref: 'JobEvent#' } }, ...errorResponses(404) } }
    }, async (req) => await market.jobEvents(req.params.id))

    app.get('/v1/events/recent', {
      schema: {
        tags: ['jobs'],
        summary: `The latest events of the ${RECENT_EVENTS_JOBS} newest jobs, newest first (the dashboard catches up with it)`,
        querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: RECENT_EVENTS_MAX, default: 100 } } },
        response: { 200: { type: 'array', items: { $ref: 'JobEvent#' } }, ...errorResponses(400) }
      },
      ...zodValidated
    }, async (req) => {
      const q = recentQuery.safeParse(req.query)
      if (!q.success) throw new InvalidInputError(`${q.error.issues[0].path.join('.')}: ${q.error.issues[0].message}`, 'invalid-request')
      const limit = q.data.limit ?? 100
      const events: JobEvent[] = []
      for (const job of market.list({ limit: RECENT_EVENTS_JOBS })) {
        events.push(...(market.heldEvents(job.id) ?? []).reverse()) // listed jobs are held
      }
      // newest first; a stable sort keeps events of the same millisecond in the newest-first order built above
      return events.sort((a, b) => b.ts - a.ts).slice(0, limit)
    })

    app.get('/v1/events', {
      schema: { tags: ['jobs'], summary: 'Every job event of this node, live, as server-sent events (the dashboard listens here)', response: { 200: EVENT_STREAM } }
    }, async (req, reply) => {
      const onEvent = (e: JobEvent): void => { stream.send(e.type, e) }
      const stream = openEventStream(req, reply, () => { market.events.off('job', onEvent) })
      market.events.on('job', onEvent)
    })

    app.get('/v1/market/history', {
      schema: {
        tags: ['market'],
        summary: "The market's last 15 minutes as this node saw it: known providers' asks (sampled every 10 s and when a job ends) and each finished job's price, latency and bid count (what the dashboard's charts start from)",
        response: {
          200: {
            type: 'object',
            required: ['windowMs', 'asks', 'jobs'],
            properties: {
              windowMs: { type: 'integer' },
              asks: { type: 'array', items: { type: 'object', required: ['t', 'asks'], properties: { t: { type: 'number' }, asks: { type: 'object', additionalProperties: { type: 'number' } } } } },
              jobs: { type: 'array', items: { type: 'object', required: ['id', 'status', 'completedAt', 'price', 'latencyMs', 'bids'], properties: { id: { type: 'string' }, status: { type: 'string' }, completedAt: { type: 'number' }, price: { type: ['number', 'null'] }, latencyMs: { type: ['number', 'null'] }, bids: { type: 'integer' } } } }
            }
          }
        }
      }
    }, async () => history.view())

    app.get('/v1/providers', {
      schema: { tags: ['market'], summary: 'Known providers: engines, last ask, standing', response: { 200: { type: 'array', items: { $ref: 'Provider#' } } } }
    }, async () => {
      const standings = new Map(market.standings().map(s => [s.peerId, s]))
      return market.providers().map(p => ({ ...p, standing: standings.get(p.peerId) ?? null }))
    })

    app.get('/v1/balance', {
      schema: { tags: ['market'], summary: "This node's credits earned (as a provider) and spent (as a requester)", response: { 200: { $ref: 'Balance#' } } }
    }, async () => market.balance())
  }
}
