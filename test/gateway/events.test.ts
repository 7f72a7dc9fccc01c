/**
 * Server-sent events over a real socket: a job's stream delivers its whole
 * sequence (announced … settled, then end), live and replayed; the
 * all-jobs stream delivers every job's events. Two nodes, so the bid comes
 * over the network from a remote provider.
 */
import { expect } from 'chai'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { JS_ECHO } from './helpers.js'

interface Sse { event: string, data: any }

/** Read an SSE stream until `until` says stop (or the server ends it). */
async function readEvents (url: string, opts: { until?: (e: Sse) => boolean, signal: AbortSignal, onOpen?: () => void }): Promise<Sse[]> {
  const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: opts.signal })
  expect(res.status).to.equal(200)
  expect(res.headers.get('content-type')).to.match(/^text\/event-stream/)
  opts.onOpen?.()
  const out: Sse[] = []
  const decoder = new TextDecoder()
  let buf = ''
  const reader = res.body!.getReader()
  try {
    while (true) {
      const { value, done } = await reader.read()
      if (done) return out
      buf += decoder.decode(value, { stream: true })
      let i: number
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i)
        buf = buf.slice(i + 2)
        const event = /^event: (.*)$/m.exec(frame)?.[1]
        const data = /^data: (.*)$/m.exec(frame)?.[1]
        if (event == null || data == null) continue // a comment (": ping")
        const e = { event, data: JSON.parse(data) }
        out.push(e)
        if (opts.until?.(e) === true) return out
      }
    }
  } finally {
    await reader.cancel().catch(() => {})
  }
}

describe('gateway event streams', function () {
  this.timeout(30_000)
  let requester: MercatoNode
  let provider: MercatoNode
  let url: string

  before(async () => {
    provider = await startTestNode({ price: 4 })
    requester = await startTestNode({ provide: false, gateway: true, bootstrap: provider.network.addresses() })
    url = requester.gateway!.url
    await waitFor(() => requester.market.providers().some(p => p.peerId === provider.peerId), 15_000, 50)
  })

  after(async () => { await stopNodes() })

  it('GET /v1/jobs/:id/events: the whole sequence live, then end; replayed whole afterwards', async () => {
    const res = await fetch(`${url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ engine: 'js', source: JS_ECHO, input: 7, maxPrice: 10 }) })
    expect(res.status).to.equal(202)
    const { id } = await res.json() as { id: string }
    const live = await readEvents(`${url}/v1/jobs/${id}/events`, { signal: AbortSignal.timeout(20_000) })
    const types = live.map(e => e.event)
    expect(types[0]).to.equal('announced')
    expect(types[types.length - 1]).to.equal('end')
    const order = ['announced', 'bid', 'awarded', 'accepted', 'running', 'result', 'settled', 'end']
    let at = -1
    for (const t of order) {
      const i = types.indexOf(t, at + 1)
      expect(i, `${t} after ${order[order.indexOf(t) - 1]} in ${types.join(',')}`).to.be.greaterThan(at)
      at = i
    }
    for (const e of live.slice(0, -1)) expect(e.data.jobId).to.equal(id)
    const bid = live.find(e => e.event === 'bid')!
    expect(bid.data.provider).to.equal(provider.peerId)
    expect(bid.data.price).to.equal(4)
    const settled = live.find(e => e.event === 'settled')!
    expect(settled.data.latencyMs).to.be.a('number')
    // after the fact: the same sequence, replayed, then end
    const replay = await readEvents(`${url}/v1/jobs/${id}/events`, { signal: AbortSignal.timeout(5_000) })
    expect(replay.map(e => e.event)).to.deep.equal(types)
  })

  it('GET /v1/events: every job, live', async () => {
    const ctl = new AbortController()
    const timer = setTimeout(() => { ctl.abort() }, 20_000)
    let opened!: () => void
    const open = new Promise<void>(resolve => { opened = resolve })
    const ids = new Set<string>()
    const settled = new Set<string>()
    const reading = readEvents(`${url}/v1/events`, {
      signal: ctl.signal,
      onOpen: opened,
      until: (e) => {
        if (e.event === 'settled') settled.add(e.data.jobId)
        return ids.size === 2 && [...ids].every(id => settled.has(id))
      }
    })
    await open
    for (let k = 0; k < 2; k++) {
      const res = await fetch(`${url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ engine: 'js', source: JS_ECHO, input: k, maxPrice: 10 }) })
      ids.add(((await res.json()) as { id: string }).id)
    }
    const events = await reading
    clearTimeout(timer)
    for (const id of ids) {
      const mine = events.filter(e => e.data.jobId === id).map(e => e.event)
      expect(mine[0], id).to.equal('announced')
      expect(mine).to.include.members(['bid', 'awarded', 'running', 'result', 'settled'])
    }
  })

  it('a stream closed by the client leaves no listener behind', async () => {
    const before = requester.market.events.listenerCount('job')
    const ctl = new AbortController()
    const reading = readEvents(`${url}/v1/events`, { signal: ctl.signal, onOpen: () => { setTimeout(() => { ctl.abort() }, 50) } }).catch(() => [])
    await reading
    await waitFor(() => requester.market.events.listenerCount('job') === before, 2_000)
  })
})
