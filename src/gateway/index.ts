/**
 * The local HTTP gateway: how apps, the CLI and the dashboard talk to their
 * own node.
 *
 * - Binds 127.0.0.1 by default. Bound to any other address, every route
 *   needs the token (the token lives in `<dataDir>/gateway.token`);
 *   `gateway.requireToken` asks for it on loopback too. The token is sent
 *   as `Authorization: Bearer <token>`, or, for the dashboard in a browser,
 *   as the `mercato_token` cookie that `GET /?token=<token>` sets
 *   (HttpOnly, SameSite=Strict).
 * - Mutations are POST/DELETE only. A request with a foreign `Origin` (CSRF)
 *   or, on loopback, a `Host` that is not a loopback name (DNS rebinding) is
 *   refused with 403.
 * - Every route has a JSON schema; together they are the OpenAPI document
 *   at `GET /openapi.json`, browsable at `GET /docs`.
 * - Errors are JSON `{ "error": { "code", "message" } }`, statuses from the
 *   one table in errors.ts (requests Node's HTTP parser refuses too). A known path with the wrong method is a 405 with
 *   an `Allow` header; an unknown path is a 404.
 *
 * - A connection on which nothing moves for `idleTimeoutMs` is closed (a
 *   stalled body, a client that stops reading); event streams and long polls
 *   are exempt (idle.ts). At most `maxConnections` are open at once. There is
 *   no limit on a whole request's time: a slow upload that keeps sending
 *   finishes.
 *
 * The gateway only sees the node through {@link GatewayNode}; the routes of
 * the other parts come in as plugins (`init.plugins`).
 *
 * @example
 * ```ts
 * const gw = await startGateway({ node, port: 8420, plugins: [jobRoutes({ market })] })
 * // curl http://127.0.0.1:8420/v1/node
 * await gw.stop()
 * ```
 */
import { AjvCompiler } from '@fastify/ajv-compiler'
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyReply, type FastifyRequest, type RouteOptions } from 'fastify'
import { timingSafeEqual } from 'node:crypto'
import { ConfigError } from '../errors.js'
import { logger } from '../logger.js'
import { VERSION } from '../version.js'
import { GATEWAY_ERRORS, gatewayClientErrorHandler, gatewayErrorHandler, type GatewayErrorCode } from './errors.js'
import { SHARED_SCHEMAS, errorResponses } from './schemas.js'
import { BODY_LIMIT_BYTES, DEFAULT_HOST, DEFAULT_PORT, IDLE_TIMEOUT_MS, MAX_CONNECTIONS, MAX_PEER_ADDRESS_CHARS, TOKEN_COOKIE } from './constants.js'

export { GatewayError, GATEWAY_ERRORS, statusOf, isGatewayErrorCode, type GatewayErrorCode } from './errors.js'
export { SHARED_SCHEMAS, errorResponses, zodValidated } from './schemas.js'
export { metricsRoutes, type MetricsDeps } from './metrics.js'
export { dashboardRoutes } from './dashboard.js'

export interface NodeInfo {
  peerId: string
  addresses: string[]
  version: string
  provider: { enabled: boolean, [k: string]: unknown }
  [k: string]: unknown
}

export interface PeerView {
  peerId: string
  addresses: string[]
  flagged?: boolean
  [k: string]: unknown
}

/** What the gateway needs of the node. */
export interface GatewayNode {
  info (): NodeInfo
  peers (): PeerView[]
  /** dial the peer at a multiaddr ending in /p2p/<PeerId>; resolves with its PeerId once connected */
  connect (address: string): Promise<{ peerId: string }>
}

export interface GatewayInit {
  node: GatewayNode
  host?: string
  port?: number
  /** when set, required as a bearer token (or the dashboard cookie) */
  token?: string
  bodyLimitBytes?: number
  /** close a connection on which nothing is read or written for this long (ms); default IDLE_TIMEOUT_MS */
  idleTimeoutMs?: number
  /** most connections open at once; one more is closed as it arrives. Default MAX_CONNECTIONS */
  maxConnections?: number
  /** extra route plugins (ledger, jobs, metrics, dashboard, ...) */
  plugins?: FastifyPluginAsync[]
}

