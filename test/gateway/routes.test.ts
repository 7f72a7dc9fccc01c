/**
 * Every gateway route and every error, in-process (`app.inject`) over a
 * real node (its own local provider runs the jobs). Each JSON response is
 * checked against the schema its route declares.
 */
import { expect } from 'chai'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { buildGateway, compileValidators, gatewayRoutes, GATEWAY_ERRORS } from '../../src/gateway/index.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { checkedInject, expectError, nodePlugins, JS_ECHO, JS_SLOW } from './helpers.js'
import { jobRoutes } from '../../src/gateway/routes/jobs.js'
import { Readable } from 'node:stream'
import AjvModule from 'ajv'
import { SHARED_SCHEMAS } from '../../src/gateway/schemas.js'

describe('gateway routes', function () {
  this.timeout(30_000)
  let node: MercatoNode
  let app: FastifyInstance

  const call = async (opts: InjectOptions & { url: string }): Promise<LightMyRequestResponse> => await checkedInject(app, opts)

  async function finished (id: string): Promise<any> {
    return await node.market.waitFor(id, { signal: AbortSignal.timeout(15_000) })
  }

  before(async () => {
    node = await startTestNode({ price: 3 })
    app = await buildGateway({ node, plugins: nodePlugins(node) })
  })

  after(async () => {
    await app?.close()
    await stopNodes()
  })

  describe('the document', () => {
    it('every route has a schema with responses, and /openapi.json lists every path', async () => {
      const res = await call({ url: '/openapi.json' })
      expect(res.statusCode).to.equal(200)
      const doc = res.json()
      expect(doc.openapi).to.match(/^3\./)
      const routes = gatewayRoutes(app).filter(r => r.method !== 'HEAD' && r.schema?.hide !== true && !r.url.startsWith('/docs'))
      expect(routes.length).to.be.greaterThan(18)
      for (const r of routes) {
        expect(r.schema?.response, `${r.method} ${r.url} has response schemas`).to.be.an('object')
        // a wildcard (`/outputs/*`) is `{*}` in the document
        const path = r.url.replace(/:([A-Za-z]+)/g, '{$1}').replace(/\/\*$/, '/{*}')
        expect(doc.paths[path]?.[r.method.toLowerCase()], `${r.method} ${path} in the document`).to.be.an('object')
        expect(doc.paths[path][r.method.toLowerCase()].responses['401'], `${r.method} ${path} declares 401`).to.be.an('object')
      }
      expect(doc.components.schemas.Error.properties.error.required).to.deep.equal(['code', 'message'])
      // one spec, or a batch of them
      const [one, batch] = doc.paths['/v1/jobs'].post.requestBody.content['application/json'].schema.oneOf
      expect(one.properties.engine.enum).to.deep.equal(['wasm', 'js'])
      expect(batch.items.properties.engine.enum).to.deep.equal(['wasm', 'js'])
      expect(doc.paths['/v1/jobs/{id}/events'].get.responses['200'].content['text/event-stream']).to.be.an('object')
      expect(doc.paths['/v1/ledger'].get.parameters.map((p: any) => p.name).sort()).to.deep.equal(['check', 'from', 'job', 'limit', 'type'])
    })

    it('every route\'s validator compiles (they compile lazily: after the node is ready, or at a route\'s first request)', async () => {
      await compileValidators(app)
      // and still validates: a querystring out of its declared range is refused
      const res = await call({ url: '/v1/jobs?limit=0' })
      expect(res.statusCode).to.equal(400)
      expect(res.json().error.code).to.be.a('string')
    })

    it('every schema is valid JSON Schema (the gateway skips that check at run time: ~0.1 s of CPU per start)', () => {
      const ajv = new (((AjvModule as any).default ?? AjvModule) as typeof AjvModule.default)({ strict: false })
      const problems: string[] = []
      const check = (where: string, schema: unknown): void => {
        if (schema == null || typeof schema !== 'object') return
        if (ajv.validateSchema(schema as any) !== true) problems.push(`${where}: ${ajv.errorsText(ajv.errors)}`)
      }
      for (const s of SHARED_SCHEMAS) check(`shared ${s.$id}`, s)
      let checked = 0
      for (const r of gatewayRoutes(app)) {
        const schema = (r.schema ?? {}) as Record<string, any>
        for (const part of ['body', 'querystring', 'params', 'headers']) { check(`${r.method} ${r.url} ${part}`, schema[part]); if (schema[part] != null) checked++ }
        for (const [status, res] of Object.entries(schema.response ?? {})) { check(`${r.method} ${r.url} response ${status}`, res); checked++ }
      }
      expect(checked).to.be.greaterThan(100)
      expect(problems).to.deep.equal([])
      // and the check finds a broken one
      check('broken', { type: 'object', properties: { a: { type: 'strnig' } } })
      expect(problems).to.have.length(1)
    })

    it('GET /docs serves the docs page, offline', async () => {
      const res = await app.inject({ url: '/docs' })
      expect(res.statusCode).to.equal(200)
      expect(res.headers['content-type']).to.match(/text\/html/)
      expect(res.body).to.not.match(/https?:\/\/(cdn|unpkg|fonts)/)
      const js = await app.inject({ url: '/docs/static/swagger-ui-bundle.js' })
      expect(js.statusCode).to.equal(200)
    })
  })

  describe('node, peers, providers, balance', () => {
    it('GET /v1/node and /v1/peers', async () => {
      const info = (await call({ url: '/v1/node' })).json()
      expect(info.peerId).to.equal(node.peerId)
      expect(info.provider.enabled).to.equal(true)
      expect(info.provider.price).to.equal(3)
      expect((await call({ url: '/v1/peers' })).json()).to.be.an('array')
    })

    it('GET /v1/providers lists this node with its engines, and /v1/balance', async () => {
      const providers = (await call({ url: '/v1/providers' })).json()
      const self = providers.find((p: any) => p.self)
      expect(self.peerId).to.equal(node.peerId)
      expect(self.engines).to.include('js')
      const bal = (await call({ url: '/v1/balance' })).json()
      expect(bal.peerId).to.equal(node.peerId)
      expect(bal.balance).to.equal(bal.earned - bal.spent)
    })
  })

  describe('blobs and jobs', () => {
    it('POST /v1/blobs stores bytes, GET /v1/blobs/:cid returns them', async () => {
      const bytes = Buffer.from('export const x = 1\n')
      const up = await call({ method: 'POST', url: '/v1/blobs', payload: bytes, headers: { 'content-type': 'application/octet-stream' } })
      expect(up.statusCode).to.equal(201)
      const { cid, size } = up.json()
      expect(size).to.equal(bytes.length)
      const down = await app.inject({ url: `/v1/blobs/${cid}` })
      expect(down.statusCode).to.equal(200)
      expect(down.headers['content-type']).to.equal('application/octet-stream')
      expect(down.rawPayload.equals(bytes)).to.equal(true)
    })

    it('a job: submit, get, list, result, events; cancel of a finished job is 409', async () => {
      const sub = await call({ method: 'POST', url: '/v1/jobs', payload: { engine: 'js', source: JS_ECHO, input: { a: 1 }, maxPrice: 10 } })
      expect(sub.statusCode).to.equal(202)
      const { id } = sub.json()
      const done = await finished(id)
      expect(done.status).to.equal('completed')
      const job = (await call({ url: `/v1/jobs/${id}` })).json()
      expect(job.status).to.equal('completed')
      expect(job.provider).to.equal(node.peerId)
      expect(job.price).to.equal(3)
      expect(job.latencyMs).to.be.a('number')
      const list = (await call({ url: '/v1/jobs?status=completed&limit=5' })).json()
      expect(list.map((j: any) => j.id)).to.include(id)
      const result = (await call({ url: `/v1/jobs/${id}/result` })).json()
      expect(result.output).to.deep.equal({ echo: { a: 1 } })
      expect(result.exitCode).to.equal(0)
      const events = await app.inject({ url: `/v1/jobs/${id}/events` })
      expect(events.statusCode).to.equal(200)
      expect(events.headers['content-type']).to.match(/^text\/event-stream/)
      const types = [...events.body.matchAll(/^event: (.+)$/gm)].map(m => m[1])
      expect(types[0]).to.equal('announced')
      expect(types).to.include.members(['bid', 'awarded', 'running', 'result', 'settled'])
      expect(types[types.length - 1]).to.equal('end')
      expectError(await call({ method: 'DELETE', url: `/v1/jobs/${id}` }), 409, 'conflict')
    })

    it('409 for the result of an unfinished job; DELETE cancels it', async () => {
      const { id } = (await call({ method: 'POST', url: '/v1/jobs', payload: { engine: 'js', source: JS_SLOW, input: { n: 20_000_000 }, limits: { timeoutMs: 10_000 } } })).json()
      expectError(await call({ url: `/v1/jobs/${id}/result` }), 409, 'conflict')
      // cancel once it runs (a cancel during the bid window is the market's business, not the gateway's)
      await waitFor(async () => (await node.market.get(id)).status === 'running', 5000)
      const cancelled = await call({ method: 'DELETE', url: `/v1/jobs/${id}` })
      expect(cancelled.statusCode).to.equal(200)
      expect(cancelled.json().status).to.equal('cancelled')
      expectError(await call({ method: 'DELETE', url: `/v1/jobs/${id}` }), 409, 'conflict')
      expectError(await call({ url: `/v1/jobs/${id}/result` }), 409, 'conflict')
    })

    it('GET /v1/jobs/:id?wait= answers when the job ends, at once for one that has, after the wait for one still running; past the cap 400, an unknown id 404 at once', async () => {
      const { id } = (await call({ method: 'POST', url: '/v1/jobs', payload: { engine: 'js', source: JS_SLOW, input: { n: 5_000_000 }, limits: { timeoutMs: 10_000 } } })).json()
      let t0 = Date.now()
      const ended = await call({ url: `/v1/jobs/${id}?wait=20000` })
      const answeredAt = Date.now()
      expect(ended.json().status).to.equal('completed')
      expect(ended.json().completedAt).to.be.at.most(answeredAt)
      expect(answeredAt - t0).to.be.below(20_000)
      t0 = Date.now()
      expect((await call({ url: `/v1/jobs/${id}?wait=20000` })).json().status).to.equal('completed')
      expect(Date.now() - t0, 'a finished job is answered at once').to.be.below(2_000)
      // still running when the wait is up: answered as it stands
      const long = (await call({ method: 'POST', url: '/v1/jobs', payload: { engine: 'js', source: JS_SLOW, input: { n: 20_000_000 }, limits: { timeoutMs: 30_000 } } })).json()
      t0 = Date.now()
      const mid = (await call({ url: `/v1/jobs/${long.id}?wait=400` })).json()
      expect(Date.now() - t0).to.be.at.least(350)
      expect(['bidding', 'awarded', 'running']).to.include(mid.status)
      expect((await call({ url: `/v1/jobs/${long.id}?wait=20000` })).json().status).to.equal('completed')
      expectError(await call({ url: `/v1/jobs/${id}?wait=25001` }), 400, 'invalid-request')
      t0 = Date.now()
      expectError(await call({ url: '/v1/jobs/bafyreidoesnotexistdoesnotexistdoesnotexistdoesnotexist?wait=20000' }), 404, 'job-not-found')
      expect(Date.now() - t0).to.be.below(2_000)
    })

    it('a job nobody can afford ends in no-bids, with the reasons', async () => {
      const { id } = (await call({ method: 'POST', url: '/v1/jobs', payload: { engine: 'js', source: JS_ECHO, maxPrice: 1, queueTimeoutMs: 0 } })).json()
      const done = await finished(id)
      expect(done.status).to.equal('no-bids')
      const job = (await call({ url: `/v1/jobs/${id}` })).json()
      expect(job.declines[0].reason).to.be.a('string')
    })
  })

  describe('ledger and metrics', () => {
    it('GET /v1/ledger, /head, /verify, /records/:id, /flagged; /audit is 503 without the audit service', async () => {
      const head = (await call({ url: '/v1/ledger/head' })).json()
      expect(head.seq).to.be.greaterThan(0)
      const page = (await call({ url: '/v1/ledger?from=0&limit=3' })).json()
      expect(page.records).to.have.length(3)
      const verify = (await call({ url: '/v1/ledger/verify' })).json()
      expect(verify.ok).to.equal(true)
      expect(verify.count).to.be.at.least(head.seq + 1) // the log may grow meanwhile
      const rec = (await call({ url: `/v1/ledger/records/${page.records[1].id}` })).json()
      expect(rec.seq).to.equal(1)
      expect((await call({ url: '/v1/ledger/records/0' })).json().id).to.equal(page.records[0].id)
      expectError(await call({ url: '/v1/ledger/records/999999' }), 404, 'not-found')
      expect((await call({ url: '/v1/ledger/flagged' })).json().flagged).to.deep.equal([])
      expectError(await call({ url: `/v1/ledger/audit/${node.peerId}` }), 503, 'unavailable')
      expectError(await call({ url: '/v1/ledger?limit=0' }), 400, 'invalid-request')
      expectError(await call({ url: '/v1/ledger?from=1&from=2' }), 400, 'invalid-request')
    })

    it('GET /metrics: mercato_* and libp2p metrics in Prometheus text', async () => {
      const res = await app.inject({ url: '/metrics' })
      expect(res.statusCode).to.equal(200)
      expect(res.headers['content-type']).to.match(/^text\/plain/)
      const text = res.body
      for (const name of [
        'mercato_jobs{state="completed"}', 'mercato_jobs{state="cancelled"} 1', 'mercato_jobs{state="no-bids"} 1',
        'mercato_job_bids_bucket', 'mercato_auction_duration_seconds_bucket', 'mercato_job_latency_seconds_bucket',
        'mercato_executor_slots{state="total"} 1', 'mercato_executor_slots{state="busy"}', 'mercato_provider_slots{state="total"} 2',
        'mercato_ledger_appends_total', 'mercato_failovers_total 0', 'mercato_refused_messages_total', 'mercato_network_messages_received_total', 'mercato_gossip_messages_received_total', 'mercato_signature_checks_total{how="verified"}',
        'libp2p_'
      ]) expect(text, name).to.include(name)
      const appends = Number(/^mercato_ledger_appends_total (\d+)/m.exec(text)?.[1])
      expect(appends).to.be.greaterThan(5)
      const latencyCount = Number(/^mercato_job_latency_seconds_count (\d+)/m.exec(text)?.[1])
      expect(latencyCount).to.be.greaterThan(0)
    })

    it('GET / is the dashboard, with a strict CSP', async () => {
      const res = await app.inject({ url: '/' })
      expect(res.statusCode).to.equal(200)
      expect(res.headers['content-type']).to.match(/^text\/html/)
      // scripts and styles from this origin only: no inline script, no CDN
      expect(res.headers['content-security-policy']).to.include("script-src 'self';").and.not.include('unsafe')
      expect(res.body).to.not.match(/<script>|<link[^>]+href="http|<script[^>]+src="(?!\/static\/)/)
    })
  })

  describe('errors', () => {
    it('400 for malformed JSON and for a bad spec (the field named)', async () => {
      expectError(await call({ method: 'POST', url: '/v1/jobs', payload: '{"engine": "js",', headers: { 'content-type': 'application/json' } }), 400, 'invalid-json')
      expectError(await call({ method: 'POST', url: '/v1/jobs', payload: '', headers: { 'content-type': 'application/json' } }), 400, 'invalid-json')
      const bad = [
        [{ engine: 'python' }, 'engine'],
        [{ engine: 'js', source: 'x', maxPrice: '5' }, 'maxPrice'],
        [{ engine: 'js', source: 'x', stdin: '***' }, 'stdin'],
        [{ engine: 'js', source: 'x', args: [1] }, 'args.0'],
        [{ engine: 'js', source: 'x', limits: { timeoutMs: -1 } }, 'limits.timeoutMs'],
        [{ engine: 'js', source: 'x', surprise: true }, 'surprise'],
        [{ engine: 'wasm' }, 'module'],
        [[], 'batch'],
        ['"just a string"', 'spec']
      ] as const
      for (const [payload, field] of bad) {
        const res = await call({ method: 'POST', url: '/v1/jobs', payload: typeof payload === 'string' ? payload : JSON.stringify(payload), headers: { 'content-type': 'application/json' } })
        expectError(res, 400, field === 'batch' ? 'invalid-request' : 'invalid-spec')
        expect(res.json().error.message, JSON.stringify(payload)).to.include(field === 'spec' ? 'JSON object' : field)
      }
      expectError(await call({ url: '/v1/jobs?limit=abc' }), 400, 'invalid-request')
      expectError(await call({ url: '/v1/jobs?status=sleeping' }), 400, 'invalid-request')
      expectError(await call({ method: 'POST', url: '/v1/jobs', payload: { engine: 'wasm', module: 'bafynotthere' } }), 400, 'unknown-module')
      expectError(await call({ method: 'POST', url: '/v1/blobs', payload: Buffer.alloc(0), headers: { 'content-type': 'application/octet-stream' } }), 400, 'empty-blob')
    })

    it('404 for an unknown route, job and blob', async () => {
      expectError(await call({ url: '/v2/nothing' }), 404, 'not-found')
      expectError(await call({ method: 'POST', url: '/v1/nothing', payload: {} }), 404, 'not-found')
      expectError(await call({ url: '/v1/jobs/no-such-job' }), 404, 'job-not-found')
      expectError(await call({ url: '/v1/jobs/no-such-job/result' }), 404, 'job-not-found')
      expectError(await call({ url: '/v1/jobs/no-such-job/events' }), 404, 'job-not-found')
      expectError(await call({ method: 'DELETE', url: '/v1/jobs/no-such-job' }), 404, 'job-not-found')
    })

    it('405 for a wrong method on a known path, parameterised ones too, with Allow', async () => {
      for (const [method, url, allow] of [
        ['PUT', '/v1/jobs/abc', 'DELETE'], ['PATCH', '/v1/jobs/abc', 'GET'], ['POST', '/v1/jobs/abc/result', 'GET'],
        ['PUT', '/v1/jobs', 'POST'], ['DELETE', '/v1/node', 'GET'], ['PUT', '/v1/peers', 'POST'], ['PUT', '/v1/blobs/bafy', 'GET'],
        ['DELETE', '/v1/ledger/records/1', 'GET'], ['POST', '/metrics', 'GET'], ['POST', '/', 'GET'], ['PUT', '/v1/events', 'GET']
      ] as const) {
        const res = await call({ method, url, payload: method === 'POST' || method === 'PUT' || method === 'PATCH' ? {} : undefined })
        expectError(res, 405, 'method-not-allowed')
        expect(String(res.headers.allow), `${method} ${url}`).to.include(allow)
      }
    })

    it('413 for a body over the limit', async () => {
      const small = await buildGateway({ node, bodyLimitBytes: 1024, plugins: nodePlugins(node) })
      try {
        expectError(await small.inject({ method: 'POST', url: '/v1/jobs', payload: { engine: 'js', source: 'x'.repeat(2048) } }), 413, 'payload-too-large')
        // uploads stream to disk: their cap is gateway.maxUploadBytes, not the body limit
        const upload = await small.inject({ method: 'POST', url: '/v1/blobs', payload: Buffer.alloc(4096, 1), headers: { 'content-type': 'application/octet-stream' } })
        expect(upload.statusCode).to.equal(201)
      } finally { await small.close() }
      const capped = await buildGateway({ node, plugins: [jobRoutes({ market: node.market, maxUploadBytes: 2048 })] })
      try {
        expectError(await capped.inject({ method: 'POST', url: '/v1/blobs', payload: Buffer.alloc(4096, 2), headers: { 'content-type': 'application/octet-stream' } }), 413, 'blob-too-large')
        // without a declared length (chunked): refused as the bytes pass the cap
        expectError(await capped.inject({ method: 'POST', url: '/v1/blobs', payload: Readable.from([Buffer.alloc(1500, 3), Buffer.alloc(1500, 4)]), headers: { 'content-type': 'application/octet-stream' } }), 413, 'blob-too-large')
      } finally { await capped.close() }
    })

    it('415 for a wrong content type', async () => {
      expectError(await call({ method: 'POST', url: '/v1/jobs', payload: '{"engine":"js"}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported-media-type')
      expectError(await call({ method: 'POST', url: '/v1/jobs', payload: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'unsupported-media-type')
      expectError(await call({ method: 'POST', url: '/v1/jobs', payload: Buffer.from('{}'), headers: { 'content-type': 'application/octet-stream' } }), 415, 'unsupported-media-type')
      expectError(await call({ method: 'POST', url: '/v1/blobs', payload: { a: 1 } }), 415, 'unsupported-media-type')
    })

    it('403 for a foreign Origin or Host', async () => {
      expectError(await call({ url: '/v1/node', headers: { origin: 'http://evil.example' } }), 403, 'foreign-origin')
      expectError(await call({ method: 'POST', url: '/v1/jobs', payload: { engine: 'js', source: 'x' }, headers: { origin: 'http://evil.example' } }), 403, 'foreign-origin')
      expectError(await call({ url: '/v1/node', headers: { origin: 'null' } }), 403, 'foreign-origin')
      expectError(await call({ url: '/v1/node', headers: { origin: 'not a url' } }), 403, 'foreign-origin')
      expectError(await call({ url: '/v1/node', headers: { host: 'evil.example:8420' } }), 403, 'foreign-host')
      expectError(await call({ url: '/', headers: { host: 'rebind.attacker.test' } }), 403, 'foreign-host')
      // our own origin and loopback names are fine
      expect((await call({ url: '/v1/node', headers: { host: '127.0.0.1:8420', origin: 'http://127.0.0.1:8420' } })).statusCode).to.equal(200)
      expect((await call({ url: '/v1/node', headers: { host: 'localhost:8420' } })).statusCode).to.equal(200)
      expect((await call({ url: '/v1/node', headers: { host: '[::1]:8420' } })).statusCode).to.equal(200)
    })

    it('401 without the token when it is required; the dashboard cookie works', async () => {
      const token = 'a'.repeat(43)
      const locked = await buildGateway({ node, token, plugins: nodePlugins(node) })
      try {
        for (const url of ['/v1/node', '/v1/jobs', '/metrics', '/openapi.json', '/', '/v1/ledger/head', '/nowhere']) {
          expectError(await locked.inject({ url }), 401, 'unauthorized')
        }
        expectError(await locked.inject({ method: 'POST', url: '/v1/jobs', payload: {} }), 401, 'unauthorized')
        expectError(await locked.inject({ url: '/v1/node', headers: { authorization: 'Bearer wrong' } }), 401, 'unauthorized')
        expectError(await locked.inject({ url: '/v1/node', headers: { authorization: `Basic ${token}` } }), 401, 'unauthorized')
        expect((await locked.inject({ url: '/v1/node', headers: { authorization: `Bearer ${token}` } })).statusCode).to.equal(200)
        // GET /?token= sets an HttpOnly SameSite=Strict cookie, which then authenticates
        expectError(await locked.inject({ url: '/?token=wrong' }), 401, 'unauthorized')
        const login = await locked.inject({ url: `/?token=${token}` })
        expect(login.statusCode).to.equal(303)
        expect(login.headers.location).to.equal('/')
        const cookie = String(login.headers['set-cookie'])
        expect(cookie).to.match(/HttpOnly/).and.match(/SameSite=Strict/)
        const withCookie = await locked.inject({ url: '/v1/node', headers: { cookie: cookie.split(';')[0] } })
        expect(withCookie.statusCode).to.equal(200)
        // a cross-site request carrying the cookie is still refused
        expectError(await locked.inject({ method: 'DELETE', url: '/v1/jobs/x', headers: { cookie: cookie.split(';')[0], origin: 'http://evil.example' } }), 403, 'foreign-origin')
      } finally { await locked.close() }
    })

    it('a non-loopback bind requires a token', async () => {
      let err: any
      try { await buildGateway({ node, host: '0.0.0.0', plugins: [] }) } catch (e) { err = e }
      expect(err?.code).to.equal('invalid-config')
      const open = await buildGateway({ node, host: '0.0.0.0', token: 't'.repeat(40), plugins: nodePlugins(node) })
      try {
        // bound to all interfaces, any Host is acceptable; the token guards it
        expectError(await open.inject({ url: '/v1/node', headers: { host: '192.168.1.9:8420' } }), 401, 'unauthorized')
        expect((await open.inject({ url: '/v1/node', headers: { host: '192.168.1.9:8420', authorization: `Bearer ${'t'.repeat(40)}` } })).statusCode).to.equal(200)
      } finally { await open.close() }
    })

    it('every code in the table has a 4xx/5xx status and a message', () => {
      for (const [code, def] of Object.entries(GATEWAY_ERRORS)) {
        expect(def.status, code).to.be.within(400, 599)
        expect(def.message, code).to.be.a('string').and.not.equal('')
      }
    })
  })
})
