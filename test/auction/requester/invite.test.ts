/**
 * The provider book and the invitation rule, without a network: whom a job
 * is offered to, when the offer goes out as an open call instead, and how
 * the book keeps itself bounded and honest.
 */
import { expect } from 'chai'
import { randomSigner, type Signer } from '../../../src/crypto/index.js'
import { BOOK_BENCH_MS, BOOK_FULL_MS, BOOK_OBSERVED_MS, BOOK_STRIKES_OUT, INVITE_EXPLORE, INVITE_EXTRA, INVITE_UNPROVEN, MAX_ADVERT_ADDRS, MAX_ADVERT_BYTES } from '../../../src/auction/constants.js'
import { parseSelector } from '../../../src/labels.js'
import { checkSigned, encodeSigned, sign, type Advert, type JobSpecWire } from '../../../src/auction/protocol/messages.js'
import { ProviderBook } from '../../../src/auction/requester/book.js'
import { chooseInvitees, roundDecided, type InviteJob, type RoundState } from '../../../src/auction/requester/invite.js'
import type { Trust } from '../../../src/auction/requester/trust.js'

const spec: JobSpecWire = { engine: 'js', source: 'input', args: [], env: {}, limits: { timeoutMs: 1000, memoryMb: 64, outputBytes: 1024 } }
const job = (over: Partial<InviteJob> = {}): InviteJob => ({ id: 'bafyjob0000001', spec, maxPrice: 10, need: 3, excluded: new Set(), ...over })
const SEATS = 3 + INVITE_EXTRA

function advert (signer: Signer, over: Partial<Advert> = {}): ReturnType<typeof sign<'advert'>> {
  const now = Date.now()
  return sign(signer, 'advert', {
    v: 1, provider: signer.peerId, engines: ['js', 'wasm'], ask: 1, slots: 2,
    caps: { timeoutMs: 60_000, memoryMb: 512, outputBytes: 1 << 20 }, addrs: [], seq: now, ts: now, expires: now + 180_000, ...over
  })
}

/** n providers with asks 1..n, in a book; trust by index. */
function market (n: number, trust: (i: number) => Trust = () => 'proven', over: (i: number) => Partial<Advert> = () => ({})): { book: ProviderBook, peers: string[], trustOf: (p: string) => Trust } {
  const book = new ProviderBook()
  const peers: string[] = []
  const trusts = new Map<string, Trust>()
  for (let i = 0; i < n; i++) {
    const s = randomSigner()
    peers.push(s.peerId)
    trusts.set(s.peerId, trust(i))
    book.add(advert(s, { ask: i + 1, ...over(i) }))
  }
  return { book, peers, trustOf: (p) => trusts.get(p) ?? 'unproven' }
}

