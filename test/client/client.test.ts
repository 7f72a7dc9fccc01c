import '../../src/polyfill.js'
import { expect } from 'chai'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { MercatoClient, MercatoApiError, MercatoConnectionError, type JobEvent, type LogEvent } from '../../src/client/index.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { freePort } from '../helpers/ports.js'
import { identityFromSeed } from '../../src/p2p/index.js'
import { randomBytes } from 'node:crypto'
import type { MercatoNode } from '../../src/node.js'

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname
/** ~1 s of work: long enough to ask for its result before it is done */
const SLOW_JS = 'function main(i){let s=0;for(let k=0;k<i.n;k++)s=(s+k)%1000003;return s}'

async function expectApiError (p: Promise<unknown>, status: number, code: string): Promise<MercatoApiError> {
  try {
    await p
  } catch (err) {
    expect(err).to.be.instanceOf(MercatoApiError)
    const e = err as MercatoApiError
    expect(e.name).to.equal('MercatoApiError')
    expect(e.status, e.message).to.equal(status)
    expect(e.code, e.message).to.equal(code)
    return e
  }
  throw new Error(`expected a ${status} ${code}`)
}

describe('MercatoClient against a real node', function () {
  this.timeout(30_000)
  let node: MercatoNode
  let provider: MercatoNode
  let client: MercatoClient

  before(async () => {
    node = await startTestNode({ gateway: true, price: 5 })
    provider = await startTestNode({ price: 2, bootstrap: node.network.addresses() })
    client = new MercatoClient({ url: node.gateway!.url })
    await waitFor(async () => (await client.providers()).some(p => p.peerId === provider.peerId), 10_000)
  })
  after(stopNodes)

  it('reads the node, its peers, providers and balance', async () => {
    const info = await client.node()
    expect(info.peerId).to.equal(node.peerId)
    expect(info.provider.enabled).to.equal(true)
    const peers = await client.peers()
    expect(peers.map(p => p.peerId)).to.include(provider.peerId)
    const providers = await client.providers()
    expect(providers.find(p => p.self)?.peerId).to.equal(node.peerId)
    const balance = await client.balance()
    expect(balance).to.include({ peerId: node.peerId })
    expect(balance.balance).to.equal(balance.earned - balance.spent)
  })

  it('uploads a wasm module, submits it and waits for the result through events', async () => {
    const cid = await client.uploadBlob(await readFile(join(FIXTURES, 'wasm/hello.wasm')))
    expect(cid).to.be.a('string').with.length.greaterThan(10)
    const { id, status } = await client.submit({ engine: 'wasm', module: cid, args: ['x'], stdin: new Uint8Array([1, 2]) })
    expect(status).to.equal('bidding')
    const seen: string[] = []
    const job = await client.wait(id, { onEvent: (e) => { seen.push(e.type) } })
    expect(job.status).to.equal('completed')
    expect([node.peerId, provider.peerId]).to.include(job.provider)
    expect(seen[0]).to.equal('announced')
    expect(seen.at(-1)).to.equal('settled')
    const result = await client.result(id)
    expect(result.stdout).to.equal('hello, world\narg 1: x\n')
    expect(result.exitCode).to.equal(0)
    const listed = await client.jobs({ status: 'completed' })
    expect(listed.map(j => j.id)).to.include(id)
    expect(await client.jobs({ limit: 1 })).to.have.length(1)
  })

  it('events() delivers the whole sequence of a job, announced … settled, then ends', async () => {
    const { id } = await client.submit({ engine: 'js', source: 'function main (i) { console.log("hi"); return i.a + i.b }', input: { a: 2, b: 3 } })
    const events: Array<JobEvent | LogEvent> = []
    for await (const e of client.events(id)) events.push(e)
    const types: string[] = events.filter(e => e.type !== 'log').map(e => e.type)
    expect(types[0]).to.equal('announced')
    expect(types).to.include.members(['bid', 'awarded', 'accepted', 'running', 'result'])
    expect(types.at(-1)).to.equal('settled')
    const order = ['announced', 'bid', 'awarded', 'running', 'result', 'settled'].map(t => types.indexOf(t))
    expect(order).to.deep.equal([...order].sort((a, b) => a - b))
    expect(events.every(e => e.jobId === id && typeof e.ts === 'number')).to.equal(true)
    // awarded to the two providers there are: the cheaper one (beside the node's own provider as its
    // check while it has no standing), or the node's own alone while the cheaper one's first run is
    // still in flight (one probation at a time)
    const awardedTo = events.filter(e => e.type === 'awarded').map(e => e.provider)
    expect(awardedTo).to.have.length.at.least(1)
    for (const p of awardedTo) expect([node.peerId, provider.peerId]).to.include(p)
    // a finished job: the stream replays the same steps (and, for a few seconds after the end, the
    // tail of its live output), then ends
    const again: Array<JobEvent | LogEvent> = []
    for await (const e of client.events(id)) again.push(e)
    expect(again.filter(e => e.type !== 'log').map(e => e.type)).to.deep.equal(types)
    const logText = (es: Array<JobEvent | LogEvent>): string => es.filter((e): e is LogEvent => e.type === 'log').map(e => e.text).join('')
    expect(logText(again)).to.equal(logText(events))
    const result = await client.result(id)
    expect(result.output).to.equal(5)
    expect(result.stdout).to.equal('hi\n')
  })

  it('connect() dials a node it did not know (POST /v1/peers); bad, own and dead addresses are named errors', async () => {
    const loner = await startTestNode({ price: 3 })
    expect((await client.peers()).map(p => p.peerId)).not.to.include(loner.peerId)
    const address = loner.network.addresses()[0]
    expect(await client.connect(address)).to.deep.equal({ peerId: loner.peerId })
    expect((await client.peers()).map(p => p.peerId)).to.include(loner.peerId)
    // connected both ways: the loner sees the node too
    expect(loner.network.peers().map(p => p.peerId)).to.include(node.peerId)
    // again: already connected, the same answer
    expect(await client.connect(address)).to.deep.equal({ peerId: loner.peerId })

    await expectApiError(client.connect('not an address'), 400, 'invalid-peer')
    // no /p2p/ part: which peer is meant is not said
    await expectApiError(client.connect('/ip4/127.0.0.1/tcp/4010'), 400, 'invalid-peer')
    // a relay's address with no peer after its circuit
    await expectApiError(client.connect(`/ip4/127.0.0.1/tcp/4010/p2p/${loner.peerId}/p2p-circuit`), 400, 'invalid-peer')
    await expectApiError(client.connect(node.network.addresses()[0]), 400, 'invalid-peer')
    await expectApiError(client.connect('/ip4/127.0.0.1/tcp/4010/p2p/' + loner.peerId + 'x'.repeat(1100)), 400, 'invalid-request')
    const res = await fetch(`${node.gateway!.url}/v1/peers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ address: 42 }) })
    expect(res.status).to.equal(400)
    // a peer not connected, at a port nothing listens on: 502 peer-unreachable, the reason in the message
    const stranger = identityFromSeed(randomBytes(32)).peerId
    const dead = await expectApiError(client.connect(`/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${stranger}`), 502, 'peer-unreachable')
    expect(dead.message).to.match(/could not dial/)
    // and the node is still whole
    expect((await client.node()).peerId).to.equal(node.peerId)
  })

  it('answers API errors as MercatoApiError with the gateway\'s code and status', async () => {
    await expectApiError(client.job('no-such-job'), 404, 'job-not-found')
    await expectApiError(client.result('no-such-job'), 404, 'job-not-found')
    const e = await expectApiError(client.submit({ engine: 'wasm' }), 400, 'invalid-spec')
    expect(e.message).to.match(/module/)
    await expectApiError(client.submit({ engine: 'nope' as any, source: 'x' }), 400, 'invalid-spec')
    // events of an unknown job: 404 before the stream opens
    await expectApiError((async () => { for await (const _ of client.events('no-such-job')) break })(), 404, 'job-not-found')
  })

  it('answers 409 for the result of a job still running, and cancels it', async () => {
    const { id } = await client.submit({ engine: 'js', source: SLOW_JS, input: { n: 30_000_000 } })
    await expectApiError(client.result(id), 409, 'conflict')
    const cancelled = await client.cancel(id)
    expect(cancelled.status).to.equal('cancelled')
    const job = await client.wait(id)
    expect(job.status).to.equal('cancelled')
    await expectApiError(client.cancel(id), 409, 'conflict')
  })

  it('stops following events when the signal aborts', async () => {
    const { id } = await client.submit({ engine: 'js', source: SLOW_JS, input: { n: 30_000_000 } })
    const ac = new AbortController()
    const types: string[] = []
    const t0 = Date.now()
    let error: any
    try {
      for await (const e of client.events(id, { signal: ac.signal })) {
        types.push(e.type)
        if (e.type === 'announced') ac.abort()
      }
    } catch (err) { error = err }
    expect(error?.name).to.equal('AbortError')
    expect(types).to.deep.equal(['announced'])
    expect(Date.now() - t0).to.be.lessThan(1000)
    await client.cancel(id)
  })

  it('names an unreachable node with MercatoConnectionError', async () => {
    const dead = new MercatoClient({ url: 'http://127.0.0.1:1/' })
    try {
      await dead.node()
      expect.fail('should throw')
    } catch (err: any) {
      expect(err).to.be.instanceOf(MercatoConnectionError)
      expect(err.code).to.equal('unreachable')
      expect(err.message).to.equal('no Mercato node at http://127.0.0.1:1')
    }
  })
})

describe('MercatoClient with a token', function () {
  this.timeout(20_000)
  after(stopNodes)

  it('sends the bearer token from the option or MERCATO_API_TOKEN; without it: 401 unauthorized', async () => {
    const node = await startTestNode({ gateway: true, config: { gateway: { requireToken: true } } })
    const token = (await readFile(join(node.config.dataDir, 'gateway.token'), 'utf8')).trim()
    const url = node.gateway!.url
    const saved = process.env.MERCATO_API_TOKEN
    delete process.env.MERCATO_API_TOKEN
    try {
      await expectApiError(new MercatoClient({ url }).node(), 401, 'unauthorized')
      expect((await new MercatoClient({ url, token }).node()).peerId).to.equal(node.peerId)
      process.env.MERCATO_API_TOKEN = token
      expect((await new MercatoClient({ url }).node()).peerId).to.equal(node.peerId)
    } finally {
      if (saved == null) delete process.env.MERCATO_API_TOKEN
      else process.env.MERCATO_API_TOKEN = saved
    }
  })
})
