/**
 * The gateway against clients that misbehave, over real sockets: a request body that stalls is cut
 * after `gateway.idleTimeoutMs` (an upload's staging dir with it) while a slow but steady upload
 * and an event stream outlive that timeout; past `maxConnections` a new connection is closed; an
 * abandoned upload is not the node's error; a malformed request at the HTTP level, a job `input`
 * the ledger would refuse, and an audit of something that is not another peer are 400s in the
 * gateway's one error shape.
 */
import { expect } from 'chai'
import { connect, type Socket } from 'node:net'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { MercatoNode } from '../../src/node.js'
import { startGateway, type GatewayNode } from '../../src/gateway/index.js'
import { MAX_INPUT_DEPTH } from '../../src/auction/requester/job.js'
import { configureLogger } from '../../src/logger.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { expectError } from './helpers.js'

const IDLE_MS = 1000

interface RawExchange { text: string, closedAfterMs: number }

/** Open a raw connection to `url`'s port and write `head` (and `body`, if any). */
function open (url: string, head: string, body?: Uint8Array): { socket: Socket, done: Promise<RawExchange> } {
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  const t0 = performance.now()
  let text = ''
  socket.on('data', (d) => { text += d.toString('latin1') })
  socket.on('error', () => {})
  const done = new Promise<RawExchange>((resolve) => { socket.on('close', () => { resolve({ text, closedAfterMs: performance.now() - t0 }) }) })
  socket.write(head)
  if (body != null) socket.write(body)
  return { socket, done }
}

/** The status and JSON body of a raw HTTP answer. */
function parseAnswer (text: string): { statusCode: number, body: string, head: string } {
  const i = text.indexOf('\r\n\r\n')
  const head = text.slice(0, i)
  return { statusCode: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]), body: text.slice(i + 4), head }
}

async function stagingOf (node: MercatoNode): Promise<string[]> {
  return await readdir(join(node.config.dataDir, 'blobs', 'staging')).catch(() => [])
}

