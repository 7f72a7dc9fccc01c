import { expect } from 'chai'
import { Worker } from 'node:worker_threads'
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8'
import { fullGc, startIdleGc } from '../../src/idle-gc.js'

const MiB = 1024 * 1024
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
async function waitUntil (ok: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms
  while (!ok() && Date.now() < until) await sleep(20)
}

/** A heap whose sizes (used, committed) the test sets, and a collector that brings both back to `live`. */
function fakeHeap (live: number): { used: number, committed: number, runs: number, gc: () => void, heapUsed: () => number, heapCommitted: () => number } {
  const h = {
    used: live,
    committed: live,
    runs: 0,
    gc: () => { h.runs++; h.used = live; h.committed = live },
    heapUsed: () => h.used,
    heapCommitted: () => h.committed
  }
  return h
}

describe('idle collection (src/idle-gc.ts)', function () {
  this.timeout(20_000)

  it('reaches V8\'s collector without --expose-gc, and leaves no gc on the global', () => {
    const gc = fullGc()
    expect(gc).to.be.a('function')
    // garbage kept alive until it is old (several scavenges), then dropped
    let held: object[] = []
    for (let i = 0; i < 64; i++) held.push(Array.from({ length: 2048 }, (_, j) => ({ i, j, s: `x${j}` })))
    const withGarbage = getHeapStatistics().used_heap_size
    held = []
    gc?.()
    expect(getHeapStatistics().used_heap_size).to.be.below(withGarbage - 4 * MiB)
    expect(held).to.have.length(0)
    if (!process.execArgv.includes('--expose-gc')) expect((globalThis as { gc?: unknown }).gc).to.equal(undefined)
  })

  it('gives a fragmented heap\'s pages back: the old space is compacted, not left committed around the survivors', () => {
    // (a plain full collection of this heap leaves its old space at ≈ 6 MiB used of 48 MiB committed on Node 20)
    const gc = fullGc()
    expect(gc).to.be.a('function')
    // one object in twenty kept: every page stays partly live
    let all: object[] | null = []
    const kept: object[] = []
    for (let i = 0; i < 400_000; i++) { const o = { a: i, b: `x${i}`, c: [i, i + 1] }; all.push(o); if (i % 20 === 0) kept.push(o) }
    all = null
    const before = getHeapSpaceStatistics().find(x => x.space_name === 'old_space')
    gc?.()
    const old = getHeapSpaceStatistics().find(x => x.space_name === 'old_space')
    const what = `old space: ${Math.round((before?.space_used_size ?? 0) / MiB)} of ${Math.round((before?.space_size ?? 0) / MiB)} MiB used before, ${Math.round((old?.space_used_size ?? 0) / MiB)} of ${Math.round((old?.space_size ?? 0) / MiB)} MiB after`
    expect(before?.space_size, what).to.be.above(30 * MiB)
    expect(old?.space_size, what).to.be.at.most((old?.space_used_size ?? 0) * 1.5 + 2 * MiB)
    expect(kept).to.have.length(20_000)
    expect(all).to.equal(null)
  })

  it('a quiet thread whose heap grew collects once, and again only after it grows again', async () => {
    const heap = fakeHeap(20 * MiB)
    const freed: number[] = []
    // quiet: under 50 % busy per 100 ms (a loaded machine's timers and mocha count too)
    const idle = startIdleGc({ intervalMs: 100, maxUtilization: 0.5, minGrowthBytes: 4 * MiB, gc: heap.gc, heapUsed: heap.heapUsed, heapCommitted: heap.heapCommitted, onCollect: (bytes) => { freed.push(bytes) } })
    try {
      heap.used = 23 * MiB // under the threshold
      await sleep(400)
      expect(heap.runs, 'growth under minGrowthBytes').to.equal(0)
      heap.used = 30 * MiB
      await waitUntil(() => heap.runs > 0, 3000)
      expect(heap.runs).to.equal(1)
      expect(idle.collections).to.equal(1)
      expect(freed).to.deep.equal([10 * MiB])
      await sleep(400)
      expect(heap.runs, 'no growth, no collection').to.equal(1)
      // V8 collected on its own: the floor follows it down, and growth counts from there; with no
      // minSpacingMs (a sandbox worker's default), 5 MiB right after a collection is collected too
      heap.used = 12 * MiB
      await sleep(250)
      heap.used = 17 * MiB
      await waitUntil(() => heap.runs > 1, 3000)
      expect(heap.runs).to.equal(2)
    } finally {
      idle.stop()
    }
  })

  it('growth under bigGrowthBytes is collected at most once per minSpacingMs; a big growth at once', async () => {
    const heap = fakeHeap(20 * MiB)
    // when each collection ran, read in the collector itself (a poll would add its own lag)
    const ranAt: number[] = []
    const gc = (): void => { ranAt.push(Date.now()); heap.gc() }
    const idle = startIdleGc({ intervalMs: 100, maxUtilization: 0.5, minGrowthBytes: 4 * MiB, bigGrowthBytes: 16 * MiB, minSpacingMs: 1500, gc, heapUsed: heap.heapUsed, heapCommitted: heap.heapCommitted })
    try {
      // the first collection does not wait for the spacing: none ran yet
      const grew = Date.now()
      heap.used = 25 * MiB
      await waitUntil(() => heap.runs > 0, 3000)
      expect(ranAt[0] - grew, 'the first collection came at a quiet look, not after the spacing').to.be.below(1000)
      // a node's creep (10 MiB, under bigGrowthBytes): not again before the spacing is over
      heap.used = 30 * MiB
      await sleep(600)
      expect(heap.runs, 'creep inside the spacing').to.equal(1)
      await waitUntil(() => heap.runs > 1, 5000)
      expect(ranAt[1] - ranAt[0], 'the second collection waited for the spacing').to.be.at.least(1490)
      // a burst's growth goes at once, spacing or not
      const burst = Date.now()
      heap.used = 20 * MiB + 17 * MiB
      await waitUntil(() => heap.runs > 2, 3000)
      expect(ranAt[2] - burst, 'a big growth did not wait for the spacing').to.be.below(700)
    } finally {
      idle.stop()
    }
  })

  it('a quiet thread that holds many more pages than before collects, though what it uses hardly grew', async () => {
    const heap = fakeHeap(20 * MiB)
    const idle = startIdleGc({ intervalMs: 100, maxUtilization: 0.5, minGrowthBytes: 4 * MiB, gc: heap.gc, heapUsed: heap.heapUsed, heapCommitted: heap.heapCommitted })
    try {
      heap.used = 22 * MiB
      heap.committed = 23 * MiB // under the threshold
      await sleep(400)
      expect(heap.runs).to.equal(0)
      heap.committed = 39 * MiB // a busy spell left V8 holding 19 MiB more for 2 MiB more used
      await waitUntil(() => heap.runs > 0, 3000)
      expect(heap.runs).to.equal(1)
      await sleep(400)
      expect(heap.runs, 'given back: no second collection').to.equal(1)
    } finally {
      idle.stop()
    }
  })

  it('a busy thread does not collect, however much its heap grew', async () => {
    const heap = fakeHeap(20 * MiB)
    const idle = startIdleGc({ intervalMs: 100, maxUtilization: 0.5, minGrowthBytes: MiB, gc: heap.gc, heapUsed: heap.heapUsed, heapCommitted: heap.heapCommitted })
    try {
      heap.used = 200 * MiB
      const until = Date.now() + 800
      // the event loop busy about 90 % of every interval, in turns of 20 ms
      while (Date.now() < until) {
        const turn = Date.now() + 20
        while (Date.now() < turn) { /* busy */ }
        await sleep(2)
      }
      expect(heap.runs).to.equal(0)
      // and once it rests, it does
      await waitUntil(() => heap.runs > 0, 3000)
      expect(heap.runs).to.equal(1)
    } finally {
      idle.stop()
    }
  })

  it('in a worker thread, the worker collects its own heap with the real collector', async () => {
    const url = new URL('../../src/idle-gc.ts', import.meta.url).href
    // any growth counts (1 byte): V8 may have collected most of the garbage itself by the first look
    const source = `
      const { parentPort } = require('node:worker_threads')
      import(${JSON.stringify('tsx/esm/api')}).then(api => { api.register(); return import(${JSON.stringify(url)}) }).then(m => {
        let held = []
        for (let i = 0; i < 64; i++) held.push(Array.from({ length: 2048 }, (_, j) => ({ i, j, s: 'w' + j })))
        const idle = m.startIdleGc({ intervalMs: 100, maxUtilization: 0.5, minGrowthBytes: 1 })
        held = []
        const t = setInterval(() => { if (idle.collections > 0) { clearInterval(t); parentPort.postMessage(idle.collections); idle.stop() } }, 50)
      })`
    const worker = new Worker(source, { eval: true })
    try {
      const collections = await new Promise<number>((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
        setTimeout(() => { resolve(0) }, 8000).unref()
      })
      expect(collections).to.be.at.least(1)
    } finally {
      await worker.terminate()
    }
  })
})
