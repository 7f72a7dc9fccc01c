/**
 * `client.submitMany()` against a real node (its own provider runs the
 * jobs): input order, bad inputs, the in-flight bound, and a batch whose
 * answer was lost on the way back sent again without starting a job twice.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { MercatoClient, BadInput, type ManyProgress, type ManyResult } from '../../src/client/index.js'
import { startTestNode, stopNodes } from '../helpers/nodes.js'
import type { MercatoNode } from '../../src/node.js'

const DOUBLE = 'function main (i) { return i.n * 2 }'

async function all (it: AsyncIterable<ManyResult>): Promise<ManyResult[]> {
  const out: ManyResult[] = []
  for await (const r of it) out.push(r)
  return out
}

describe('client.submitMany against a real node', function () {
  this.timeout(60_000)
  let node: MercatoNode

  before(async () => { node = await startTestNode({ gateway: true, price: 2 }) })
  after(stopNodes)

  it('one job per input, results in input order, a BadInput reported in its place, never more than `parallel` in flight', async () => {
    const client = new MercatoClient({ url: node.gateway!.url })
    let most = 0
    const inputs = Array.from({ length: 25 }, (_, i) => i === 3 ? new BadInput('line 4: not JSON') : { n: i })
    const results = await all(client.submitMany({ engine: 'js', source: DOUBLE }, inputs, {
      parallel: 4,
      firstIndex: 1,
      onProgress: (p: ManyProgress) => { most = Math.max(most, p.running + p.queued) }
    }))
    expect(results.map(r => r.index)).to.deep.equal(Array.from({ length: 25 }, (_, i) => i + 1))
    expect(results[3]).to.deep.equal({ index: 4, status: 'invalid', error: 'line 4: not JSON' })
    for (const r of results.filter(r => r.index !== 4)) expect(r).to.deep.include({ status: 'completed', output: (r.index - 1) * 2 })
    expect(most).to.be.within(1, 4)
  })

  it('a batch whose answer is lost is sent again with the same keys: no job starts twice', async () => {
    let dropped = 0
    const lossy: typeof fetch = async (input, init) => {
      const res = await fetch(input, init)
      if (init?.method === 'POST' && String(input).endsWith('/v1/jobs') && dropped < 2) {
        dropped++ // the node took the batch; the answer never arrives
        await res.arrayBuffer()
        throw new TypeError('fetch failed')
      }
      return res
    }
    const client = new MercatoClient({ url: node.gateway!.url, fetch: lossy })
    const before = node.market.list({ limit: 1000 }).length
    const results = await all(client.submitMany({ engine: 'js', source: DOUBLE }, Array.from({ length: 10 }, (_, n) => ({ n })), { parallel: 5 }))
    expect(dropped).to.equal(2)
    expect(results.map(r => r.status)).to.deep.equal(Array(10).fill('completed'))
    expect(new Set(results.map(r => r.id)).size).to.equal(10)
    expect(node.market.list({ limit: 1000 }).length - before).to.equal(10)
  })
})
