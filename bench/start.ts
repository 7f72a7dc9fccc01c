/**
 * Start-up and footprint benchmark: `npm run bench:start` prints ONE JSON
 * object. Not a test: nothing here asserts.
 *
 * - baseline: `node -e 0` spawn → exit, p50 of 5 (this machine's raw process
 *   start, from the same run: divide by it to compare machines).
 * - start: `mercato start` spawn → "Ready" line, p50 of 5, and RSS at ready;
 *   with the default warm-up policy (one warm sandbox worker) and with
 *   `executor.warmWorkers: 0` (workers only on demand).
 * - firstJob: on an executor idle for a second, the first trivial job's
 *   latency (run() → result), JS and wasm, for both policies.
 * - mesh (the leak check): three nodes, node 0 the bootstrap and the
 *   submitting node (it does not provide), nodes 1 and 2 providers. RSS of
 *   each after 60 s idle, then after 1,000 and after 5,000 trivial JS jobs
 *   submitted through node 0's gateway (8 in flight), read from
 *   /proc/<pid>/status VmRSS after 130 s without work (BENCH_SETTLE_MS: past the
 *   gossip layer's 2-minute windows, below; the RSS right after the batch, garbage
 *   included, is reported too). `submitter`: node 0's RSS and
 *   leakGrowthPct = (RSS@5000 − RSS@1000) / RSS@1000, and at both points the jobs
 *   it holds in memory (its `mercato_jobs` gauge) and its JS heap and external
 *   memory (its /metrics); `providers`: the RSS figures for nodes 1, 2.
 *
 *   npm run bench:start                      compiled dist/ (what users run)
 *   BENCH_START_TSX=1 npm run bench:start    the sources under tsx (0.1.0's way)
 *   BENCH_QUICK=1 npm run bench:start        10 s idle, 200 / 1,000 jobs
 *   BENCH_JOBS=1000,5000                     the two job counts of the leak check
 *   BENCH_LEAK_ONLY=1                        only the mesh (no start or first-job runs)
 *   BENCH_START_ONLY=1                       only the starts and first jobs (no mesh)
 *   BENCH_ROOT=<checkout>                    measure that checkout instead (a policy
 *                                            it does not know is reported as null)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NODE_FLAGS } from '../test/helpers/cli.js'

/** BENCH_ROOT: measure another checkout (e.g. a worktree of 0.1.0, with BENCH_START_TSX=1) */
const ROOT = process.env.BENCH_ROOT ?? fileURLToPath(new URL('..', import.meta.url))
const TSX = process.env.BENCH_START_TSX === '1'
const QUICK = process.env.BENCH_QUICK === '1'
const STARTS = 5
const IDLE_MS = QUICK ? 10_000 : 60_000
/**
 * Quiet time after a batch of jobs before its RSS is read (BENCH_SETTLE_MS). Past 2 minutes:
 * gossipsub keeps a record of every message it saw for 2 minutes (its seen cache and the peer
 * score's delivery records, a Set and a few numbers each; not configurable), so 20 s after a batch
 * a node still held those of the last 2 minutes' messages (with two providers every offer is an
 * open call): at 5,000 jobs about 4 MiB more of them than at 1,000, read as growth. Measured on
 * Node 20, 1,000 → 5,000 jobs: providers +8.9 / +11 % and submitter +8.4 % after 20 s; +7.2 / +7.1
 * and +6.8 % after 130 s; from 10,000 → 30,000 jobs (20 s) +6.3 / +3.9 and +9.2 %.
 */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? (QUICK ? 5_000 : 130_000))
const JOBS = process.env.BENCH_JOBS != null ? process.env.BENCH_JOBS.split(',').map(Number) : QUICK ? [200, 1000] : [1000, 5000]
if (JOBS.length !== 2 || !JOBS.every(n => Number.isInteger(n) && n > 0) || JOBS[0] >= JOBS[1]) throw new Error('BENCH_JOBS: two job counts, the first smaller, e.g. 1000,5000')
const LEAK_ONLY = process.env.BENCH_LEAK_ONLY === '1'
const START_ONLY = process.env.BENCH_START_ONLY === '1'
const IN_FLIGHT = 8
const TRIVIAL = { engine: 'js', source: 'function main (i) { return i.x + 1 }', input: { x: 1 }, maxPrice: 100 }

const cmd = TSX ? ['--import', 'tsx', join(ROOT, 'src/cli.ts')] : [...NODE_FLAGS, join(ROOT, 'bin/mercato.js')]
const dirs: string[] = []
const procs = new Set<ChildProcess>()

const p50 = (xs: number[]): number => Math.round([...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] * 10) / 10
const mib = (kb: number): number => Math.round(kb / 1024 * 10) / 10
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Resident set of a process (all its threads), MiB. */
async function rssOf (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return mib(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN))
}

interface Started { proc: ChildProcess, readyMs: number, rssMiB: number, gatewayUrl: string, address: string, stop: () => Promise<void> }

