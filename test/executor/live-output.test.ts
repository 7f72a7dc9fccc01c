import { expect } from 'chai'
import { createExecutor, type Executor } from '../../src/executor/index.js'
import { js, text } from './helpers.js'

/** Live output: what a guest writes reaches `onOutput` while it runs, in order, and nothing else does. */
describe('executor live output', function () {
  this.timeout(60_000)
  let executor: Executor

  before(async () => {
    executor = createExecutor({ poolSize: 1, warmWorkers: 1, queueSize: 8 })
    await executor.start()
  })
  after(async () => { await executor.stop() })

  const limits = { timeoutMs: 30_000, memoryMb: 32, outputBytes: 64 * 1024 }

  it('hands over stdout and stderr while a js job runs, the same bytes as its result', async () => {
    const seen: Array<{ fd: number, text: string, at: number }> = []
    let done = 0
    const p = executor.run({ id: 'live-1', engine: 'js', source: js('slow-lines'), input: { lines: 5, spin: 2_000_000 }, limits }, {
      onOutput: (fd, data) => { seen.push({ fd, text: text(data), at: performance.now() }) }
    }).then(r => { done = performance.now(); return r })
    const r = await p
    expect(r.error).to.equal(undefined)
    const out = seen.filter(c => c.fd === 1).map(c => c.text).join('')
    const err = seen.filter(c => c.fd === 2).map(c => c.text).join('')
    expect(out).to.equal(text(r.stdout))
    expect(err).to.equal(text(r.stderr))
    expect(out).to.equal('line 0\nline 1\nline 2\nline 3\nline 4\n')
    // more than one chunk, and the first well before the job ended
    expect(seen.length).to.be.greaterThan(2)
    expect(seen[0].at).to.be.lessThan(done)
    // output is handed over every LIVE_OUTPUT_POLL_MS: on a fast machine two lines can share the
    // first hand-over, never the whole output
    expect(seen[0].text.startsWith('line 0\n')).to.equal(true)
    expect(seen[0].text).to.not.include('line 4')
  })

  it('a line is written whole (one hand-over never ends mid-line); many arguments and a large one are printed as before', async () => {
    const chunks: string[] = []
    const source = `function main () {
      let x = 0
      for (let i = 0; i < 300; i++) {
        console.log('line', i, { i })
        for (let j = 0; j < 30000; j++) x = (x + j) | 0 // a few hand-overs' worth of time in all
      }
      console.log('big', 'x'.repeat(70000), 'end')
      console.error('e', 1)
    }`
    const r = await executor.run({ id: 'whole-lines', engine: 'js', source, limits: { ...limits, outputBytes: 1024 * 1024 } }, {
      onOutput: (fd, data) => { if (fd === 1) chunks.push(text(data)) }
    })
    expect(r.error).to.equal(undefined)
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i} {"i":${i}}\n`).join('')
    expect(text(r.stdout)).to.equal(lines + `big ${'x'.repeat(70000)} end\n`)
    expect(text(r.stderr)).to.equal('e 1\n')
    expect(chunks.join('')).to.equal(text(r.stdout))
    // every hand-over but the last ends at a line's end, except inside the line too large for one write
    expect(chunks.length, 'several hand-overs').to.be.greaterThan(1)
    for (const c of chunks.slice(0, -1)) if (!c.includes('big ')) expect(c.endsWith('\n'), JSON.stringify(c.slice(-20))).to.equal(true)
  })

  it('never hands a job the output of the job before it on the same worker', async () => {
    await executor.run({ id: 'first', engine: 'js', source: 'function main () { console.log("secret of the first job") }', limits })
    const seen: string[] = []
    const r = await executor.run({ id: 'second', engine: 'js', source: js('slow-lines'), input: { lines: 2, spin: 400_000 }, limits }, {
      onOutput: (_fd, data) => { seen.push(text(data)) }
    })
    expect(r.error).to.equal(undefined)
    expect(seen.join('')).to.not.include('secret')
    expect(seen.join('')).to.include('line 1')
  })

  it('a flood is cut at the output cap, live as in the result', async () => {
    let bytes = 0
    const r = await executor.run({ id: 'flood', engine: 'js', source: js('flood'), limits: { ...limits, outputBytes: 20_000 } }, {
      onOutput: (_fd, data) => { bytes += data.length }
    })
    expect(r.error?.name).to.equal('output-limit')
    expect(bytes).to.equal(r.stdout.length + r.stderr.length)
    expect(bytes).to.be.at.most(20_000)
  })
})
