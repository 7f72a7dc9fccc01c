/**
 * `POST /v1/jobs` with an array (a batch), idempotency keys, and the job
 * spec's JSON Schema (`/v1/schema/job.json`, `/openapi.json`), in-process
 * over a real node whose own provider runs the jobs.
 */
import { expect } from 'chai'
import Ajv2020 from 'ajv/dist/2020.js'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { buildGateway } from '../../src/gateway/index.js'
import { jobBodySchema } from '../../src/gateway/routes/jobs.js'
import { JOBS_BATCH_MAX } from '../../src/gateway/constants.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes } from '../helpers/nodes.js'
import { checkedInject, expectError, nodePlugins, JS_ECHO } from './helpers.js'

describe('gateway: job batches, idempotency keys, the spec schema', function () {
  this.timeout(30_000)
  let node: MercatoNode
  let app: FastifyInstance

  const call = async (opts: InjectOptions & { url: string }): Promise<LightMyRequestResponse> => await checkedInject(app, opts)

  before(async () => {
    node = await startTestNode({ price: 3 })
    app = await buildGateway({ node, plugins: nodePlugins(node) })
  })

  after(async () => {
    await app?.close()
    await stopNodes()
  })

  it('a batch answers per item, in order: a bad item is named and the others run', async () => {
    const res = await call({
      method: 'POST',
      url: '/v1/jobs',
      payload: [
        { engine: 'js', source: JS_ECHO, input: 1 },
        { engine: 'js', source: JS_ECHO, colour: 'red' },
        { engine: 'js', source: JS_ECHO, input: 3 }
      ]
    })
    expect(res.statusCode, res.body).to.equal(200)
    const answers = res.json()
    expect(answers).to.have.length(3)
    expect(answers[1].error.code).to.equal('invalid-spec')
    expect(answers[1].error.message).to.include('colour')
    for (const [k, input] of [[0, 1], [2, 3]]) {
      const view = await node.market.waitFor(answers[k].id, { signal: AbortSignal.timeout(15_000) })
      expect(view.status).to.equal('completed')
      expect((await node.market.result(answers[k].id)).output).to.deep.equal({ echo: input })
    }
  })

  it(`a batch holds 1 to ${JOBS_BATCH_MAX} specs`, async () => {
    expectError(await call({ method: 'POST', url: '/v1/jobs', payload: [] }), 400, 'invalid-request')
    const before = node.market.list({ limit: 1000 }).length
    const tooMany = Array.from({ length: JOBS_BATCH_MAX + 1 }, () => ({ engine: 'js', source: JS_ECHO }))
    const res = await call({ method: 'POST', url: '/v1/jobs', payload: tooMany })
    expectError(res, 400, 'invalid-request')
    expect(res.json().error.message).to.include(String(JOBS_BATCH_MAX))
    expect(node.market.list({ limit: 1000 }).length).to.equal(before)
  })

  it('an idempotency key seen before returns the first job, alone, in a batch or at the same time', async () => {
    const spec = { engine: 'js', source: JS_ECHO, input: 'k', idempotencyKey: 'run-1:7' }
    const first = await call({ method: 'POST', url: '/v1/jobs', payload: spec })
    expect(first.statusCode, first.body).to.equal(202)
    const id = first.json().id
    const before = node.market.list({ limit: 1000 }).length
    // the same key again, twice in one batch, and alone while that batch runs
    const [again, batch] = await Promise.all([
      call({ method: 'POST', url: '/v1/jobs', payload: spec }),
      call({ method: 'POST', url: '/v1/jobs', payload: [spec, spec, { ...spec, idempotencyKey: 'run-1:8' }] })
    ])
    expect(again.json().id).to.equal(id)
    const answers = batch.json()
    expect(answers[0].id).to.equal(id)
    expect(answers[1].id).to.equal(id)
    expect(answers[2].id).to.not.equal(id)
    // one new job (the key run-1:8), nothing else
    expect(node.market.list({ limit: 1000 }).length).to.equal(before + 1)
    expect((await node.market.waitFor(id, { signal: AbortSignal.timeout(15_000) })).status).to.equal('completed')
    // a finished job keeps its key
    expect((await call({ method: 'POST', url: '/v1/jobs', payload: spec })).json()).to.deep.equal({ id, status: 'completed' })
    // concurrent first submissions of a new key start one job
    const fresh = { ...spec, idempotencyKey: 'run-2:1' }
    const answersAtOnce = await Promise.all(Array.from({ length: 5 }, async () => (await call({ method: 'POST', url: '/v1/jobs', payload: fresh })).json().id))
    expect(new Set(answersAtOnce).size).to.equal(1)
    expect(node.market.list({ limit: 1000 }).filter(j => j.id === answersAtOnce[0])).to.have.length(1)
    expectError(await call({ method: 'POST', url: '/v1/jobs', payload: { ...spec, idempotencyKey: '' } }), 400, 'invalid-spec')
  })

  it('GET /v1/schema/job.json is the zod spec as JSON Schema, and the API document uses it', async () => {
    const res = await call({ url: '/v1/schema/job.json' })
    expect(res.statusCode).to.equal(200)
    expect(String(res.headers['content-type'])).to.match(/^application\/schema\+json/)
    const schema = res.json()
    expect(schema.$schema).to.equal('https://json-schema.org/draft/2020-12/schema')
    // every field of the zod schema, nothing else allowed
    expect(Object.keys(schema.properties).sort()).to.deep.equal(Object.keys(jobBodySchema.shape).sort())
    expect(schema.additionalProperties).to.equal(false)
    const ajv = new Ajv2020.default({ strict: false })
    const validate = ajv.compile(schema)
    expect(validate({ engine: 'js', source: 'x', limits: { timeoutMs: 5 } })).to.equal(true)
    expect(validate({ engine: 'js', source: 'x', colour: 'red' })).to.equal(false)
    expect(validate({ engine: 'js', limits: { timeoutMs: 'soon' } })).to.equal(false)
    const doc = (await call({ url: '/openapi.json' })).json()
    const body = doc.paths['/v1/jobs'].post.requestBody.content['application/json'].schema
    expect(Object.keys(body.oneOf[0].properties).sort()).to.deep.equal(Object.keys(schema.properties).sort())
    expect(doc.paths['/v1/schema/job.json'].get).to.be.an('object')
  })
})