describe('requester: the provider book and the invitation rule', () => {
  it('an advert is a signed message checked like the others: schema, signer, lifetime', () => {
    const s = randomSigner()
    expect(checkSigned(advert(s), 'advert').payload.provider).to.equal(s.peerId)
    const other = randomSigner()
    expect(() => checkSigned(advert(s, { provider: other.peerId }), 'advert')).to.throw(/not by the party it names/)
    expect(() => checkSigned(advert(s, { expires: Date.now() + 24 * 3600_000 }), 'advert')).to.throw(/lifetime/)
    expect(() => checkSigned(advert(s, { engines: [] }), 'advert')).to.throw(/engines/)
    expect(() => checkSigned(advert(s, { addrs: Array(9).fill('/ip4/1.2.3.4/tcp/1') }), 'advert')).to.throw(/addrs/)
  })

  it('invites the cheapest proven providers, seats for newcomers, one explorer; the most expensive are not asked', () => {
    const { book, peers, trustOf } = market(20, (i) => i < 10 ? 'proven' : 'unproven', (i) => ({ ask: i < 10 ? 5 + i : 100 - i }))
    const inv = chooseInvitees(job({ maxPrice: 200 }), { entries: book.current(), trustOf, random: () => 0 })
    expect(inv.mode).to.equal('invite')
    if (inv.mode !== 'invite') return
    // proven asks 5..14: the SEATS cheapest; unproven asks 90..81: the INVITE_UNPROVEN cheapest (81, 82)
    expect(inv.peers.slice(0, SEATS)).to.deep.equal(peers.slice(0, SEATS))
    expect(inv.peers.slice(SEATS, SEATS + INVITE_UNPROVEN)).to.deep.equal([peers[19], peers[18]])
    expect(inv.peers).to.have.length(SEATS + INVITE_UNPROVEN + INVITE_EXPLORE)
    expect(inv.explored).to.equal(INVITE_EXPLORE)
    expect(inv.peers).to.not.include(peers[9]) // the dearest proven one: only reached by exploration, not here
  })

  it('a newcomer asking less than everyone is invited to its first job', () => {
    const { book, peers, trustOf } = market(8, (i) => i === 7 ? 'unproven' : 'proven', (i) => ({ ask: i === 7 ? 0.5 : 3 + i }))
    const inv = chooseInvitees(job(), { entries: book.current(), trustOf, random: () => 0.99 })
    expect(inv.mode).to.equal('invite')
    if (inv.mode === 'invite') expect(inv.peers).to.include(peers[7])
  })

  it('a provider that advertises a low ask and bids high ranks by its bid from then on, and by its advert again once the bid is old', () => {
    const { book, peers, trustOf } = market(10) // asks 1..10, all proven
    const first = chooseInvitees(job(), { entries: book.current(), trustOf, random: () => 0 })
    expect(first.mode === 'invite' && first.peers[0]).to.equal(peers[0])
    const t0 = Date.now()
    book.observe(peers[0], 9, t0) // advertised 1, bid 9
    const after = chooseInvitees(job(), { entries: book.current(t0), trustOf, random: () => 0, now: t0 + 1000 })
    expect(after.mode).to.equal('invite')
    if (after.mode !== 'invite') return
    expect(after.peers.slice(0, SEATS)).to.deep.equal(peers.slice(1, SEATS + 1)) // asks 2..6 take the seats
    const later = chooseInvitees(job(), { entries: book.current(t0), trustOf, random: () => 0, now: t0 + BOOK_OBSERVED_MS + 1 })
    expect(later.mode === 'invite' && later.peers[0]).to.equal(peers[0])
  })

  it('a provider that just declined with every slot busy is still invited but takes no seat, for BOOK_FULL_MS; a bid clears it', () => {
    const { book, peers, trustOf } = market(12)
    const t0 = Date.now()
    book.full(peers[0], t0)
    book.full(peers[1], t0)
    const during = chooseInvitees(job(), { entries: book.current(t0), trustOf, random: () => 0, now: t0 + 100 })
    expect(during.mode).to.equal('invite')
    if (during.mode !== 'invite') return
    // the two full ones, and SEATS with room after them
    expect(during.peers.slice(0, SEATS + 2)).to.deep.equal(peers.slice(0, SEATS + 2))
    book.observe(peers[1], 2, t0 + 200) // it bid again: it has room
    const bid = chooseInvitees(job(), { entries: book.current(t0), trustOf, random: () => 0, now: t0 + 300 })
    expect(bid.mode === 'invite' && bid.peers.slice(0, SEATS + 1)).to.deep.equal(peers.slice(0, SEATS + 1))
    const after = chooseInvitees(job(), { entries: book.current(t0), trustOf, random: () => 0, now: t0 + BOOK_FULL_MS + 1 })
    expect(after.mode === 'invite' && after.peers.slice(0, SEATS)).to.deep.equal(peers.slice(0, SEATS)) // full no more: SEATS seats again
    expect(after.mode === 'invite' && after.peers).to.have.length(SEATS + INVITE_EXPLORE)
  })

  it('twenty free identities asking 0 take the newcomer seats and never a proven provider\'s seat', () => {
    const { book, peers, trustOf } = market(24, (i) => i < 4 ? 'proven' : 'unproven', (i) => ({ ask: i < 4 ? 5 : 0 }))
    const inv = chooseInvitees(job(), { entries: book.current(), trustOf })
    expect(inv.mode).to.equal('invite')
    if (inv.mode !== 'invite') return
    for (const p of peers.slice(0, 4)) expect(inv.peers).to.include(p)
    expect(inv.peers.filter(p => trustOf(p) !== 'proven')).to.have.length(Math.max(INVITE_UNPROVEN, SEATS - 4) + INVITE_EXPLORE)
  })

  it('fresh keys with no standing fill empty seats; doubtful ones come after them', () => {
    const { book, peers, trustOf } = market(7, (i) => i < 3 ? 'doubtful' : 'unproven', (i) => ({ ask: i }))
    const inv = chooseInvitees(job(), { entries: book.current(), trustOf, random: () => 0 })
    expect(inv.mode).to.equal('invite')
    if (inv.mode !== 'invite') return
    expect(inv.peers.slice(0, 4)).to.deep.equal(peers.slice(3, 7))
    expect(inv.peers[4]).to.equal(peers[0])
  })

  it('only providers that can run the job are invited: engine, caps, ask within maxPrice, not lost, not flagged', () => {
    const { book, peers, trustOf } = market(12, () => 'proven', (i) => i === 0 ? { engines: ['wasm'] } : i === 1 ? { caps: { timeoutMs: 500, memoryMb: 512, outputBytes: 1 << 20 } } : i === 2 ? { ask: 50 } : {})
    const inv = chooseInvitees(job({ excluded: new Set([peers[3]]) }), { entries: book.current(), trustOf, isFlagged: (p) => p === peers[4], random: () => 0 })
    expect(inv.mode).to.equal('invite')
    if (inv.mode !== 'invite') return
    for (const p of peers.slice(0, 5)) expect(inv.peers).to.not.include(p)
    expect(inv.peers.slice(0, SEATS)).to.deep.equal(peers.slice(5, 5 + SEATS))
  })

  it('only providers whose advertised labels meet the job\'s constraints are invited; too few of them is an open call', () => {
    // even indexes in eu, odd in us; index 0 also has a gpu
    const { book, peers, trustOf } = market(20, () => 'proven', (i) => ({ labels: i === 0 ? { region: 'eu', gpu: 'a100' } : { region: i % 2 === 0 ? 'eu' : 'us' } as Record<string, string> }))
    const inv = chooseInvitees(job({ constraints: parseSelector('region=eu') }), { entries: book.current(), trustOf, random: () => 0 })
    expect(inv.mode).to.equal('invite')
    if (inv.mode !== 'invite') return
    for (const p of inv.peers) expect(peers.indexOf(p) % 2, 'an invitee in us').to.equal(0)
    expect(inv.peers.length).to.be.at.least(SEATS)
    // one provider with a gpu: fewer than the seats, so every provider hears it (and the others decline)
    expect(chooseInvitees(job({ constraints: parseSelector('gpu in (a100,h100)') }), { entries: book.current(), trustOf }).mode).to.equal('open')
    // an advert without labels meets only constraints that hold for no labels
    const bare = market(SEATS)
    expect(chooseInvitees(job({ constraints: parseSelector('!spot') }), { entries: bare.book.current(), trustOf: bare.trustOf }).mode).to.equal('invite')
    expect(chooseInvitees(job({ constraints: parseSelector('region!=us,spot') }), { entries: bare.book.current(), trustOf: bare.trustOf }).mode).to.equal('open')
  })

  it('an advert with the most labels and addresses allowed fits the advert size cap', () => {
    const s = randomSigner()
    const labels = Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`k${i}${'k'.repeat(60)}`, 'v'.repeat(63)]))
    const addrs = Array(MAX_ADVERT_ADDRS).fill('/ip6/' + 'f'.repeat(250).slice(0, 250))
    const a = advert(s, { labels, addrs })
    expect(checkSigned(a, 'advert').payload.labels).to.deep.equal(labels)
    expect(encodeSigned(a).length).to.be.at.most(MAX_ADVERT_BYTES)
    expect(() => checkSigned(advert(s, { labels: { 'bad key': 'x' } }), 'advert')).to.throw(/labels/)
  })

  it('a thin book is an open call: fewer capable providers than seats', () => {
    const { book, trustOf } = market(SEATS - 1)
    const inv = chooseInvitees(job(), { entries: book.current(), trustOf })
    expect(inv).to.deep.include({ mode: 'open' })
    // replicas raise the need, and with it the seats
    const { book: b2, trustOf: t2 } = market(SEATS + 1)
    expect(chooseInvitees(job({ need: 3 }), { entries: b2.current(), trustOf: t2 }).mode).to.equal('invite')
    expect(chooseInvitees(job({ need: 5 }), { entries: b2.current(), trustOf: t2 }).mode).to.equal('open')
  })

  it('equal asks: who is invited first depends on the job, so equal providers share the work', () => {
    const { book, trustOf } = market(30, () => 'proven', () => ({ ask: 2 }))
    const firsts = new Set<string>()
    for (let i = 0; i < 40; i++) {
      const inv = chooseInvitees(job({ id: `bafyjob${String(i).padStart(8, '0')}` }), { entries: book.current(), trustOf, random: () => 0 })
      if (inv.mode === 'invite') firsts.add(inv.peers[0])
    }
    expect(firsts.size).to.be.greaterThan(10)
  })

  it('the book keeps the newest advert per provider, drops expired ones, and is bounded', () => {
    const book = new ProviderBook(3)
    const s = randomSigner()
    const now = Date.now()
    expect(book.add(advert(s, { seq: now, ask: 1 }))).to.equal(true)
    expect(book.add(advert(s, { seq: now - 1, ask: 9 }))).to.equal(false) // older: ignored
    expect(book.get(s.peerId)?.advert.ask).to.equal(1)
    expect(book.add(advert(s, { seq: now + 1, ask: 2 }))).to.equal(true)
    expect(book.get(s.peerId)?.advert.ask).to.equal(2)
    const others = [randomSigner(), randomSigner(), randomSigner()]
    for (const o of others) book.add(advert(o))
    expect(book.size).to.equal(3) // bounded: the one heard from least recently (s) went first
    expect(book.get(s.peerId)).to.equal(undefined)
    expect(book.counts.evicted).to.equal(1)
    const e = randomSigner()
    const short = new ProviderBook()
    short.add(advert(e, { expires: now + 10 }))
    expect(short.current(now + 11)).to.deep.equal([])
    expect(short.size).to.equal(0)
  })

  it('an invitee silent BOOK_STRIKES_OUT times in a row is benched; an answer clears its strikes; a winner that never accepts is benched at once', () => {
    const book = new ProviderBook()
    const [a, b] = [randomSigner(), randomSigner()]
    const now = Date.now()
    // (the book does not check lifetimes: the topic's gate did; these outlive the bench)
    book.add(advert(a, { expires: now + 2 * BOOK_BENCH_MS }))
    book.add(advert(b, { expires: now + 2 * BOOK_BENCH_MS }))
    for (let i = 0; i < BOOK_STRIKES_OUT - 1; i++) book.strike(a.peerId, now)
    book.answered(a.peerId)
    for (let i = 0; i < BOOK_STRIKES_OUT - 1; i++) book.strike(a.peerId, now)
    expect(book.current(now).map(e => e.advert.provider)).to.include(a.peerId)
    book.strike(a.peerId, now)
    expect(book.current(now).map(e => e.advert.provider)).to.deep.equal([b.peerId])
    expect(book.current(now + BOOK_BENCH_MS + 1).map(e => e.advert.provider)).to.include(a.peerId)
    book.bench(b.peerId, now)
    expect(book.current(now).map(e => e.advert.provider)).to.not.include(b.peerId)
    // a new advert does not lift the bench
    book.add(advert(b, { seq: Date.now() + 5, expires: now + 2 * BOOK_BENCH_MS }))
    expect(book.current(now).map(e => e.advert.provider)).to.not.include(b.peerId)
  })

  describe('the early close of an invited round (roundDecided)', () => {
    /** asks 1..6, provider 0 proven, the others without standing; bids from the given indices at their asks */
    function round (bidders: number[], over: Partial<RoundState> = {}, trust: (i: number) => Trust = (i) => i === 0 ? 'proven' : 'unproven'): { state: RoundState, peers: string[], book: ProviderBook } {
      const { book, peers, trustOf } = market(6, trust)
      const bids = bidders.map(i => ({ provider: peers[i], price: i + 1 }))
      const silent = peers.filter((_, i) => !bidders.includes(i))
      return { state: { bids, silent, minBids: 3, replicas: 1, probationUsed: false, trustOf, entryOf: (p) => book.get(p), ...over }, peers, book }
    }

    it('closes once the three cheapest answered and every silent invitee asks more', () => {
      expect(roundDecided(round([0, 1, 2]).state)).to.equal(true)
      // the fourth cheapest answering first changes nothing: the third is still to come
      expect(roundDecided(round([0, 1, 3]).state)).to.equal(false)
      expect(roundDecided(round([0, 1, 3, 2]).state)).to.equal(true)
      // fewer than minBids bids: no
      expect(roundDecided(round([0, 1]).state)).to.equal(false)
    })

    it('waits for a silent invitee that could tie or undercut, and for one the book does not hold', () => {
      const { state, peers, book } = round([0, 1, 2])
      // a silent invitee advertising the third's ask: it could win the tie-break for third place
      const tie = randomSigner()
      book.add(advert(tie, { ask: 3 }))
      expect(roundDecided({ ...state, silent: [...state.silent, tie.peerId] })).to.equal(false)
      // unknown to the book: nothing bounds its ask
      expect(roundDecided({ ...state, silent: [...state.silent, randomSigner().peerId] })).to.equal(false)
      // a provider whose last bid was lower than its advert: that bid is its floor
      book.observe(peers[5], 2)
      expect(roundDecided(state)).to.equal(false)
      // one whose last bid was higher (surging while busy): its advertised ask is
      book.observe(peers[5], 50)
      expect(roundDecided(state)).to.equal(true)
    })

    it('never closes early before a proven provider bid: a later proven answer changes which bids are eligible', () => {
      expect(roundDecided(round([1, 2, 3]).state)).to.equal(false)
      expect(roundDecided(round([0, 1, 2], {}, () => 'unproven').state)).to.equal(false)
    })

    it('reads eligibility as the award does: no wait for bidders that could not win, no count of bids that cannot', () => {
      // doubtful bidders are not eligible while a proven one bids: they neither count nor are waited for
      const doubtful = (i: number): Trust => i === 0 ? 'proven' : i === 1 ? 'doubtful' : 'unproven'
      expect(roundDecided(round([0, 1, 2], {}, doubtful).state)).to.equal(false)
      expect(roundDecided(round([0, 2, 3], {}, doubtful).state)).to.equal(true)
      // probation used up: unproven bids neither count nor hold the round
      expect(roundDecided(round([0, 1, 2], { probationUsed: true }).state)).to.equal(false)
      const allProven = round([0, 1, 2], { probationUsed: true }, (i) => i < 3 ? 'proven' : 'unproven')
      expect(roundDecided(allProven.state)).to.equal(true)
    })

    it('needs replicas + 1 bids for the uniform price, and proven ones for more than one replica', () => {
      expect(roundDecided(round([0, 1, 2], { replicas: 3, minBids: 3 }).state)).to.equal(false)
      expect(roundDecided(round([0, 1, 2, 3], { replicas: 3, minBids: 3 }).state)).to.equal(false)
      expect(roundDecided(round([0, 1, 2, 3], { replicas: 3, minBids: 3 }, (i) => i < 4 ? 'proven' : 'unproven').state)).to.equal(true)
      // two replicas, three cheapest bids from a proven and two unproven: a probation pick would narrow the set
      expect(roundDecided(round([0, 1, 2], { replicas: 2 }).state)).to.equal(false)
    })
  })
})
