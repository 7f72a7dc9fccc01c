/**
 * Executor benchmark: `npm run bench:executor` prints one JSON object.
 *
 * - wasmOverheadMsP50 / jsOverheadMsP50: a trivial job (wasm: `_start` that
 *   returns; js: `main` that returns 1) on a warm pool with the module cached,
 *   measured from run() to its result. Goals: ≤ 2 ms and ≤ 1 ms.
 * - jobsPerSec: the CPU-bound fixture (sieve below 2 000 000) with every
 *   worker busy; jsJobsPerSec the same for the JS sieve.
 * - plus: timeout stop latency, worker replacement time, first compile
 *   (cache miss), fuel overhead.
 */
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { createExecutor, type ExecJob, type ExecResult } from '../src/executor/index.js'
import type { ExecutorPool } from '../src/executor/pool.js'

const fixture = (p: string): Buffer => readFileSync(new URL(`../test/fixtures/${p}`, import.meta.url))
const trivialWasm = new Uint8Array(fixture('wasm/trivial.wasm'))
const sieveWasm = new Uint8Array(fixture('wasm/sieve.wasm'))
const countWasm = new Uint8Array(fixture('wasm/count.wasm'))
const loopWasm = new Uint8Array(fixture('wasm/loop.wasm'))
const sieveJs = fixture('js/sieve.js').toString()
const limits = { timeoutMs: 10_000, memoryMb: 64, outputBytes: 64 * 1024 }

function pct (xs: number[], p: number): number {
  const s = xs.slice().sort((a, b) => a - b)
  return Math.round(s[Math.min(s.length - 1, Math.floor(s.length * p))] * 1000) / 1000
}

const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d

async function main (): Promise<void> {
  const poolSize = availableParallelism()
  const executor = createExecutor({ poolSize, queueSize: 1024 })
  const t0 = performance.now()
  await executor.start()
  const startMs = performance.now() - t0

  const timed = async (job: ExecJob): Promise<[number, ExecResult]> => {
    const t = performance.now()
    const r = await executor.run(job)
    return [performance.now() - t, r]
  }

  // first compile of the sieve (cache miss), then cached
  const [firstCompileRunMs] = await timed({ id: 'c', engine: 'wasm', module: sieveWasm, args: ['10'], limits })
  const [cachedRunMs] = await timed({ id: 'c', engine: 'wasm', module: sieveWasm, args: ['10'], limits })

  const N = 1000
  const wasmTimes: number[] = []
  for (let i = 0; i < 100; i++) await timed({ id: `w${i}`, engine: 'wasm', module: trivialWasm, limits })
  for (let i = 0; i < N; i++) wasmTimes.push((await timed({ id: `w${i}`, engine: 'wasm', module: trivialWasm, limits }))[0])

  const jsTimes: number[] = []
  const trivialJs = 'function main () { return 1 }'
  for (let i = 0; i < 100; i++) await timed({ id: `j${i}`, engine: 'js', source: trivialJs, limits })
  for (let i = 0; i < N; i++) jsTimes.push((await timed({ id: `j${i}`, engine: 'js', source: trivialJs, limits }))[0])

  // throughput: the CPU-bound fixture on the full pool
  const M = 40 * poolSize
  let t = performance.now()
  const rs = await Promise.all(Array.from({ length: M }, async (_, i) => await executor.run({ id: `s${i}`, engine: 'wasm', module: sieveWasm, args: ['2000000'], limits })))
  const sieveSec = (performance.now() - t) / 1000
  if (rs.some(r => r.exitCode !== 0)) throw new Error('sieve failed')
  const [oneSieveMs] = await timed({ id: 'one', engine: 'wasm', module: sieveWasm, args: ['2000000'], limits })

  const MJ = 20 * poolSize
  t = performance.now()
  await Promise.all(Array.from({ length: MJ }, async (_, i) => await executor.run({ id: `js${i}`, engine: 'js', source: sieveJs, input: { n: 200_000 }, limits })))
  const jsSieveSec = (performance.now() - t) / 1000

  // fuel overhead: a tight loop, metered vs not
  const [plainMs] = await timed({ id: 'f', engine: 'wasm', module: countWasm, limits })
  await timed({ id: 'f', engine: 'wasm', module: countWasm, limits: { ...limits, fuel: 1e12 } }) // compile the metered variant
  const [plainMs2] = await timed({ id: 'f', engine: 'wasm', module: countWasm, limits })
  const [fuelMs] = await timed({ id: 'f', engine: 'wasm', module: countWasm, limits: { ...limits, fuel: 1e12 } })

  // timeout: how late after the deadline is the guest stopped, and how long until the pool is whole again
  const late: number[] = []
  for (let i = 0; i < 5; i++) {
    const [, r] = await timed({ id: 'l', engine: 'wasm', module: loopWasm, limits: { ...limits, timeoutMs: 100 } })
    if (r.error?.name !== 'timeout') throw new Error('loop did not time out')
    late.push(r.usage.wallMs - 100) // from dispatch to the worker, not counting queue time
    await new Promise(resolve => setTimeout(resolve, 400)) // let the spare refill
  }
  const pool = executor as ExecutorPool
  const internals = pool as unknown as { slots: Array<{ state: string }>, spares: Array<{ state: string }> }
  await timed({ id: 'l', engine: 'wasm', module: loopWasm, limits: { ...limits, timeoutMs: 50 } })
  t = performance.now()
  while (!internals.slots.every(s => s.state === 'idle')) await new Promise(resolve => setTimeout(resolve, 1))
  const poolWholeAfterKillMs = performance.now() - t
  while (!internals.spares.every(s => s.state === 'idle')) await new Promise(resolve => setTimeout(resolve, 2))
  const workerStartMs = performance.now() - t

  await executor.stop()
  const out = {
    poolSize,
    wasmOverheadMsP50: pct(wasmTimes, 0.5),
    wasmOverheadMsP99: pct(wasmTimes, 0.99),
    jsOverheadMsP50: pct(jsTimes, 0.5),
    jsOverheadMsP99: pct(jsTimes, 0.99),
    jobsPerSec: round(M / sieveSec),
    jobsPerSecFixture: 'sieve.wasm, primes below 2000000',
    sieveSingleJobMs: round(oneSieveMs),
    jsJobsPerSec: round(MJ / jsSieveSec),
    jsJobsPerSecFixture: 'sieve.js, primes below 200000',
    firstCompileRunMs: round(firstCompileRunMs),
    cachedRunMs: round(cachedRunMs, 2),
    fuelOverheadRatio: round(fuelMs / Math.min(plainMs, plainMs2), 2),
    timeoutStopLateMsP50: round(pct(late, 0.5)),
    timeoutStopLateMsMax: round(Math.max(...late)),
    poolWholeAfterKillMs: round(poolWholeAfterKillMs),
    workerStartMs: round(workerStartMs),
    poolStartMs: round(startMs),
    moduleCache: pool.cacheStats(),
    node: process.version
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

await main()
