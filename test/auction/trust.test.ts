import { expect } from 'chai'
import { attemptDeadline, eligibleBids, trustOf, type Trust } from '../../src/auction/requester/trust.js'
import { PROVEN_MARGIN_MS, UNPROVEN_MARGIN_MS } from '../../src/auction/constants.js'
import { Reputation } from '../../src/auction/reputation.js'
import { randomSigner } from '../../src/crypto/index.js'
import { sign } from '../../src/auction/protocol/messages.js'

const bids = (...providers: string[]): Array<{ provider: string }> => providers.map(provider => ({ provider }))
const names = (list: Array<{ provider: string }>): string[] => list.map(b => b.provider)

describe('trust: who may win an award', () => {
  it('trustOf: proven needs a completion that outweighs the remembered failures', () => {
    expect(trustOf({ completed: 0, penalty: 0, score: 0 })).to.equal('unproven')
    expect(trustOf({ completed: 1, penalty: 0, score: 1 })).to.equal('proven')
    expect(trustOf({ completed: 1, penalty: 1, score: 0 })).to.equal('doubtful')
    expect(trustOf({ completed: 0, penalty: 1, score: -1 })).to.equal('doubtful')
    // a failure half forgotten is not enough to pass a newcomer over
    expect(trustOf({ completed: 0, penalty: 0.4, score: -0.4 })).to.equal('unproven')
    expect(trustOf({ completed: 5, penalty: 2, score: 3 })).to.equal('proven')
  })

  const trust = (t: Record<string, Trust>) => (p: string): Trust => t[p]

  it('one probation attempt per job while a proven provider bids', () => {
    const t = trust({ s1: 'unproven', s2: 'unproven', h: 'proven', d: 'doubtful' })
    const ranked = bids('s1', 's2', 'd', 'h')
    // first attempt: the best unproven bid may win, doubtful ones may not
    expect(names(eligibleBids(ranked, t, new Set(), false))).to.deep.equal(['s1', 's2', 'h'])
    // after an attempt on an unproven provider: proven only
    expect(names(eligibleBids(ranked, t, new Set(['s1']), true))).to.deep.equal(['h'])
  })

  it('nobody proven left: the job runs on the others, unproven before doubtful', () => {
    const t = trust({ a: 'unproven', b: 'doubtful', h: 'proven' })
    expect(names(eligibleBids(bids('b', 'a'), t, new Set(), false))).to.deep.equal(['a'])
    expect(names(eligibleBids(bids('b', 'a'), t, new Set(['a']), true))).to.deep.equal(['b', 'a'])
    // the proven provider was tried already (it refused): others may run it
    expect(names(eligibleBids(bids('h', 'b', 'a'), t, new Set(['h']), false))).to.deep.equal(['h', 'a'])
    // a fresh network: all unproven, every attempt allowed
    const fresh = trust({ x: 'unproven', y: 'unproven' })
    expect(names(eligibleBids(bids('x', 'y'), fresh, new Set(['x']), true))).to.deep.equal(['x', 'y'])
  })

  it('keeps the winner rule order', () => {
    const t = trust({ a: 'proven', b: 'unproven', c: 'proven' })
    expect(names(eligibleBids(bids('c', 'b', 'a'), t, new Set(), false))).to.deep.equal(['c', 'b', 'a'])
  })

  it('an unproven provider gets the job timeout plus a short margin, whatever start it bid', () => {
    expect(attemptDeadline('unproven', 1000, 60_000, 5000)).to.equal(1000 + 5000 + UNPROVEN_MARGIN_MS)
    expect(attemptDeadline('doubtful', 1000, 60_000, 5000)).to.equal(1000 + 5000 + UNPROVEN_MARGIN_MS)
    expect(attemptDeadline('proven', 1000, 2000, 5000)).to.equal(1000 + 2000 + 5000 + PROVEN_MARGIN_MS)
    expect(UNPROVEN_MARGIN_MS).to.be.at.most(5000)
  })
})

describe('reputation: bad marks are forgiven with time', () => {
  let now = 0
  const clock = (): number => now

  it('a provider under the floor is heard again after the penalty decays', () => {
    now = 0
    const rep = new Reputation({ forgiveHalfLifeMs: 1000, now: clock })
    for (let i = 0; i < 4; i++) rep.record('p', 'lost')
    expect(rep.score('p')).to.equal(-4)
    now = 1000
    expect(rep.score('p')).to.be.closeTo(-2, 1e-9)
    now = 10_000
    expect(rep.score('p')).to.be.closeTo(0, 0.01)
    expect(trustOf(rep.peek('p'))).to.equal('unproven')
  })

  it('successes outweigh a failure; completions are not forgotten', () => {
    now = 0
    const rep = new Reputation({ forgiveHalfLifeMs: 1000, now: clock })
    const requester = randomSigner()
    const provider = randomSigner().peerId
    const receipt = (i: number, status: 'paid' | 'failed') => sign(requester, 'receipt', { v: 1, jobId: `bafyreijob${i}000000000000000000000000000000000000000000000`, requester: requester.peerId, provider, resultId: `bafyreiresult${i}0000000000000000000000000000000000000000000`, resultHash: '0'.repeat(64), price: 1, status, ts: 1 })
    rep.applyReceipt(receipt(1, 'paid'))
    expect(trustOf(rep.peek(provider))).to.equal('proven')
    rep.record(provider, 'lost')
    expect(rep.score(provider)).to.equal(0)
    expect(trustOf(rep.peek(provider))).to.equal('doubtful')
    rep.applyReceipt(receipt(2, 'paid'))
    expect(rep.score(provider)).to.equal(1)
    expect(trustOf(rep.peek(provider))).to.equal('proven')
    now = 60_000
    expect(rep.get(provider)).to.include({ completed: 2, lost: 1, penalty: 0, score: 2 })
    // a failed receipt is a bad mark too, forgiven the same way
    rep.applyReceipt(receipt(3, 'failed'))
    expect(rep.score(provider)).to.equal(1)
  })

  it('a receipt heard on gossip first still counts when it comes firsthand; one applied firsthand is not heard again', () => {
    const rep = new Reputation()
    const requester = randomSigner()
    const provider = randomSigner().peerId
    const receipt = (i: number) => sign(requester, 'receipt', { v: 1, jobId: `bafyreijob${i}000000000000000000000000000000000000000000000`, requester: requester.peerId, provider, resultId: `bafyreiresult${i}0000000000000000000000000000000000000000000`, resultHash: '0'.repeat(64), price: 2, status: 'paid', ts: 1 })
    const early = receipt(1)
    expect(rep.applyReceipt(early, false), 'heard').to.equal(true)
    expect(rep.applyReceipt(early, false), 'heard again').to.equal(false)
    expect(rep.get(provider)).to.include({ heardPaid: 1, completed: 0, earned: 0 })
    expect(rep.applyReceipt(early), 'then firsthand, on the award channel').to.equal(true)
    expect(rep.applyReceipt(early), 'firsthand again').to.equal(false)
    expect(rep.get(provider)).to.include({ heardPaid: 1, completed: 1, earned: 2 })
    const late = receipt(2)
    expect(rep.applyReceipt(late)).to.equal(true)
    expect(rep.applyReceipt(late, false), 'heard after it was applied').to.equal(false)
    expect(rep.get(provider)).to.include({ heardPaid: 1, completed: 2, earned: 4 })
  })

  it('peek does not add strangers to the table', () => {
    const rep = new Reputation()
    expect(trustOf(rep.peek('stranger'))).to.equal('unproven')
    expect(rep.all()).to.have.length(0)
  })
})
