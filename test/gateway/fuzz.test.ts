/**
 * Fuzz: 2,000 random and malformed requests (methods, paths, headers,
 * bodies: huge and odd JSON, bad base64, wrong types, raw bytes) against a
 * real gateway listening on 127.0.0.1:0. No answer may be a 5xx, every
 * error must be the one JSON shape, and the node must still serve
 * /v1/node afterwards. Seeded, so a failure can be replayed.
 */
import { expect } from 'chai'
import { request, Agent } from 'node:http'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes } from '../helpers/nodes.js'
import { mulberry32 } from '../helpers/random.js'

const COUNT = 2_000
const CONCURRENCY = 16
const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed)

const rng = mulberry32

interface Case { method: string, path: string, headers: Record<string, string>, body?: Buffer }

function makeCases (count: number, seed: number): Case[] {
  const r = rng(seed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]
  const int = (n: number): number => Math.floor(r() * n)
  const junk = (n: number): string => Array.from({ length: n }, () => String.fromCharCode(int(0x2fff) + 1)).join('')
  const ids = ['x', 'bafy', 'bafyreigbengrg52se7yiorfggas3wsu44bbtjae2v6ggwtxpdvu3zqjeeq', '0', '-1', '99999999999999999999', '%00', '%zz', '..%2f..%2fetc%2fpasswd', 'a'.repeat(3000), encodeURIComponent(junk(5)), '12D3KooWGPFoaCY4Tha7XDi86tHbUqurrXWKBzesp4W9KajrrMYu', '%2Fip4%2F127.0.0.1%2Ftcp%2F1']
  const paths = [
    '/', '/v1/node', '/v1/peers', '/v1/jobs', '/v1/jobs/:id', '/v1/jobs/:id/result', '/v1/jobs/:id/events', '/v1/blobs', '/v1/blobs/:id',
    '/v1/providers', '/v1/balance', '/v1/ledger', '/v1/ledger/head', '/v1/ledger/records/:id', '/v1/ledger/flagged', '/v1/ledger/audit/:id',
    '/metrics', '/openapi.json', '/docs', '/docs/json', '/docs/static/:id', '/v2', '/v1', '/v1/', '//v1//node', '/v1/jobs/:id/:id/:id', '/%', '/v1/jobs?limit=:id',
    '/v1/ledger?from=:id&limit=:id&type=:id&job=:id', '/v1/jobs?status=:id', '/v1/jobs?limit=1&limit=2', '/?token=:id'
  ]
  const methods = ['GET', 'GET', 'POST', 'POST', 'POST', 'DELETE', 'PUT', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'SEARCH']
  const types = ['application/json', 'application/json', 'application/json; charset=utf-8', 'application/octet-stream', 'text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', '', 'Application/JSON', 'application/ld+json', '*/*', ';;;']
  const specs = (): unknown => {
    const base: Record<string, unknown> = { engine: pick(['js', 'wasm', 'py', 1, null, ['js']]) }
    const fields: Array<[string, () => unknown]> = [
      ['source', () => pick(['function main (i) { return i }', '', 1, null, 'x'.repeat(int(5000)), { a: 1 }])],
      ['module', () => pick(['', 'bafy', 7, 'x'.repeat(200), null])],
      ['args', () => pick([[], ['a'], [1, 2], 'a', Array.from({ length: 300 }, () => 'x'), null])],
      ['env', () => pick([{}, { A: 'b' }, { A: 1 }, [], 'x', null])],
      ['stdin', () => pick(['aGVsbG8=', '***', '====', 'a', 'aGVsbG8', 123, null, '\u0000', 'A'.repeat(int(300_000))])],
      ['input', () => pick([1, 'x', null, { deep: nested(int(60)) }, [1, [2, [3]]], 1e308, -0])],
      ['limits', () => pick([{}, { timeoutMs: -1 }, { timeoutMs: 1.5 }, { memoryMb: 1e12 }, { outputBytes: '1' }, { extra: 1 }, [], null])],
      ['maxPrice', () => pick([0, -1, '5', 1e309, null, 1, 0.5])],
      ['replicas', () => pick([0, 1, 16, 2.5, '2', null])],
      ['minBids', () => pick([0, 1, 101, null])],
      ['bidWindowMs', () => pick([0, 1, 60_001, 'x', null])],
      ['__proto__', () => ({ polluted: true })],
      ['constructor', () => ({ prototype: { polluted: true } })],
      ['unknown', () => 1]
    ]
    for (const [k, v] of fields) if (r() < 0.3) base[k] = v()
    return base
  }
  let oversize: Buffer | undefined
  const nested = (depth: number): unknown => depth <= 0 ? 1 : [nested(depth - 1)]
  const body = (): Buffer | undefined => {
    switch (int(12)) {
      case 0: return undefined
      case 1: return Buffer.from(JSON.stringify(specs()))
      case 2: return Buffer.from(JSON.stringify(specs()).slice(0, int(40)))
      case 3: return Buffer.from('['.repeat(5_000 + int(50_000)))
      case 4: return Buffer.from('{"a":'.repeat(2_000) + '1' + '}'.repeat(2_000))
      case 5: return Buffer.from(JSON.stringify({ engine: 'js', source: 'x', input: 'y'.repeat(int(2_000_000)) }))
      case 6: return Buffer.from(Array.from({ length: int(4096) }, () => int(256)))
      case 7: return Buffer.from(pick(['null', 'true', '1', '"s"', '[]', '{}', '', ' ', '\ufeff{}', '{"engine":"js"}{"engine":"js"}', '{"a":1e999999}', '{"__proto__":{"x":1}}', '{"engine":"js","source":"\\ud800"}']))
      case 8: return Buffer.from(junk(int(2000)))
      case 9: return (oversize ??= Buffer.alloc(17 * 1024 * 1024, 0x20)) // over the 16 MiB limit (one buffer for every such case)
      case 10: return Buffer.from(JSON.stringify(pick([[specs()], 'a', 42, { engine: 'js', source: 'function main (){ return 1 }', maxPrice: 0 }])))
      default: return Buffer.from(JSON.stringify(specs()))
    }
  }
  const cases: Case[] = []
  for (let i = 0; i < count; i++) {
    const method = pick(methods)
    let path = pick(paths).replace(/:id/g, () => pick(ids))
    if (r() < 0.05) path += '?' + encodeURIComponent(junk(int(20))) + pick(['', '&&', '=%', '%G0', '[]=1&a[b]=2'])
    const headers: Record<string, string> = {}
    const hasBody = method !== 'GET' && method !== 'HEAD' && r() < 0.9
    const b = hasBody ? body() : undefined
    if (b != null || r() < 0.1) { const t = pick(types); if (t !== '') headers['content-type'] = t }
    if (r() < 0.08) headers.origin = pick(['http://evil.example', 'null', 'http://127.0.0.1:1', 'garbage', 'http://[::1'])
    if (r() < 0.05) headers.host = pick(['evil.example', 'localhost', '127.0.0.1:1', '[::1]:1', 'a'.repeat(300), ''])
    if (r() < 0.08) headers.authorization = pick(['Bearer', 'Bearer x', 'Basic Zm9vOmJhcg==', 'x'.repeat(1000)])
    if (r() < 0.05) headers.cookie = pick(['mercato_token=%zz', 'a=b; mercato_token=x', ';;;=', 'mercato_token'])
    if (r() < 0.05) headers['content-encoding'] = pick(['gzip', 'br', 'identity', 'x'])
    if (r() < 0.05) headers.accept = pick(['text/event-stream', '*/*', 'application/xml'])
    cases.push({ method, path, headers, body: b })
  }
  return cases
}

