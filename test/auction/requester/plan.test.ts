/**
 * The requester's planner, branch by branch: no network, no log, no timers.
 */
import { expect } from 'chai'
import {
  afterStatus, attemptDeadline, canAnnounce, deafMs, liveness, next, treatResult,
  type PlanAttempt, type PlanConfig, type PlanJob, type Step, type WatchedAttempt
} from '../../../src/auction/requester/plan.js'
import type { RankedBid } from '../../../src/auction/protocol/rules.js'
import type { JobStatus } from '../../../src/auction/types.js'

const CFG: PlanConfig = { maxAttempts: 3, maxExtraRuns: 2 }

function bid (provider: string, price: number, estStartMs = 0): RankedBid {
  return { provider, price, estStartMs, id: `bid-${provider}` }
}

function job (over: Partial<Omit<PlanJob, 'results'>> & { results?: Record<string, string> } = {}): PlanJob {
  const { results, ...rest } = over
  return {
    id: 'job-1',
    status: 'bidding' as JobStatus,
    replicas: 1,
    maxPrice: 100,
    round: 0,
    extraRuns: 0,
    bids: [],
    excluded: new Set(),
    attempts: [],
    results: new Map(Object.entries(results ?? {})),
    trustOf: () => 'proven',
    ...rest
  }
}

const att = (provider: string, state: PlanAttempt['state'], trust: PlanAttempt['trust'] = 'proven'): PlanAttempt => ({ provider, state, trust })

function awarded (step: Step): Array<[string, number]> {
  expect(step.kind, JSON.stringify(step)).to.equal('award')
  return step.kind === 'award' ? step.awards.map(a => [a.bid.provider, a.price]) : []
}

