import { expect } from 'chai'
import { cidOfBytes } from '../../src/crypto/index.js'
import {
  AbortedError, ExecutorStoppedError, InvalidModuleError, QueueFullError, UnsupportedEngineError,
  computeResultHash, createExecutor, type Executor, type ExecJob
} from '../../src/executor/index.js'
import type { ExecutorPool } from '../../src/executor/pool.js'
import { LIMITS, js, text, wasm } from './helpers.js'

/** The guarantee: a guest is stopped within this long after its deadline. */
const STOP_WITHIN_MS = 250

describe('executor', function () {
  let executor: Executor

  before(async () => {
    executor = createExecutor({ poolSize: 2, warmWorkers: 2, queueSize: 8 })
    await executor.start()
  })

  after(async () => { await executor.stop() })

  const run = async (job: Partial<ExecJob> & { engine: ExecJob['engine'] }, id = 'job'): Promise<Awaited<ReturnType<Executor['run']>>> =>
    await executor.run({ id, limits: LIMITS, ...job })

  describe('wasm engine', () => {
    it('runs hello with args and env', async () => {
      const r = await run({ engine: 'wasm', module: wasm('hello'), args: ['a', 'b c'], env: { MERCATO_NAME: 'ada' } })
      expect(r.error).to.equal(undefined)
      expect(r.exitCode).to.equal(0)
      expect(text(r.stdout)).to.equal('hello, world\narg 1: a\narg 2: b c\nname: ada\n')
      expect(r.usage.outputBytes).to.equal(r.stdout.length)
      expect(r.resultHash).to.equal(computeResultHash('job', r))
    })

    it('returns the guest exit code', async () => {
      const r = await run({ engine: 'wasm', module: wasm('hello'), args: ['!x'] })
      expect(r.exitCode).to.equal(7)
      expect(r.error).to.equal(undefined)
    })

    it('echoes stdin', async () => {
      const input = new TextEncoder().encode('line one\nline two\n')
      const r = await run({ engine: 'wasm', module: wasm('echo'), stdin: input })
      expect(text(r.stdout)).to.equal('line one\nline two\n')
      expect(text(r.stderr)).to.equal('18 bytes\n')
    })

    it('runs a CPU-bound job', async () => {
      const r = await run({ engine: 'wasm', module: wasm('sieve'), args: ['1000000'] })
      expect(text(r.stdout)).to.equal('78498 primes below 1000000\n')
      expect(r.usage.memoryBytes).to.be.greaterThan(1_000_000)
    })

    it('verifies the module against its CID and caches compiled modules', async () => {
      const bytes = wasm('hello')
      const cid = cidOfBytes(bytes)
      const pool = executor as ExecutorPool
      const before = pool.cacheStats()
      await run({ engine: 'wasm', module: bytes, moduleCid: cid })
      await run({ engine: 'wasm', module: bytes, moduleCid: cid })
      const after = pool.cacheStats()
      expect(after.hits - before.hits).to.be.greaterThanOrEqual(1)
      const other = cidOfBytes(wasm('echo'))
      const err = await run({ engine: 'wasm', module: bytes, moduleCid: other }).catch(e => e)
      expect(err).to.be.instanceOf(InvalidModuleError)
      expect(err.code).to.equal('invalid-module')
    })

    it('sleeping does not block: the virtual clock jumps', async () => {
      const t = performance.now()
      const r = await run({ engine: 'wasm', module: wasm('sleep'), args: ['3600'] })
      expect(performance.now() - t).to.be.lessThan(1000)
      expect(text(r.stdout)).to.equal('slept 3600000 ms\n')
    })

    it('stops an infinite loop within 250 ms after the deadline', async () => {
      const t = performance.now()
      const r = await run({ engine: 'wasm', module: wasm('loop'), limits: { ...LIMITS, timeoutMs: 200 } })
      const took = performance.now() - t
      expect(r.error?.name).to.equal('timeout')
      expect(r.exitCode).to.equal(-1)
      expect(took).to.be.lessThan(200 + STOP_WITHIN_MS)
    })

    it('stops a guest that sleeps forever within 250 ms after the deadline', async () => {
      const t = performance.now()
      const r = await run({ engine: 'wasm', module: wasm('sleep'), args: ['forever'], limits: { ...LIMITS, timeoutMs: 200 } })
      expect(r.error?.name).to.equal('timeout')
      expect(performance.now() - t).to.be.lessThan(200 + STOP_WITHIN_MS)
    })

    it('fails a memory bomb cleanly at the cap (memory-limit)', async () => {
      const r = await run({ engine: 'wasm', module: wasm('bomb'), limits: { ...LIMITS, memoryMb: 16 } })
      expect(r.error?.name).to.equal('memory-limit')
      expect(r.usage.memoryBytes).to.be.at.most(16 * 1024 * 1024)
      expect(text(r.stderr)).to.match(/malloc failed after 1[0-9] MiB/)
    })

    it('caps an imported memory too', async () => {
      const r = await run({ engine: 'wasm', module: wasm('imported-memory'), limits: { ...LIMITS, memoryMb: 4 } })
      expect(r.error?.name).to.equal('memory-limit')
      expect(r.usage.memoryBytes).to.equal(4 * 1024 * 1024)
      expect(text(r.stdout)).to.equal('grow failed\n')
    })

    it('refuses to start a module whose initial memory exceeds the cap (memory-limit)', async () => {
      const r = await run({ engine: 'wasm', module: wasm('big-initial'), limits: { ...LIMITS, memoryMb: 2 } })
      expect(r.error?.name).to.equal('memory-limit')
    })

    it('cuts an output flood at the cap and stops it (output-limit)', async () => {
      const r = await run({ engine: 'wasm', module: wasm('flood'), limits: { ...LIMITS, outputBytes: 10_000 } })
      expect(r.error?.name).to.equal('output-limit')
      expect(r.truncated).to.equal(true)
      expect(r.stdout.length).to.equal(10_000)
      expect(r.usage.outputBytes).to.equal(10_000)
    })

    it('reports a trap', async () => {
      const r = await run({ engine: 'wasm', module: wasm('trap') })
      expect(r.error?.name).to.equal('trap')
      expect(r.exitCode).to.equal(-1)
    })

    it('meters fuel exactly and stops at the budget (fuel-exhausted)', async () => {
      const ok = await run({ engine: 'wasm', module: wasm('count'), limits: { ...LIMITS, fuel: 1e9 } })
      expect(ok.error).to.equal(undefined)
      const again = await run({ engine: 'wasm', module: wasm('count'), limits: { ...LIMITS, fuel: 1e9 } })
      expect(again.usage.fuel).to.equal(ok.usage.fuel).and.be.greaterThan(10_000_000)
      const r = await run({ engine: 'wasm', module: wasm('count'), limits: { ...LIMITS, fuel: 5000 } })
      expect(r.error?.name).to.equal('fuel-exhausted')
      expect(r.usage.fuel).to.equal(5000)
      const hello = await run({ engine: 'wasm', module: wasm('hello'), limits: { ...LIMITS, fuel: 1e9 } })
      expect(text(hello.stdout)).to.equal('hello, world\n')
    })

    it('has no host files, directories, env or sockets (escape attempts fail)', async () => {
      const r = await run({ engine: 'wasm', module: wasm('escape') })
      const out = text(r.stdout)
      expect(out).to.include('blocked open /etc/passwd')
      expect(out).to.include('blocked env HOME')
      expect(out).to.not.match(/^(OPEN|OPENDIR|ENV|CREATED)/m)
      expect(r.exitCode).to.equal(0)
    })

    it('seeds clocks and randomness', async () => {
      const a = await run({ engine: 'wasm', module: wasm('entropy') }, 'same')
      const b = await run({ engine: 'wasm', module: wasm('entropy') }, 'same')
      const c = await run({ engine: 'wasm', module: wasm('entropy'), seed: 'other' }, 'same')
      expect(text(a.stdout)).to.equal(text(b.stdout))
      expect(text(a.stdout)).to.match(/^realtime 1704067200\./)
      expect(text(c.stdout)).to.not.equal(text(a.stdout))
    })
  })

  describe('refusals throw named errors', () => {
    it('invalid modules', async () => {
      for (const module of [wasm('shared-memory'), wasm('foreign-import'), new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 2]), new Uint8Array([9, 9])]) {
        const err = await run({ engine: 'wasm', module }).catch(e => e)
        expect(err).to.be.instanceOf(InvalidModuleError)
        expect(err.code).to.equal('invalid-module')
      }
      const noStart = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])
      expect(await run({ engine: 'wasm', module: noStart }).catch(e => e.code)).to.equal('invalid-module')
    })

    it('unsupported engines', async () => {
      const err = await run({ engine: 'python' as any }).catch(e => e)
      expect(err).to.be.instanceOf(UnsupportedEngineError)
      expect(err.code).to.equal('unsupported-engine')
      const wasmOnly = createExecutor({ poolSize: 1, engines: ['wasm'] })
      try {
        expect(wasmOnly.engines()).to.deep.equal(['wasm'])
        expect(await wasmOnly.run({ id: 'j', engine: 'js', source: '1', limits: LIMITS }).catch(e => e.code)).to.equal('unsupported-engine')
      } finally { await wasmOnly.stop() }
    })

    it('an already aborted signal', async () => {
      const err = await executor.run({ id: 'j', engine: 'wasm', module: wasm('hello'), limits: LIMITS }, { signal: AbortSignal.abort() }).catch(e => e)
      expect(err).to.be.instanceOf(AbortedError)
      expect(err.code).to.equal('aborted')
    })

    it('a full queue', async () => {
      const small = createExecutor({ poolSize: 1, queueSize: 1, engines: ['wasm'] })
      await small.start()
      try {
        // the loop holds the only worker long enough for the queue to fill (under load, compiling alone can take a while)
        const until = async (ok: () => boolean): Promise<void> => { for (let i = 0; i < 1000 && !ok(); i++) await new Promise(resolve => setTimeout(resolve, 10)) }
        const lim = { ...LIMITS, timeoutMs: 150 }
        const first = small.run({ id: 'a', engine: 'wasm', module: wasm('loop'), limits: { ...lim, timeoutMs: 2000 } })
        await until(() => small.stats().busy === 1)
        const second = small.run({ id: 'b', engine: 'wasm', module: wasm('hello'), limits: lim })
        await until(() => small.stats().queued === 1)
        expect(small.stats()).to.include({ busy: 1, queued: 1 })
        const err = await small.run({ id: 'c', engine: 'wasm', module: wasm('hello'), limits: lim }).catch(e => e)
        expect(err).to.be.instanceOf(QueueFullError)
        expect(err.code).to.equal('queue-full')
        expect((await first).error?.name).to.equal('timeout')
        expect(text((await second).stdout)).to.equal('hello, world\n')
      } finally { await small.stop() }
    })
  })

  describe('js engine', () => {
    it('runs main(input): console is stdout, the return value is output', async () => {
      const r = await run({ engine: 'js', source: js('hello'), input: { name: 'ada', n: 21 } })
      expect(r.error).to.equal(undefined)
      expect(r.exitCode).to.equal(0)
      expect(text(r.stdout)).to.equal('hello, ada\n')
      expect(text(r.stderr)).to.equal('a line on stderr\n')
      expect(r.output).to.deep.equal({ greeting: 'hello, ada', n: 42 })
      expect(r.resultHash).to.equal(computeResultHash('job', r))
    })

    it('awaits an async main', async () => {
      const r = await run({ engine: 'js', source: js('async'), input: { x: 4 } })
      expect(r.output).to.deep.equal({ doubled: 8 })
    })

    it('seeds Math.random and fixes Date (UTC, virtual clock)', async () => {
      const a = await run({ engine: 'js', source: js('random') }, 'r1')
      const b = await run({ engine: 'js', source: js('random') }, 'r1')
      const c = await run({ engine: 'js', source: js('random') }, 'r2')
      expect(a.output).to.deep.equal(b.output)
      expect(a.resultHash).to.equal(b.resultHash)
      expect((a.output as any).draws).to.not.deep.equal((c.output as any).draws)
      expect(a.output).to.deep.include({ now: 1704067200000, iso: '2024-01-01T00:00:00.001Z', hours: 0 })
      expect((a.output as any).string).to.match(/^Mon Jan 01 2024 00:00:00 GMT\+0000/)
    })

    it('a busy-wait on the clock ends deterministically', async () => {
      const a = await run({ engine: 'js', source: js('busy-wait') })
      expect(a.output).to.deep.equal({ reads: 999 })
    })

    it('an uncaught exception exits 1 with the message on stderr', async () => {
      const r = await run({ engine: 'js', source: js('throw') })
      expect(r.exitCode).to.equal(1)
      expect(r.error).to.equal(undefined)
      expect(text(r.stderr)).to.match(/^Uncaught Error: boom/)
    })

    it('stops an infinite loop within 250 ms after the deadline', async () => {
      const t = performance.now()
      const r = await run({ engine: 'js', source: js('loop'), limits: { ...LIMITS, timeoutMs: 200 } })
      expect(r.error?.name).to.equal('timeout')
      expect(performance.now() - t).to.be.lessThan(200 + STOP_WITHIN_MS)
    })

    it('fails a memory bomb at the cap (objects and array buffers)', async () => {
      for (const kind of ['objects', 'buffers']) {
        const r = await run({ engine: 'js', source: js('bomb'), input: { kind }, limits: { ...LIMITS, memoryMb: 16 } })
        expect(r.error?.name, kind).to.equal('memory-limit')
      }
    })

    it('caps the stack', async () => {
      const r = await run({ engine: 'js', source: js('recursion') })
      expect(r.error?.name).to.equal('memory-limit')
      expect(r.error?.message).to.match(/stack/)
    })

    it('cuts an output flood at the cap (output-limit)', async () => {
      const r = await run({ engine: 'js', source: js('flood'), limits: { ...LIMITS, outputBytes: 5000 } })
      expect(r.error?.name).to.equal('output-limit')
      expect(r.truncated).to.equal(true)
      expect(r.stdout.length).to.equal(5000)
    })

    it('counts the output JSON against the cap', async () => {
      const r = await run({ engine: 'js', source: 'function main () { return "x".repeat(2000) }', limits: { ...LIMITS, outputBytes: 1000 } })
      expect(r.error?.name).to.equal('output-limit')
      expect(r.output).to.equal(undefined)
    })

    it('has no host objects (escape attempts fail)', async () => {
      const r = await run({ engine: 'js', source: js('escape') })
      const found = r.output as Record<string, boolean>
      expect(Object.keys(found)).to.have.length.greaterThan(8)
      for (const [k, v] of Object.entries(found)) {
        if (k === 'WebAssembly') continue // QuickJS has none anyway; listed for completeness
        expect(v, k).to.equal(false)
      }
    })

    it('meters coarse fuel', async () => {
      const r = await run({ engine: 'js', source: js('loop'), limits: { ...LIMITS, fuel: 100_000 } })
      expect(r.error?.name).to.equal('fuel-exhausted')
    })
  })

  describe('pool', () => {
    it('a killed worker is replaced and the pool keeps serving', async () => {
      const pool = executor as ExecutorPool
      const slow = run({ engine: 'wasm', module: wasm('loop'), limits: { ...LIMITS, timeoutMs: 3000 } })
      await new Promise(resolve => setTimeout(resolve, 50))
      // kill the busy worker from outside, as a crash would
      const slots = (pool as any).slots as Array<{ state: string, worker: { terminate: () => Promise<number> } }>
      const busy = slots.find(s => s.state === 'busy')
      expect(busy).to.not.equal(undefined)
      await busy?.worker.terminate()
      const r = await slow
      expect(r.error?.name).to.equal('trap')
      expect(r.error?.message).to.match(/worker/)
      const results = await Promise.all([1, 2, 3, 4].map(async i => await run({ engine: 'wasm', module: wasm('hello'), args: [String(i)] })))
      expect(results.map(x => text(x.stdout))).to.deep.equal([1, 2, 3, 4].map(i => `hello, world\narg 1: ${i}\n`))
      expect(executor.stats().poolSize).to.equal(2)
    })

    it('aborting a running job stops it, throws AbortedError, and the pool keeps serving', async () => {
      const t = performance.now()
      const err = await executor.run({ id: 'j', engine: 'wasm', module: wasm('loop'), limits: LIMITS }, { signal: AbortSignal.timeout(100) }).catch(e => e)
      expect(err).to.be.instanceOf(AbortedError)
      expect(performance.now() - t).to.be.lessThan(1000)
      const r = await run({ engine: 'js', source: js('hello') })
      expect(r.exitCode).to.equal(0)
    })

    it('runs jobs concurrently on the pool', async () => {
      // both workers up and idle first (the abort before replaced one, and a second worker starts on
      // demand): a worker's boot on a loaded machine is not what this measures
      await Promise.all([0, 1].map(async i => await run({ engine: 'js', source: js('hello') }, `w${i}`)))
      const slots = (executor as any).slots as Array<{ state: string }>
      for (let i = 0; i < 500 && !(slots.length === 2 && slots.every(s => s.state === 'idle')); i++) await new Promise(resolve => setTimeout(resolve, 10))
      const t = performance.now()
      const lim = { ...LIMITS, timeoutMs: 300 }
      const rs = await Promise.all([0, 1].map(async i => await run({ engine: 'wasm', module: wasm('loop'), limits: lim }, `c${i}`)))
      expect(rs.every(r => r.error?.name === 'timeout')).to.equal(true)
      expect(performance.now() - t).to.be.lessThan(300 + STOP_WITHIN_MS + 150)
    })

    it('counts completed and failed jobs', () => {
      const s = executor.stats()
      expect(s.completed).to.be.greaterThan(10)
      expect(s.failed).to.be.greaterThan(5)
      expect(s.busy).to.equal(0)
      expect(s.queued).to.equal(0)
    })

    it('a stopped pool refuses a job that arrives late (a node shutting down) instead of starting workers again; start() brings it back', async () => {
      const pool = createExecutor({ poolSize: 1, warmWorkers: 1 })
      await pool.start()
      await pool.stop()
      const err = await pool.run({ id: 'late', engine: 'js', source: js('hello'), limits: LIMITS }).catch(e => e)
      expect(err).to.be.instanceOf(ExecutorStoppedError)
      expect(((pool as ExecutorPool) as any).slots.length).to.equal(0)
      await pool.start()
      try {
        expect((await pool.run({ id: 'again', engine: 'js', source: js('hello'), limits: LIMITS })).exitCode).to.equal(0)
      } finally { await pool.stop() }
    })
  })
})
