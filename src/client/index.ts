/**
 * `mercato/client`: a typed client for a Mercato node's HTTP gateway, the
 * way apps (and the `mercato` CLI) submit jobs and follow them.
 *
 * It needs nothing but `fetch` (Node 20+, Deno, Bun, browsers). Every method
 * takes an optional `{ signal }`; ordinary requests also time out after 30 s.
 * A job is followed through its server-sent event stream
 * (`GET /v1/jobs/:id/events`: past events replayed, then live ones), so
 * `wait()` never polls.
 *
 * ```ts
 * import { readFile } from 'node:fs/promises'
 * import { MercatoClient, MercatoApiError } from 'mercato/client'
 *
 * const client = new MercatoClient() // http://127.0.0.1:8420
 * const module = await client.uploadBlob(await readFile('hello.wasm'))
 * const { id } = await client.submit({ engine: 'wasm', module, args: ['world'], maxPrice: 5 })
 * const job = await client.wait(id, { onEvent: (e) => { console.log(e.type) } })
 * if (job.status === 'completed') {
 *   const result = await client.result(id)
 *   process.stdout.write(result.stdout)
 * } else {
 *   console.log(job.status, job.error, job.declines)
 * }
 *
 * // inline JavaScript: `main(input)`'s return value is the output
 * const js = await client.submit({ engine: 'js', source: 'function main (i) { return i.a + i.b }', input: { a: 1, b: 2 } })
 * await client.wait(js.id)
 * console.log((await client.result(js.id)).output) // 3
 *
 * try { await client.job('nope') } catch (err) {
 *   if (err instanceof MercatoApiError && err.code === 'job-not-found') { ... }
 * }
 * ```
 *
 * Authentication: a gateway bound to loopback needs no token unless its
 * config says so. Bound to any other address it wants the bearer token in
 * `<dataDir>/gateway.token`: pass `{ token }` or set `MERCATO_API_TOKEN`.
 *
 * Errors: the gateway's `{ "error": { "code", "message" } }` becomes a
 * {@link MercatoApiError} (`code`, `status`, `message`); no answer at all
 * (connection refused, unknown host, timeout) is a
 * {@link MercatoConnectionError}.
 */
import { TERMINAL, type JobEvent, type JobStatus, type JobView, type LogEvent, type ResultView, type SubmitSpec } from '../auction/types.js'
import type { PeerStanding } from '../auction/index.js'
import type { NodeInfo, PeerView } from '../gateway/index.js'
import { DEFAULT_URL, ENV_TOKEN, REQUEST_TIMEOUT_MS, STREAM_IDLE_MS, WAIT_POLL_MS } from './constants.js'
import { MercatoApiError, MercatoConnectionError } from './errors.js'
import { readSse } from './sse.js'
import { retrying, sleep } from './retry.js'
import { cidOfRaw, isRawCid } from './cid.js'
import { submitMany, type BatchAnswer, type ManyOptions, type ManyResult } from './many.js'

export { MercatoApiError, MercatoConnectionError, StreamIdleError } from './errors.js'
export { cidOfRaw } from './cid.js'
export { DEFAULT_URL, ENV_URL, ENV_TOKEN, REQUEST_TIMEOUT_MS, STREAM_IDLE_MS } from './constants.js'
export { readSse, type SseMessage } from './sse.js'
export { BadInput, type BatchAnswer, type ManyOptions, type ManyProgress, type ManyResult } from './many.js'
export type { JobEvent, JobEventType, JobStatus, JobView, LogEvent, ResultView, AttemptView } from '../auction/types.js'
/** An output file of a job: its path, CID (CIDv1 raw sha2-256) and size. */
export type OutputRef = ResultView['outputs'][number]
export type { NodeInfo, PeerView } from '../gateway/index.js'
export type { PeerStanding } from '../auction/index.js'

/** The statuses a job ends in. */
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = TERMINAL

/** A job as sent to `POST /v1/jobs`. */
export interface JobSpec extends Omit<SubmitSpec, 'stdin'> {
  /** bytes, or a string that is already base64 (as the HTTP API takes it) */
  stdin?: Uint8Array | string
}

