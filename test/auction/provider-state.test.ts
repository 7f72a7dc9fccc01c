/**
 * A provider's in-memory state stays bounded however many jobs it runs: the
 * finished jobs it holds (for status requests) are capped by count, the
 * oldest going first (their status is then read from the log).
 */
import { expect } from 'chai'
import { finishHeld, MAX_HELD_RESULTS, UnpaidResults, type HeldJob, type ProviderContext } from '../../src/auction/provider/state.js'
import type { Signed } from '../../src/crypto/index.js'
import type { Result } from '../../src/auction/protocol/messages.js'
import { fingerprint, SeenSet } from '../../src/auction/protocol/gossip.js'
import { randomBytes } from 'node:crypto'
import { MAX_UNPAID_REQUESTERS, MAX_UNPAID_RESULTS_PAYING, MAX_UNPAID_RESULTS_PER_REQUESTER, MAX_UNPAID_RESULTS_UNPROVEN, UNPAID_RESULTS_MEMORY_MS } from '../../src/auction/constants.js'

function freshState (): ProviderContext['state'] {
  return { running: 0, avgRunMs: 50, offers: new Map(), offersBy: new Map(), paidBy: new Set(), unpaid: new UnpaidResults(), seenAwards: new SeenSet(100), held: new Map() }
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

describe('SeenSet: remembered ids as fingerprints', () => {
  it('forgets the oldest past its cap; add answers whether the id was new', () => {
    const seen = new SeenSet(3)
    for (const id of ['a', 'b', 'c']) expect(seen.add(id)).to.equal(true)
    expect(seen.add('b'), 'known').to.equal(false)
    expect(seen.add('d')).to.equal(true)
    expect(seen.size).to.equal(3)
    expect(['a', 'b', 'c', 'd'].map(id => seen.has(id))).to.deep.equal([false, true, true, true])
  })

  it('200,000 message ids get 200,000 distinct fingerprints, each below 2^53', () => {
    const fps = new Set<number>()
    const bytes = randomBytes(32 * 200_000)
    let bad = 0
    for (let i = 0; i < 200_000; i++) {
      const fp = fingerprint('bafyrei' + bytes.subarray(i * 32, i * 32 + 32).toString('base64url'))
      if (!Number.isSafeInteger(fp) || fp < 0) bad++
      fps.add(fp)
    }
    expect(bad, 'fingerprints out of range').to.equal(0)
    expect(fps.size).to.equal(200_000)
    // ids that differ in one character, or only in length, differ too
    expect(fingerprint('bafyreia')).to.not.equal(fingerprint('bafyreib'))
    expect(fingerprint('a')).to.not.equal(fingerprint('a\u0000'))
  })
})

describe('provider state: results no receipt answered (UnpaidResults)', () => {
  it('counts what each requester owes, forgets it once a receipt comes or after UNPAID_RESULTS_MEMORY_MS, and refuses past the limits', () => {
    const u = new UnpaidResults()
    const paid = new Set<string>(['proven'])
    const t0 = 1_000_000
    // one that paid us before is held to MAX_UNPAID_RESULTS_PAYING, one that never did to MAX_UNPAID_RESULTS_PER_REQUESTER
    for (const [who, limit] of [['proven', MAX_UNPAID_RESULTS_PAYING], ['stranger', MAX_UNPAID_RESULTS_PER_REQUESTER]] as const) {
      for (let i = 0; i < limit - 1; i++) u.sent(who, `job${i}`, t0)
      expect(u.refusal(who, paid, t0), who).to.equal(undefined)
      u.sent(who, 'last', t0)
      expect(u.refusal(who, paid, t0), who).to.match(/unpaid/)
      u.settled(who, 'last')
      expect(u.owed(who, t0)).to.equal(limit - 1)
      expect(u.refusal(who, paid, t0), who).to.equal(undefined)
      // forgotten after the memory
      expect(u.owed(who, t0 + UNPAID_RESULTS_MEMORY_MS + 1)).to.equal(0)
    }
  })

  it('requesters that never paid share one limit; a requester that paid is not held to it', () => {
    const u = new UnpaidResults()
    const paid = new Set<string>(['proven'])
    for (let i = 0; i < MAX_UNPAID_RESULTS_UNPROVEN; i++) u.sent(`stranger${i}`, 'job', 5)
    expect(u.owedUnproven(paid, 5)).to.equal(MAX_UNPAID_RESULTS_UNPROVEN)
    expect(u.refusal('newcomer', paid, 5)).to.match(/never paid/)
    expect(u.refusal('proven', paid, 5)).to.equal(undefined)
  })

  it('stays bounded: at most MAX_UNPAID_REQUESTERS requesters, and no more results each than the limit needs', () => {
    const u = new UnpaidResults()
    for (let r = 0; r < MAX_UNPAID_REQUESTERS + 100; r++) for (let j = 0; j < MAX_UNPAID_RESULTS_PAYING + 5; j++) u.sent(`r${r}`, `j${j}`, 7)
    expect(u.owed('r0', 7)).to.equal(0)
    expect(u.owed(`r${MAX_UNPAID_REQUESTERS + 99}`, 7)).to.equal(MAX_UNPAID_RESULTS_PAYING)
    expect(u.owedUnproven(new Set(), 7)).to.equal(MAX_UNPAID_REQUESTERS * MAX_UNPAID_RESULTS_PAYING)
  })
})
