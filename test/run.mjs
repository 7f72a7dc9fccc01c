#!/usr/bin/env node
/**
 * `npm test`'s runner: the suite in three lanes at once, each a plain mocha
 * run (.mocharc.json) on the Node that runs this script, and beside them the
 * type check of tests, benchmarks and scripts (`tsc --noEmit -p tsconfig.test.json`,
 * against the .d.ts files of the build, which checked src/ just before; not when
 * mocha arguments ask for part of the suite; incremental, .cache/typecheck.tsbuildinfo).
 *
 * - lane "net": the tests that spend their time waiting on things outside
 *   Node — network namespaces with NAT routers and miniupnpd (test/nat), the
 *   mDNS LAN (test/p2p/lan), a Slurm cluster (test/slurm/slurm) — and use
 *   little CPU while they wait;
 * - lane "wait": in-process tests that mostly wait on their own timers
 *   (WAIT_LANE), one after another;
 * - lane "main": everything else, in mocha's parallel mode: MERCATO_TEST_JOBS
 *   worker processes (default 3) take the files one at a time, the slowest
 *   files (SLOW_FIRST) first so that short ones fill the end. Most of these
 *   tests wait on sockets, timers and child processes: on 2026-12-04 (Node
 *   20, 2 cores, no lane "wait" yet) two at a time took 223 s with the cores
 *   1.3 busy on average (297 s of CPU), three 184 s (1.6), four 162 s (1.7;
 *   single tests up to 4.7 times slower than with two). Three once failed
 *   timing-bound tests, when the suite needed 520 s of CPU; it needs less
 *   than 300 s now.
 *
 * The main lane's output streams as each file ends; the others are printed
 * whole when all are done. The exit code is non-zero if any lane failed.
 *
 *   node test/run.mjs [mocha args...]   (e.g. --grep pattern)
 *   MERCATO_TEST_JOBS=1 node test/run.mjs   (lane "main" one file at a time)
 */
import { spawn } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join, relative } from 'node:path'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const MOCHA = join(ROOT, 'node_modules/mocha/bin/mocha.js')
const NET_LANE = ['test/nat/', 'test/p2p/lan.test.ts', 'test/slurm/slurm.test.ts']
/** files of lane "main" that mostly wait on timers (alone, Node 20: 41 s for 6 s of CPU, 21 s for 7, 18 s for 5): one after another in lane "wait" */
const WAIT_LANE = ['test/auction/sybil.test.ts', 'test/auction/relay-drop.test.ts', 'test/p2p/scoring.test.ts']
/** files of lane "main" that took 9 s or more alone (2-core machine, Node 20, 2026-12-04), slowest first */
const SLOW_FIRST = [
  'test/auction/queue.test.ts', 'test/gateway/dashboard.test.ts', 'test/auction/hostile.test.ts',
  'test/auction/failover.test.ts', 'test/gateway/live-logs.test.ts', 'test/p2p/nat.test.ts',
  'test/ledger/crash.test.ts', 'test/p2p/discovery.test.ts', 'test/auction/blobs.test.ts',
  'test/auction/constraints.test.ts', 'test/executor/hostile.test.ts', 'test/auction/market.test.ts',
  'test/gateway/fuzz.test.ts', 'test/client/devnet.test.ts', 'test/node/package.test.ts',
  'test/auction/adverts.test.ts', 'test/auction/invite-mesh.test.ts'
]

/** Every file under `dir`, in name order, with its stat. */
function * walk (dir) {
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name)
    const st = statSync(full)
    if (st.isDirectory()) yield * walk(full)
    else yield { path: full, st }
  }
}

const testFiles = (dir) => [...walk(dir)].filter(f => f.path.endsWith('.test.ts')).map(f => relative(ROOT, f.path))

