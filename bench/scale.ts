/**
 * Scale benchmark: what one job costs the mesh as the mesh grows. For each
 * size, a mesh of `mercato` processes on this machine (1 requester, the rest
 * providers with distinct asks in random order), measured through the
 * requester's gateway. Prints ONE JSON line per size. Not a test: nothing
 * here asserts.
 *
 *   npm run bench:scale                               sizes 10, 20, 40
 *   BENCH_SIZES=10,20 npm run bench:scale             other sizes
 *   BENCH_INVITATIONS=0 npm run bench:scale           every offer an open call (0.1.0's market)
 *
 * Per size: `latencyMsP50/P99` (submit → settled, one job at a time),
 * `jobsPerSec` (BENCH_CONCURRENCY jobs in flight), `meshCpuMsPerJob` (the
 * CPU time of every node process, from /proc, over both phases, divided by
 * the jobs run: background work included), `messagesPerJob` (messages every
 * node received from peers: gossip, requests, channel frames, from each
 * node's /metrics; `messagesPerJobByKind` splits them), `cheapestWonRatio` (sequential jobs won by the cheapest
 * provider: every slot is free between them), the same two costs less what
 * the idle mesh spends in as long (`…OverIdle`: gossip heartbeats, adverts,
 * the DHT; at a few jobs a second on a loaded machine the idle cost is most
 * of the raw figure), and `baseline` (Ed25519
 * signs/s in this process, measured in the same run). It waits a bounded
 * time for the requester's book to hear every provider, then measures with
 * what it has (`providersInBook`).
 */
import '../src/polyfill.js'
import { ed25519SignsPerSec, pct, processCpuMs } from './util.js'
import { ADVERT_START_DELAYS_MS } from '../src/auction/constants.js'
import { getJson, startNodeProcess, stopAll, waitFor, type NodeProcess } from '../test/helpers/cli.js'

const SIZES = (process.env.BENCH_SIZES ?? '10,20,40').split(',').map(Number).filter(n => n >= 2)
const INVITATIONS = process.env.BENCH_INVITATIONS !== '0'
const SEQUENTIAL = Number(process.env.BENCH_JOBS ?? 40)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8)
const LOAD_MS = Number(process.env.BENCH_LOAD_MS ?? 8000)
/** Processes started at once (a 2-core machine chokes on forty cold starts together). */
const START_BATCH = 8
const START_TIMEOUT_MS = 180_000
const BOOK_WAIT_MS = 60_000
/** How long the idle mesh is measured (its CPU and messages per second are subtracted in the `…OverIdle` figures). */
const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 5000)
/**
 * Measuring starts no sooner than this after the last provider started: a provider re-sends its
 * advert 1, 3, 10 and 30 s after start (ADVERT_START_DELAYS_MS) while the mesh forms, and at 40
 * processes that start-up traffic was most of what the "idle" window and the jobs saw (142 of 143
 * gossip messages a second were adverts). The figures are the steady mesh's; BENCH_SETTLE_MS=0
 * measures as soon as the book is full, start-up and all.
 */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? Math.max(...ADVERT_START_DELAYS_MS) + 5000)
const JOB = { engine: 'js', source: 'function main (i) { return i.x + 1 }', input: { x: 1 }, maxPrice: 1000 }

function shuffle<T> (xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]]
  }
  return xs
}


type Kinds = Record<string, number>

