/**
 * Market benchmark: a 10-process mesh on this machine (1 requester, 9
 * providers with different asks), measured through the requester's gateway.
 * Prints ONE JSON object. Not a test: nothing here asserts.
 *
 *   npm run bench            (BENCH_QUICK=1 for a shorter run)
 *
 * `baseline` is the same run's raw speed (Ed25519 signs/s in this process,
 * an empty gateway request's round trip): compare runs by it, not by date.
 *
 * It waits up to BENCH_MESH_WAIT_MS (60 s) for the requester to see all nine
 * providers, then measures with whom it sees and says how many (stderr, and
 * `providersSeenAtStart` in the JSON).
 */
import '../src/polyfill.js'
import { ed25519SignsPerSec, pct } from './util.js'
import { startNodeProcess, stopAll, getJson, waitFor, type NodeProcess } from '../test/helpers/cli.js'

const QUICK = process.env.BENCH_QUICK === '1'
/** How long to wait for the requester to see all nine providers before measuring with whom it has. */
/** Ten node processes starting at once on a loaded 2-core machine can take a minute to be ready. */
const START_TIMEOUT_MS = 120_000
const MESH_WAIT_MS = Number(process.env.BENCH_MESH_WAIT_MS ?? 60_000)
const TRIVIAL = { engine: 'js', source: 'function main (i) { return i.x + 1 }', input: { x: 1 }, maxPrice: 100 }
const LONG = (n: number): Record<string, unknown> => ({ engine: 'js', source: 'function main (i) { let s = 0; for (let k = 0; k < i.n; k++) s = (s + k) % 1000003; return s }', input: { n }, limits: { timeoutMs: 30_000 }, maxPrice: 100 })

async function submit (node: NodeProcess, spec: unknown): Promise<string> {
  const res = await fetch(`${node.gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) })
  if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`)
  return (await res.json() as { id: string }).id
}

/** Follow the job's event stream until it ends; returns its events. */
async function follow (node: NodeProcess, id: string): Promise<Array<{ type: string, ts: number, [k: string]: any }>> {
  const res = await fetch(`${node.gatewayUrl}/v1/jobs/${id}/events`)
  const text = await res.text()
  return text.split('\n\n').map(block => /^data: (.*)$/m.exec(block)?.[1]).filter((d): d is string => d != null && d !== '{}').map(d => JSON.parse(d))
}

async function runJob (node: NodeProcess, spec: unknown): Promise<{ ms: number, status: string }> {
  const t0 = performance.now()
  const id = await submit(node, spec)
  const events = await follow(node, id)
  const last = events.at(-1)
  return { ms: performance.now() - t0, status: last?.type === 'settled' ? 'completed' : String(last?.type) }
}

