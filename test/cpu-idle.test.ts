import '../src/polyfill.js'
import { expect } from 'chai'
import { whenCpusIdle } from '../src/cpu-idle.js'

/** CPU times that advance by `busy` and `idle` ms at each reading. */
function clock (busy: number, idle: number): () => { busy: number, idle: number } {
  let b = 0
  let i = 0
  return () => { b += busy; i += idle; return { busy: b, idle: i } }
}

const wait = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('whenCpusIdle: background work waits for free CPUs', () => {
  it('runs at the first sample on a machine at rest', async () => {
    const runs: Array<[number, boolean]> = []
    whenCpusIdle(() => {}, { sampleMs: 10, maxWaitMs: 5000, times: clock(10, 90), onRun: (ms, idle) => { runs.push([ms, idle]) } })
    await wait(100)
    expect(runs.length).to.equal(1)
    expect(runs[0][1]).to.equal(true)
  })

  it('waits while the CPUs are busy, runs once they are free, and only once', async () => {
    let busy = true
    const times = ((): () => { busy: number, idle: number } => {
      let b = 0
      let i = 0
      return () => { if (busy) b += 100; else i += 100; return { busy: b, idle: i } }
    })()
    let ran = 0
    whenCpusIdle(() => { ran++ }, { sampleMs: 10, maxWaitMs: 5000, times })
    await wait(100)
    expect(ran).to.equal(0)
    busy = false
    await wait(100)
    expect(ran).to.equal(1)
    await wait(50)
    expect(ran).to.equal(1)
  })

  it('runs anyway after maxWaitMs on a machine that is never free, and says so', async () => {
    const runs: boolean[] = []
    const waited: number[] = []
    whenCpusIdle(() => {}, { sampleMs: 10, maxWaitMs: 400, times: clock(95, 5), onRun: (ms, idle) => { runs.push(idle); waited.push(ms) } })
    await wait(50)
    expect(runs).to.deep.equal([])
    for (let t = 0; t < 60 && runs.length === 0; t++) await wait(50)
    expect(runs).to.deep.equal([false])
    expect(waited[0]).to.be.at.least(400)
  })

  it('never runs once cancelled (a node stopped before its warm-up)', async () => {
    let ran = 0
    const cancel = whenCpusIdle(() => { ran++ }, { sampleMs: 10, maxWaitMs: 30, times: clock(10, 90) })
    cancel()
    await wait(100)
    expect(ran).to.equal(0)
  })

  it('reads the real CPUs by default', async () => {
    let ran = false
    const cancel = whenCpusIdle(() => { ran = true }, { sampleMs: 10, maxWaitMs: 200 })
    await wait(400)
    cancel()
    expect(ran).to.equal(true)
  })
})
