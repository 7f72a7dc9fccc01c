import '../../src/polyfill.js'
import { expect } from 'chai'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { MercatoClient, type JobEvent, type LogEvent } from '../../src/client/index.js'
import { LIVE_LOG_BYTES_PER_SEC, LIVE_LOG_MAX_BYTES } from '../../src/auction/constants.js'
import { startTestNode, stopNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { CLI, NODE_FLAGS } from '../helpers/cli.js'
import type { MercatoNode } from '../../src/node.js'

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname
/** five lines over about a second (a busy loop between them: QuickJS jobs have no timers) */
const SLOW = readFileSync(`${FIXTURES}js/slow-lines.js`, 'utf8')
const FLOOD = readFileSync(`${FIXTURES}js/flood.js`, 'utf8')
const LIMITS = { timeoutMs: 30_000, memoryMb: 32, outputBytes: 65_536 }

async function collect (client: MercatoClient, id: string): Promise<Array<JobEvent | LogEvent>> {
  const events: Array<JobEvent | LogEvent> = []
  for await (const e of client.events(id)) events.push(e)
  return events
}

const logsOf = (events: Array<JobEvent | LogEvent>): LogEvent[] => events.filter((e): e is LogEvent => e.type === 'log')
const textOf = (logs: LogEvent[], stream: 'stdout' | 'stderr', attempt?: number): string =>
  logs.filter(e => e.stream === stream && (attempt == null || e.attempt === attempt)).map(e => e.text).join('')

describe('live logs over the award channel (real nodes)', function () {
  this.timeout(90_000)
  let requester: MercatoNode
  let p1: MercatoNode
  let p2: MercatoNode
  let client: MercatoClient

  before(async () => {
    requester = await startTestNode({ gateway: true, provide: false })
    p1 = await startTestNode({ price: 2, bootstrap: requester.network.addresses() })
    p2 = await startTestNode({ price: 3, bootstrap: requester.network.addresses() })
    client = new MercatoClient({ url: requester.gateway!.url })
    await waitFor(async () => (await client.providers()).filter(p => !p.self).length >= 2, 15_000)
  })
  // a `mercato logs` left running by a failed test
  const followers = new Set<ChildProcess>()
  after(async () => {
    for (const p of followers) p.kill('SIGKILL')
    await stopNodes()
  })

  it('a js job printing lines over ~1 s shows `log` events before its result, the same text as the result', async () => {
    const { id } = await client.submit({ engine: 'js', source: SLOW, input: { lines: 5, spin: 800_000 }, limits: LIMITS, minBids: 2 })
    const events = await collect(client, id)
    const types = events.map(e => e.type)
    const firstLog = types.indexOf('log')
    expect(firstLog, types.join(' ')).to.be.greaterThan(-1)
    expect(firstLog).to.be.lessThan(types.indexOf('result'))
    // more than one chunk arrived before the result: the output came while the job ran
    expect(types.slice(0, types.indexOf('result')).filter(t => t === 'log').length).to.be.greaterThan(1)
    const logs = logsOf(events)
    const result = await client.result(id)
    expect(textOf(logs, 'stdout')).to.equal(result.stdout)
    expect(textOf(logs, 'stdout')).to.equal('line 0\nline 1\nline 2\nline 3\nline 4\n')
    expect(textOf(logs, 'stderr')).to.equal(result.stderr)
    for (const e of logs) expect(e).to.include({ jobId: id, attempt: 0, provider: result.provider })
  })

  it('a late subscriber gets the tail of the live logs first', async () => {
    // long enough that the job still runs when the subscriber comes (a faster V8 ran 1.2M spins a
    // line before it did; 2M spins take ≈ 0.24 s on Node 20, ≈ 0.13 s on Node 24)
    const { id } = await client.submit({ engine: 'js', source: SLOW, input: { lines: 6, spin: 2_000_000 }, limits: LIMITS })
    // wait until some output came, then subscribe
    let seen = false
    const onLog = (e: LogEvent): void => { if (e.jobId === id) seen = true }
    requester.market.events.on('log', onLog)
    try { await waitFor(() => seen, 30_000) } finally { requester.market.events.off('log', onLog) }
    const events = await collect(client, id)
    const result = await client.result(id)
    expect(textOf(logsOf(events), 'stdout')).to.equal(result.stdout)
  })

  it('a subscriber that comes just after a short job ended still gets its live output, in time order with its steps', async () => {
    const { id } = await client.submit({ engine: 'js', source: 'function main () { console.log("short and done"); return 1 }', limits: LIMITS })
    // the job ends before anyone subscribes (as when `mercato submit --wait` is slow to open its stream)
    expect((await requester.market.waitFor(id, { signal: AbortSignal.timeout(30_000) })).status).to.equal('completed')
    const events = await collect(client, id)
    const types = events.map(e => e.type)
    expect(textOf(logsOf(events), 'stdout'), types.join(' ')).to.equal('short and done\n')
    expect(types.indexOf('log'), types.join(' ')).to.be.lessThan(types.indexOf('result'))
  })

  /** Run `mercato logs ...` against the requester; `firstAt`: when its first stdout came. */
  function follow (args: string[]): { proc: ChildProcess, done: Promise<{ code: number | null, stdout: string, stderr: string, firstAt: number }> } {
    const proc = spawn(process.execPath, [...NODE_FLAGS, CLI, 'logs', ...args, '--api', requester.gateway!.url], { stdio: ['ignore', 'pipe', 'pipe'] })
    followers.add(proc)
    let stdout = ''
    let stderr = ''
    let firstAt = 0
    proc.stdout.on('data', (d) => { if (firstAt === 0) firstAt = Date.now(); stdout += d })
    proc.stderr.on('data', (d) => { stderr += d })
    const done = new Promise<{ code: number | null, stdout: string, stderr: string, firstAt: number }>((resolve) => {
      proc.on('exit', (code) => { followers.delete(proc); resolve({ code, stdout, stderr, firstAt }) })
    })
    return { proc, done }
  }

  /**
   * A job that waits, queued, until the follower is connected: its price is below every running
   * provider's ask; returns the job id and a start() that brings a provider cheap enough.
   */
  async function queuedJob (spec: Record<string, unknown>): Promise<{ id: string, start: () => Promise<MercatoNode> }> {
    const { id } = await client.submit({ engine: 'js', source: SLOW, limits: LIMITS, ...spec, maxPrice: 1 })
    await waitFor(async () => (await client.job(id)).status === 'queued', 15_000)
    return { id, start: async () => await startTestNode({ price: 1, bootstrap: requester.network.addresses() }) }
  }

  /** The follower's event stream is open on the gateway (it subscribed to the market's `log` events). */
  async function connected (before: number): Promise<void> {
    await waitFor(() => requester.market.events.listenerCount('log') > before, 60_000)
  }

  it('`mercato logs <id> -f` prints the lines as they come; without -f, the final stdout', async () => {
    // the job waits (queued) until the follower is connected, however long the command takes to
    // start; then it prints over a second or more, and the follower must show its first line
    // before the job is over
    const { id, start } = await queuedJob({ input: { lines: 5, spin: 3_000_000 } })
    const before = requester.market.events.listenerCount('log')
    const f = follow([id, '-f'])
    await connected(before)
    expect((await client.job(id)).status).to.equal('queued')
    const cheap = await start()
    try {
      const { code, stdout, stderr, firstAt } = await f.done
      expect(code, stderr).to.equal(0)
      expect(stdout).to.equal('line 0\nline 1\nline 2\nline 3\nline 4\n')
      expect(stderr).to.equal('progress 1\nprogress 3\n')
      const job = await client.job(id)
      expect(job.status).to.equal('completed')
      expect(job.provider).to.equal(cheap.peerId)
      // the first line was printed before the job was over
      expect(firstAt).to.be.greaterThan(0)
      expect(firstAt).to.be.lessThan(job.completedAt as number)

      const after = await follow([id]).done
      expect(after.code, after.stderr).to.equal(0)
      expect(after.stdout).to.equal(stdout)
    } finally {
      await stopNode(cheap)
    }
  })

  it('`mercato logs -f` on a job that is cancelled while it is followed ends with exit 1 and says so', async () => {
    const { id } = await queuedJob({ input: { lines: 1 } })
    const before = requester.market.events.listenerCount('log')
    const f = follow([id, '-f'])
    await connected(before)
    await client.cancel(id)
    const { code, stdout, stderr } = await f.done
    expect(code).to.equal(1)
    expect(stdout).to.equal('')
    expect(stderr).to.equal(`job ${id} cancelled: no output\n`)
  })

  it('`mercato logs -f` on a job whose queue time passes ends with exit 1 and says so', async () => {
    const { id } = await queuedJob({ input: { lines: 1 }, queueTimeoutMs: 3000 })
    const { code, stdout, stderr } = await follow([id, '-f']).done
    expect(code).to.equal(1)
    expect(stdout).to.equal('')
    expect(stderr).to.match(new RegExp(`^job ${id} no-bids`))
  })

  it('`mercato logs -f` on a job that never existed ends at once with exit 1, job-not-found', async () => {
    const { code, stdout, stderr } = await follow(['bafyreinothere', '-f']).done
    expect(code).to.equal(1)
    expect(stdout).to.equal('')
    expect(stderr).to.include('(job-not-found)')
  })

  it('`mercato logs -f` on a job the sandbox stops (timeout) prints its lines, then the error, exit 1', async () => {
    const source = 'function main () { console.log(\'started\'); while (true) {} }'
    const { id, start } = await queuedJob({ source, limits: { ...LIMITS, timeoutMs: 1500 } })
    const before = requester.market.events.listenerCount('log')
    const f = follow([id, '-f'])
    await connected(before)
    const cheap = await start()
    try {
      const { code, stdout, stderr } = await f.done
      expect(stdout).to.equal('started\n')
      expect(stderr).to.match(/^timeout: /m)
      expect(code).to.equal(1)
      // the same without -f, on the finished job
      const after = await follow([id]).done
      expect(after.stdout).to.equal('started\n')
      expect(after.stderr).to.match(/^timeout: /m)
      expect(after.code).to.equal(1)
    } finally {
      await stopNode(cheap)
    }
  })

  it('`mercato submit --wait` prints the live lines to stderr as they come, and the final output to stdout', async () => {
    const proc = spawn(process.execPath, [...NODE_FLAGS, CLI, 'submit', `${FIXTURES}js/slow-lines.js`, '--input', '{"lines":4,"spin":3000000}', '--timeout', '30000', '--wait', '--api', requester.gateway!.url], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let firstLineAt = 0
    let firstStdoutAt = 0
    proc.stdout.on('data', (d) => { if (firstStdoutAt === 0) firstStdoutAt = Date.now(); stdout += d })
    proc.stderr.on('data', (d) => { stderr += d; if (firstLineAt === 0 && stderr.includes('line 0\n')) firstLineAt = Date.now() })
    const code = await new Promise<number | null>((resolve) => { proc.on('exit', resolve) })
    expect(code, stderr).to.equal(0)
    // live: every line and the stderr lines on stderr, the first one before the final output
    for (const l of ['line 0', 'line 1', 'line 2', 'line 3', 'progress 1', 'progress 3']) expect(stderr).to.include(l + '\n')
    expect(firstLineAt).to.be.greaterThan(0)
    expect(firstLineAt).to.be.lessThan(firstStdoutAt)
    // the final output, once, on stdout (the result's stdout, then main's return value)
    expect(stdout.startsWith('line 0\nline 1\nline 2\nline 3\n')).to.equal(true)
    expect(stdout).to.include('"lines": 4')
  })

  it('a job that floods its output is capped by its provider (rate and total), and says so', async () => {
    // (the flood stops at the job's 512 KiB output cap; its live logs at the provider's 32 KiB/s)
    const { id } = await client.submit({ engine: 'js', source: FLOOD, limits: { ...LIMITS, outputBytes: 512 * 1024 } })
    const logs = logsOf(await collect(client, id))
    const result = await client.result(id)
    // the provider lets through one second of burst plus its rate while the job ran (a flood runs
    // for a fraction of a second; half a second more for the timers around it): well under the
    // requester's own caps, so this is the provider's doing
    const secs = result.usage.wallMs / 1000 + 0.5
    const bytes = logs.reduce((n, e) => n + Buffer.byteLength(e.text), 0)
    expect(bytes).to.be.greaterThan(0)
    expect(bytes).to.be.at.most(Math.min(LIVE_LOG_MAX_BYTES, LIVE_LOG_BYTES_PER_SEC * (secs + 1)))
    expect(logs.some(e => (e.dropped ?? 0) > 0)).to.equal(true)
    expect(result.error?.name).to.equal('output-limit')
    expect(result.stdout.length).to.be.greaterThan(bytes)
  })

  it('handover: the runner-up\'s logs start over and say which attempt', async () => {
    const { id } = await client.submit({ engine: 'js', source: SLOW, input: { lines: 8, spin: 1_500_000 }, limits: LIMITS, minBids: 2 })
    const events: Array<JobEvent | LogEvent> = []
    let first: LogEvent | undefined
    const done = (async () => { for await (const e of client.events(id)) { events.push(e); if (e.type === 'log') first ??= e } })()
    await waitFor(() => first != null, 30_000)
    const running = [p1, p2].find(p => p.peerId === first?.provider) as MercatoNode
    await stopNode(running)
    await done
    const job = await client.job(id)
    expect(job.status).to.equal('completed')
    const logs = logsOf(events)
    const attempts = [...new Set(logs.map(e => e.attempt))]
    expect(attempts).to.deep.equal([0, 1])
    expect(logs.filter(e => e.attempt === 0).every(e => e.provider === running.peerId)).to.equal(true)
    expect(logs.filter(e => e.attempt === 1).every(e => e.provider !== running.peerId)).to.equal(true)
    // the runner-up's output starts from the first line
    expect(textOf(logs, 'stdout', 1)).to.equal((await client.result(id)).stdout)
    expect(textOf(logs, 'stdout', 1).startsWith('line 0\n')).to.equal(true)
    // in order: attempt 0's logs, the handover, attempt 1's logs
    const types = events.map(e => e.type === 'log' ? `log${(e as LogEvent).attempt}` : e.type)
    expect(types.lastIndexOf('log0')).to.be.lessThan(types.indexOf('handover'))
    expect(types.indexOf('handover')).to.be.lessThan(types.indexOf('log1'))
  })
})

describe('live logs from a provider that floods (real nodes)', function () {
  this.timeout(60_000)
  after(stopNodes)

  it('the requester takes at most its own caps, drops the rest and says so once', async () => {
    // a requester with small caps, and a provider whose own caps are lifted (it sends all 1 MiB)
    const requester = await startTestNode({ gateway: true, provide: false, config: { auction: { liveLogBytesPerSec: 16_384, liveLogMaxBytes: 16_384 } } })
    await startTestNode({ price: 2, bootstrap: requester.network.addresses(), config: { provider: { liveLogBytesPerSec: 100_000_000, liveLogMaxBytes: 100_000_000 } } })
    const client = new MercatoClient({ url: requester.gateway!.url })
    await waitFor(async () => (await client.providers()).some(p => !p.self), 15_000)
    const { id } = await client.submit({ engine: 'js', source: FLOOD, limits: { ...LIMITS, outputBytes: 512 * 1024 } })
    const logs = logsOf(await collect(client, id))
    const bytes = logs.reduce((n, e) => n + Buffer.byteLength(e.text), 0)
    expect(bytes).to.be.greaterThan(0)
    expect(bytes).to.be.at.most(16_384)
    expect(logs.filter(e => e.capped === true)).to.have.length(1)
    expect(logs.at(-1)?.capped).to.equal(true)
    const result = await client.result(id)
    expect(result.stdout.length).to.be.greaterThan(400_000)
  })
})