describe('gateway vs hostile clients (real sockets)', function () {
  this.timeout(60_000)
  let requester: MercatoNode
  let provider: MercatoNode
  let url: string

  before(async () => {
    provider = await startTestNode({ price: 4 })
    requester = await startTestNode({ provide: false, gateway: true, bootstrap: provider.network.addresses(), config: { gateway: { idleTimeoutMs: IDLE_MS } } })
    url = requester.gateway!.url
    await waitFor(() => requester.market.providers().some(p => p.peerId === provider.peerId), 15_000, 50)
  })
  after(async () => { await stopNodes() })

  describe('idle timeout (gateway.idleTimeoutMs)', () => {
    it('closes a connection whose body never comes, within the timeout', async () => {
      const { done } = open(url, 'POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n')
      const { closedAfterMs } = await done
      expect(closedAfterMs).to.be.within(IDLE_MS * 0.8, IDLE_MS + 1500)
    })

    it('cuts an upload that stops mid-body and removes its staging dir', async () => {
      const { socket, done } = open(url, `POST /v1/blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${1024 * 1024}\r\n\r\n`, new Uint8Array(300 * 1024).fill(7))
      await waitFor(async () => (await stagingOf(requester)).length > 0, 5000, 20)
      const { closedAfterMs } = await done
      expect(socket.destroyed).to.equal(true)
      expect(closedAfterMs).to.be.within(IDLE_MS * 0.8, IDLE_MS + 1500)
      await waitFor(async () => (await stagingOf(requester)).length === 0, 2000, 20)
    })

    it('lets a slow upload that keeps sending finish, however long it takes', async () => {
      const chunk = new Uint8Array(16 * 1024).fill(3)
      const parts = 12 // one every IDLE_MS / 3: 4 timeouts' worth in all
      const { socket, done } = open(url, `POST /v1/blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${parts * chunk.length}\r\nConnection: close\r\n\r\n`)
      const t0 = performance.now()
      for (let i = 0; i < parts; i++) {
        await sleep(IDLE_MS / 3)
        socket.write(chunk)
      }
      const answer = parseAnswer((await done).text)
      expect(performance.now() - t0).to.be.greaterThan(IDLE_MS * 3)
      expect(answer.statusCode, answer.body).to.equal(201)
      expect(JSON.parse(answer.body).size).to.equal(parts * chunk.length)
    })

    it('keeps an event stream open past the timeout', async () => {
      for (const path of ['/v1/events']) {
        const { socket, done } = open(url, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
        let closed = false
        void done.then(() => { closed = true })
        await sleep(IDLE_MS * 2.5)
        expect(closed, `${path} still open after ${IDLE_MS * 2.5} ms`).to.equal(false)
        socket.destroy()
        expect(parseAnswer((await done).text).statusCode).to.equal(200)
      }
    })

    it('answers a long poll that waits past the timeout', async () => {
      const res = await fetch(`${url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ engine: 'js', source: 'function main () { return 1 }', maxPrice: 10, queueTimeoutMs: 60_000, constraints: 'region=nowhere' }) })
      expect(res.status).to.equal(202)
      const { id } = await res.json() as { id: string }
      const t0 = performance.now()
      const job = await fetch(`${url}/v1/jobs/${id}?wait=${IDLE_MS * 2}`, { signal: AbortSignal.timeout(IDLE_MS * 10) })
      expect(job.status).to.equal(200)
      expect(performance.now() - t0).to.be.greaterThan(IDLE_MS * 1.8)
      await fetch(`${url}/v1/jobs/${id}`, { method: 'DELETE' })
    })
  })

  it('closes a connection past gateway.maxConnections as it arrives', async () => {
    const node: GatewayNode = { info: () => ({ peerId: 'x', addresses: [], version: '0', provider: { enabled: false } }), peers: () => [], connect: async () => { throw new Error('no') } }
    const gw = await startGateway({ node, port: 0, maxConnections: 2 })
    try {
      const held = [open(gw.url, 'GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n'), open(gw.url, 'GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n')]
      await sleep(100)
      const third = await open(gw.url, 'GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n').done
      expect(third.text).to.equal('')
      for (const h of held) h.socket.destroy()
      await Promise.all(held.map(async h => await h.done))
      await sleep(50)
      expect((await fetch(`${gw.url}/v1/node`)).status).to.equal(200)
    } finally {
      await gw.stop()
    }
  })

  it('an abandoned upload is not logged as an error', async () => {
    const lines: string[] = []
    configureLogger({ level: 'warn', destination: new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } }) })
    try {
      for (let i = 0; i < 3; i++) {
        const { socket, done } = open(url, 'POST /v1/blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n', new Uint8Array(1000))
        await sleep(50)
        socket.destroy()
        await done
      }
      await sleep(200)
      await waitFor(async () => (await stagingOf(requester)).length === 0, 2000, 20)
    } finally {
      configureLogger({ level: 'silent' })
    }
    expect(lines.filter(l => l.includes('"level":50')), lines.join('')).to.deep.equal([])
  })

  it('answers requests Node\'s HTTP parser refuses in the one error shape, and closes the connection', async () => {
    const cases: Record<string, [string, number, string]> = {
      'bad header line': ['GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n', 400, 'invalid-request'],
      'NUL in the path': ['GET /v1/jobs/a\u0000b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 400, 'invalid-request'],
      'bad Content-Length': ['POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}', 400, 'invalid-request'],
      'two Content-Lengths': ['POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}', 400, 'invalid-request'],
      'Content-Length and Transfer-Encoding': ['POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}', 400, 'invalid-request'],
      'bad chunk framing': ['POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n', 400, 'invalid-request'],
      'headers too large': [`GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers-too-large']
    }
    for (const [name, [request, status, code]] of Object.entries(cases)) {
      const { text, closedAfterMs } = await open(url, request).done
      const answer = parseAnswer(text)
      expect(answer.head, name).to.match(new RegExp(`^HTTP/1.1 ${status} [A-Z]`))
      expect(answer.head.toLowerCase(), name).to.include('content-type: application/json')
      expectError(answer, status, code)
      expect(closedAfterMs, `${name}: closed at once`).to.be.below(IDLE_MS)
    }
  })

  it(`refuses a job input nested deeper than the ledger takes (${MAX_INPUT_DEPTH} levels run, one more is a 400)`, async () => {
    const nested = (d: number): string => '['.repeat(d) + '1' + ']'.repeat(d)
    const source = 'function main (i) { let d = 0; while (Array.isArray(i)) { i = i[0]; d++ } return d }'
    const submit = async (d: number): Promise<Response> => await fetch(`${url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"engine":"js","source":${JSON.stringify(source)},"maxPrice":10,"input":${nested(d)}}` })

    const records = requester.ledger.head().count
    for (const d of [MAX_INPUT_DEPTH + 1, MAX_INPUT_DEPTH + 100, 5000]) {
      const res = await submit(d)
      expectError({ statusCode: res.status, body: await res.text() }, 400, 'invalid-spec')
    }
    expect(requester.ledger.head().count, 'a refused job writes nothing').to.equal(records)
    const refused = await (await submit(MAX_INPUT_DEPTH + 1)).json() as any
    expect(refused.error.message).to.match(new RegExp(`^input: nests deeper than ${MAX_INPUT_DEPTH} levels`))

    const res = await submit(MAX_INPUT_DEPTH)
    expect(res.status).to.equal(202)
    const { id } = await res.json() as { id: string }
    const job = await (await fetch(`${url}/v1/jobs/${id}?wait=20000`)).json() as any
    expect(job.status).to.equal('completed')
    const result = await (await fetch(`${url}/v1/jobs/${id}/result`)).json() as any
    expect(result.output).to.equal(MAX_INPUT_DEPTH)
  })

  it('GET /v1/ledger/audit/:peer: 400 invalid-peer for what is not another peer, before any dial', async () => {
    const me = requester.peerId
    const other = provider.peerId
    const bad = ['/garbage', '/', `/ip4/999.1.1.1/tcp/1/p2p/${other}`, '/ip4/127.0.0.1/tcp/1/p2p/notapeer', '/ip4/127.0.0.1/tcp/1', me, `/p2p/${me}`, `/ip4/127.0.0.1/tcp/1/p2p/${me}`]
    for (const peer of bad) {
      const res = await fetch(`${url}/v1/ledger/audit/${encodeURIComponent(peer)}`)
      expectError({ statusCode: res.status, body: await res.text() }, 400, 'invalid-peer')
    }
  })
})