async function send (agent: Agent, port: number, c: Case): Promise<{ status: number, body: string, type: string }> {
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...c.headers }
    if (c.body != null) headers['content-length'] = c.body.length
    let req: ReturnType<typeof request>
    try {
      req = request({ host: '127.0.0.1', port, method: c.method, path: c.path, headers, agent, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = []
      const type = String(res.headers['content-type'] ?? '')
      // an event stream stays open: read its first bytes and hang up
      if (type.startsWith('text/event-stream')) { res.destroy(); resolve({ status: res.statusCode ?? 0, body: '', type }); return }
      res.on('data', (d: Buffer) => { if (chunks.length < 64) chunks.push(d) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), type }) })
      res.on('error', reject)
      })
    } catch (err: any) {
      // a request our own client refuses to send (unescaped path, bad header) says nothing of the server
      resolve({ status: -1, body: String(err?.code), type: '' })
      return
    }
    req.on('timeout', () => { req.destroy(new Error(`timeout: ${c.method} ${c.path}`)) })
    req.on('error', (err: any) => {
      // the server may refuse a broken request at the HTTP layer and close (e.g. a body over the limit): not a 5xx
      if (err?.code === 'ECONNRESET' || err?.code === 'EPIPE') resolve({ status: 0, body: '', type: '' })
      else if (err?.code === 'ERR_INVALID_CHAR' || err?.code === 'ERR_INVALID_HTTP_TOKEN') resolve({ status: -1, body: '', type: '' }) // refused by our own client
      else reject(err)
    })
    if (c.body != null) req.end(c.body); else req.end()
  })
}

