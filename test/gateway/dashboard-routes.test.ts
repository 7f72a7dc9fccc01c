/**
 * The routes the dashboard pages read, in-process (`app.inject`) over a real
 * node: the pages and their static files (a fixed list, strict CSP), a job's
 * event history, the recent events of all jobs (the catch-up), and ledger
 * records with each signature and link checked.
 */
import { expect } from 'chai'
import type { FastifyInstance } from 'fastify'
import { buildGateway } from '../../src/gateway/index.js'
import { DASHBOARD_CSP } from '../../src/gateway/dashboard.js'
import { LEDGER_CHECK_MAX } from '../../src/gateway/constants.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes } from '../helpers/nodes.js'
import { ledgerRoutes } from '../../src/gateway/routes/ledger.js'
import { expectError, expectMatchesSchema, nodePlugins, JS_ECHO } from './helpers.js'

describe('dashboard routes', function () {
  this.timeout(30_000)
  let node: MercatoNode
  let app: FastifyInstance
  const ids: string[] = []

  async function json (url: string): Promise<any> {
    const res = await app.inject({ url })
    expectMatchesSchema(app, 'GET', url, res)
    expect(res.statusCode, res.body).to.equal(200)
    return res.json()
  }

  before(async () => {
    node = await startTestNode({ price: 3 })
    app = await buildGateway({ node, plugins: nodePlugins(node) })
    for (let i = 0; i < 3; i++) {
      const job = await node.market.submit({ engine: 'js', source: JS_ECHO, input: i, maxPrice: 10 })
      await node.market.waitFor(job.id, { signal: AbortSignal.timeout(15_000) })
      ids.push(job.id)
    }
  })

  after(async () => {
    await app?.close()
    await stopNodes()
  })

  it('serves the pages and their files from this origin, with the strict CSP, and nothing else under /static/', async () => {
    for (const [url, type] of [['/', 'text/html'], [`/jobs/${ids[0]}`, 'text/html'], ['/static/app.css', 'text/css'], ['/static/common.js', 'text/javascript'], ['/static/dashboard.js', 'text/javascript'], ['/static/job.js', 'text/javascript'], ['/static/uplot.js', 'text/javascript'], ['/static/uplot.css', 'text/css']]) {
      const res = await app.inject({ url })
      expect(res.statusCode, url).to.equal(200)
      expect(res.headers['content-type'], url).to.match(new RegExp(`^${type}`))
      expect(res.headers['content-security-policy'], url).to.equal(DASHBOARD_CSP)
      expect(res.headers['x-content-type-options']).to.equal('nosniff')
    }
    expect(DASHBOARD_CSP).to.match(/script-src 'self';/).and.to.match(/style-src 'self';/).and.not.include('unsafe')
    const html = (await app.inject({ url: '/' })).body
    expect(html).to.include('data-types="job,offer,')
    for (const src of html.matchAll(/(?:src|href)="(\/[^"]*)"/g)) expect((await app.inject({ url: src[1] })).statusCode, src[1]).to.equal(200)
    for (const bad of ['index.html', 'job.html', '..%2Fdashboard.ts', '..%2F..%2Fpackage.json', 'uPlot.iife.min.js', 'nope.js']) {
      expectError(await app.inject({ url: `/static/${bad}` }), 404, 'not-found')
    }
  })

  it("GET /v1/jobs/:id/history: the job's events, oldest first; 404 for an unknown job", async () => {
    const events = await json(`/v1/jobs/${ids[0]}/history`)
    const types = events.map((e: any) => e.type)
    expect(types[0]).to.equal('announced')
    expect(types).to.include.members(['bid', 'awarded', 'result', 'settled'])
    expect(events.map((e: any) => e.ts)).to.deep.equal([...events.map((e: any) => e.ts)].sort((x: number, y: number) => x - y))
    expectError(await app.inject({ url: '/v1/jobs/nope/history' }), 404)
  })

  it('GET /v1/events/recent: the latest events of all jobs, newest first, limited; a bad limit is a 400', async () => {
    const all = await json('/v1/events/recent')
    expect(new Set(all.map((e: any) => e.jobId))).to.deep.equal(new Set(ids))
    expect(all.map((e: any) => e.ts)).to.deep.equal([...all.map((e: any) => e.ts)].sort((x: number, y: number) => y - x))
    expect(all[0].type).to.equal('settled')
    expect(await json('/v1/events/recent?limit=2')).to.have.length(2)
    for (const bad of ['0', '501', 'x']) expectError(await app.inject({ url: `/v1/events/recent?limit=${bad}` }), 400, 'invalid-request')
  })

  it('GET /v1/ledger?check=true: each record says its signature verifies and its prev is the record before', async () => {
    const head = node.ledger.head()
    const page = await json(`/v1/ledger?from=3&limit=${head.seq - 2}&check=true`)
    expect(page.records.length).to.equal(head.seq - 2)
    for (const r of page.records) expect(r.check, `#${r.seq}`).to.deep.equal({ sig: 'ok', link: 'ok' })
    // the first record of the page is linked to one outside it, and seq 0 to nothing
    expect((await json('/v1/ledger?from=0&limit=1&check=true')).records[0].check).to.deep.equal({ sig: 'ok', link: 'ok' })
    // by job and by type too
    const byJob = await json(`/v1/ledger?job=${ids[1]}&check=true`)
    expect(byJob.records.length).to.be.greaterThan(2)
    for (const r of byJob.records) expect(r.check).to.deep.equal({ sig: 'ok', link: 'ok' })
    // without check: no check field (the old answer, unchanged)
    expect((await json('/v1/ledger?from=0&limit=2')).records[0]).to.not.have.property('check')
    // bounded work: at most LEDGER_CHECK_MAX records are checked per call
    expect((await json(`/v1/ledger?from=0&limit=1000&check=true`)).records.length).to.be.at.most(LEDGER_CHECK_MAX)
    expectError(await app.inject({ url: '/v1/ledger?check=maybe' }), 400, 'invalid-request')
  })

  it('a forged record is shown as such: its signature fails, and the next record no longer links to it', async () => {
    // the node's own ledger, but its range answers with record #2 changed after signing
    const real = node.ledger
    const forged = new Proxy(real, {
      get (target, prop) {
        if (prop === 'range') {
          return async (from: number, limit: number) => (await target.range(from, limit)).map(r => r.seq === 2 ? { ...r, body: { ...r.body, forged: true } } : r)
        }
        const v = (target as any)[prop]
        return typeof v === 'function' ? v.bind(target) : v
      }
    })
    const bad = await buildGateway({ node, plugins: [ledgerRoutes({ ledger: forged })] })
    try {
      const res = await bad.inject({ url: '/v1/ledger?from=0&limit=5&check=true' })
      const checks = res.json().records.map((r: any) => `${r.seq}:${r.check.sig}/${r.check.link}`)
      expect(checks).to.deep.equal(['0:ok/ok', '1:ok/ok', '2:bad-signature/ok', '3:ok/broken', '4:ok/ok'])
    } finally {
      await bad.close()
    }
  })
})