/** Messages a node has received from peers (its /metrics), by kind: gossip, request, frame. */
async function messagesOf (node: NodeProcess): Promise<Kinds> {
  const kinds: Kinds = {}
  try {
    const text = await (await fetch(`${node.gatewayUrl}/metrics`)).text()
    for (const m of text.matchAll(/^mercato_network_messages_received_total\{kind="(\w+)"\} (\d+(?:\.\d+)?)/gm)) kinds[m[1]] = (kinds[m[1]] ?? 0) + Number(m[2])
    // gossip again, by topic (not added to the total)
    for (const m of text.matchAll(/^mercato_gossip_messages_received_total\{topic="([^"]+)"\} (\d+(?:\.\d+)?)/gm)) kinds[`gossip:${m[1]}`] = (kinds[`gossip:${m[1]}`] ?? 0) + Number(m[2])
  } catch {}
  return kinds
}

/** What each kind grew by from `before` to `after`, divided by `per` (jobs, seconds), to one decimal. */
const perKind = (after: Kinds, before: Kinds, per: number): Kinds =>
  Object.fromEntries(Object.keys(after).map(k => [k, Math.round((after[k] - (before[k] ?? 0)) / per * 10) / 10]))

const sum = (k: Kinds): number => Object.entries(k).reduce((a, [name, n]) => name.includes(':') ? a : a + n, 0)

async function snapshot (nodes: NodeProcess[]): Promise<{ cpu: number, messages: number, kinds: Kinds }> {
  const kinds: Kinds = {}
  for (const k of await Promise.all(nodes.map(messagesOf))) for (const [name, n] of Object.entries(k)) kinds[name] = (kinds[name] ?? 0) + n
  return { cpu: nodes.reduce((a, n) => a + processCpuMs(n.proc.pid), 0), messages: sum(kinds), kinds }
}

async function runJob (node: NodeProcess): Promise<{ ms: number, status: string, provider?: string }> {
  const t0 = performance.now()
  const res = await fetch(`${node.gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(JOB) })
  if (res.status !== 202) return { ms: 0, status: `http ${res.status}` }
  const { id } = await res.json() as { id: string }
  // the event stream ends when the job does
  await (await fetch(`${node.gatewayUrl}/v1/jobs/${id}/events`)).text()
  const ms = performance.now() - t0
  const view = (await getJson(`${node.gatewayUrl}/v1/jobs/${id}`)).body
  return { ms, status: view.status, provider: view.provider }
}

async function measure (size: number): Promise<Record<string, unknown>> {
  const env = { MERCATO_AUCTION_INVITATIONS: String(INVITATIONS) }
  const requester = await startNodeProcess(['--no-provide'], { env, timeoutMs: START_TIMEOUT_MS })
  const boot = requester.addresses[0]
  const asks = shuffle(Array.from({ length: size - 1 }, (_, i) => i + 1))
  const providers: NodeProcess[] = []
  for (let i = 0; i < asks.length; i += START_BATCH) {
    providers.push(...await Promise.all(asks.slice(i, i + START_BATCH).map(async ask => await startNodeProcess(['--bootstrap', boot, '--price', String(ask)], { env, timeoutMs: START_TIMEOUT_MS }))))
  }
  const lastStarted = Date.now()
  const cheapest = providers[asks.indexOf(1)].peerId
  const inBook = async (): Promise<number> => ((await getJson(`${requester.gatewayUrl}/v1/providers`)).body as any[]).filter(p => p.advert != null).length
  const t0 = Date.now()
  await waitFor(async () => await inBook() >= providers.length, BOOK_WAIT_MS, 500).catch(() => {})
  const providersInBook = await inBook()
  process.stderr.write(`bench:scale: ${size} nodes: the book holds ${providersInBook} of ${providers.length} providers after ${Date.now() - t0} ms\n`)
  for (let i = 0; i < 10; i++) await runJob(requester) // warm up every path
  const settleMs = Math.max(0, lastStarted + SETTLE_MS - Date.now())
  if (settleMs > 0) {
    process.stderr.write(`bench:scale: ${size} nodes: letting the mesh settle for ${Math.round(settleMs / 1000)} s (start-up adverts)\n`)
    await new Promise(resolve => setTimeout(resolve, settleMs))
  }
  const nodes = [requester, ...providers]
  // what the mesh spends with no job at all (gossip heartbeats, adverts, DHT, timers), per second
  const idleStart = await snapshot(nodes)
  const tIdle = performance.now()
  await new Promise(resolve => setTimeout(resolve, IDLE_MS))
  const idleEnd = await snapshot(nodes)
  const idleSecs = (performance.now() - tIdle) / 1000
  const idle = { cpuMsPerSec: (idleEnd.cpu - idleStart.cpu) / idleSecs, messagesPerSec: (idleEnd.messages - idleStart.messages) / idleSecs }
  const before = await snapshot(nodes)
  const tJobs = performance.now()

  const latencies: number[] = []
  let cheapestWon = 0
  let sequentialDone = 0
  /** the ask of each sequential job's winner, counted: who won when the cheapest did not */
  const winningAsks: Record<string, number> = {}
  for (let i = 0; i < SEQUENTIAL; i++) {
    const r = await runJob(requester)
    if (r.status !== 'completed') continue
    sequentialDone++
    latencies.push(r.ms)
    if (r.provider === cheapest) cheapestWon++
    const ask = String(asks[providers.findIndex(p => p.peerId === r.provider)] ?? 'unknown')
    winningAsks[ask] = (winningAsks[ask] ?? 0) + 1
  }
  let loaded = 0
  let failed = 0
  const end = Date.now() + LOAD_MS
  const tLoad = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (Date.now() < end) {
      const r = await runJob(requester).catch(() => ({ status: 'error' }))
      if (r.status === 'completed') loaded++; else failed++
    }
  }))
  const jobsPerSec = loaded / ((performance.now() - tLoad) / 1000)
  const after = await snapshot(nodes)
  const jobsSecs = (performance.now() - tJobs) / 1000
  const jobs = sequentialDone + loaded
  const perJob = (total: number, idlePerSec: number): number | null => jobs > 0 ? Math.round(Math.max(0, total - idlePerSec * jobsSecs) / jobs * 10) / 10 : null
  await stopAll()
  return {
    nodes: size,
    mode: INVITATIONS ? 'invitations' : 'open-call',
    providersInBook,
    settleMs: SETTLE_MS,
    latencyMsP50: pct(latencies, 50),
    latencyMsP99: pct(latencies, 99),
    jobsPerSec: Math.round(jobsPerSec * 10) / 10,
    concurrency: CONCURRENCY,
    failedUnderLoad: failed,
    meshCpuMsPerJob: jobs > 0 ? Math.round((after.cpu - before.cpu) / jobs * 10) / 10 : null,
    messagesPerJob: jobs > 0 ? Math.round((after.messages - before.messages) / jobs * 10) / 10 : null,
    // the same by kind: gossip (offers, adverts, receipts), request (invitations, blobs...), frame (bids, award channels)
    messagesPerJobByKind: jobs > 0 ? perKind(after.kinds, before.kinds, jobs) : null,
    // the same less what the idle mesh spends in as long: what the jobs themselves cost
    meshCpuMsPerJobOverIdle: perJob(after.cpu - before.cpu, idle.cpuMsPerSec),
    messagesPerJobOverIdle: perJob(after.messages - before.messages, idle.messagesPerSec),
    idleMeshCpuMsPerSec: Math.round(idle.cpuMsPerSec),
    idleMessagesPerSec: Math.round(idle.messagesPerSec * 10) / 10,
    idleMessagesPerSecByKind: perKind(idleEnd.kinds, idleStart.kinds, idleSecs),
    cheapestWonRatio: sequentialDone > 0 ? Math.round(cheapestWon / sequentialDone * 100) / 100 : null,
    winningAsks,
    jobs,
    node: process.version
  }
}

async function main (): Promise<void> {
  const baseline = { ed25519SignsPerSec: ed25519SignsPerSec() }
  for (const size of SIZES) {
    const line = await measure(size)
    process.stdout.write(JSON.stringify({ ...line, baseline }) + '\n')
  }
}

main().then(async () => { await stopAll(); process.exit(0) }, async (err) => {
  process.stderr.write(`bench:scale failed: ${err?.stack ?? err}\n`)
  await stopAll()
  process.exit(1)
})
