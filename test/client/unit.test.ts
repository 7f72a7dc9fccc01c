import { expect } from 'chai'
import { Progress, shortId } from '../../src/cli/progress.js'
import { readSse } from '../../src/client/sse.js'
import type { JobEvent } from '../../src/client/index.js'

const A = '12D3KooWAbcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNx9'
const B = '12D3KooWZyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPOk7'

function ev (type: string, data: Record<string, unknown> = {}): JobEvent {
  return { type: type as JobEvent['type'], ts: 0, jobId: 'j', ...data }
}

describe('submit --wait progress line', () => {
  it('shortens a PeerId', () => {
    expect(shortId(A)).to.equal('12D3…x9')
  })

  it('on a TTY rewrites one line: announced → 4 bids → awarded … → running → done', () => {
    let written = ''
    const p = new Progress({ write: (s) => { written += s }, tty: true, columns: 200 })
    p.onEvent(ev('announced', { round: 1 }))
    for (let i = 1; i <= 4; i++) p.onEvent(ev('bid', { provider: A, price: i, bids: i }))
    p.onEvent(ev('awarded', { provider: A, price: 3 }))
    p.onEvent(ev('accepted', { provider: A }))
    p.onEvent(ev('running', { provider: A }))
    const last = p.onEvent(ev('settled', { latencyMs: 14 }))
    p.finish()
    expect(last).to.equal('announced → 4 bids → awarded to 12D3…x9 at 3 credits → running → done in 14 ms')
    expect(written.endsWith(`\r${last}\x1b[K\n`)).to.equal(true)
    expect(written.split('\n')).to.have.length(2) // one line, then the newline
  })

  it('shows the fetch of a result\'s output files', () => {
    const p = new Progress({ write: () => {}, tty: true, columns: 300 })
    p.onEvent(ev('awarded', { provider: A, price: 1 }))
    p.onEvent(ev('running', { provider: A }))
    p.onEvent(ev('collecting', { provider: A, files: 2, bytes: 3 * 1024 * 1024 }))
    const last = p.onEvent(ev('settled', { latencyMs: 900 }))
    expect(last).to.equal('awarded to 12D3…x9 at 1 credit → running → fetching 2 output files (3.0 MiB) from 12D3…x9 → done in 900 ms')
  })

  it('a queued job: one "queued" step for all its rounds, then the award', () => {
    const p = new Progress({ write: () => {}, tty: true, columns: 300 })
    p.onEvent(ev('announced', { round: 0 }))
    p.onEvent(ev('decline', { provider: B, reason: 'price' }))
    for (let round = 1; round <= 5; round++) {
      p.onEvent(ev('queued', { round: round - 1, until: 300_000, next: 1000 * round }))
      p.onEvent(ev('announced', { round, queued: true }))
      p.onEvent(ev('decline', { provider: B, reason: 'price' }))
    }
    p.onEvent(ev('bid', { provider: A, price: 2, bids: 1 }))
    p.onEvent(ev('awarded', { provider: A, price: 2 }))
    p.onEvent(ev('running', { provider: A }))
    const last = p.onEvent(ev('settled', { latencyMs: 9000 }))
    expect(last).to.equal('announced → 1 decline → queued: no provider yet (waits up to 300 s) → awarded to 12D3…x9 at 2 credits → running → done in 9000 ms')
  })

  it('elsewhere writes each step once it is final, and shows a failover', () => {
    const lines: string[] = []
    const p = new Progress({ write: (s) => { lines.push(s) }, tty: false })
    p.onEvent(ev('announced'))
    p.onEvent(ev('bid', { bids: 1 }))
    p.onEvent(ev('decline', { provider: B, reason: 'price' }))
    p.onEvent(ev('bid', { bids: 2 }))
    expect(lines.join('')).to.equal('announced\n')
    p.onEvent(ev('awarded', { provider: A, price: 1 }))
    p.onEvent(ev('running', { provider: A }))
    p.onEvent(ev('suspect', { provider: A, silentMs: 800 }))
    p.onEvent(ev('handover', { from: A, to: B, reason: 'silent' }))
    p.onEvent(ev('awarded', { provider: B, price: 2 }))
    p.onEvent(ev('running', { provider: B }))
    p.onEvent(ev('settled', { latencyMs: 2100 }))
    p.finish()
    expect(lines.join('')).to.equal([
      'announced', '2 bids, 1 decline', 'awarded to 12D3…x9 at 1 credit', 'running', '12D3…x9 silent 800 ms',
      '12D3…x9 lost (silent), handing over', 'awarded to 12D3…k7 at 2 credits', 'running', 'done in 2100 ms', ''
    ].join('\n'))
  })
})

describe('server-sent events reader', () => {
  function stream (chunks: string[]): ReadableStream<Uint8Array> {
    const enc = new TextEncoder()
    return new ReadableStream({ start (c) { for (const s of chunks) c.enqueue(enc.encode(s)); c.close() } })
  }

  it('parses events split anywhere, CRLF, comments and multi-line data', async () => {
    const text = ': hello\n\nevent: bid\ndata: {"a":1}\n\nevent: x\r\ndata: one\r\ndata: two\r\n\r\ndata: plain\n\nevent: end\ndata: {}\n\n'
    for (const size of [1, 3, 7, text.length]) {
      const chunks: string[] = []
      for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size))
      const got = []
      for await (const m of readSse(stream(chunks))) got.push([m.event, m.data])
      expect(got, `chunks of ${size}`).to.deep.equal([['bid', '{"a":1}'], ['x', 'one\ntwo'], ['message', 'plain'], ['end', '{}']])
    }
  })
})