/** A registered route, as the 405 check and the tests see it. */
export interface RouteEntry { method: string, url: string, pattern: RegExp, schema?: Record<string, any> }

const ROUTES = Symbol.for('mercato.gateway.routes')

/** The routes registered on a gateway app (every method, HEAD included). */
export function gatewayRoutes (app: FastifyInstance): RouteEntry[] {
  return (app as any)[ROUTES] ?? []
}

export function isLoopbackHost (host: string): boolean {
  return host === '127.0.0.1' || host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

function hostOf (hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1)
  const i = hostHeader.lastIndexOf(':')
  return i === -1 ? hostHeader : hostHeader.slice(0, i)
}

function tokenMatches (given: string, token: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(token)
  return a.length === b.length && timingSafeEqual(a, b)
}

function cookieValue (header: string | undefined, name: string): string {
  if (header == null) return ''
  for (const part of header.split(';')) {
    const i = part.indexOf('=')
    if (i > 0 && part.slice(0, i).trim() === name) {
      try { return decodeURIComponent(part.slice(i + 1).trim()) } catch { return '' }
    }
  }
  return ''
}

function routePattern (url: string): RegExp {
  const src = url.split('/').map(seg => {
    if (seg === '*') return '.*'
    if (seg.startsWith(':')) return '[^/]+'
    return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  }).join('/')
  return new RegExp(`^${src}$`)
}