export interface ProviderView {
  peerId: string
  engines: string[]
  /** what its advert says of it (`{ region: 'eu' }`); absent when the node holds no advert of it */
  labels?: Record<string, string>
  /** the last price this provider bid on one of our jobs */
  lastAsk: number | null
  /** this node itself */
  self: boolean
  standing: PeerStanding | null
  /** its capacity advert as the node holds it (null: none heard) */
  advert?: { ask: number, slots: number, expires: number } | null
}

export interface BalanceView {
  peerId: string
  earned: number
  spent: number
  balance: number
}

export interface ClientOptions {
  /** the gateway, default `http://127.0.0.1:8420` */
  url?: string
  /** bearer token; default `$MERCATO_API_TOKEN` */
  token?: string
  /** per-request timeout for everything but the event stream (default 30 s) */
  timeoutMs?: number
  /** an event stream silent this long (no event, no keep-alive) is dead (default 45 s; 0: never) */
  streamIdleMs?: number
  /** a fetch to use instead of the global one */
  fetch?: typeof fetch
}

export interface CallOptions {
  signal?: AbortSignal
}

export interface WaitOptions extends CallOptions {
  /** every event of the job, past ones first */
  onEvent?: (event: JobEvent) => void
  /** live output while the job runs (`log` events; see {@link MercatoClient.logs}) */
  onLog?: (event: LogEvent) => void
}

function env (name: string): string | undefined {
  return typeof process !== 'undefined' ? process.env?.[name] : undefined
}

function toBase64 (bytes: Uint8Array): string {
  if (typeof Buffer !== 'undefined') return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
  let s = ''
  for (const b of bytes) s += String.fromCharCode(b)
  return btoa(s)
}

/** A spec as the API takes it: stdin bytes as base64. */
function bodyOf (spec: JobSpec): Record<string, unknown> {
  const body: Record<string, unknown> = { ...spec }
  if (spec.stdin instanceof Uint8Array) body.stdin = toBase64(spec.stdin)
  return body
}

export class MercatoClient {
  readonly url: string
  private readonly token?: string
  private readonly timeoutMs: number
  private readonly streamIdleMs: number
  private readonly fetch: typeof fetch

  constructor (opts: ClientOptions = {}) {
    this.url = (opts.url ?? DEFAULT_URL).replace(/\/+$/, '')
    this.token = opts.token ?? env(ENV_TOKEN)
    this.timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS
    this.streamIdleMs = opts.streamIdleMs ?? STREAM_IDLE_MS
    this.fetch = opts.fetch ?? globalThis.fetch.bind(globalThis)
  }

  /** This node: PeerId, addresses, version, provider settings. */
  async node (opts?: CallOptions): Promise<NodeInfo> {
    return await this.json('GET', '/v1/node', opts)
  }

  /** The peers this node is connected to. */
  async peers (opts?: CallOptions): Promise<PeerView[]> {
    return await this.json('GET', '/v1/peers', opts)
  }

  /** Connect the node to the peer at `address`, a multiaddr ending in /p2p/<PeerId>; resolves with its PeerId once connected. */
  async connect (address: string, opts?: CallOptions): Promise<{ peerId: string }> {
    return await this.json('POST', '/v1/peers', { ...opts, json: { address } })
  }

  /** Providers this node knows, with engines, last ask and standing. */
  async providers (opts?: CallOptions): Promise<ProviderView[]> {
    return await this.json('GET', '/v1/providers', opts)
  }

  /** This node's credits earned and spent. */
  async balance (opts?: CallOptions): Promise<BalanceView> {
    return await this.json('GET', '/v1/balance', opts)
  }

  /** Store bytes (a wasm module) or a stream of them on the node; returns their CID. */
  async uploadBlob (data: Uint8Array | AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>, opts?: CallOptions): Promise<string> {
    return (await this.upload(data, opts)).cid
  }

