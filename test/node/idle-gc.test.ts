import { expect } from 'chai'
import { Worker } from 'node:worker_threads'
import { getHeapStatistics } from 'node:v8'
import { fullGc, startIdleGc } from '../../src/idle-gc.js'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
async function waitUntil (ok: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms
  while (!ok() && Date.now() < until) await sleep(20)
}

/** Make `mib` MiB of short-lived garbage (arrays of small objects, dropped at once). */
function garbage (mib: number): void {
  let keep = 0
  for (let i = 0; i < mib * 16; i++) {
    const chunk = Array.from({ length: 2048 }, (_, j) => ({ i, j, s: `x${j}` }))
    keep += chunk.length
  }
  expect(keep).to.be.greaterThan(0)
}

describe('idle collection (src/idle-gc.ts)', function () {
  this.timeout(20_000)

  it('reaches V8\'s collector without --expose-gc, and leaves no gc on the global', () => {
    const gc = fullGc()
    expect(gc).to.be.a('function')
    const before = getHeapStatistics().used_heap_size
    garbage(8)
    gc?.()
    expect(getHeapStatistics().used_heap_size).to.be.below(before + 4 * 1024 * 1024)
    if (!process.execArgv.includes('--expose-gc')) expect((globalThis as { gc?: unknown }).gc).to.equal(undefined)
  })

  it('a quiet thread whose heap grew collects once, and not again until it grows again', async () => {
    const freed: number[] = []
    // quiet: under 30 % busy per 100 ms (a loaded machine's timers and mocha count too)
    fullGc()?.()
    const idle = startIdleGc({ intervalMs: 100, maxUtilization: 0.3, minGrowthBytes: 2 * 1024 * 1024, onCollect: (bytes) => { freed.push(bytes) } })
    try {
      // keep the garbage out of V8's own reach: a young-generation scavenge may free some, not all
      const held: object[] = []
      for (let i = 0; i < 64; i++) held.push(Array.from({ length: 2048 }, (_, j) => ({ i, j, s: `y${j}` })))
      held.length = 0
      await waitUntil(() => idle.collections > 0, 3000)
      expect(idle.collections, 'collections after the heap grew and the thread went quiet').to.be.at.least(1)
      expect(freed[0]).to.be.greaterThan(2 * 1024 * 1024)
      const n = idle.collections
      await sleep(400)
      expect(idle.collections, 'no growth, no collection').to.equal(n)
    } finally {
      idle.stop()
    }
  })

  it('a busy thread does not collect, however much it allocates', async () => {
    const idle = startIdleGc({ intervalMs: 100, maxUtilization: 0.3, minGrowthBytes: 1024 * 1024 })
    try {
      const held: object[] = []
      const until = Date.now() + 600
      // the event loop busy about 90 % of every interval, in turns of 20 ms
      while (Date.now() < until) {
        const turn = Date.now() + 20
        while (Date.now() < turn) held.push({ n: held.length, s: `z${held.length}` })
        await sleep(2)
      }
      expect(idle.collections).to.equal(0)
      expect(held.length).to.be.greaterThan(0)
    } finally {
      idle.stop()
    }
  })

  it('in a worker thread, the worker\'s own heap is collected', async () => {
    const url = new URL('../../src/idle-gc.ts', import.meta.url).href
    const source = `
      const { parentPort } = require('node:worker_threads')
      import(${JSON.stringify('tsx/esm/api')}).then(api => { api.register(); return import(${JSON.stringify(url)}) }).then(m => {
        const idle = m.startIdleGc({ intervalMs: 100, maxUtilization: 0.3, minGrowthBytes: 2 * 1024 * 1024 })
        const held = []
        for (let i = 0; i < 64; i++) held.push(Array.from({ length: 2048 }, (_, j) => ({ i, j, s: 'w' + j })))
        held.length = 0
        const t = setInterval(() => { if (idle.collections > 0) { clearInterval(t); parentPort.postMessage(idle.collections); idle.stop() } }, 50)
      })`
    const worker = new Worker(source, { eval: true })
    try {
      const collections = await new Promise<number>((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
        setTimeout(() => { resolve(0) }, 5000).unref()
      })
      expect(collections).to.be.at.least(1)
    } finally {
      await worker.terminate()
    }
  })
})
