/**
 * A requester holds its unfinished jobs and only its most recent finished
 * ones in memory, bounded by count (`auction.finishedJobsInMemory`) and by
 * approximate bytes (`auction.finishedJobBytesInMemory`); a finished job that
 * left memory is read back from the log by id, through the gateway, with
 * the same view and result it had before. A real node, in-process, with tiny
 * caps; the routes through `app.inject`.
 */
import { expect } from 'chai'
import type { FastifyInstance } from 'fastify'
import { buildGateway } from '../../src/gateway/index.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes } from '../helpers/nodes.js'
import { waitFor } from '../helpers/nodes.js'
import { expectError, expectMatchesSchema, nodePlugins, JS_ECHO, JS_SLOW } from './helpers.js'

const CAP = 3
const BUDGET = 512 * 1024
/** a result of ~300 KB: one fits the byte budget, two do not */
const BIG = 'function main (i) { return i.c.repeat(300000) }'

describe('finished jobs in memory: capped by count and bytes, older ones read from the log', function () {
  this.timeout(60_000)
  let node: MercatoNode
  let app: FastifyInstance
  /** what the gateway answered for each job while it was held: view, result (or its error), history */
  const seen = new Map<string, { view: string, result: { status: number, body: string }, history: unknown[] }>()
  const order: string[] = []

  async function get (url: string): Promise<{ status: number, body: string }> {
    const res = await app.inject({ url })
    expectMatchesSchema(app, 'GET', url, res)
    return { status: res.statusCode, body: res.body }
  }

  /** Run one job to its end (`meanwhile` runs while it is under way) and note what the gateway says of it while it is held. */
  async function run (spec: Record<string, unknown>, meanwhile?: (id: string) => Promise<void>): Promise<string> {
    const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { engine: 'js', maxPrice: 10, ...spec } })
    expect(res.statusCode, res.body).to.equal(202)
    const id: string = res.json().id
    await meanwhile?.(id)
    await node.market.waitFor(id, { signal: AbortSignal.timeout(20_000) })
    expect(node.market.heldEvents(id), 'held right after it ended').to.not.equal(undefined)
    const view = await get(`/v1/jobs/${id}`)
    expect(view.status, view.body).to.equal(200)
    seen.set(id, { view: view.body, result: await get(`/v1/jobs/${id}/result`), history: JSON.parse((await get(`/v1/jobs/${id}/history`)).body) })
    order.push(id)
    return id
  }

  const isHeld = (id: string): boolean => node.market.heldEvents(id) != null

  /** The gateway's answers for a job that left memory equal those it gave while the job was held. */
  async function expectSameFromLog (id: string): Promise<void> {
    expect(isHeld(id), `${id} left memory`).to.equal(false)
    const b = seen.get(id)!
    const view = await get(`/v1/jobs/${id}`)
    expect(view.status, view.body).to.equal(200)
    // heartbeats are not logged: a job read from the log does not know when each provider was last heard
    const withoutLastSeen = (v: any): any => ({ ...v, attempts: v.attempts.map(({ lastSeen, ...a }: any) => a) })
    expect(JSON.parse(view.body).attempts.every((a: any) => a.lastSeen == null)).to.equal(true)
    expect(JSON.parse(view.body)).to.deep.equal(withoutLastSeen(JSON.parse(b.view)))
    const result = await get(`/v1/jobs/${id}/result`)
    expect(result.status, result.body).to.equal(b.result.status)
    expect(JSON.parse(result.body)).to.deep.equal(JSON.parse(b.result.body))
  }

  before(async () => {
    node = await startTestNode({ price: 3, config: { auction: { finishedJobsInMemory: CAP, finishedJobBytesInMemory: BUDGET } } })
    app = await buildGateway({ node, plugins: nodePlugins(node) })
  })

  after(async () => {
    await app?.close()
    await stopNodes()
  })

  it(`holds at most ${CAP} finished jobs; older ones answer GET /v1/jobs/:id and /result from the log, as before`, async () => {
    // a name, labels and constraints: read back from the log like the rest (expectSameFromLog)
    const completed = await run({ source: JS_ECHO, input: { k: 0, text: 'first' }, name: 'first', labels: { project: 'atlas' }, constraints: 'region!=us,!spot' })
    const noBids = await run({ source: JS_ECHO, input: 1, maxPrice: 1, queueTimeoutMs: 0 }) // our provider asks 3; fail fast, no queue
    const cancelled = await run({ source: JS_SLOW, input: { n: 1e10 }, limits: { timeoutMs: 30_000 } }, async (id) => {
      await waitFor(async () => (await node.market.get(id)).status === 'running', 15_000)
      const res = await app.inject({ method: 'DELETE', url: `/v1/jobs/${id}` })
      expect(res.statusCode, res.body).to.equal(200)
    })
    for (let k = 3; k < CAP + 5; k++) {
      await run({ source: JS_ECHO, input: { k } })
      const held = node.market.held()
      expect(held.finished, `after ${k + 1} jobs`).to.equal(Math.min(k + 1, CAP))
      expect(held.jobs).to.equal(held.finished) // nothing unfinished
      expect(node.market.list({ limit: 1000 })).to.have.length(held.finished)
    }
    const evicted = order.slice(0, order.length - CAP)
    expect(evicted).to.include.members([completed, noBids, cancelled])
    expect(order.slice(-CAP).every(isHeld)).to.equal(true)
    expect(JSON.parse(seen.get(completed)!.view)).to.include({ status: 'completed', name: 'first' })
    expect(JSON.parse(seen.get(completed)!.view).constraints).to.have.length(2)
    expect(JSON.parse(seen.get(noBids)!.view)).to.include({ status: 'no-bids' })
    expect(JSON.parse(seen.get(cancelled)!.view)).to.include({ status: 'cancelled' })
    expect(JSON.parse(seen.get(cancelled)!.view).attempts.map((a: any) => a.state)).to.deep.equal(['cancelled'])
    expectError({ statusCode: seen.get(noBids)!.result.status, body: seen.get(noBids)!.result.body }, 409, 'conflict')
    for (const id of evicted) await expectSameFromLog(id)
    const result = JSON.parse((await get(`/v1/jobs/${completed}/result`)).body)
    expect(result.output).to.deep.equal({ echo: { k: 0, text: 'first' } })
    // listed: the held jobs only
    expect((JSON.parse((await get('/v1/jobs?limit=1000')).body) as Array<{ id: string }>).map(j => j.id)).to.deep.equal(order.slice(-CAP).reverse())
  })

  it('a job no longer held: its events are not kept (history [], the event stream ends at once); cancel is a 409; unknown ids are 404', async () => {
    const id = order[0]
    expect(seen.get(id)!.history).to.not.deep.equal([])
    expect(JSON.parse((await get(`/v1/jobs/${id}/history`)).body)).to.deep.equal([])
    const stream = await app.inject({ url: `/v1/jobs/${id}/events` })
    expect(stream.statusCode).to.equal(200)
    expect(stream.body).to.equal(': mercato\n\nevent: end\ndata: {}\n\n')
    expect((await node.market.waitFor(id)).status).to.equal('completed')
    expectError(await app.inject({ method: 'DELETE', url: `/v1/jobs/${id}` }), 409, 'conflict')
    for (const unknown of ['bafynosuchjob0000000000000000000000000000000000000000', 'x', id.slice(0, -1) + (id.endsWith('a') ? 'b' : 'a')]) {
      for (const suffix of ['', '/result', '/history', '/events']) expectError(await app.inject({ url: `/v1/jobs/${unknown}${suffix}` }), 404, 'job-not-found')
      expectError(await app.inject({ method: 'DELETE', url: `/v1/jobs/${unknown}` }), 404, 'job-not-found')
    }
  })

  it('a job with a large result leaves memory by the byte budget before the count cap would drop it', async () => {
    const first = await run({ source: BIG, input: { c: 'a' }, limits: { outputBytes: 400_000 } })
    let held = node.market.held()
    expect(isHeld(first)).to.equal(true)
    expect(held.finishedBytes).to.be.above(300_000).and.at.most(BUDGET)
    const second = await run({ source: BIG, input: { c: 'b' }, limits: { outputBytes: 400_000 } })
    held = node.market.held()
    // two large results do not fit: the older one left with only one job after it (the cap is 3)
    expect(isHeld(second)).to.equal(true)
    expect(isHeld(first)).to.equal(false)
    expect(held.finished).to.be.below(CAP)
    expect(held.finishedBytes).to.be.at.most(BUDGET)
    await expectSameFromLog(first)
    const result = JSON.parse((await get(`/v1/jobs/${first}/result`)).body)
    expect(result.output).to.equal('a'.repeat(300000))
  })

  it('a job whose offer cannot be announced (too large) does not stay in memory as an unfinished job', async () => {
    const held = node.market.held()
    const listed = node.market.list({ limit: 1000 }).length
    for (let i = 0; i < 3; i++) {
      expectError(await app.inject({ method: 'POST', url: '/v1/jobs', payload: { engine: 'js', source: JS_ECHO, input: 'x'.repeat(200_000 + i), maxPrice: 10 } }), 400, 'offer-too-large')
    }
    expect(node.market.held()).to.deep.equal(held)
    expect(node.market.list({ limit: 1000 })).to.have.length(listed)
  })
})
