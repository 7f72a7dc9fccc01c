/**
 * The finished jobs a requester holds: dropped oldest first by count and by
 * approximate bytes, a job alone over the budget at once; the queue's work
 * per job stays constant however many jobs pass through it.
 */
import { expect } from 'chai'
import { FinishedJobs, resultBytes } from '../../../src/auction/requester/memory.js'
import { JOB_ITEM_BYTES } from '../../../src/auction/constants.js'
import type { Signed } from '../../../src/crypto/index.js'
import type { Result } from '../../../src/auction/protocol/messages.js'

describe('requester: finished jobs held in memory', () => {
  it('drops the oldest past the count cap', () => {
    const f = new FinishedJobs({ maxJobs: 2, maxBytes: Infinity })
    expect(f.add('a', 10)).to.deep.equal([])
    expect(f.add('b', 10)).to.deep.equal([])
    expect(f.add('c', 10)).to.deep.equal(['a'])
    expect(f.add('d', 10)).to.deep.equal(['b'])
    expect([f.count, f.bytes]).to.deep.equal([2, 20])
  })

  it('drops the oldest past the byte budget, however few jobs are held; a job alone over it at once', () => {
    const f = new FinishedJobs({ maxJobs: 100, maxBytes: 1000 })
    expect(f.add('a', 100)).to.deep.equal([])
    expect(f.add('b', 100)).to.deep.equal([])
    expect(f.add('big', 700)).to.deep.equal([])
    expect(f.add('big2', 700)).to.deep.equal(['a', 'b', 'big'])
    expect([f.count, f.bytes]).to.deep.equal([1, 700])
    expect(f.add('huge', 5000)).to.deep.equal(['big2', 'huge'])
    expect([f.count, f.bytes]).to.deep.equal([0, 0])
    expect(f.add('c', 10)).to.deep.equal([])
  })

  it('a cap of 0 holds nothing', () => {
    const f = new FinishedJobs({ maxJobs: 0, maxBytes: 1000 })
    expect(f.add('a', 1)).to.deep.equal(['a'])
    expect(f.count).to.equal(0)
  })

  it('a million jobs through a cap of 1000: constant work per job', () => {
    const f = new FinishedJobs({ maxJobs: 1000, maxBytes: Infinity })
    const t = performance.now()
    let dropped = 0
    for (let i = 0; i < 1_000_000; i++) dropped += f.add(String(i), 1).length
    expect(dropped).to.equal(999_000)
    expect(f.count).to.equal(1000)
    // a scan of the held jobs per add would take ~1e9 steps; the queue does ~1e6 (generous bound)
    expect(performance.now() - t).to.be.below(5000)
  })

  it("counts a result's stdout, stderr and encoded output", () => {
    const result = { payload: { stdout: new Uint8Array(100), stderr: new Uint8Array(20), output: 'x'.repeat(1000) } } as unknown as Signed<Result>
    expect(resultBytes(result)).to.be.within(JOB_ITEM_BYTES + 1120, JOB_ITEM_BYTES + 1130)
  })
})