describe('requester plan (pure)', () => {
  describe('window closed', () => {
    it('no bid at all: no-bids', () => {
      expect(next(job(), { type: 'closed' }, CFG)).to.deep.equal({ kind: 'fail', status: 'no-bids', reason: 'no provider bid' })
    })

    it('no bid from the invitees: the next round is announced (an open call), until the announcement limit', () => {
      expect(next(job({ invitedRound: true }), { type: 'closed' }, CFG)).to.deep.equal({ kind: 'announce', round: 1, extraRun: false })
      expect(next(job({ invitedRound: true, round: CFG.maxAttempts - 1 }), { type: 'closed' }, CFG)).to.deep.equal({ kind: 'fail', status: 'no-bids', reason: 'no provider bid' })
      expect(next(job({ invitedRound: false, round: 1 }), { type: 'closed' }, CFG)).to.deep.equal({ kind: 'fail', status: 'no-bids', reason: 'no provider bid' })
    })

    it('no bid with queue time left: queue; once it has passed: no-bids', () => {
      expect(next(job({ queueUntil: 2000, now: 1000 }), { type: 'closed' }, CFG)).to.deep.equal({ kind: 'queue' })
      expect(next(job({ queueUntil: 2000, now: 2000 }), { type: 'closed' }, CFG)).to.deep.equal({ kind: 'fail', status: 'no-bids', reason: 'no provider bid before the queue timeout' })
      // a bid to award: no queue
      expect(awarded(next(job({ queueUntil: 2000, now: 1000, bids: [bid('a', 3)] }), { type: 'closed' }, CFG))).to.deep.equal([['a', 3]])
    })

    it('queue: only bids from providers already tried, nothing in flight: queue instead of announcing again at once', () => {
      const attempts = [att('a', 'refused')]
      expect(next(job({ queueUntil: 2000, now: 1000, attempts, bids: [bid('a', 3)] }), { type: 'closed' }, CFG)).to.deep.equal({ kind: 'queue' })
      // something in flight: wait for it, never queue
      expect(next(job({ queueUntil: 2000, now: 1000, replicas: 2, attempts: [att('a', 'running')], bids: [bid('a', 3)] }), { type: 'closed' }, CFG).kind).to.not.equal('queue')
    })

    it('announcements from the queue do not count toward maxAttempts', () => {
      expect(canAnnounce({ round: 2 }, CFG)).to.equal(false)
      expect(canAnnounce({ round: 12, requeues: 11 }, CFG)).to.equal(true)
      expect(canAnnounce({ round: 12, requeues: 10 }, CFG)).to.equal(false)
    })

    it('bids left: the cheapest wins at the second price', () => {
      const step = next(job({ bids: [bid('b', 5), bid('a', 3), bid('c', 8)] }), { type: 'closed' }, CFG)
      expect(awarded(step)).to.deep.equal([['a', 5]])
    })

    it('a sole bidder is paid its own ask; prices are capped at maxPrice', () => {
      expect(awarded(next(job({ bids: [bid('a', 7)] }), { type: 'closed' }, CFG))).to.deep.equal([['a', 7]])
      expect(awarded(next(job({ maxPrice: 4, bids: [bid('a', 3), bid('b', 9)] }), { type: 'closed' }, CFG))).to.deep.equal([['a', 4]])
    })

    it('replicas: the k best distinct providers, each at the (k+1)-th ask', () => {
      const step = next(job({ replicas: 2, bids: [bid('a', 1), bid('b', 2), bid('c', 3)] }), { type: 'closed' }, CFG)
      expect(awarded(step)).to.deep.equal([['a', 3], ['b', 3]])
    })

    it('lost providers are never awarded again, tried ones not twice', () => {
      const j = job({ round: 1, bids: [bid('a', 1), bid('b', 2), bid('c', 3)], excluded: new Set(['a']), attempts: [att('a', 'lost'), att('b', 'refused')] })
      expect(awarded(next(j, { type: 'closed' }, CFG)).map(([p]) => p)).to.deep.equal(['c'])
    })

    it('after a failover round with no bidder left: announce again, then fail at the limit', () => {
      const j = job({ round: 1, attempts: [att('a', 'lost')], excluded: new Set(['a']), bids: [bid('a', 1)] })
      expect(next(j, { type: 'closed' }, CFG)).to.deep.equal({ kind: 'announce', round: 2, extraRun: false })
      const last = job({ round: 2, attempts: [att('a', 'lost')], excluded: new Set(['a']) })
      const step = next(last, { type: 'closed' }, CFG)
      expect(step.kind).to.equal('fail')
      expect(step.kind === 'fail' && step.status).to.equal('failed')
    })
  })

  describe('an award ended (refused or lost)', () => {
    it('bids left: the runner-up is awarded', () => {
      const j = job({ status: 'awarded', bids: [bid('a', 1), bid('b', 2), bid('c', 3)], excluded: new Set(['a']), attempts: [att('a', 'lost')] })
      expect(awarded(next(j, { type: 'ended' }, CFG))).to.deep.equal([['b', 3]])
    })

    it('none left: announce again while attempts remain', () => {
      const j = job({ status: 'awarded', bids: [bid('a', 1)], attempts: [att('a', 'refused')] })
      expect(next(j, { type: 'ended' }, CFG)).to.deep.equal({ kind: 'announce', round: 1, extraRun: false })
    })

    it('none left and another replica still running: wait', () => {
      const j = job({ status: 'running', replicas: 2, bids: [bid('a', 1), bid('b', 2)], attempts: [att('a', 'lost'), att('b', 'running')], excluded: new Set(['a']) })
      expect(next(j, { type: 'ended' }, CFG)).to.deep.equal({ kind: 'wait' })
    })

    it('attempts exhausted: announcements at the limit fail the job', () => {
      const j = job({ status: 'awarded', round: CFG.maxAttempts - 1, bids: [bid('a', 1)], attempts: [att('a', 'refused')] })
      expect(canAnnounce(j, CFG)).to.equal(false)
      const step = next(j, { type: 'ended' }, CFG)
      expect(step.kind).to.equal('fail')
    })

    it('attempts exhausted: awards at the cap fail the job, or wait while one is in flight', () => {
      const bids = ['a', 'b', 'c', 'd', 'e'].map((p, i) => bid(p, i + 1))
      const tried = [att('a', 'refused'), att('b', 'refused'), att('c', 'lost')]
      const step = next(job({ status: 'awarded', bids, attempts: tried, excluded: new Set(['c']) }), { type: 'ended' }, CFG)
      expect(step).to.deep.equal({ kind: 'fail', status: 'failed', reason: 'gave up after 3 attempts' })
      const busy = job({ status: 'awarded', replicas: 1, bids, attempts: [...tried, att('d', 'running')], extraRuns: 1 })
      expect(next(busy, { type: 'ended' }, CFG)).to.deep.equal({ kind: 'wait' })
    })
  })

  describe('trust (who may win)', () => {
    const trust = (t: Record<string, 'proven' | 'unproven' | 'doubtful'>) => (p: string) => t[p] ?? 'proven'

    it('one probation attempt per job for an unproven bidder, priced over the eligible bids, checked by the best proven bidder', () => {
      const bids = [bid('u1', 1), bid('u2', 2), bid('p', 5), bid('q', 6)]
      const trustOf = trust({ u1: 'unproven', u2: 'unproven' })
      const first = next(job({ bids, trustOf }), { type: 'closed' }, CFG)
      // u1 wins at u2's ask; p runs beside it as its check
      expect(awarded(first)).to.deep.equal([['u1', 2], ['p', 6]])
      expect(first.kind === 'award' && first.awards.map(a => a.trust)).to.deep.equal(['unproven', 'proven'])
      // u1 lost while p runs: p covers the job, nobody else is awarded
      const running = job({ status: 'awarded', bids, trustOf, excluded: new Set(['u1']), attempts: [att('u1', 'lost', 'unproven'), att('p', 'running')] })
      expect(next(running, { type: 'ended' }, CFG)).to.deep.equal({ kind: 'wait' })
      // both lost: the probation is used, so the next award skips u2 for the proven q
      const after = job({ status: 'awarded', bids, trustOf, excluded: new Set(['u1', 'p']), attempts: [att('u1', 'lost', 'unproven'), att('p', 'lost')] })
      const step = next(after, { type: 'ended' }, CFG)
      expect(awarded(step).map(([p]) => p)).to.deep.equal(['q'])
      expect(step.kind === 'award' && step.awards[0].eligible.map(b => b.provider)).to.deep.equal(['q'])
    })

    describe('a probation result settles only with a proven provider agreeing', () => {
      const bids = [bid('u', 1), bid('p', 5), bid('q', 6)]
      const trustOf = trust({ u: 'unproven' })
      const probation = (over: Partial<Omit<PlanJob, 'results'>> & { results?: Record<string, string> }): PlanJob => job({ status: 'running', bids, trustOf, ...over })

      it('its result alone waits for the check', () => {
        const j = probation({ attempts: [att('u', 'completed', 'unproven'), att('p', 'running')], results: { u: 'h' } })
        expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'wait' })
      })

      it('the check agrees: both are paid', () => {
        const j = probation({ attempts: [att('u', 'completed', 'unproven'), att('p', 'completed')], results: { u: 'h', p: 'h' } })
        expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'settle', hash: 'h', agreeing: ['u', 'p'], outvoted: [] })
      })

      it('the check disagrees: the proven result settles and the new provider is outvoted', () => {
        const j = probation({ attempts: [att('u', 'completed', 'unproven'), att('p', 'completed')], results: { u: 'forged', p: 'h' } })
        expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'settle', hash: 'h', agreeing: ['p'], outvoted: ['u'] })
      })

      it('the check comes first: it settles at once, and the probation result is judged by it when it comes', () => {
        const j = probation({ attempts: [att('u', 'running', 'unproven'), att('p', 'completed')], results: { p: 'h' } })
        expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'settle', hash: 'h', agreeing: ['p'], outvoted: [] })
        const settled = { status: 'completed' as const, replicas: 1, finalHash: 'h' }
        expect(treatResult(settled, att('u', 'running', 'unproven'), 'h')).to.equal('late-paid')
        expect(treatResult(settled, att('u', 'running', 'unproven'), 'forged')).to.equal('late-mismatch')
        expect(treatResult(settled, att('p2', 'running'), 'h'), 'a proven run after the settle: as before').to.equal('superseded')
      })

      it('the check was lost with the probation result waiting: the next proven bidder is awarded, not an extra run', () => {
        const j = probation({ excluded: new Set(['p']), attempts: [att('u', 'completed', 'unproven'), att('p', 'lost')], results: { u: 'h' } })
        const step = next(j, { type: 'ended' }, CFG)
        expect(awarded(step).map(([p]) => p)).to.deep.equal(['q'])
        expect(step.kind === 'award' && step.extraRun).to.equal(false)
        expect(next(j, { type: 'result' }, CFG).kind).to.equal('award')
      })

      it('the check was lost and nobody proven is left: the probation result settles alone, as in a new network', () => {
        const j = probation({ bids: [bid('u', 1), bid('p', 5)], excluded: new Set(['p']), attempts: [att('u', 'completed', 'unproven'), att('p', 'lost')], results: { u: 'h' } })
        expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'settle', hash: 'h', agreeing: ['u'], outvoted: [] })
      })

      it('nobody proven ever bid (a new network): the probation result settles alone', () => {
        const j = probation({ bids: [bid('u', 1)], attempts: [att('u', 'completed', 'unproven')], results: { u: 'h' } })
        expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'settle', hash: 'h', agreeing: ['u'], outvoted: [] })
      })
    })

    it('replicas: the probation is used by the first non-proven pick within one step', () => {
      const bids = [bid('u1', 1), bid('u2', 2), bid('p', 5), bid('q', 6)]
      const step = next(job({ replicas: 2, bids, trustOf: trust({ u1: 'unproven', u2: 'unproven' }) }), { type: 'closed' }, CFG)
      expect(awarded(step).map(([p]) => p)).to.deep.equal(['u1', 'p'])
    })

    it('nobody proven bids: the job runs on the others, unproven before doubtful', () => {
      const bids = [bid('d', 1), bid('u', 2)]
      const step = next(job({ bids, trustOf: trust({ d: 'doubtful', u: 'unproven' }) }), { type: 'closed' }, CFG)
      expect(awarded(step).map(([p]) => p)).to.deep.equal(['u'])
    })
  })

  describe('results and the quorum', () => {
    it('one replica: the first result settles', () => {
      const j = job({ status: 'running', bids: [bid('a', 1)], attempts: [att('a', 'completed')], results: { a: 'h1' } })
      expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'settle', hash: 'h1', agreeing: ['a'], outvoted: [] })
    })

    it('replicas agree: settle once a majority is in, even with one still running', () => {
      const j = job({ status: 'running', replicas: 3, attempts: [att('a', 'completed'), att('b', 'completed'), att('c', 'running')], results: { a: 'h', b: 'h' } })
      expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'settle', hash: 'h', agreeing: ['a', 'b'], outvoted: [] })
    })

    it('replicas disagree: the majority wins and the outvoted are named', () => {
      const j = job({ status: 'running', replicas: 3, attempts: [att('a', 'completed'), att('b', 'completed'), att('c', 'completed')], results: { a: 'h', b: 'x', c: 'h' } })
      expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'settle', hash: 'h', agreeing: ['a', 'c'], outvoted: ['b'] })
    })

    it('no majority yet while others run: wait', () => {
      const j = job({ status: 'running', replicas: 3, attempts: [att('a', 'completed'), att('b', 'running'), att('c', 'running')], results: { a: 'h' } })
      expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'wait' })
    })

    it('a tie with nobody running: an extra run for the next bidder', () => {
      const j = job({ status: 'running', replicas: 2, bids: [bid('a', 1), bid('b', 2), bid('c', 3)], attempts: [att('a', 'completed'), att('b', 'completed')], results: { a: 'h', b: 'x' } })
      const step = next(j, { type: 'result' }, CFG)
      expect(awarded(step).map(([p]) => p)).to.deep.equal(['c'])
      expect(step.kind === 'award' && step.extraRun).to.equal(true)
    })

    it('a tie with no bidder left: announce again, counting the extra run', () => {
      const j = job({ status: 'running', replicas: 2, bids: [bid('a', 1), bid('b', 2)], attempts: [att('a', 'completed'), att('b', 'completed')], results: { a: 'h', b: 'x' } })
      expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'announce', round: 1, extraRun: true })
    })

    it('disagreement past the extra-run cap fails the job', () => {
      const j = job({ status: 'running', replicas: 2, extraRuns: 2, attempts: [att('a', 'completed'), att('b', 'completed'), att('c', 'completed'), att('d', 'completed')], results: { a: 'h', b: 'x', c: 'y', d: 'z' } })
      expect(next(j, { type: 'result' }, CFG)).to.deep.equal({ kind: 'fail', status: 'failed', reason: 'replica results disagree and the extra-run cap is reached' })
    })

    it('too few bidders for the replicas: award the next, announce again, then fail', () => {
      const more = job({ status: 'running', replicas: 2, bids: [bid('a', 1), bid('b', 2)], attempts: [att('a', 'completed')], results: { a: 'h' } })
      expect(awarded(next(more, { type: 'result' }, CFG)).map(([p]) => p)).to.deep.equal(['b'])
      const again = job({ status: 'running', replicas: 2, bids: [bid('a', 1)], attempts: [att('a', 'completed')], results: { a: 'h' } })
      expect(next(again, { type: 'result' }, CFG)).to.deep.equal({ kind: 'announce', round: 1, extraRun: false })
      const last = job({ status: 'running', replicas: 2, round: 2, bids: [bid('a', 1)], attempts: [att('a', 'completed')], results: { a: 'h' } })
      expect(next(last, { type: 'result' }, CFG)).to.deep.equal({ kind: 'fail', status: 'failed', reason: 'only 1 of 2 replicas could be run' })
    })

    it('how a result is treated: counted, paid late, outvoted late, superseded, cancelled', () => {
      expect(treatResult({ status: 'running', replicas: 1 }, att('a', 'running'), 'h')).to.equal('count')
      expect(treatResult({ status: 'running', replicas: 1 }, att('a', 'lost'), 'h'), 'one replica: first valid result wins').to.equal('count')
      expect(treatResult({ status: 'running', replicas: 3 }, att('a', 'lost'), 'h')).to.equal('superseded')
      expect(treatResult({ status: 'completed', replicas: 3, finalHash: 'h' }, att('a', 'running'), 'h')).to.equal('late-paid')
      expect(treatResult({ status: 'completed', replicas: 3, finalHash: 'h' }, att('a', 'running'), 'x')).to.equal('late-mismatch')
      expect(treatResult({ status: 'completed', replicas: 1, finalHash: 'h' }, att('a', 'lost'), 'h')).to.equal('superseded')
      expect(treatResult({ status: 'cancelled', replicas: 1 }, att('a', 'running'), 'h')).to.equal('cancelled')
    })
  })

  describe('cancel', () => {
    it('while bidding: nothing to withdraw', () => {
      expect(next(job({ status: 'bidding' }), { type: 'cancel' }, CFG)).to.deep.equal({ kind: 'cancel', withdraw: [] })
    })

    it('while awarded or running: every award in flight is withdrawn', () => {
      const attempts = [att('a', 'lost'), att('b', 'offered'), att('c', 'accepted'), att('d', 'running'), att('e', 'refused')]
      for (const status of ['awarded', 'running'] as const) {
        expect(next(job({ status, attempts }), { type: 'cancel' }, CFG)).to.deep.equal({ kind: 'cancel', withdraw: [1, 2, 3] })
      }
    })

    it('once finished: refused', () => {
      for (const status of ['completed', 'failed', 'no-bids', 'cancelled'] as const) {
        const step = next(job({ status }), { type: 'cancel' }, CFG)
        expect(step.kind, status).to.equal('refuse')
      }
    })

    it('a finished job ignores every other event', () => {
      for (const type of ['closed', 'ended', 'result', 'recovered'] as const) {
        expect(next(job({ status: 'cancelled', bids: [bid('a', 1)] }), { type }, CFG)).to.deep.equal({ kind: 'wait' })
      }
    })
  })

  describe('liveness and deadlines', () => {
    const base: WatchedAttempt = { provider: 'a', state: 'running', trust: 'proven', lastSeen: 1000, suspect: false, awardedAt: 1000, deadline: attemptDeadline('proven', 1000, 0, 5000) }
    const cfg = { suspectAfterMs: 750, lostAfterMs: 1500 }

    it('heartbeats in time: ok; a short silence: suspect (once); a long one: lost', () => {
      expect(liveness(base, 1500, cfg)).to.deep.equal({ kind: 'ok' })
      expect(liveness(base, 1800, cfg)).to.deep.equal({ kind: 'suspect', silentMs: 800 })
      expect(liveness({ ...base, suspect: true }, 1800, cfg)).to.deep.equal({ kind: 'ok' })
      expect(liveness(base, 2600, cfg).kind).to.equal('lost')
    })

    it('a watchdog check late by more than its interval measures how long this node was deaf; jitter is 0', () => {
      expect(deafMs(1000, 1125, 125)).to.equal(0)
      expect(deafMs(1000, 1249, 125)).to.equal(0)
      expect(deafMs(1000, 1251, 125)).to.equal(126)
      expect(deafMs(1000, 4125, 125)).to.equal(3000)
    })

    it('an award whose channel is still opening is not judged by silence (the open has its own limit), but by its deadline', () => {
      expect(liveness({ ...base, opening: true }, 10_000, cfg)).to.deep.equal({ kind: 'ok' })
      expect(liveness(base, 10_000, cfg).kind).to.equal('lost')
      expect(liveness({ ...base, opening: true }, base.deadline + 1, cfg).kind).to.equal('lost')
    })

    it('deadline passed: lost, whatever the heartbeats say', () => {
      const now = base.deadline + 1
      const step = liveness({ ...base, lastSeen: now }, now, cfg)
      expect(step.kind).to.equal('lost')
      expect(step.kind === 'lost' && step.reason).to.match(/deadline/)
    })

    it('an attempt whose result is in while its output files are fetched is not lost for silence or the deadline (the fetch has its own budget)', () => {
      const collecting = { ...base, collecting: true }
      expect(liveness(collecting, 60_000, cfg)).to.deep.equal({ kind: 'ok' })
      expect(liveness(collecting, base.deadline + 1, cfg)).to.deep.equal({ kind: 'ok' })
    })

    it('awards that ended are not watched; recovered ones are left to status polls', () => {
      expect(liveness({ ...base, state: 'completed' }, 1e12, cfg)).to.deep.equal({ kind: 'ok' })
      expect(liveness({ ...base, polled: true }, 5000, cfg)).to.deep.equal({ kind: 'ok' })
    })
  })

  describe('restart', () => {
    it('no live award: announce again', () => {
      const j = job({ round: 1, attempts: [att('a', 'lost')] })
      expect(next(j, { type: 'recovered' }, CFG)).to.deep.equal({ kind: 'announce', round: 2, extraRun: false })
    })

    it('live awards: ask their providers', () => {
      const j = job({ status: 'awarded', attempts: [att('a', 'lost'), att('b', 'accepted'), att('c', 'offered')] })
      expect(next(j, { type: 'recovered' }, CFG)).to.deep.equal({ kind: 'poll', attempts: [1, 2] })
    })

    it('a live provider: its result is collected, or it is still running', () => {
      const fresh = { count: 0, since: 0 }
      expect(afterStatus({ state: 'done', hasResult: true }, fresh, 0, 10_000)).to.deep.equal({ kind: 'result' })
      expect(afterStatus({ state: 'running', hasResult: false }, fresh, 0, 10_000)).to.deep.equal({ kind: 'running' })
      expect(afterStatus({ state: 'fetching', hasResult: false }, fresh, 0, 10_000)).to.deep.equal({ kind: 'waiting' })
    })

    it('a provider that forgot the job, or sends a bad reply, is lost', () => {
      expect(afterStatus({ state: 'unknown', hasResult: false }, { count: 0, since: 0 }, 0, 10_000).kind).to.equal('lost')
      expect(afterStatus({ error: 'bad signature', refused: true }, { count: 1, since: 0 }, 0, 10_000).kind).to.equal('lost')
    })

    it('a dead provider: retried through the grace period, then lost', () => {
      const err = { error: 'unreachable', refused: false }
      expect(afterStatus(err, { count: 1, since: 0 }, 100, 10_000)).to.deep.equal({ kind: 'retry' })
      expect(afterStatus(err, { count: 5, since: 0 }, 9_000, 10_000)).to.deep.equal({ kind: 'retry' })
      expect(afterStatus(err, { count: 2, since: 0 }, 11_000, 10_000)).to.deep.equal({ kind: 'retry' })
      expect(afterStatus(err, { count: 3, since: 0 }, 11_000, 10_000).kind).to.equal('lost')
    })
  })
})