async function main (): Promise<void> {
  const requester = await startNodeProcess(['--no-provide'], { timeoutMs: START_TIMEOUT_MS })
  const boot = requester.addresses[0]
  const prices = [1, 2, 3, 4, 5, 6, 7, 8, 9]
  const providers = await Promise.all(prices.map(async p => await startNodeProcess(['--bootstrap', boot, '--price', String(p)], { timeoutMs: START_TIMEOUT_MS })))
  const providersSeen = async (): Promise<number> => {
    const list = (await getJson(`${requester.gatewayUrl}/v1/providers`)).body as Array<{ peerId: string }>
    const connected = new Set(((await getJson(`${requester.gatewayUrl}/v1/peers`)).body as Array<{ peerId: string }>).map(p => p.peerId))
    return list.filter(p => connected.has(p.peerId)).length
  }
  /** Wait (bounded) until the requester sees all nine providers; returns how many it sees. */
  const awaitMesh = async (what: string, timeoutMs: number): Promise<number> => {
    const t0 = Date.now()
    await waitFor(async () => await providersSeen() >= 9, timeoutMs).catch(() => {})
    const seen = await providersSeen()
    if (seen < 9) process.stderr.write(`bench: ${what}: the requester sees ${seen} of 9 providers after ${Math.round((Date.now() - t0) / 1000)} s; going on with them\n`)
    else process.stderr.write(`bench: ${what}: the requester sees all 9 providers after ${Date.now() - t0} ms\n`)
    return seen
  }
  const seenAtStart = await awaitMesh('mesh', MESH_WAIT_MS)

  // let the mesh settle (DHT walks back off once everyone is known), then warm up every sandbox
  await new Promise(resolve => setTimeout(resolve, QUICK ? 5_000 : 15_000))
  for (let i = 0; i < 20; i++) await runJob(requester, TRIVIAL)

  // baseline, measured with the mesh up: raw signing speed, and an empty request to the gateway
  const roundTrips: number[] = []
  for (let i = 0; i < 200; i++) {
    const t = performance.now()
    await getJson(`${requester.gatewayUrl}/v1/ledger/head`)
    roundTrips.push(performance.now() - t)
  }
  const baseline = { ed25519SignsPerSec: ed25519SignsPerSec(), gatewayRoundTripMsP50: pct(roundTrips, 50) }

  // 1. one at a time
  const single: number[] = []
  for (let i = 0; i < (QUICK ? 50 : 200); i++) {
    const r = await runJob(requester, TRIVIAL)
    if (r.status === 'completed') single.push(r.ms)
  }

  // 2. sustained load: C jobs in flight for D ms
  const concurrency = 32
  const durationMs = QUICK ? 5_000 : 15_000
  const loaded: number[] = []
  let failed = 0
  const end = Date.now() + durationMs
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < end) {
      const r = await runJob(requester, TRIVIAL).catch(() => ({ ms: 0, status: 'error' }))
      if (r.status === 'completed') loaded.push(r.ms); else failed++
    }
  }))
  const jobsPerSec = loaded.length / ((performance.now() - t0) / 1000)

  // 3. failover: kill -9 the provider running a job; time until the runner-up accepted
  const failover: number[] = []
  const killToResult: number[] = []
  const trials = QUICK ? 5 : 20
  for (let t = 0; t < trials; t++) {
    const id = await submit(requester, LONG(9_000_000)) // ≈ 300 ms of QuickJS work
    let running: any
    await waitFor(async () => { running = (await getJson(`${requester.gatewayUrl}/v1/jobs/${id}`)).body; return running.status === 'running' || running.status === 'completed' }, 20_000, 2)
    if (running.status !== 'running') continue
    const i = providers.findIndex(p => p.peerId === running.provider)
    const victim = providers[i]
    const killedAt = Date.now()
    victim.proc.kill('SIGKILL')
    const events = await follow(requester, id)
    const accepted = events.find(e => e.type === 'accepted' && e.provider !== victim.peerId && e.ts >= killedAt)
    const settled = events.find(e => e.type === 'settled')
    if (accepted != null) failover.push(accepted.ts - killedAt)
    if (settled != null) killToResult.push(settled.ts - killedAt)
    await victim.exited
    providers[i] = await startNodeProcess(['--bootstrap', boot, '--price', String(prices[i])], { dataDir: victim.dataDir, timeoutMs: START_TIMEOUT_MS })
    await awaitMesh(`after restarting provider ${i + 1}`, 30_000)
  }

  process.stdout.write(JSON.stringify({
    nodes: 10,
    providersSeenAtStart: seenAtStart,
    latencyMsP50: pct(single, 50),
    latencyMsP99: pct(single, 99),
    latencyRuns: single.length,
    jobsPerSec: Math.round(jobsPerSec * 10) / 10,
    concurrency,
    latencyMsP50UnderLoad: pct(loaded, 50),
    latencyMsP99UnderLoad: pct(loaded, 99),
    failedUnderLoad: failed,
    failoverMsP50: pct(failover, 50),
    failoverMsMax: failover.length > 0 ? Math.max(...failover) : null,
    failoverTrials: failover.length,
    killToResultMsP50: pct(killToResult, 50),
    killToResultMsMax: killToResult.length > 0 ? Math.max(...killToResult) : null,
    node: process.version,
    baseline
  }) + '\n')
}

main().then(async () => { await stopAll(); process.exit(0) }, async (err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`)
  await stopAll()
  process.exit(1)
})