  /**
   * Stop keeping a blob uploaded to this node (or an output file of its jobs): it becomes cache,
   * removed when the node's store needs room. Throws MercatoApiError `not-found` when it was not kept.
   */
  async releaseBlob (cid: string, opts?: CallOptions): Promise<void> {
    await this.json('DELETE', `/v1/blobs/${encodeURIComponent(cid)}`, opts)
  }

  /**
   * Store bytes on the node and return `{ cid, size }`. A stream (a Node ReadStream, a web
   * ReadableStream, any async iterable of chunks) is sent as it is read, never held whole; the
   * node refuses more than its `gateway.maxUploadBytes` (413, `blob-too-large`). The CID is the
   * one `ipfs add --cid-version 1` computes for the same bytes.
   */
  async upload (data: Uint8Array | AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>, opts?: CallOptions): Promise<{ cid: string, size: number }> {
    const streamed = !(data instanceof Uint8Array)
    const res = await this.request('POST', '/v1/blobs', {
      ...opts,
      // a copy on its own ArrayBuffer: BodyInit does not take views of a SharedArrayBuffer
      body: streamed ? toReadableStream(data) : new Uint8Array(data) as Uint8Array<ArrayBuffer>,
      headers: { 'content-type': 'application/octet-stream' },
      // a large upload takes as long as it takes; the caller's signal still stops it
      stream: streamed
    })
    return await res.json() as { cid: string, size: number }
  }

  /** Upload a file, streamed from disk (Node.js); returns `{ cid, size }`. */
  async uploadFile (path: string, opts?: CallOptions): Promise<{ cid: string, size: number }> {
    const { createReadStream } = await import('node:fs')
    return await this.upload(createReadStream(path, { highWaterMark: 256 * 1024 }), opts)
  }

  /** Announce a job; the auction runs on the node. */
  async submit (spec: JobSpec, opts?: CallOptions): Promise<{ id: string, status: JobStatus }> {
    return await this.json('POST', '/v1/jobs', { ...opts, json: bodyOf(spec) })
  }

  /**
   * Announce a batch of jobs in one request (at most 256): one answer per spec, in order,
   * `{ id, status }` or `{ error: { code, message } }` (a bad spec does not fail the others).
   */
  async submitBatch (specs: JobSpec[], opts?: CallOptions): Promise<BatchAnswer[]> {
    return await this.json('POST', '/v1/jobs', { ...opts, json: specs.map(bodyOf) })
  }

  /**
   * One job per input: `{ ...spec, input }`, at most `parallel` (64) in flight, each with the
   * idempotency key `<keyPrefix>:<index>` (nothing is started twice, even when a batch is sent
   * again). Yields the results in input order as soon as the ones before them are in. An input
   * that is a {@link BadInput} is yielded as an `invalid` result, never submitted. See many.ts.
   *
   * ```ts
   * for await (const r of client.submitMany({ engine: 'js', source }, [{ x: 1 }, { x: 2 }])) console.log(r.index, r.output)
   * ```
   */
  submitMany (spec: JobSpec, inputs: Iterable<unknown> | AsyncIterable<unknown>, opts?: ManyOptions): AsyncGenerator<ManyResult> {
    return submitMany(this, spec, inputs, opts)
  }

  /** Every job event of the node, live (`GET /v1/events`), until the signal aborts; `onOpen` once the stream is open. */
  async * allEvents (opts: CallOptions & { onOpen?: () => void } = {}): AsyncGenerator<JobEvent> {
    const res = await this.request('GET', '/v1/events', { ...opts, stream: true, headers: { accept: 'text/event-stream' } })
    opts.onOpen?.()
    if (res.body == null) return
    for await (const msg of readSse(res.body, opts.signal, this.streamIdleMs)) {
      let event: JobEvent
      try { event = JSON.parse(msg.data) } catch { continue }
      yield event
    }
  }

  /** A job: status, bids, attempts, declines, price, latency. */
  async job (id: string, opts?: CallOptions): Promise<JobView> {
    return await this.json('GET', `/v1/jobs/${encodeURIComponent(id)}`, opts)
  }

