import { expect } from 'chai'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import { LIMITS, js, wasm } from './helpers.js'

const MiB = 1024 * 1024
/** Stated bound: after a memory bomb, host RSS is back within this much of where it was before. */
const RSS_BOUND_BYTES = 96 * MiB

async function settle (executor: Executor): Promise<void> {
  // a recycled worker is replaced asynchronously; wait for the pool to be whole again
  for (let i = 0; i < 50; i++) {
    const slots = (executor as any).slots as Array<{ state: string }>
    if (slots.every(s => s.state === 'idle')) break
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  await new Promise(resolve => setTimeout(resolve, 100))
}

describe('executor: host memory after memory bombs', () => {
  let executor: Executor

  before(async () => {
    executor = createExecutor({ poolSize: 1, maxMemoryMb: 256 })
    await executor.start()
    // warm both engines so the baseline includes them
    await executor.run({ id: 'w', engine: 'wasm', module: wasm('hello'), limits: LIMITS })
    await executor.run({ id: 'w', engine: 'js', source: js('hello'), limits: LIMITS })
  })

  after(async () => { await executor.stop() })

  it(`host RSS returns within ${RSS_BOUND_BYTES / MiB} MiB of its baseline after a 256 MiB wasm bomb and a 128 MiB JS bomb`, async () => {
    await settle(executor)
    const baseline = process.memoryUsage().rss
    // the bombs stop at their memory cap; the deadline is only a safety net (generous: a loaded machine is slow to touch 256 MiB)
    const w = await executor.run({ id: 'bomb', engine: 'wasm', module: wasm('bomb'), limits: { ...LIMITS, timeoutMs: 60_000, memoryMb: 256 } })
    expect(w.error?.name).to.equal('memory-limit')
    expect(w.usage.memoryBytes).to.be.greaterThan(200 * MiB).and.at.most(256 * MiB)
    const j = await executor.run({ id: 'bomb', engine: 'js', source: js('bomb'), input: { kind: 'buffers' }, limits: { ...LIMITS, timeoutMs: 60_000, memoryMb: 128 } })
    expect(j.error?.name).to.equal('memory-limit')
    await settle(executor)
    // a terminated worker gives its memory back asynchronously; on a loaded machine that takes seconds (safety bound: 30 s)
    let after = process.memoryUsage().rss
    for (let i = 0; i < 150 && after - baseline >= RSS_BOUND_BYTES; i++) {
      await new Promise(resolve => setTimeout(resolve, 200))
      after = process.memoryUsage().rss
    }
    if (process.env.MERCATO_TEST_VERBOSE != null) process.stderr.write(`rss baseline ${Math.round(baseline / MiB)} MiB, after ${Math.round(after / MiB)} MiB\n`)
    expect(after - baseline, `baseline ${Math.round(baseline / MiB)} MiB, after ${Math.round(after / MiB)} MiB`).to.be.lessThan(RSS_BOUND_BYTES)
    // and the pool still serves
    const r = await executor.run({ id: 'after', engine: 'wasm', module: wasm('hello'), limits: LIMITS })
    expect(r.exitCode).to.equal(0)
  })
})

describe('executor: back-to-back JS jobs on one worker', () => {
  let executor: Executor
  before(async () => {
    executor = createExecutor({ poolSize: 1, warmWorkers: 1, maxMemoryMb: 64 })
    await executor.start()
  })
  after(async () => { await executor.stop() })

  // (the next job reaches the worker after the pool has read the last one's result, by which time
  // the worker has usually freed the heap in its idle turn; runJs frees it first if not)
  it('each job has its whole memory cap: the last job\'s heap is freed before the next starts, though freeing waits until its result is out', async () => {
    // 40 MiB of a 48 MiB cap: two such heaps at once do not fit in the instance's capped memory
    const big = 'function main (i) { const b = new Uint8Array(40 * 1024 * 1024); b.fill(i.n); return b[b.length - 1] }'
    const lim = { ...LIMITS, memoryMb: 48, timeoutMs: 30_000 }
    const worker = (executor as any).slots[0].worker
    // submitted together: each is handed to the worker the moment the one before it is done
    const rs = await Promise.all(Array.from({ length: 6 }, async (_, n) => await executor.run({ id: `big${n}`, engine: 'js', source: big, input: { n }, limits: lim })))
    expect(rs.map(r => r.error?.name ?? r.output)).to.deep.equal([0, 1, 2, 3, 4, 5])
    expect((executor as any).slots[0].worker, 'the same worker ran them all').to.equal(worker)
  })
})
