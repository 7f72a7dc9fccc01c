/**
 * The pool's warm-up policy: `warmWorkers` threads start with the pool and
 * stay; more start when jobs wait (up to `poolSize`) and stop again after
 * `workerIdleMs` without work, so an idle node keeps only its warm workers.
 */
import { expect } from 'chai'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import { LIMITS, js, text, wasm } from './helpers.js'
import { startTestNode, stopNodes } from '../helpers/nodes.js'

/** Live worker threads of a pool (starting, idle or busy). */
function workers (executor: Executor): number {
  return ((executor as any).slots as unknown[]).length
}

async function until (cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met in ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

describe('executor warm-up policy', function () {
  let executor: Executor | undefined
  afterEach(async () => { await executor?.stop(); executor = undefined })

  it('starts only the warm workers, however large the pool', async () => {
    executor = createExecutor({ poolSize: 3, warmWorkers: 1 })
    await executor.start()
    expect(workers(executor)).to.equal(1)
    expect(executor.stats().poolSize).to.equal(3)
  })

  it('with no warm worker, starts one for the first job and runs it', async () => {
    executor = createExecutor({ poolSize: 2, warmWorkers: 0 })
    await executor.start()
    expect(workers(executor)).to.equal(0)
    const r = await executor.run({ id: 'a', engine: 'js', source: js('hello'), limits: LIMITS })
    expect(r.exitCode).to.equal(0)
    expect(workers(executor)).to.equal(1)
  })

  it('starts workers for waiting jobs up to the pool size, and they run at once', async () => {
    executor = createExecutor({ poolSize: 3, warmWorkers: 1 })
    await executor.start()
    const ac = new AbortController()
    const lim = { ...LIMITS, timeoutMs: 60_000 }
    const jobs = [0, 1, 2].map(async i => await executor!.run({ id: `c${i}`, engine: 'wasm', module: wasm('loop'), limits: lim }, { signal: ac.signal }).catch((err: Error) => err.name))
    await until(() => executor!.stats().busy === 3, 30_000)
    expect(workers(executor)).to.equal(3)
    expect(executor.stats().queued).to.equal(0)
    ac.abort()
    expect(await Promise.all(jobs)).to.deep.equal(['AbortedError', 'AbortedError', 'AbortedError'])
  })

  it('stops idle workers beyond the warm ones, and keeps the warm one', async () => {
    executor = createExecutor({ poolSize: 2, warmWorkers: 1, workerIdleMs: 200 })
    await executor.start()
    const rs = await Promise.all([0, 1, 2, 3].map(async i => await executor!.run({ id: `h${i}`, engine: 'wasm', module: wasm('hello'), args: [String(i)], limits: LIMITS })))
    expect(rs.map(r => text(r.stdout))).to.deep.equal([0, 1, 2, 3].map(i => `hello, world\narg 1: ${i}\n`))
    expect(workers(executor)).to.equal(2)
    await until(() => workers(executor!) === 1, 10_000)
    await new Promise(resolve => setTimeout(resolve, 400))
    expect(workers(executor)).to.equal(1)
    const r = await executor.run({ id: 'after', engine: 'js', source: js('hello'), limits: LIMITS })
    expect(r.exitCode).to.equal(0)
  })

  it('one job after another goes to the warm worker idle longest (it has readied its next context); a worker beyond the warm ones gets none and stops', async () => {
    executor = createExecutor({ poolSize: 3, warmWorkers: 2, workerIdleMs: 1000 })
    await executor.start()
    // a burst of three starts the third worker
    await Promise.all([0, 1, 2].map(async i => await executor!.run({ id: `b${i}`, engine: 'wasm', module: wasm('hello'), limits: LIMITS })))
    expect(workers(executor)).to.equal(3)
    const slots = [...(executor as any).slots] as Array<{ worker: { postMessage: (m: any) => void } }>
    const runs = slots.map(() => 0)
    slots.forEach((slot, i) => {
      const post = slot.worker.postMessage.bind(slot.worker)
      slot.worker.postMessage = (m: any) => { if (m?.type === 'run') runs[i]++; post(m) }
    })
    const job = { engine: 'js' as const, source: 'function main (i) { return i }', limits: LIMITS }
    for (let i = 0; i < 10; i++) expect((await executor.run({ id: `s${i}`, ...job, input: i })).output).to.equal(i)
    expect(runs).to.deep.equal([5, 5, 0])
    await until(() => workers(executor!) === 2, 10_000)
  })

  it('a warm worker killed at a deadline is replaced, so the idle pool stays warm', async () => {
    executor = createExecutor({ poolSize: 2, warmWorkers: 1 })
    await executor.start()
    const r = await executor.run({ id: 't', engine: 'wasm', module: wasm('loop'), limits: { ...LIMITS, timeoutMs: 100 } })
    expect(r.error?.name).to.equal('timeout')
    expect(workers(executor)).to.equal(1)
    const slot = ((executor as any).slots as Array<{ ready: Promise<void>, state: string }>)[0]
    await slot.ready
    expect(slot.state).to.equal('idle')
  })

  it('deferWarmUp: the warm worker starts and loads QuickJS only at warmUp(); a job before it starts a worker of its own', async () => {
    // how long a pool that does not defer takes to have QuickJS warm: the wait below is twice that
    const eager = createExecutor({ poolSize: 1, warmWorkers: 1 })
    const t0 = Date.now()
    try {
      await eager.start()
      await until(() => eager.stats().jsWarm === 1, 30_000)
    } finally {
      await eager.stop()
    }
    const eagerMs = Date.now() - t0
    executor = createExecutor({ poolSize: 2, warmWorkers: 1, deferWarmUp: true })
    await executor.start()
    expect(workers(executor), 'no worker before warmUp()').to.equal(0)
    // twice as long as the eager pool took to warm up: still nothing loaded, nor compiled
    await new Promise(resolve => setTimeout(resolve, Math.max(300, 2 * eagerMs)))
    expect(executor.stats().jsWarm).to.equal(0)
    expect((executor as any).quickjs, 'QuickJS is compiled at warmUp(), not at start').to.equal(undefined)
    // a wasm job starts a worker of its own, needs no QuickJS and loads none
    expect((await executor.run({ id: 'w', engine: 'wasm', module: wasm('hello'), limits: LIMITS })).exitCode).to.equal(0)
    expect(workers(executor)).to.equal(1)
    expect(executor.stats().jsWarm).to.equal(0)
    executor.warmUp?.()
    // that worker is the warm one: warmUp() starts no second
    expect(workers(executor)).to.equal(1)
    await until(() => executor!.stats().jsWarm === 1, 30_000)
    // the worker got the pool's compiled QuickJS with the warm message: the one the eager pool used
    expect((executor as any).quickjs).to.be.instanceOf(WebAssembly.Module).and.equal((eager as any).quickjs)
    const r = await executor.run({ id: 'j', engine: 'js', source: 'function main (i) { return i + 1 }', input: 1, limits: LIMITS })
    expect(r.output).to.equal(2)
    // a second pool: a JS job before warmUp() loads QuickJS itself; warmUp() afterwards does nothing to it
    await executor.stop()
    executor = createExecutor({ poolSize: 1, warmWorkers: 1, deferWarmUp: true })
    await executor.start()
    const early = await executor.run({ id: 'e', engine: 'js', source: 'function main (i) { return i * 3 }', input: 5, limits: LIMITS })
    expect(early.output).to.equal(15)
    executor.warmUp?.()
    await new Promise(resolve => setTimeout(resolve, Math.max(300, 2 * eagerMs)))
    expect(executor.stats().jsWarm).to.equal(0)
    expect((await executor.run({ id: 'e2', engine: 'js', source: 'function main (i) { return i * 3 }', input: 6, limits: LIMITS })).output).to.equal(18)
  })

  it("a fresh worker's first JS job is untouched by the worker's QuickJS warm-up run", async () => {
    executor = createExecutor({ poolSize: 1, warmWorkers: 1 })
    await executor.start()
    const job = { id: 'same', engine: 'js' as const, source: 'function main (i) { console.log("r", Math.random()); return i + 1 }', input: 41, limits: LIMITS }
    const first = await executor.run(job)
    const second = await executor.run(job)
    expect(first.error).to.equal(undefined)
    expect(first.output).to.equal(42)
    expect(text(first.stdout)).to.match(/^r 0\.\d+\n$/)
    expect(first.resultHash).to.equal(second.resultHash)
  })

  it('QuickJS is compiled once per process: every pool posts the same module to its workers, which run JS with it', async () => {
    executor = createExecutor({ poolSize: 1, warmWorkers: 1 })
    const other = createExecutor({ poolSize: 1, warmWorkers: 0 })
    const wasmOnly = createExecutor({ poolSize: 1, warmWorkers: 0, engines: ['wasm'] })
    try {
      await Promise.all([executor.start(), other.start(), wasmOnly.start()])
      const module = (executor as any).quickjs
      expect(module).to.be.instanceOf(WebAssembly.Module)
      expect((other as any).quickjs).to.equal(module)
      expect((wasmOnly as any).quickjs, 'a pool without js compiles none').to.equal(undefined)
      const job = { engine: 'js' as const, source: 'function main (i) { return i * 2 }', input: 21, limits: LIMITS }
      const [a, b] = await Promise.all([executor.run({ id: 'q1', ...job }), other.run({ id: 'q2', ...job })])
      expect([a.output, b.output]).to.deep.equal([42, 42])
    } finally {
      await other.stop()
      await wasmOnly.stop()
    }
  })
})

describe("a node's warm worker", function () {
  this.timeout(60_000)
  after(stopNodes)

  it('a provider keeps one warm worker; a node that does not provide keeps none, and its own exec job starts one', async () => {
    const [provider, consumer] = await Promise.all([startTestNode(), startTestNode({ provide: false })])
    await until(() => provider.executor.stats().jsWarm === 1, 30_000)
    expect(workers(provider.executor)).to.equal(1)
    expect(workers(consumer.executor)).to.equal(0)
    const r = await consumer.executor.run({ id: 'local', engine: 'js', source: 'function main (i) { return i + 1 }', input: 1, limits: LIMITS })
    expect(r.output).to.equal(2)
    expect(workers(consumer.executor)).to.equal(1)
  })
})
