/**
 * The dashboard: static pages served by the gateway itself (no build step,
 * no CDN, works offline).
 *
 *   GET /                 the front page: charts, mesh, peers, providers, auctions, events, jobs, ledger
 *   GET /jobs/:id         one job: its time line, winner rule, attempts, declines, result, ledger records
 *   GET /static/:file     the pages' scripts and styles (src/gateway/static/), and uPlot (from node_modules)
 *
 * Every file lives in src/gateway/static/ (a packaging step copies that
 * folder next to the compiled code); uPlot's dist files are read from the
 * `uplot` package. All are read once and kept in memory: a fixed allowlist,
 * no path from the request ever reaches the file system.
 *
 * Served with a strict Content-Security-Policy: scripts and styles from this
 * origin only (no inline script, no inline style attribute), and the page
 * may only talk to its origin.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { DASHBOARD_POLL_MS } from './constants.js'
import { GatewayError } from './errors.js'
import { RECORD_TYPES } from '../ledger/index.js'
import { codePath } from '../paths.js'

export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

interface Asset { body: Buffer, type: string }

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8'
}

/** The files under /static/: our own, then uPlot's from its package. */
const OWN_FILES = ['app.css', 'common.js', 'dashboard.js', 'job.js']

let cached: Map<string, Asset> | undefined

function staticDir (): string {
  return codePath('gateway/static/')
}

function load (): Map<string, Asset> {
  if (cached != null) return cached
  const assets = new Map<string, Asset>()
  const dir = staticDir()
  const text = (name: string): string => readFileSync(join(dir, name), 'utf8')
  const meta = (html: string): string => html.replace('content="3000" name="mercato-poll-ms"', `content="${DASHBOARD_POLL_MS}" name="mercato-poll-ms"`)
  const index = meta(text('index.html')).replace('<select id="ledger-type">', `<select id="ledger-type" data-types="${RECORD_TYPES.join(',')}">`)
  assets.set('index.html', { body: Buffer.from(index), type: TYPES.html })
  assets.set('job.html', { body: Buffer.from(meta(text('job.html'))), type: TYPES.html })
  for (const f of OWN_FILES) assets.set(f, { body: readFileSync(join(dir, f)), type: TYPES[f.slice(f.lastIndexOf('.') + 1)] })
  const uplotDist = dirname(createRequire(import.meta.url).resolve('uplot'))
  assets.set('uplot.js', { body: readFileSync(join(uplotDist, 'uPlot.iife.min.js')), type: TYPES.js })
  assets.set('uplot.css', { body: readFileSync(join(uplotDist, 'uPlot.min.css')), type: TYPES.css })
  cached = assets
  return assets
}

function send (reply: FastifyReply, a: Asset, cache: string): FastifyReply {
  return reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', cache)
    .type(a.type)
    .send(a.body)
}

const html = { 200: { description: 'the page', content: { 'text/html': { schema: { type: 'string' } } } } }

export function dashboardRoutes (): FastifyPluginAsync {
  return async (app) => {
    const assets = load()
    app.get('/', {
      schema: {
        tags: ['meta'],
        summary: 'The dashboard (HTML)',
        querystring: { type: 'object', properties: { token: { type: 'string', description: 'when a token is required: sets the dashboard cookie and redirects to /' } } },
        response: html
      }
    }, async (_req, reply) => send(reply, assets.get('index.html')!, 'no-cache'))

    app.get('/jobs/:id', {
      schema: {
        tags: ['meta'],
        summary: "One job's page (HTML): time line, bids, attempts, result, ledger records",
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string' } } },
        response: html
      }
    }, async (_req, reply) => send(reply, assets.get('job.html')!, 'no-cache'))

    app.get<{ Params: { file: string } }>('/static/:file', {
      schema: {
        tags: ['meta'],
        summary: "The dashboard's scripts and styles (a fixed list)",
        params: { type: 'object', required: ['file'], properties: { file: { type: 'string' } } },
        response: { 200: { description: 'the file', content: { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } } } }, 404: { $ref: 'Error#' } }
      }
    }, async (req, reply) => {
      const a = req.params.file.endsWith('.html') ? undefined : assets.get(req.params.file)
      if (a == null) throw new GatewayError('not-found', `no static file ${req.params.file}`)
      return send(reply, a, 'no-cache')
    })
  }
}
