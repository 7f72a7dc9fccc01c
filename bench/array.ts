/**
 * Job-array benchmark: BENCH_ARRAY_JOBS (10,000) trivial jobs through
 * `mercato submit job.js --each inputs.ndjson --out results.ndjson` on the
 * 10-process mesh of `npm run bench` (1 requester, 9 providers with asks
 * 1-9). Prints ONE JSON object. Not a test: nothing here asserts.
 *
 *   npm run bench:array          (BENCH_ARRAY_JOBS=1000 for a shorter run)
 *
 * - jobsPerSec: lines / the CLI's wall time (start to exit, process start included)
 * - latencyMsP50/P99: per job, submission to end, as the requester measured it
 * - lost: lines without a completed result; duplicated: ids seen twice in the results,
 *   plus jobs the requester settled beyond one per line (mercato_job_events_total{type="settled"})
 * - cliPeakRssMiB: the CLI's VmHWM; cliRssMiB: its RSS at 25/50/75/100 % of the lines written
 * - baseline: the same run's raw speed (Ed25519 signs/s, an empty gateway round trip) and the
 *   single-submission throughput measured the way `npm run bench` does (32 jobs in flight, one
 *   POST and one event stream per job), to compare the array with
 */
import '../src/polyfill.js'
import { spawn } from 'node:child_process'
import { readFile, writeFile, stat } from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import { ed25519SignsPerSec, pct } from './util.js'
import { CLI, NODE_FLAGS, startNodeProcess, stopAll, getJson, waitFor, tempDir, type NodeProcess } from '../test/helpers/cli.js'

const JOBS = Number(process.env.BENCH_ARRAY_JOBS ?? 10_000)
const PARALLEL = Number(process.env.BENCH_ARRAY_PARALLEL ?? 64)
const START_TIMEOUT_MS = 120_000
const MESH_WAIT_MS = Number(process.env.BENCH_MESH_WAIT_MS ?? 60_000)
const SOURCE = 'function main (i) { return i.x + 1 }'
const TRIVIAL = { engine: 'js', source: SOURCE, input: { x: 1 }, maxPrice: 100 }

async function settledCount (node: NodeProcess): Promise<number> {
  const text = await (await fetch(`${node.gatewayUrl}/metrics`)).text()
  return Number(/^mercato_job_events_total\{type="settled"\} (\d+)/m.exec(text)?.[1] ?? 0)
}

