/**
 * A provider's in-memory state stays bounded however many jobs it runs: the
 * finished jobs it holds (for status requests) are capped by count, the
 * oldest going first (their status is then read from the log).
 */
import { expect } from 'chai'
import { finishHeld, MAX_HELD_RESULTS, type HeldJob, type ProviderContext } from '../../src/auction/provider/state.js'
import type { Signed } from '../../src/crypto/index.js'
import type { Result } from '../../src/auction/protocol/messages.js'

function freshState (): ProviderContext['state'] {
  return { running: 0, avgRunMs: 50, offers: new Map(), offersBy: new Map(), paidBy: new Set(), seenAwards: new Set(), held: new Map() }
}
const result = (jobId: string): Signed<Result> => ({ payload: { jobId } }) as unknown as Signed<Result>

/** Award a job (as run.ts does: running++, then held). */
function award (state: ProviderContext['state'], jobId: string): HeldJob {
  state.running++
  const held: HeldJob = { jobId, awardId: `a-${jobId}`, requester: 'r', state: 'running' }
  state.held.set(jobId, held)
  return held
}
function finish (state: ProviderContext['state'], held: HeldJob, max?: number): void {
  state.running--
  finishHeld(state, held, result(held.jobId), max)
}

describe('provider state: held jobs', () => {
  it('keeps at most MAX_HELD_RESULTS finished jobs after many jobs, the newest', () => {
    const state = freshState()
    const n = MAX_HELD_RESULTS * 20
    for (let i = 0; i < n; i++) finish(state, award(state, `j${i}`))
    expect(state.held.size).to.equal(MAX_HELD_RESULTS)
    expect(state.held.has(`j${n - 1}`)).to.equal(true)
    expect(state.held.has(`j${n - MAX_HELD_RESULTS}`)).to.equal(true)
    expect(state.held.has(`j${n - MAX_HELD_RESULTS - 1}`)).to.equal(false)
    const last = state.held.get(`j${n - 1}`)
    expect(last?.state).to.equal('done')
    expect(last?.result?.payload.jobId).to.equal(`j${n - 1}`)
    expect(last?.doneAt).to.be.a('number')
  })

  it('never drops a job still running, and counts only finished jobs against the cap', () => {
    const state = freshState()
    const max = 4
    const long = award(state, 'long') // awarded first, finishes last
    const queued = award(state, 'queued')
    for (let i = 0; i < 50; i++) finish(state, award(state, `j${i}`), max)
    expect(state.held.get('long')).to.equal(long)
    expect(state.held.get('queued')).to.equal(queued)
    expect(state.held.size).to.equal(max + 2)
    // the long job finishing is the newest finished one: kept, the oldest finished dropped
    finish(state, long, max)
    expect(state.held.has('long')).to.equal(true)
    expect(state.held.has('j46')).to.equal(false)
    expect([...state.held.keys()]).to.deep.equal(['queued', 'j47', 'j48', 'j49', 'long'])
  })
})
