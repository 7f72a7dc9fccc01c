/**
 * Per-job overhead of the Slurm backend against the local sandbox: a trivial
 * JS job, one at a time, on each backend, against a one-node Slurm cluster
 * started here (test/slurm/cluster.ts: needs root, slurm-wlm and munge).
 * The local backend's wall time is the raw baseline of the same run.
 *
 *   npm run bench:slurm [-- --jobs 5]
 */
import '../src/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createExecutor, DEFAULT_INIT, LocalBackend, SlurmBackend, type ExecJob } from '../src/executor/index.js'
import { clusterUnavailable, startSlurmCluster } from '../test/slurm/cluster.js'
import { pct } from './util.js'

const { values } = parseArgs({ options: { jobs: { type: 'string', default: '3' } } })
const jobs = Math.max(1, Number(values.jobs))
const LIMITS = { timeoutMs: 20_000, memoryMb: 64, outputBytes: 65536 }
const trivial = (k: number): ExecJob => ({ id: `trivial-${k}`, engine: 'js', source: 'function main (x) { return x + 1 }', input: k, limits: LIMITS })

const why = clusterUnavailable()
if (why != null) {
  process.stderr.write(`bench:slurm: ${why}\n`)
  process.exit(1)
}
const cluster = await startSlurmCluster()
const stageDir = await mkdtemp(join(tmpdir(), 'mercato-stage-'))
const local = new LocalBackend(createExecutor({ poolSize: 1 }))
const slurm = new SlurmBackend({ stageDir, conf: cluster.conf, pollMs: 200, maxPendingMs: 240_000 }, { ...DEFAULT_INIT, poolSize: 1 })
try {
  await local.start()
  await slurm.start()
  const localMs: number[] = []
  const slurmMs: number[] = []
  for (let k = 0; k < jobs; k++) {
    let t = performance.now()
    await local.run(trivial(k))
    localMs.push(performance.now() - t)
    t = performance.now()
    await slurm.run(trivial(k))
    slurmMs.push(performance.now() - t)
  }
  process.stdout.write(JSON.stringify({
    jobs,
    baseline: { localJobMsP50: pct(localMs, 50) },
    slurmJobMsP50: pct(slurmMs, 50),
    overheadMsP50: Math.round(pct(slurmMs, 50) - pct(localMs, 50)),
    slurmRunsMs: slurmMs.map(Math.round)
  }, null, 2) + '\n')
} finally {
  await slurm.stop().catch(() => {})
  await local.stop().catch(() => {})
  await cluster.stop()
  await rm(stageDir, { recursive: true, force: true })
}