  /** This node's jobs, newest first; `labels`: only jobs carrying every one of them. */
  async jobs (query: { status?: JobStatus, limit?: number, labels?: Record<string, string> } = {}, opts?: CallOptions): Promise<JobView[]> {
    const q = new URLSearchParams()
    if (query.status != null) q.set('status', query.status)
    for (const [k, v] of Object.entries(query.labels ?? {})) q.append('label', `${k}=${v}`)
    if (query.limit != null) q.set('limit', String(query.limit))
    const qs = q.toString()
    return await this.json('GET', `/v1/jobs${qs === '' ? '' : `?${qs}`}`, opts)
  }

  /** A finished job's result; a MercatoApiError with status 409 while it is not finished. */
  async result (id: string, opts?: CallOptions): Promise<ResultView> {
    return await this.json('GET', `/v1/jobs/${encodeURIComponent(id)}/result`, opts)
  }

  /** A finished job's output files (path, CID, size), sorted by path; empty when it wrote none (409 while it runs). */
  async outputs (id: string, opts?: CallOptions): Promise<OutputRef[]> {
    return await this.json('GET', `/v1/jobs/${encodeURIComponent(id)}/outputs`, opts)
  }

  /**
   * Download one output file of a finished job into memory. Streams it, calling
   * `onProgress(received, total)` as bytes arrive; never takes more than
   * the size the job's result names. A whole file named by a raw CID (`bafkrei…`: an output
   * under 256 KiB, or one from an older release) is checked against it here (a mismatch is a
   * MercatoApiError `output-mismatch`); a larger UnixFS file (`bafybei…`) was checked block by block
   * by the node, and here by its size. A `range` ({ start, end? }, inclusive) asks for part of it
   * (206), which is not checked. `file` is a path, or an entry of {@link outputs}. For files too
   * large to hold, use {@link streamOutput}.
   */
  async downloadOutput (id: string, file: string | OutputRef, opts: CallOptions & { range?: { start: number, end?: number }, onProgress?: (received: number, total: number) => void } = {}): Promise<Uint8Array> {
    const ref = typeof file === 'string' ? await this.outputRef(id, file, opts) : file
    const { total, content } = await this.streamOutput(id, ref, opts)
    const out = new Uint8Array(total)
    let received = 0
    for await (const chunk of content) {
      out.set(chunk, received)
      received += chunk.length
      opts.onProgress?.(received, out.length)
    }
    if (opts.range == null && isRawCid(ref.cid) && await cidOfRaw(out) !== ref.cid) throw new MercatoApiError(`output ${ref.path} does not match its CID ${ref.cid}`, 'output-mismatch', 502)
    return out
  }