/** One job the way `npm run bench` runs it: POST, then follow its event stream to the end. */
async function runJob (node: NodeProcess): Promise<boolean> {
  const res = await fetch(`${node.gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(TRIVIAL) })
  if (res.status !== 202) return false
  const { id } = await res.json() as { id: string }
  const text = await (await fetch(`${node.gatewayUrl}/v1/jobs/${id}/events`)).text()
  return text.includes('event: settled')
}

async function singleThroughput (node: NodeProcess, durationMs: number): Promise<number> {
  let done = 0
  const end = Date.now() + durationMs
  const t0 = performance.now()
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (Date.now() < end) if (await runJob(node).catch(() => false)) done++
  }))
  return Math.round(done / ((performance.now() - t0) / 1000) * 10) / 10
}

async function rssOf (pid: number): Promise<{ rss: number, hwm: number } | null> {
  try {
    const s = await readFile(`/proc/${pid}/status`, 'utf8')
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0)
    return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 }
  } catch { return null }
}

async function main (): Promise<void> {
  const requester = await startNodeProcess(['--no-provide'], { timeoutMs: START_TIMEOUT_MS })
  const boot = requester.addresses[0]
  await Promise.all([1, 2, 3, 4, 5, 6, 7, 8, 9].map(async p => await startNodeProcess(['--bootstrap', boot, '--price', String(p)], { timeoutMs: START_TIMEOUT_MS })))
  const providersSeen = async (): Promise<number> => ((await getJson(`${requester.gatewayUrl}/v1/providers`)).body as unknown[]).filter((p: any) => p.self !== true).length
  const t0 = Date.now()
  await waitFor(async () => await providersSeen() >= 9, MESH_WAIT_MS).catch(() => {})
  const seen = await providersSeen()
  process.stderr.write(`bench: the requester sees ${seen} of 9 providers after ${Date.now() - t0} ms\n`)
  await new Promise(resolve => setTimeout(resolve, 10_000)) // let the mesh settle
  for (let i = 0; i < 20; i++) await runJob(requester) // warm every sandbox

  const roundTrips: number[] = []
  for (let i = 0; i < 200; i++) {
    const t = performance.now()
    await getJson(`${requester.gatewayUrl}/v1/ledger/head`)
    roundTrips.push(performance.now() - t)
  }
  const baseline = {
    ed25519SignsPerSec: ed25519SignsPerSec(),
    gatewayRoundTripMsP50: pct(roundTrips, 50),
    singleJobsPerSec: await singleThroughput(requester, JOBS >= 5000 ? 15_000 : 5_000)
  }

  const dir = await tempDir('mercato-bench-array-')
  const inputs = join(dir, 'inputs.ndjson')
  const out = join(dir, 'results.ndjson')
  await writeFile(join(dir, 'job.js'), SOURCE + '\n')
  await writeFile(inputs, Array.from({ length: JOBS }, (_, i) => JSON.stringify({ x: i })).join('\n') + '\n')

  const settledBefore = await settledCount(requester)
  const started = performance.now()
  const cli = spawn(process.execPath, [...NODE_FLAGS, CLI, 'submit', join(dir, 'job.js'), '--each', inputs, '--parallel', String(PARALLEL), '--out', out, '--max-price', '100', '--api', requester.gatewayUrl], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  cli.stderr.on('data', (d) => { stderr = (stderr + String(d)).slice(-4000) })
  const exited = new Promise<number | null>(resolve => cli.on('exit', resolve))
  let peak = 0
  const rssAt: Record<string, number> = {}
  const marks = [25, 50, 75, 100]
  let stopSampling = false
  const sampling = (async () => {
    while (!stopSampling) {
      const m = await rssOf(cli.pid as number)
      if (m == null) break
      peak = Math.max(peak, m.hwm)
      const size = await stat(out).then(s => s.size, () => 0)
      // a result line is ~120 bytes here: a cheap progress estimate without reading the file
      const pctDone = size / (JOBS * 120) * 100
      for (const mark of marks) if (rssAt[`${mark}%`] == null && pctDone >= mark * 0.98) rssAt[`${mark}%`] = Math.round(m.rss)
      await new Promise(resolve => setTimeout(resolve, 250))
    }
  })()
  const code = await exited
  const wallMs = performance.now() - started
  stopSampling = true
  await sampling
  await new Promise(resolve => setTimeout(resolve, 500))
  const settledDelta = await settledCount(requester) - settledBefore

  const ids = new Set<string>()
  let dupIds = 0
  let completed = 0
  let inOrder = true
  let expect = 1
  const latencies: number[] = []
  for await (const line of createInterface({ input: createReadStream(out), crlfDelay: Infinity })) {
    const r = JSON.parse(line)
    if (r.line !== expect++) inOrder = false
    if (r.id != null) { if (ids.has(r.id)) dupIds++; ids.add(r.id) }
    if (r.status === 'completed') { completed++; if (typeof r.latencyMs === 'number') latencies.push(r.latencyMs) }
  }

  process.stdout.write(JSON.stringify({
    nodes: 10,
    providersSeenAtStart: seen,
    jobs: JOBS,
    parallel: PARALLEL,
    cliExitCode: code,
    wallMs: Math.round(wallMs),
    jobsPerSec: Math.round(JOBS / (wallMs / 1000) * 10) / 10,
    latencyMsP50: pct(latencies, 50),
    latencyMsP99: pct(latencies, 99),
    completed,
    lost: JOBS - completed,
    duplicated: dupIds + Math.max(0, settledDelta - completed),
    resultsInOrder: inOrder,
    cliPeakRssMiB: Math.round(peak),
    cliRssMiB: rssAt,
    node: process.version,
    baseline
  }) + '\n')
  if (code !== 0) process.stderr.write(`bench: the CLI exited with ${code}: ${stderr}\n`)
}

main().then(async () => { await stopAll(); process.exit(0) }, async (err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`)
  await stopAll()
  process.exit(1)
})
