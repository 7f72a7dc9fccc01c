/**
 * Shared by the gateway tests: the plugins a node's gateway runs, a schema
 * validator for responses (against the routes' own declared schemas), and
 * a check that an error response is the one declared shape and status.
 */
import { expect } from 'chai'
import Ajv2020 from 'ajv/dist/2020.js'
import type { FastifyInstance, FastifyPluginAsync, InjectOptions, LightMyRequestResponse } from 'fastify'
import { GATEWAY_ERRORS, SHARED_SCHEMAS, gatewayRoutes, isGatewayErrorCode, metricsRoutes, dashboardRoutes } from '../../src/gateway/index.js'
import { jobRoutes } from '../../src/gateway/routes/jobs.js'
import { ledgerRoutes } from '../../src/gateway/routes/ledger.js'
import type { MercatoNode } from '../../src/node.js'

export const JS_ECHO = 'function main (input) { return { echo: input } }'
export const JS_SLOW = 'function main (i) { let s = 0; for (let k = 0; k < i.n; k++) s = (s + k) % 1000003; return s }'

/** The same plugins src/node.ts gives its gateway. */
export function nodePlugins (node: MercatoNode): FastifyPluginAsync[] {
  return [
    jobRoutes({ market: node.market }),
    ledgerRoutes({ ledger: node.ledger }),
    metricsRoutes({ market: node.market, executor: node.executor, ledger: node.ledger, network: node.network }),
    dashboardRoutes()
  ]
}

const ajv = new Ajv2020.default({ strict: false, allErrors: true })
for (const s of SHARED_SCHEMAS) ajv.addSchema(s as any)
const compiled = new Map<object, ReturnType<typeof ajv.compile>>()

function routeFor (app: FastifyInstance, method: string, path: string): ReturnType<typeof gatewayRoutes>[number] | undefined {
  const candidates = gatewayRoutes(app).filter(r => r.method === method && r.pattern.test(path))
  // the most specific: fewest parameters
  return candidates.sort((a, b) => a.url.split(':').length - b.url.split(':').length)[0]
}

/** Assert a JSON response matches the schema its route declares for its status (no route: a 404/405, checked by expectError). */
export function expectMatchesSchema (app: FastifyInstance, method: string, url: string, res: LightMyRequestResponse): void {
  const path = url.split('?')[0]
  const route = routeFor(app, method, path)
  if (route == null) {
    expect(res.statusCode, `${method} ${path} has no route`).to.be.oneOf([404, 405])
    return
  }
  const schema = route?.schema?.response?.[res.statusCode]
  expect(schema, `${method} ${path} declares a ${res.statusCode} response`).to.not.equal(undefined)
  if (schema.content != null) return // not JSON (text, bytes, events)
  let validate = compiled.get(schema)
  if (validate == null) { validate = ajv.compile(schema); compiled.set(schema, validate) }
  const ok = validate(res.json())
  expect(ok, `${method} ${url} → ${res.statusCode} matches its schema: ${ajv.errorsText(validate.errors)}`).to.equal(true)
}

/** Assert an error response: the one shape, a code from the table, the table's status. */
export function expectError (res: LightMyRequestResponse | { statusCode: number, body: string }, status: number, code?: string): void {
  expect(res.statusCode, res.body).to.equal(status)
  const body = JSON.parse(res.body)
  expect(Object.keys(body)).to.deep.equal(['error'])
  expect(Object.keys(body.error).sort()).to.deep.equal(['code', 'message'])
  expect(body.error.message).to.be.a('string').and.not.equal('')
  if (code != null) expect(body.error.code).to.equal(code)
  expect(isGatewayErrorCode(body.error.code), `code ${body.error.code} is in the table`).to.equal(true)
  expect((GATEWAY_ERRORS as any)[body.error.code].status, `status of ${body.error.code}`).to.equal(status)
}

/** Inject a request; a JSON answer must match the route's declared response schema. */
export async function checkedInject (app: FastifyInstance, opts: InjectOptions & { url: string }): Promise<LightMyRequestResponse> {
  const res = await app.inject(opts)
  if ((res.headers['content-type'] ?? '').toString().startsWith('application/json')) expectMatchesSchema(app, opts.method ?? 'GET', opts.url, res)
  return res
}
