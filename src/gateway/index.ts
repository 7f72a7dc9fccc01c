/**
 * The local HTTP gateway: how apps and the CLI talk to their own node.
 *
 * - Binds 127.0.0.1 by default. Bound to any other address, every route
 *   needs `Authorization: Bearer <token>` (the token lives in
 *   `<dataDir>/gateway.token`); `gateway.requireToken` asks for it on
 *   loopback too.
 * - Mutations are POST/DELETE only. A request with a foreign `Origin` (CSRF)
 *   or a `Host` that does not name this gateway (DNS rebinding) is refused.
 * - Errors are JSON `{ "error": { "code", "message" } }` (see errors.ts).
 *
 * The gateway only sees the node through {@link GatewayNode}.
 */
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify'
import { timingSafeEqual } from 'node:crypto'
import { isMercatoError } from '../errors.js'
import { logger } from '../logger.js'
import { GatewayError, GATEWAY_ERRORS } from './errors.js'

export { GatewayError, GATEWAY_ERRORS } from './errors.js'

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
}

export interface GatewayInit {
  node: GatewayNode
  host?: string
  port?: number
  /** when set, required as a bearer token */
  token?: string
  bodyLimitBytes?: number
  /** extra route plugins (ledger, jobs, ...) */
  plugins?: FastifyPluginAsync[]
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

/** Build the fastify app (not listening). Tests use `app.inject`. */
export async function buildGateway (init: GatewayInit): Promise<FastifyInstance> {
  const host = init.host ?? '127.0.0.1'
  const loopback = isLoopbackHost(host)
  const app = Fastify({
    bodyLimit: init.bodyLimitBytes ?? 16 * 1024 * 1024,
    logger: false,
    return503OnClosing: true,
    forceCloseConnections: true
  })
  const log = logger('gateway')

  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => { done(null, body) })

  app.addHook('onRequest', async (req) => {
    // DNS rebinding: on loopback, the Host header must name a loopback host
    const hostHeader = req.headers.host
    if (loopback && hostHeader != null && !isLoopbackHost(hostOf(hostHeader))) throw new GatewayError('foreign-host')
    // CSRF: browsers send Origin on cross-site requests; only our own origin is welcome
    const origin = req.headers.origin
    if (origin != null && origin !== 'null') {
      let originHost: string
      try { originHost = new URL(origin).host } catch { throw new GatewayError('foreign-origin') }
      if (hostHeader == null || originHost !== hostHeader) throw new GatewayError('foreign-origin')
    } else if (origin === 'null') {
      throw new GatewayError('foreign-origin')
    }
    if (init.token != null) {
      const auth = req.headers.authorization ?? ''
      const given = auth.startsWith('Bearer ') ? auth.slice(7).trim() : ''
      if (!tokenMatches(given, init.token)) throw new GatewayError('unauthorized')
    }
  })

  app.setErrorHandler((err: any, req, reply) => {
    let status = 500
    let code = 'internal'
    let message = 'Internal error'
    if (isMercatoError(err)) {
      status = err.status; code = err.code; message = err.message
    } else if (err?.validation != null) {
      status = 400; code = 'invalid-request'; message = err.message
    } else if (err?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      status = 413; code = 'payload-too-large'; message = GATEWAY_ERRORS['payload-too-large'].message
    } else if (err?.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      status = 415; code = 'unsupported-media-type'; message = err.message
    } else if (err?.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err?.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (err instanceof SyntaxError && (err as any).statusCode === 400)) {
      status = 400; code = 'invalid-json'; message = err.message
    } else if (typeof err?.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      status = err.statusCode; code = 'invalid-request'; message = err.message
    }
    if (status >= 500) log.error({ err, url: req.url }, 'gateway error')
    void reply.status(status).send({ error: { code, message } })
  })

  app.setNotFoundHandler((req, reply) => {
    // a known path with the wrong method is a 405
    const known = app.hasRoute({ url: req.url.split('?')[0], method: 'GET' }) || app.hasRoute({ url: req.url.split('?')[0], method: 'POST' })
    if (known) return reply.status(405).send({ error: { code: 'method-not-allowed', message: `${req.method} is not allowed on ${req.url.split('?')[0]}` } })
    return reply.status(404).send({ error: { code: 'not-found', message: `no route ${req.method} ${req.url.split('?')[0]}` } })
  })

  app.get('/v1/node', async () => init.node.info())
  app.get('/v1/peers', async () => init.node.peers())

  for (const plugin of init.plugins ?? []) await app.register(plugin)
  return app
}

export interface Gateway {
  readonly url: string
  readonly app: FastifyInstance
  stop (): Promise<void>
}

/** Build and listen. Throws GatewayError-free `EADDRINUSE` errors for the caller to name. */
export async function startGateway (init: GatewayInit): Promise<Gateway> {
  const app = await buildGateway(init)
  const host = init.host ?? '127.0.0.1'
  await app.listen({ host, port: init.port ?? 8420 })
  const addr = app.server.address()
  const port = typeof addr === 'object' && addr != null ? addr.port : init.port ?? 8420
  const urlHost = host.includes(':') ? `[${host}]` : host
  return {
    url: `http://${urlHost}:${port}`,
    app,
    stop: async () => { await app.close() }
  }
}