describe('MercatoClient.wait over a stream that breaks', () => {
  it('reconnects and skips the events it has seen', async () => {
    const { MercatoClient } = await import('../../src/client/index.js')
    const frames = (types: string[], end: boolean): string => types.map(t => `event: ${t}\ndata: ${JSON.stringify({ type: t, ts: 0, jobId: 'j' })}\n\n`).join('') + (end ? 'event: end\ndata: {}\n\n' : '')
    let streams = 0
    let status = 'running'
    const fakeFetch = (async (url: string) => {
      if (url.endsWith('/events')) {
        streams++
        const body = streams === 1 ? frames(['announced', 'bid'], false) : frames(['announced', 'bid', 'awarded', 'settled'], true)
        if (streams > 1) status = 'completed'
        return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } })
      }
      return new Response(JSON.stringify({ id: 'j', status }), { status: 200, headers: { 'content-type': 'application/json' } })
    }) as typeof fetch
    const client = new MercatoClient({ url: 'http://x', fetch: fakeFetch })
    const seen: string[] = []
    const job = await client.wait('j', { onEvent: (e) => { seen.push(e.type) } })
    expect(job.status).to.equal('completed')
    expect(streams).to.equal(2)
    expect(seen).to.deep.equal(['announced', 'bid', 'awarded', 'settled'])
  })
})

describe('an event stream that goes silent (no event, no keep-alive)', () => {
  // a gateway that opens the stream, says hello, then nothing, and never closes it (a connection
  // dropped without a FIN by a proxy or NAT, a frozen node)
  const silent = (jobStatus: string, counter: { streams: number }): typeof fetch => (async (url: string) => {
    if (url.endsWith('/events')) {
      counter.streams++
      const body = new ReadableStream<Uint8Array>({ start (c) { c.enqueue(new TextEncoder().encode(': mercato\n\n')) } })
      return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } })
    }
    return new Response(JSON.stringify({ id: 'j', status: jobStatus }), { status: 200, headers: { 'content-type': 'application/json' } })
  }) as typeof fetch

  it('events() ends with StreamIdleError after streamIdleMs', async () => {
    const { MercatoClient } = await import('../../src/client/index.js')
    const client = new MercatoClient({ url: 'http://x', fetch: silent('running', { streams: 0 }), streamIdleMs: 200 })
    const t0 = Date.now()
    const err = await (async () => { for await (const _ of client.events('j')) {} })().then(() => null, (e: Error) => e)
    expect(err?.name).to.equal('StreamIdleError')
    expect(Date.now() - t0).to.be.below(10_000)
  })

  it('wait() with callbacks reconnects when the job is still running, then gives up with StreamIdleError (no hang)', async () => {
    const { MercatoClient } = await import('../../src/client/index.js')
    const counter = { streams: 0 }
    const client = new MercatoClient({ url: 'http://x', fetch: silent('running', counter), streamIdleMs: 100 })
    const err = await client.wait('j', { onEvent: () => {} }).then(() => null, (e: Error) => e)
    expect(err?.name).to.equal('StreamIdleError')
    expect(counter.streams).to.equal(6)
  })

  it('wait() returns the job when it ended while its stream was silent', async () => {
    const { MercatoClient } = await import('../../src/client/index.js')
    const client = new MercatoClient({ url: 'http://x', fetch: silent('completed', { streams: 0 }), streamIdleMs: 100 })
    expect((await client.wait('j', { onEvent: () => {} })).status).to.equal('completed')
  })

  it('wait() without callbacks long-polls GET /v1/jobs/:id?wait= (no event stream) until the job ends; a node that answers at once is not asked in a busy loop', async () => {
    const { MercatoClient } = await import('../../src/client/index.js')
    const asked: string[] = []
    const fake = (async (url: string) => {
      asked.push(url)
      // an older node: ignores `wait` and answers at once, running twice, then completed
      const status = asked.length < 3 ? 'running' : 'completed'
      return new Response(JSON.stringify({ id: 'j', status }), { status: 200, headers: { 'content-type': 'application/json' } })
    }) as typeof fetch
    const t0 = Date.now()
    expect((await new MercatoClient({ url: 'http://x', fetch: fake, timeoutMs: 10_000 }).wait('j')).status).to.equal('completed')
    expect(asked).to.deep.equal(Array(3).fill('http://x/v1/jobs/j?wait=5000'))
    expect(Date.now() - t0, 'pauses (250 ms, then 500) between answers that came at once').to.be.at.least(700)
  })

  it('wait() without callbacks retries a broken connection, and stops at once when its signal aborts', async () => {
    const { MercatoClient } = await import('../../src/client/index.js')
    let calls = 0
    const flaky = (async () => {
      if (++calls === 1) throw new TypeError('fetch failed')
      return new Response(JSON.stringify({ id: 'j', status: 'completed' }), { status: 200, headers: { 'content-type': 'application/json' } })
    }) as unknown as typeof fetch
    expect((await new MercatoClient({ url: 'http://x', fetch: flaky }).wait('j')).status).to.equal('completed')
    expect(calls).to.equal(2)
    const running = (async () => new Response(JSON.stringify({ id: 'j', status: 'running' }), { status: 200, headers: { 'content-type': 'application/json' } })) as unknown as typeof fetch
    const ac = new AbortController()
    setTimeout(() => { ac.abort(new Error('stop')) }, 300)
    const t0 = Date.now()
    const err = await new MercatoClient({ url: 'http://x', fetch: running }).wait('j', { signal: ac.signal }).then(() => null, (e: Error) => e)
    expect(err?.message).to.equal('stop')
    expect(Date.now() - t0).to.be.below(2_000)
  })
})
