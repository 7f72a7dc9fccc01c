/**
 * The gossip gate before any signature is checked: what a stranger resending stale items, or
 * flooding through one connection, can make a node verify. Each case uses items with broken
 * signatures where the point is that no signature was checked: a checked one would be rejected
 * as `bad-signature`.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { randomSigner, type Signed, type Signer } from '../../src/crypto/index.js'
import { GossipGate, KeyedRateLimit } from '../../src/auction/index.js'
import { GOSSIP_STALE_GRACE_MS, MAX_ADVERT_BYTES } from '../../src/auction/constants.js'
import { encodeBatch, sign, type Advert, type RefusalReason } from '../../src/auction/protocol/messages.js'

function advertFrom (signer: Signer, over: Partial<Advert> = {}): Signed<Advert> {
  const now = Date.now()
  return sign(signer, 'advert', {
    v: 1, provider: signer.peerId, engines: ['js'], ask: 1, slots: 1,
    caps: { timeoutMs: 60_000, memoryMb: 512, outputBytes: 1 << 20 }, addrs: [], seq: now, ts: now, expires: now + 120_000, ...over
  })
}

/** The same advert with its signature broken (a checked one is `bad-signature`). */
function forged (m: Signed<Advert>): Signed<Advert> {
  const sig = new Uint8Array(m.sig)
  sig[0] ^= 0xff
  return { ...m, sig }
}

function gate (opts: { perSource?: KeyedRateLimit, rate?: { perSec: number, burst: number, maxKeys: number } } = {}): { gate: GossipGate<'advert'>, refused: Map<RefusalReason, number> } {
  const refused = new Map<RefusalReason, number>()
  const g = new GossipGate('advert', MAX_ADVERT_BYTES * 8, 8, {
    maxSeen: 1000,
    count: (r) => { refused.set(r, (refused.get(r) ?? 0) + 1) },
    self: 'self',
    ...opts
  })
  return { gate: g, refused }
}

const msg = (items: Array<Signed<Advert>>, from = 'peer-a'): { topic: string, data: Uint8Array, from: string } => ({ topic: 't', data: encodeBatch(items), from })

describe('gossip gate: costs before the signature check', () => {
  it('a batch of items expired long ago is rejected as expired, its signatures never checked', () => {
    const { gate: g, refused } = gate()
    const signer = randomSigner()
    const old = Date.now() - GOSSIP_STALE_GRACE_MS - 120_000
    const items = [0, 1, 2].map(i => forged(advertFrom(signer, { ts: old - i, seq: old - i, expires: old + 60_000 })))
    expect(g.decode(msg(items)).result).to.equal('reject')
    expect(refused.get('expired')).to.equal(1)
    expect(refused.has('bad-signature')).to.equal(false)
  })

  it('items that expired within the grace (clock skew, late gossip) are ignored, not rejected', () => {
    const { gate: g, refused } = gate()
    const signer = randomSigner()
    const now = Date.now()
    const items = [forged(advertFrom(signer, { ts: now - 100_000, seq: now - 100_000, expires: now - 5_000 }))]
    expect(g.decode(msg(items)).result).to.equal('ignore')
    expect(refused.size).to.equal(0)
  })

  it('fresh items beside expired ones are checked and delivered; the expired are skipped', () => {
    const { gate: g } = gate()
    const signer = randomSigner()
    const now = Date.now()
    const old = now - GOSSIP_STALE_GRACE_MS - 120_000
    const fresh = advertFrom(signer)
    const verdict = g.decode(msg([forged(advertFrom(signer, { ts: old, seq: old, expires: old + 60_000 })), fresh]))
    expect(verdict.result).to.equal('accept')
    expect(verdict.result === 'accept' ? verdict.value.map(i => i.m.payload.seq) : []).to.deep.equal([fresh.payload.seq])
  })

  it('a signer past its rate has its items ignored unverified; a forger cannot spend an honest signer\'s tokens', () => {
    const { gate: g, refused } = gate({ rate: { perSec: 0.001, burst: 3, maxKeys: 100 } })
    const honest = randomSigner()
    // forged items in the honest signer's name are rejected, and take none of its tokens
    expect(g.decode(msg([forged(advertFrom(honest))])).result).to.equal('reject')
    expect(refused.get('bad-signature')).to.equal(1)
    const three = [0, 1, 2].map(i => advertFrom(honest, { seq: Date.now() + 10 + i }))
    expect(g.decode(msg(three)).result).to.equal('accept')
    // its bucket is empty now: a further batch is ignored before its (broken) signature is checked
    expect(g.decode(msg([forged(advertFrom(honest, { seq: Date.now() + 20 }))])).result).to.equal('ignore')
    expect(refused.get('bad-signature')).to.equal(1)
    expect(g.ignored.rate).to.equal(1)
  })

  it('one peer past its verification budget is ignored unverified, whatever keys it signs with; other peers and our own are not', () => {
    const perSource = new KeyedRateLimit(0.001, 4, 10)
    const { gate: g, refused } = gate({ perSource })
    // four items from four fresh keys: the budget
    for (let i = 0; i < 4; i++) expect(g.decode(msg([advertFrom(randomSigner())], 'flooder')).result).to.equal('accept')
    // the fifth, even forged, is not verified
    expect(g.decode(msg([forged(advertFrom(randomSigner()))], 'flooder')).result).to.equal('ignore')
    expect(refused.has('bad-signature')).to.equal(false)
    expect(g.ignored.source).to.equal(1)
    // another neighbour, and our own messages through the loopback, still pass
    expect(g.decode(msg([advertFrom(randomSigner())], 'peer-b')).result).to.equal('accept')
    for (let i = 0; i < 6; i++) expect(g.decode(msg([advertFrom(randomSigner())], 'self')).result).to.equal('accept')
  })

  it('re-wrapped known items are charged to the peer that sends them: it runs out of budget', () => {
    const perSource = new KeyedRateLimit(0.001, 4, 10)
    const { gate: g } = gate({ perSource })
    const known = advertFrom(randomSigner())
    expect(g.decode(msg([known], 'peer-c')).result).to.equal('accept')
    for (let i = 0; i < 3; i++) expect(g.decode(msg([known], 'peer-c')).result).to.equal('ignore')
    expect(g.ignored.replay).to.equal(3)
    // its budget is spent on the replays: a new item from it is not even looked at
    expect(g.decode(msg([advertFrom(randomSigner())], 'peer-c')).result).to.equal('ignore')
    expect(g.ignored.source).to.equal(1)
    expect(g.decode(msg([advertFrom(randomSigner())], 'peer-d')).result).to.equal('accept')
  })

  it('expired items take no budget', () => {
    const perSource = new KeyedRateLimit(0.001, 1, 10)
    const { gate: g } = gate({ perSource })
    const signer = randomSigner()
    const now = Date.now()
    for (let i = 0; i < 5; i++) expect(g.decode(msg([advertFrom(signer, { ts: now - 100_000 - i, seq: now - 100_000 - i, expires: now - 5_000 })], 'peer-e')).result).to.equal('ignore')
    expect(g.ignored.source).to.equal(0)
    expect(g.decode(msg([advertFrom(signer)], 'peer-e')).result).to.equal('accept')
  })

  it('KeyedRateLimit.has looks without taking', () => {
    const r = new KeyedRateLimit(0.001, 2, 10)
    expect(r.has('k', 2)).to.equal(true)
    expect(r.has('k', 3)).to.equal(false)
    expect(r.take('k', 2)).to.equal(true)
    expect(r.has('k', 1)).to.equal(false)
    expect(r.has('other', 2)).to.equal(true)
  })
})