  /**
   * Stream one output file of a finished job (or a `range` of it): `total` is the number of bytes
   * to expect, `content` yields them as they arrive and throws a MercatoApiError `output-mismatch`
   * when more or fewer arrive. It does not check the CID (the node checked every block against it
   * as it read them); a caller that wants to can hash what it receives (`mercato get` does).
   */
  async streamOutput (id: string, file: string | OutputRef, opts: CallOptions & { range?: { start: number, end?: number } } = {}): Promise<{ ref: OutputRef, total: number, content: AsyncIterable<Uint8Array> }> {
    const ref = typeof file === 'string' ? await this.outputRef(id, file, opts) : file
    const path = ref.path
    const headers: Record<string, string> = { accept: '*/*' }
    if (opts.range != null) headers.range = `bytes=${opts.range.start}-${opts.range.end ?? ''}`
    const url = `/v1/jobs/${encodeURIComponent(id)}/outputs/${path.split('/').map(encodeURIComponent).join('/')}`
    const res = await this.request('GET', url, { signal: opts.signal, headers, stream: true })
    const total = Math.min(opts.range != null ? Number(res.headers.get('content-length') ?? ref.size) : ref.size, ref.size)
    const body = res.body
    async function * content (): AsyncGenerator<Uint8Array> {
      let received = 0
      if (body != null) {
        for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
          if (received + chunk.length > total) throw new MercatoApiError(`output ${path} is longer than the ${total} bytes expected`, 'output-mismatch', 502)
          received += chunk.length
          yield chunk
        }
      }
      if (received !== total) throw new MercatoApiError(`output ${path}: ${received} of ${total} bytes arrived`, 'output-mismatch', 502)
    }
    return { ref, total, content: content() }
  }

  private async outputRef (id: string, path: string, opts?: CallOptions): Promise<OutputRef> {
    const ref = (await this.outputs(id, opts)).find(o => o.path === path)
    if (ref == null) throw new MercatoApiError(`job ${id} has no output ${JSON.stringify(path)}`, 'not-found', 404)
    return ref
  }

  /** Cancel a job that has not finished (409 when it has). */
  async cancel (id: string, opts?: CallOptions): Promise<JobView> {
    return await this.json('DELETE', `/v1/jobs/${encodeURIComponent(id)}`, opts)
  }

  /**
   * A job's events: the past ones, then live ones until the job ends (the
   * server's `end` event closes the iteration). Breaking out of the loop or
   * aborting the signal closes the connection. While the job runs they
   * include `log` events (its live output; the last few KiB replayed first).
   * A stream on which nothing arrives for `streamIdleMs` (45 s: three of the
   * gateway's keep-alives missed) is closed with a {@link StreamIdleError}.
   */
  async * events (id: string, opts: CallOptions = {}): AsyncGenerator<JobEvent | LogEvent> {
    const res = await this.request('GET', `/v1/jobs/${encodeURIComponent(id)}/events`, { ...opts, stream: true, headers: { accept: 'text/event-stream' } })
    if (res.body == null) return
    for await (const msg of readSse(res.body, opts.signal, this.streamIdleMs)) {
      if (msg.event === 'end') return
      let event: JobEvent | LogEvent
      try { event = JSON.parse(msg.data) } catch { continue }
      yield event
    }
  }

  /**
   * Follow a job's live output until the job ends: `log` events (stream,
   * text, attempt, provider). A runner-up's logs start over with its own
   * `attempt`. They are a live view, capped by the provider and this node
   * (`dropped` / `capped` say when something was left out); the full
   * stdout/stderr are in {@link result}.
   */
  async * logs (id: string, opts: CallOptions = {}): AsyncGenerator<LogEvent> {
    for await (const e of this.events(id, opts)) if (e.type === 'log') yield e
  }

  /**
   * Follow a job until it ends and return it (completed, failed, no-bids or
   * cancelled). Without `onEvent` or `onLog` it asks `GET /v1/jobs/:id?wait=`
   * (a long poll: one answer when the job ends, asked again every 15 s while it
   * runs; at most half the request timeout). With either it uses the event
   * stream; if the stream breaks before the end (or goes silent:
   * {@link StreamIdleError}) it asks the node for the job and reconnects,
   * skipping the events already seen (at most five times).
   */
  async wait (id: string, opts: WaitOptions = {}): Promise<JobView> {
    // nothing to hand on but the end: long polls, one answer each, instead of an event stream
    if (opts.onEvent == null && opts.onLog == null) return await this.waitForEnd(id, opts)
    let seen = 0
    // a reconnected stream replays the job's steps (skipped by count) and a tail of its logs (skipped by time)
    let lastLogTs = 0
    for (let tries = 0; ; tries++) {
      let ended = false
      try {
        let i = 0
        for await (const e of this.events(id, opts)) {
          if (e.type === 'log') {
            if (e.ts <= lastLogTs && tries > 0) continue
            lastLogTs = Math.max(lastLogTs, e.ts)
            opts.onLog?.(e)
            continue
          }
          if (i++ < seen) continue
          seen++
          opts.onEvent?.(e)
        }
        ended = true
      } catch (err) {
        // a broken stream (not a refused connection or an API error): look, then retry
        if (opts.signal?.aborted === true || err instanceof MercatoApiError || err instanceof MercatoConnectionError || tries >= 5) throw err
      }
      const job = await this.job(id, opts)
      if (TERMINAL_STATUSES.has(job.status)) return job
      if (ended && tries >= 5) throw new MercatoConnectionError(this.url, new Error(`the event stream of job ${id} keeps ending before the job does`))
      await new Promise(resolve => setTimeout(resolve, Math.min(100 * 2 ** tries, 2000)))
    }
  }

  /**
   * The job once it has ended, by `GET /v1/jobs/:id?wait=` (each answered when it ends or after the
   * wait). A broken connection or a 5xx is tried again (`retrying`, as `submitMany()` does); a node
   * that answers at once (one from before long polls ignores `wait`) is asked again after a pause
   * that grows to 2 s, not in a busy loop.
   */
  private async waitForEnd (id: string, opts: CallOptions): Promise<JobView> {
    const wait = Math.max(1, Math.floor(Math.min(WAIT_POLL_MS, this.timeoutMs / 2)))
    let quick = 0
    for (;;) {
      const asked = Date.now()
      const job = await retrying(async () => await this.json<JobView>('GET', `/v1/jobs/${encodeURIComponent(id)}?wait=${wait}`, opts), opts.signal)
      if (TERMINAL_STATUSES.has(job.status)) return job
      quick = Date.now() - asked < wait / 2 ? quick + 1 : 0
      if (quick > 0) await sleep(Math.min(250 * 2 ** (quick - 1), 2000), opts.signal)
      opts.signal?.throwIfAborted()
    }
  }

  private async json<T> (method: string, path: string, opts: CallOptions & { json?: unknown } = {}): Promise<T> {
    const res = await this.request(method, path, {
      signal: opts.signal,
      body: opts.json !== undefined ? JSON.stringify(opts.json) : undefined,
      headers: opts.json !== undefined ? { 'content-type': 'application/json' } : undefined
    })
    return await res.json() as T
  }

  private async request (method: string, path: string, opts: CallOptions & { body?: BodyInit, headers?: Record<string, string>, stream?: boolean } = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers }
    if (this.token != null && this.token !== '') headers.authorization = `Bearer ${this.token}`
    const timeout = opts.stream === true ? undefined : AbortSignal.timeout(this.timeoutMs)
    const signals = [opts.signal, timeout].filter((s): s is AbortSignal => s != null)
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0]
    let res: Response
    try {
      // a streamed body needs `duplex: 'half'` (fetch's rule for request streams)
      const init: RequestInit & { duplex?: 'half' } = { method, headers, body: opts.body, signal }
      if (opts.body instanceof ReadableStream) init.duplex = 'half'
      res = await this.fetch(this.url + path, init)
    } catch (err: any) {
      if (opts.signal?.aborted === true) throw err
      if (timeout?.aborted === true) throw new MercatoConnectionError(this.url, new Error(`no answer in ${this.timeoutMs} ms`))
      throw new MercatoConnectionError(this.url, err?.cause ?? err)
    }
    if (!res.ok) {
      const text = await res.text().catch(() => '')
      let code = `http-${res.status}`
      let message = text !== '' ? text : res.statusText
      try {
        const body = JSON.parse(text)
        if (typeof body?.error?.code === 'string') code = body.error.code
        if (typeof body?.error?.message === 'string') message = body.error.message
      } catch {}
      throw new MercatoApiError(message, code, res.status)
    }
    return res
  }
}

/** A web ReadableStream of the chunks (pulled one at a time: backpressure reaches the source). */
function toReadableStream (data: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>): ReadableStream<Uint8Array<ArrayBuffer>> {
  if (data instanceof ReadableStream) return data as ReadableStream<Uint8Array<ArrayBuffer>>
  const it = data[Symbol.asyncIterator]()
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull (controller) {
      const { value, done } = await it.next()
      if (done === true) controller.close()
      else controller.enqueue(new Uint8Array(value.buffer as ArrayBuffer, value.byteOffset, value.byteLength))
    },
    async cancel (reason) { await it.return?.(reason) }
  })
}