describe('gateway fuzz', function () {
  this.timeout(180_000) // 2,000 requests: ~20 s on a quiet machine, over 60 s at load 20
  let node: MercatoNode

  before(async () => {
    node = await startTestNode({ gateway: true, price: 1 })
  })

  after(async () => { await stopNodes() })

  it(`${COUNT} random and malformed requests: no 5xx, errors in the one shape, and the node still serves`, async () => {
    const port = Number(new URL(node.gateway!.url).port)
    const cases = makeCases(COUNT, SEED)
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
    const statuses = new Map<number, number>()
    const failures: string[] = []
    const t0 = Date.now()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < cases.length) {
        const c = cases[next++]
        const res = await send(agent, port, c)
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        const what = `${c.method} ${c.path.slice(0, 80)} [${c.headers['content-type'] ?? '-'}; ${c.body?.length ?? 0} B] → ${res.status}`
        // auditing a remote log is the one route that reaches out to another peer: a peer that cannot be
        // reached is a declared upstream answer (502 peer-unreachable, 504 timeout), not a failure of ours
        const upstream = (res.status === 502 || res.status === 504) && c.path.startsWith('/v1/ledger/audit/') &&
          (c.method === 'HEAD' || /"(peer-unreachable|timeout)"/.test(res.body))
        if (res.status >= 500 && !upstream) failures.push(`${what}: ${res.body.slice(0, 200)}`)
        if (res.status >= 400 && c.method !== 'HEAD' && res.type.startsWith('application/json')) {
          try {
            const e = JSON.parse(res.body).error
            if (typeof e?.code !== 'string' || typeof e?.message !== 'string') failures.push(`${what}: not the error shape: ${res.body.slice(0, 200)}`)
          } catch { failures.push(`${what}: unparsable error body`) }
        } else if (res.status >= 400 && c.method !== 'HEAD' && res.status !== 0) {
          failures.push(`${what}: error with content-type ${res.type}`)
        }
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => { await worker() }))
    agent.destroy()
    const ms = Date.now() - t0
    expect(failures, failures.slice(0, 20).join('\n')).to.deep.equal([])
    expect([...statuses.values()].reduce((a, b) => a + b, 0)).to.equal(COUNT)
    // the gateway answered nearly everything itself (closed connections are rare: bodies over the limit)
    expect(statuses.get(0) ?? 0).to.be.lessThan(COUNT / 10)
    const after = await fetch(`${node.gateway!.url}/v1/node`)
    expect(after.status).to.equal(200)
    expect(((await after.json()) as any).peerId).to.equal(node.peerId)
    const summary = [...statuses.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}:${n}`).join(' ')
    console.log(`      ${COUNT} requests in ${ms} ms (seed ${SEED}): ${summary}`)
  })
})
