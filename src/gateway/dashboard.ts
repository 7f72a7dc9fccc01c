/**
 * The dashboard: one self-contained HTML page (inline CSS and JS, no build
 * step, no CDN) at `GET /`. It reads the same JSON routes as any client and
 * listens on `GET /v1/events`; peers and providers are re-read every few
 * seconds. Served with a strict Content-Security-Policy: the one inline
 * script is allowed by its hash, and the page may only talk to its origin.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { FastifyPluginAsync } from 'fastify'
import { DASHBOARD_POLL_MS } from './constants.js'

let cached: { html: string, csp: string } | undefined

function page (): { html: string, csp: string } {
  if (cached != null) return cached
  const html = readFileSync(new URL('./dashboard.html', import.meta.url), 'utf8')
    .replace('const POLL_MS = 3000', `const POLL_MS = ${DASHBOARD_POLL_MS}`)
  const hashes = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)]
    .map(m => `'sha256-${createHash('sha256').update(m[1]).digest('base64')}'`)
  const csp = [
    "default-src 'none'",
    `script-src ${hashes.join(' ')}`,
    "style-src 'unsafe-inline'",
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'"
  ].join('; ')
  cached = { html, csp }
  return cached
}

export function dashboardRoutes (): FastifyPluginAsync {
  return async (app) => {
    const { html, csp } = page()
    app.get('/', {
      schema: {
        tags: ['meta'],
        summary: 'The dashboard (HTML)',
        querystring: { type: 'object', properties: { token: { type: 'string', description: 'when a token is required: sets the dashboard cookie and redirects to /' } } },
        response: { 200: { description: 'the page', content: { 'text/html': { schema: { type: 'string' } } } } }
      }
    }, async (_req, reply) => {
      return await reply
        .header('content-security-policy', csp)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('cache-control', 'no-cache')
        .type('text/html; charset=utf-8')
        .send(html)
    })
  }
}