function pathOf (url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

type Validator = ((data: unknown, ...rest: unknown[]) => unknown) & { errors?: unknown }

/**
 * Fastify's own validator compiler (the Ajv it would build itself, with the same options), made
 * lazy: a route's validator is compiled on its first request, or in the background once the
 * node has started (`Gateway.warmUp`, `compileAll`), instead of before it is ready. Building Ajv and compiling
 * every route's query and params schemas was a fifth of a node's start.
 */
function lazyValidators (): { buildValidator: (externals: any, options: any) => (route: any) => Validator, compileAll: () => Promise<void> } {
  const pending: Array<() => void> = []
  return {
    buildValidator: (externals, options) => {
      let compiler: ((route: any) => Validator) | undefined
      return (route) => {
        let fn: Validator | undefined
        const compile = (): Validator => (fn ??= (compiler ??= AjvCompiler()(externals, options) as any)(route))
        pending.push(compile)
        // Fastify may pass the data's parent (Ajv's data context, for coercion at the root): passed on
        const validate: Validator = (data, ...rest) => {
          const f = compile()
          const ok = f(data, ...rest)
          validate.errors = f.errors
          return ok
        }
        return validate
      }
    },
    compileAll: async () => {
      // one per turn, the first after the node's start has finished: requests arriving meanwhile
      // are not held up behind all of them. A schema Ajv refuses fails its route's requests (500)
      // and is named here; the suite compiles every route's (test/gateway/routes.test.ts)
      const failed: string[] = []
      for (let c = pending.shift(); c != null; c = pending.shift()) {
        await new Promise<void>(resolve => setImmediate(resolve))
        try { c() } catch (err: any) { failed.push(String(err?.message ?? err)) }
      }
      if (failed.length > 0) throw new Error(`gateway schemas that do not compile: ${failed.join('; ')}`)
    }
  }
}

const LAZY = Symbol('mercato.lazyValidators')
const log = logger('gateway')

/** Request headers the docs app may use (caching, ranges, compression); the rest stay out. */
const DOCS_HEADERS = ['accept', 'accept-encoding', 'if-none-match', 'if-modified-since', 'range']
/** Response headers that belong to the inner exchange, not to the answer we send. */
const HOP_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date'])

/**
 * A value built on its first use and shared from then on (also while the build runs); a build that
 * failed (an import error) is tried again at the next use, not kept. `started` is the build if one
 * was asked for.
 */
function onFirstUse<T> (build: () => Promise<T>): { get: () => Promise<T>, started: () => Promise<T> | undefined } {
  let value: Promise<T> | undefined
  return {
    get: async () => await (value ??= build().catch((err: unknown) => { value = undefined; throw err })),
    started: () => value
  }
}

/**
 * The gateway's OpenAPI document, built on its first request by @fastify/swagger in a small app of
 * its own that holds the gateway's routes (their schemas; no handlers run): the plugin and its
 * modules (a YAML parser, the OpenAPI builder) load then, not while the node starts (~30 ms of it).
 */
function openapiDocument (routes: RouteEntry[]): () => Promise<Record<string, unknown>> {
  return onFirstUse(async (): Promise<Record<string, unknown>> => {
    const { default: swagger } = await import('@fastify/swagger')
    const inner = Fastify({ logger: false })
    // schemas are read, not run: no validator or serializer is compiled
    inner.setValidatorCompiler(() => () => true)
    inner.setSerializerCompiler(() => (data) => JSON.stringify(data))
    for (const s of SHARED_SCHEMAS) inner.addSchema(s)
    await inner.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Mercato gateway',
          version: VERSION,
          description: 'The local HTTP API of a Mercato node. Errors are `{ "error": { "code", "message" } }`; see docs/GATEWAY.md.'
        },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'required when the gateway is bound to a non-loopback address or gateway.requireToken is set' } } }
      },
      refResolver: { buildLocalReference: (json, _base, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` }
    })
    const gets = new Set(routes.filter(r => r.method === 'GET').map(r => r.url))
    for (const r of routes) {
      // Fastify adds a HEAD route beside each GET itself, here as in the gateway
      if (r.method === 'HEAD' && gets.has(r.url)) continue
      inner.route({ method: r.method as any, url: r.url, schema: r.schema, handler: async () => null })
    }
    await inner.ready()
    try { return inner.swagger() as unknown as Record<string, unknown> } finally { await inner.close() }
  }).get
}

/**
 * `GET /docs`: Swagger UI (served locally, works offline), built on its first request in a small
 * app of its own that serves this gateway's OpenAPI document: its plugin, @fastify/static and
 * their modules load then, not while the node starts (they were a third of the gateway's start).
 */
function docsRoutes (app: FastifyInstance, openapi: () => Promise<Record<string, unknown>>): void {
  const docs = onFirstUse(async (): Promise<FastifyInstance> => {
    const [{ default: swagger }, { default: swaggerUi }] = await Promise.all([import('@fastify/swagger'), import('@fastify/swagger-ui')])
    const inner = Fastify({ logger: false })
    // answers in the gateway's one error shape, as the gateway's own routes do
    inner.setErrorHandler(gatewayErrorHandler)
    inner.setNotFoundHandler((req, reply) => reply.status(404).send({ error: { code: 'not-found', message: `no route ${req.method} ${pathOf(req.url)}` } }))
    await inner.register(swagger, { mode: 'static', specification: { document: await openapi() as any } })
    await inner.register(swaggerUi, { routePrefix: '/docs', staticCSP: true })
    await inner.ready()
    return inner
  })
  const serve = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const headers: Record<string, string> = {}
    for (const h of DOCS_HEADERS) { const v = req.headers[h]; if (typeof v === 'string') headers[h] = v }
    const res = await (await docs.get()).inject({ method: 'GET', url: req.url, headers })
    for (const [k, v] of Object.entries(res.headers)) if (v != null && !HOP_HEADERS.has(k)) void reply.header(k, v)
    return await reply.status(res.statusCode).send(res.rawPayload)
  }
  app.addHook('onClose', async () => { await (await docs.started()?.catch(() => undefined))?.close() })
  app.get('/docs', { schema: { hide: true } }, serve)
  app.get('/docs/*', { schema: { hide: true } }, serve)
}

/**
 * Compile every route's validator now (startGateway does it in the background once listening);
 * rejects naming the schemas Ajv refuses.
 */
export async function compileValidators (app: FastifyInstance): Promise<void> {
  await ((app as any)[LAZY] as ReturnType<typeof lazyValidators>).compileAll()
}

/** Build the fastify app (not listening). Tests use `app.inject`. */
export async function buildGateway (init: GatewayInit): Promise<FastifyInstance> {
  const host = init.host ?? DEFAULT_HOST
  const loopback = isLoopbackHost(host)
  if (!loopback && (init.token == null || init.token === '')) {
    throw new ConfigError('gateway.host', `config key "gateway.host": binding ${host} (not loopback) needs a token; the node generates one into the data dir`)
  }
  const lazy = lazyValidators()
  const app = Fastify({
    schemaController: { compilersFactory: { buildValidator: lazy.buildValidator as any } },
    bodyLimit: init.bodyLimitBytes ?? BODY_LIMIT_BYTES,
    logger: false,
    return503OnClosing: true,
    forceCloseConnections: true,
    // the sockets' inactivity timeout (Node's server.timeout), not a deadline for the whole request
    // (fastify's requestTimeout, which would cut a big upload from a slow client): a body that
    // stops coming is cut, one that keeps coming is not. Node's headersTimeout (60 s) still bounds the headers
    connectionTimeout: init.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
    clientErrorHandler: gatewayClientErrorHandler,
    // schemas never strip or invent fields; query strings are coerced to their declared types. Our schemas
    // are not checked against JSON Schema's meta-schema here (compiling it was ~0.1 s of CPU per start): the
    // suite checks them (test/gateway/routes.test.ts)
    ajv: { customOptions: { removeAdditional: false, useDefaults: false, coerceTypes: 'array', allErrors: false, validateSchema: false } },
    // a path that does not decode (`/%zz`) is refused before routing: same shape as every error
    frameworkErrors: (err, _req, reply) => {
      void (reply as FastifyReply).status(400).send({ error: { code: 'invalid-request', message: err.message } })
    }
  })
  // past the cap, Node closes a new connection as it arrives: stalled clients cannot take every descriptor
  app.server.maxConnections = init.maxConnections ?? MAX_CONNECTIONS
  let droppedSince = 0
  app.server.on('drop', () => {
    const now = Date.now()
    if (now - droppedSince < 60_000) return
    droppedSince = now
    log.warn({ maxConnections: app.server.maxConnections }, 'gateway: connection refused, as many are open as gateway.maxConnections allows (said at most once a minute)')
  })
  const routes: RouteEntry[] = []
  ;(app as any)[ROUTES] = routes
  ;(app as any)[LAZY] = lazy

  // responses are plain JSON: a schema documents a response, it does not rewrite it
  app.setSerializerCompiler(() => (data) => JSON.stringify(data))
  for (const s of SHARED_SCHEMAS) app.addSchema(s)

  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const schema = (route.schema ?? {}) as Record<string, any>
    if (schema.hide !== true) {
      // every route may answer these; a route's own declarations win. A copy: plugins may share schema objects
      const mutating = methods.includes('POST') || methods.includes('DELETE')
      route.schema = { ...schema, response: { ...errorResponses(401, 403, 405, 500, ...(mutating ? [400, 413, 415] : [])), ...(schema.response ?? {}) } }
    }
    for (const m of methods) routes.push({ method: m, url: route.url, pattern: routePattern(route.url), schema: route.schema as any })
  })

  // JSON and raw bytes only: a text/plain POST is what a cross-site form can send without a preflight
  app.removeContentTypeParser('text/plain')
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => { done(null, body) })

  const openapi = openapiDocument(routes)
  docsRoutes(app, openapi)

  // refusals answer directly (not by throwing), so no plugin's own error handler can reshape them
  const refuse = async (reply: FastifyReply, code: GatewayErrorCode): Promise<FastifyReply> => {
    return await reply.status(GATEWAY_ERRORS[code].status).send({ error: { code, message: GATEWAY_ERRORS[code].message } })
  }

  app.addHook('onRequest', async (req, reply) => {
    // DNS rebinding: on loopback, the Host header must name a loopback host
    const hostHeader = req.headers.host
    if (loopback && hostHeader != null && !isLoopbackHost(hostOf(hostHeader))) return await refuse(reply, 'foreign-host')
    // CSRF: browsers send Origin on cross-site requests; only our own origin is welcome
    const origin = req.headers.origin
    if (origin != null) {
      let originHost: string | undefined
      try { originHost = new URL(origin).host } catch {}
      if (origin === 'null' || originHost == null || hostHeader == null || originHost !== hostHeader) return await refuse(reply, 'foreign-origin')
    }
    if (init.token != null) {
      const auth = req.headers.authorization ?? ''
      const given = auth.startsWith('Bearer ') ? auth.slice(7).trim() : cookieValue(req.headers.cookie, TOKEN_COOKIE)
      if (given !== '' && tokenMatches(given, init.token)) return
      // the dashboard's way in: GET /?token=… sets the cookie and drops the token from the address bar
      const query = req.query as Record<string, unknown> | undefined
      if (req.method === 'GET' && pathOf(req.url) === '/' && typeof query?.token === 'string' && tokenMatches(query.token, init.token)) {
        return await reply.header('set-cookie', `${TOKEN_COOKIE}=${encodeURIComponent(init.token)}; Path=/; HttpOnly; SameSite=Strict`).redirect('/', 303)
      }
      return await refuse(reply, 'unauthorized')
    }
  })

  app.setErrorHandler(gatewayErrorHandler)

  app.setNotFoundHandler((req, reply) => {
    const path = pathOf(req.url)
    // a known path with the wrong method is a 405
    const allow = [...new Set(routes.filter(r => r.pattern.test(path)).map(r => r.method))]
    if (allow.length > 0) {
      return reply.status(405).header('allow', allow.join(', ')).send({ error: { code: 'method-not-allowed', message: `${req.method} is not allowed on ${path}; use ${allow.join(', ')}` } })
    }
    return reply.status(404).send({ error: { code: 'not-found', message: `no route ${req.method} ${path}` } })
  })

  app.get('/openapi.json', {
    schema: { tags: ['meta'], summary: 'This OpenAPI document', response: { 200: { type: 'object', additionalProperties: true } } }
  }, async () => await openapi())

  app.get('/v1/node', {
    schema: { tags: ['node'], summary: "This node's identity, addresses and provider settings", response: { 200: { $ref: 'NodeInfo#' } } }
  }, async () => init.node.info())

  app.get('/v1/peers', {
    schema: { tags: ['node'], summary: 'Peers connected now', response: { 200: { type: 'array', items: { $ref: 'Peer#' } } } }
  }, async () => init.node.peers())

  app.post('/v1/peers', {
    schema: {
      tags: ['node'],
      summary: 'Connect to a peer at a multiaddr ending in /p2p/<PeerId> (as `ipfs swarm connect`); 200 { peerId } once connected',
      body: {
        type: 'object',
        required: ['address'],
        additionalProperties: false,
        properties: { address: { type: 'string', minLength: 1, maxLength: MAX_PEER_ADDRESS_CHARS, description: 'e.g. /ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...' } }
      },
      response: { 200: { type: 'object', required: ['peerId'], properties: { peerId: { type: 'string' } } }, ...errorResponses(502) }
    }
  }, async (req) => await init.node.connect((req.body as { address: string }).address))

  for (const plugin of init.plugins ?? []) await app.register(plugin)
  await app.ready()
  return app
}

export interface Gateway {
  readonly url: string
  readonly app: FastifyInstance
  /** Compile the routes' validators in the background, one per turn (the node calls it once its start is over). */
  warmUp (): void
  stop (): Promise<void>
}

/** Build and listen. Throws GatewayError-free `EADDRINUSE` errors for the caller to name. */
export async function startGateway (init: GatewayInit): Promise<Gateway> {
  const app = await buildGateway(init)
  const host = init.host ?? DEFAULT_HOST
  await app.listen({ host, port: init.port ?? DEFAULT_PORT })
  let warm = false
  const addr = app.server.address()
  const port = typeof addr === 'object' && addr != null ? addr.port : init.port ?? DEFAULT_PORT
  const urlHost = host.includes(':') ? `[${host}]` : host
  return {
    url: `http://${urlHost}:${port}`,
    app,
    warmUp: () => {
      if (warm) return
      warm = true
      void compileValidators(app).catch((err: Error) => { log.error({ err: err.message }, 'gateway validators') })
    },
    stop: async () => { await app.close() }
  }
}