async function startNode (extra: string[] = []): Promise<Started> {
  const dataDir = await mkdtemp(join(tmpdir(), 'mercato-bench-start-'))
  dirs.push(dataDir)
  const args = [...cmd, 'start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--gateway', '127.0.0.1:0', '--no-mdns', '--log-level', 'warn', ...extra]
  const t0 = performance.now()
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } })
  procs.add(proc)
  let out = ''
  let err = ''
  proc.stderr.on('data', (d) => { err += d })
  const exited = new Promise<void>(resolve => proc.on('exit', () => { procs.delete(proc); resolve() }))
  const readyMs = await new Promise<number>((resolve, reject) => {
    proc.stdout.on('data', (d) => {
      out += d
      if (/Ready in/.test(out)) resolve(performance.now() - t0)
    })
    void exited.then(() => { reject(new Error(`node exited before ready\n${out}\n${err}`)) })
  })
  const rssMiB = await rssOf(proc.pid as number)
  return {
    proc,
    readyMs,
    rssMiB,
    gatewayUrl: /Gateway:\s+(\S+)/.exec(out)?.[1] ?? '',
    address: /Listen:\s+(\S+)/.exec(out)?.[1] ?? '',
    stop: async () => { proc.kill('SIGTERM'); await exited }
  }
}

/** spawn → ready p50 and RSS at ready over STARTS sequential starts. */
async function starts (extra: string[] = []): Promise<{ spawnToReadyMsP50: number, spawnToReadyMs: number[], rssAtReadyMiBP50: number }> {
  const ms: number[] = []
  const rss: number[] = []
  for (let i = 0; i < STARTS; i++) {
    const n = await startNode(extra)
    ms.push(Math.round(n.readyMs))
    rss.push(n.rssMiB)
    await n.stop()
  }
  return { spawnToReadyMsP50: p50(ms), spawnToReadyMs: ms, rssAtReadyMiBP50: p50(rss) }
}

function baseline (): number {
  const ms: number[] = []
  for (let i = 0; i < STARTS; i++) {
    const t = performance.now()
    spawnSync(process.execPath, ['-e', '0'])
    ms.push(performance.now() - t)
  }
  return p50(ms)
}

/** The first job on an executor that has sat idle for a second (compiled pool, as a node runs it). */
async function firstJob (warmWorkers: number): Promise<{ jsMs: number, wasmMs: number }> {
  const entry = join(ROOT, TSX ? 'src/executor/index.ts' : 'dist/executor/index.js')
  const { createExecutor } = await import(entry) as typeof import('../src/executor/index.js')
  const wasm = new Uint8Array(await readFile(join(ROOT, 'test/fixtures/wasm/trivial.wasm')))
  const limits = { timeoutMs: 5000, memoryMb: 32, outputBytes: 65536 }
  const once = async (engine: 'js' | 'wasm'): Promise<number> => {
    const ex = createExecutor({ poolSize: 2, warmWorkers })
    await ex.start()
    await sleep(1000)
    const t = performance.now()
    const r = engine === 'js'
      ? await ex.run({ id: 'first', engine: 'js', source: 'function main () { return 1 }', limits })
      : await ex.run({ id: 'first', engine: 'wasm', module: wasm, limits })
    const took = performance.now() - t
    if (r.error != null) throw new Error(`first ${engine} job failed: ${r.error.message}`)
    await ex.stop()
    return Math.round(took * 10) / 10
  }
  return { jsMs: await once('js'), wasmMs: await once('wasm') }
}