const JOBS = Math.max(1, Math.floor(Number(process.env.MERCATO_TEST_JOBS ?? 3)) || 1)
const files = testFiles(join(ROOT, 'test'))
const isNet = (f) => NET_LANE.some(p => f === p || f.startsWith(p))
const rank = (f) => { const i = SLOW_FIRST.indexOf(f); return i < 0 ? SLOW_FIRST.length : i }
const isWait = (f) => WAIT_LANE.includes(f)
const mainFiles = files.filter(f => !isNet(f) && !isWait(f)).sort((a, b) => rank(a) - rank(b))
const extra = process.argv.slice(2)
const lanes = [
  { name: 'main', files: mainFiles, live: true, args: JOBS > 1 ? ['--parallel', '--jobs', String(JOBS)] : [] },
  { name: 'net', files: files.filter(isNet), live: false },
  { name: 'wait', files: files.filter(isWait), live: false }
]
// the whole suite also type-checks (tsx runs the tests without checking types); a partial run does
// not. src/ was checked by the build (`npm test` runs it first); tsconfig.test.json references that
// project, so the tests are checked against its .d.ts files instead of checking src/ a second time
// (a fresh clone, Node 20, 2 cores, alone: 5.2 s and 8.1 s of CPU, against 7.8 s and 11.9 s for
// everything from the sources; `npm run typecheck` still does that). Incrementally: what tsc learnt
// is kept in .cache/ (git-ignored), so a run on an unchanged tree re-reads the files and checks
// only what changed since (errors it found are kept and shown again): 2.4 s.
const TYPES_CACHE = join(ROOT, '.cache/typecheck.tsbuildinfo')
if (extra.length === 0) lanes.push({ name: 'types', command: [join(ROOT, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', join(ROOT, 'tsconfig.test.json'), '--incremental', '--tsBuildInfoFile', TYPES_CACHE], what: 'tsc --noEmit -p tsconfig.test.json', files: [], live: false })

/** The newest modification time of the files under `dir` (ms). */
const newest = (dir) => Math.max(0, ...[...walk(dir)].map(f => f.st.mtimeMs))

// The sandbox workers of in-process nodes run the compiled worker (dist/executor/worker.js, as
// users run it) when the last build is newer than every source, as `npm test` leaves it: from the
// sources each worker loads tsx, ≈ 0.25 s of CPU per worker start, and the suite starts ~190 of
// them. The build's last step writes dist/bundle.meta.json (tsc leaves an unchanged output's file alone).
const env = { ...process.env }
try {
  statSync(join(ROOT, 'dist/executor/worker.js'))
  if (statSync(join(ROOT, 'dist/bundle.meta.json')).mtimeMs >= newest(join(ROOT, 'src'))) env.MERCATO_COMPILED_WORKERS ??= '1'
} catch {}
if (env.MERCATO_COMPILED_WORKERS !== '1') process.stderr.write('test/run.mjs: dist/ is missing or older than src/ (npm run build): sandbox workers load the sources through tsx\n')

function run (lane) {
  return new Promise((resolve) => {
    const t0 = Date.now()
    let buffered = ''
    const argv = lane.command ?? [MOCHA, ...(lane.args ?? []), ...extra, ...lane.files]
    const child = spawn(process.execPath, argv, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    const take = (stream) => (chunk) => { if (lane.live) stream.write(chunk); else buffered += chunk }
    child.stdout.on('data', take(process.stdout))
    child.stderr.on('data', take(process.stderr))
    // a signal to the runner (CI's time limit, ^C) reaches both lanes
    const forward = (sig) => { child.kill(sig) }
    process.on('SIGINT', forward)
    process.on('SIGTERM', forward)
    child.on('close', (code, signal) => {
      resolve({ lane, code: code ?? 1, signal, seconds: Math.round((Date.now() - t0) / 1000), output: buffered })
    })
  })
}

const results = await Promise.all(lanes.map(run))
for (const r of results) {
  if (r.lane.live) continue
  if (r.lane.command != null && r.code === 0 && r.output === '') continue
  process.stdout.write(`\n======== lane "${r.lane.name}" (${r.lane.what ?? r.lane.files.join(', ')}) ========\n${r.output}`)
}
process.stdout.write('\n')
for (const r of results) process.stdout.write(`lane ${r.lane.name}: ${r.lane.what ?? `${r.lane.files.length} files`}, ${r.code === 0 ? 'passed' : `FAILED (exit ${r.code}${r.signal != null ? `, ${r.signal}` : ''})`} in ${r.seconds} s\n`)
process.exitCode = results.some(r => r.code !== 0) ? 1 : 0
