import { expect } from 'chai'
import { createExecutor, type Executor, type ExecJob } from '../../src/executor/index.js'
import { LIMITS, js, wasm } from './helpers.js'

/** 20 different jobs touching args, env, stdin, clocks, randomness, CPU, JS output. */
function jobs (): ExecJob[] {
  const out: ExecJob[] = []
  const enc = new TextEncoder()
  for (let i = 0; i < 4; i++) out.push({ id: `hello-${i}`, engine: 'wasm', module: wasm('hello'), args: [`a${i}`, 'b'], env: { MERCATO_NAME: `n${i}` }, limits: LIMITS })
  for (let i = 0; i < 4; i++) out.push({ id: `entropy-${i}`, engine: 'wasm', module: wasm('entropy'), limits: LIMITS })
  for (let i = 0; i < 3; i++) out.push({ id: `sieve-${i}`, engine: 'wasm', module: wasm('sieve'), args: [String(10_000 * (i + 1))], limits: LIMITS })
  for (let i = 0; i < 2; i++) out.push({ id: `echo-${i}`, engine: 'wasm', module: wasm('echo'), stdin: enc.encode(`input ${i}\n`), limits: LIMITS })
  out.push({ id: 'sleep', engine: 'wasm', module: wasm('sleep'), args: ['2'], limits: LIMITS })
  for (let i = 0; i < 3; i++) out.push({ id: `random-${i}`, engine: 'js', source: js('random'), input: { n: i + 2 }, limits: LIMITS })
  out.push({ id: 'hello-js', engine: 'js', source: js('hello'), input: { name: 'x', n: 2 }, limits: LIMITS })
  out.push({ id: 'sieve-js', engine: 'js', source: js('sieve'), input: { n: 5000 }, limits: LIMITS })
  out.push({ id: 'busy-wait-js', engine: 'js', source: js('busy-wait'), limits: LIMITS })
  return out
}

describe('executor: determinism', () => {
  const executors: Executor[] = []

  after(async () => { await Promise.all(executors.map(async e => { await e.stop() })) })

  it('two separate executor instances give identical result hashes for 20 different jobs', async () => {
    const a = createExecutor({ poolSize: 2 })
    const b = createExecutor({ poolSize: 1 })
    executors.push(a, b)
    await Promise.all([a.start(), b.start()])
    const list = jobs()
    expect(list).to.have.length(20)
    const ra = await Promise.all(list.map(async j => await a.run(j)))
    const rb: Array<Awaited<ReturnType<Executor['run']>>> = []
    for (const j of list.slice().reverse()) rb.unshift(await b.run(j)) // different order, one worker
    for (let i = 0; i < list.length; i++) {
      expect(ra[i].error, list[i].id).to.equal(undefined)
      expect(ra[i].resultHash, list[i].id).to.equal(rb[i].resultHash)
    }
    // and the jobs really differ
    expect(new Set(ra.map(r => r.resultHash)).size).to.equal(20)
  })
})