async function runJob (gatewayUrl: string): Promise<boolean> {
  const res = await fetch(`${gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(TRIVIAL) })
  if (res.status !== 202) { await res.text(); return false }
  const { id } = await res.json() as { id: string }
  const events = await (await fetch(`${gatewayUrl}/v1/jobs/${id}/events`)).text()
  return /"type":"settled"/.test(events)
}

async function jobs (gatewayUrl: string, n: number): Promise<{ completed: number, jobsPerSec: number, seconds: number }> {
  let next = 0
  let completed = 0
  const t = performance.now()
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < n) {
      next++
      if (await runJob(gatewayUrl).catch(() => false)) completed++
    }
  }))
  const seconds = (performance.now() - t) / 1000
  return { completed, jobsPerSec: Math.round(completed / seconds * 10) / 10, seconds }
}

/** From a node's /metrics: the jobs it holds in memory (its `mercato_jobs{state}` gauge) and its JS heap and external memory (MiB). */
async function nodeMemory (gatewayUrl: string): Promise<{ jobsHeld: number, heapUsedMiB: number, heapTotalMiB: number, externalMiB: number }> {
  const text = await (await fetch(`${gatewayUrl}/metrics`)).text()
  let jobsHeld = 0
  for (const m of text.matchAll(/^mercato_jobs\{state="[^"]+"\} (\d+)$/gm)) jobsHeld += Number(m[1])
  const metric = (name: string): number => mib(Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 1024)
  return { jobsHeld, heapUsedMiB: metric('nodejs_heap_size_used_bytes'), heapTotalMiB: metric('nodejs_heap_size_total_bytes'), externalMiB: metric('nodejs_external_memory_bytes') }
}

async function mesh (): Promise<Record<string, unknown>> {
  // the submitting node does not provide: its memory is the requester's alone
  const first = await startNode(['--no-provide'])
  const nodes = [first, ...await Promise.all([1, 2].map(async () => await startNode(['--bootstrap', first.address])))]
  // wait until node 0 sees both providers
  const end = Date.now() + 60_000
  while (Date.now() < end) {
    const peers = await (await fetch(`${first.gatewayUrl}/v1/peers`)).json() as unknown[]
    if (peers.length >= 2) break
    await sleep(200)
  }
  const rssAll = async (): Promise<number[]> => await Promise.all(nodes.map(async n => await rssOf(n.proc.pid as number)))
  await sleep(IDLE_MS)
  const idle = await rssAll()
  // RSS right after a batch includes garbage V8 has not collected yet; after SETTLE_MS without
  // work its memory reducer has run, and what is left is what the node holds
  const settled = async (): Promise<{ busy: number[], rss: number[], mem: Array<Awaited<ReturnType<typeof nodeMemory>>> }> => {
    const busy = await rssAll()
    await sleep(SETTLE_MS)
    return { busy, rss: await rssAll(), mem: await Promise.all(nodes.map(async n => await nodeMemory(n.gatewayUrl))) }
  }
  const a = await jobs(first.gatewayUrl, JOBS[0])
  const afterA = await settled()
  const b = await jobs(first.gatewayUrl, JOBS[1] - JOBS[0])
  const afterB = await settled()
  await Promise.all(nodes.map(async n => { await n.stop() }))
  const growth = afterB.rss.map((x, i) => Math.round((x - afterA.rss[i]) / afterA.rss[i] * 1000) / 10)
  return {
    idleSec: IDLE_MS / 1000,
    settleSec: SETTLE_MS / 1000,
    rssIdleMiB: idle,
    submitter: {
      [`rssAfter${JOBS[0]}JobsMiB`]: afterA.rss[0],
      [`rssAfter${JOBS[1]}JobsMiB`]: afterB.rss[0],
      leakGrowthPct: growth[0],
      rssRightAfterBatchMiB: [afterA.busy[0], afterB.busy[0]],
      [`after${JOBS[0]}Jobs`]: afterA.mem[0],
      [`after${JOBS[1]}Jobs`]: afterB.mem[0]
    },
    providers: {
      [`rssAfter${JOBS[0]}JobsMiB`]: afterA.rss.slice(1),
      [`rssAfter${JOBS[1]}JobsMiB`]: afterB.rss.slice(1),
      leakGrowthPct: growth.slice(1),
      // their main thread's heap (the sandbox worker's is not in /metrics)
      [`after${JOBS[0]}Jobs`]: afterA.mem.slice(1).map(({ heapUsedMiB, heapTotalMiB, externalMiB }) => ({ heapUsedMiB, heapTotalMiB, externalMiB })),
      [`after${JOBS[1]}Jobs`]: afterB.mem.slice(1).map(({ heapUsedMiB, heapTotalMiB, externalMiB }) => ({ heapUsedMiB, heapTotalMiB, externalMiB }))
    },
    jobsCompleted: a.completed + b.completed,
    jobsPerSec: b.jobsPerSec,
    secondsForJobs: Math.round(b.seconds + a.seconds)
  }
}

async function main (): Promise<void> {
  if (!TSX && spawnSync(process.execPath, ['-e', `require('node:fs').accessSync(${JSON.stringify(join(ROOT, 'dist/cli.js'))})`]).status !== 0) {
    throw new Error('dist/ is missing: run `npm run build` first')
  }
  const noWarm = join(await mkdtemp(join(tmpdir(), 'mercato-bench-cfg-')), 'config.json')
  dirs.push(join(noWarm, '..'))
  await writeFile(noWarm, JSON.stringify({ executor: { warmWorkers: 0 } }))
  const baselineNodeE0Ms = baseline()
  const orNull = async <T> (f: () => Promise<T>): Promise<T | null> => await f().catch((err: Error) => { process.stderr.write(`skipped: ${err.message.split('\n')[0]}\n`); return null })
  const warm1 = LEAK_ONLY ? null : await starts()
  const warm0 = LEAK_ONLY ? null : await orNull(async () => await starts(['--config', noWarm]))
  const first1 = LEAK_ONLY ? null : await firstJob(1)
  const first0 = LEAK_ONLY ? null : await orNull(async () => await firstJob(0))
  const m = START_ONLY ? null : await mesh()
  process.stdout.write(JSON.stringify({
    mode: TSX ? 'tsx (sources)' : 'compiled (dist/)',
    node: process.version,
    baselineNodeE0Ms,
    start: { warmWorkers1: warm1, warmWorkers0: warm0 },
    firstJobOnIdleExecutor: { warmWorkers1: first1, warmWorkers0: first0 },
    mesh: m
  }) + '\n')
}

main().then(async () => { await cleanup(); process.exit(0) }, async (err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`)
  await cleanup()
  process.exit(1)
})

async function cleanup (): Promise<void> {
  for (const p of procs) p.kill('SIGKILL')
  await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
}
