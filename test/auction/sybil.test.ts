/**
 * Free identities: a key costs nothing, so unproven providers must not be able to sink a job.
 * Runs real markets (requester, providers, ledger, executor) on the in-memory network; the hostile
 * providers are scripted peers speaking the wire protocol.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { canonicalDecode, canonicalEncode, messageId, randomSigner, type Signed, type Signer } from '../../src/crypto/index.js'
import { computeResultHash, createExecutor, type Executor } from '../../src/executor/index.js'
import { openLedger, type Ledger } from '../../src/ledger/index.js'
import { AWARD_PROTOCOL, BID_PROTOCOL, JOBS_TOPIC, createMarket, rankBids, settlementPrice, type Award, type Bid, type JobView, type Market, type Offer } from '../../src/auction/index.js'
import { encodeSigned, sign } from '../../src/auction/protocol/messages.js'
import { MemoryHub, type MemoryNetwork } from '../helpers/memory-network.js'

const TIMEOUT_MS = 1000
const JOB = { engine: 'js' as const, source: 'function main (i) { return i.x + 1 }', input: { x: 1 }, maxPrice: 50, limits: { timeoutMs: TIMEOUT_MS } }

const REQUESTER = {
  // generous: a loaded 2-core machine runs two dozen markets in this process
  bidWindowMs: 1000,
  minBids: 3,
  maxAttempts: 4,
  heartbeatMs: 100,
  suspectAfterMs: 300,
  lostAfterMs: 600,
  defaultMaxPrice: 100,
  minReputation: -3
}

type Behaviour = 'abort' | 'hang' | 'honest' | 'liar'

interface Scripted { signer: Signer, net: MemoryNetwork, behaviour: Behaviour, awards: number }

class World {
  readonly hub = new MemoryHub()
  private readonly stops: Array<() => Promise<void>> = []

  async market (opts: { provide: boolean, price?: number, requester?: Partial<typeof REQUESTER> & Record<string, unknown> }): Promise<Market & { peerId: string, ledger: Ledger }> {
    const signer = randomSigner()
    const network = this.hub.createNode(signer.peerId)
    const ledger = await openLedger({ signer })
    const executor: Executor = createExecutor({ poolSize: 1, queueSize: 64, engines: ['js'] })
    await executor.start()
    const market = createMarket({
      network,
      signer,
      ledger,
      executor,
      requester: { ...REQUESTER, ...(opts.requester ?? {}) } as any,
      provider: { enabled: opts.provide, price: opts.price ?? 1, slots: 8, queue: 0, engines: ['js'], maxTimeoutMs: 60_000, maxMemoryMb: 256, maxOutputBytes: 1 << 20, heartbeatMs: 100, resultRetentionMs: 60_000 }
    })
    await market.start()
    this.stops.push(async () => { await market.stop(); await executor.stop(); await ledger.close() })
    return Object.assign(market, { peerId: signer.peerId, ledger })
  }

  /**
   * A provider that bids on every offer of `requester` and then, when awarded: `abort` resets the
   * award stream at once; `hang` accepts, heartbeats "running" and never returns a result;
   * `honest` accepts and returns the right answer for JOB; `liar` accepts and returns a wrong
   * one, correctly signed and hashed.
   */
  scripted (requester: string, behaviour: Behaviour, price = 0): Scripted {
    const signer = randomSigner()
    const net = this.hub.createNode(signer.peerId)
    const me: Scripted = { signer, net, behaviour, awards: 0 }
    net.subscribe(JOBS_TOPIC, (msg) => {
      for (const offer of canonicalDecode<{ b: Array<Signed<Offer>> }>(msg.data).b) {
        if (offer.signer !== requester) continue
        const now = Date.now()
        const bid = sign(signer, 'bid', { v: 1, jobId: offer.payload.jobId, offerId: messageId(offer), provider: signer.peerId, price, estStartMs: 0, ts: now, expires: now + 60_000 })
        void net.request(requester, BID_PROTOCOL, encodeSigned(bid)).catch(() => {})
      }
    })
    void net.handleChannel(AWARD_PROTOCOL, async (ch) => {
      me.awards++
      const it = ch[Symbol.asyncIterator]()
      const first = await it.next()
      if (first.done === true) return
      const award = canonicalDecode<{ m: Signed<Award> }>(first.value).m
      if (me.behaviour === 'abort') { ch.abort(new Error('no')); return }
      const awardId = messageId(award)
      const jobId = award.payload.jobId
      await ch.send(canonicalEncode({ t: 'accept', m: sign(signer, 'accept', { v: 1, jobId, awardId, provider: signer.peerId, ts: Date.now() }) }))
      if (me.behaviour === 'honest' || me.behaviour === 'liar') {
        const r = { exitCode: 0, stdout: new Uint8Array(0), stderr: new Uint8Array(0), output: me.behaviour === 'honest' ? 2 : 999_999 }
        await ch.send(canonicalEncode({ t: 'result', m: sign(signer, 'result', { v: 1, jobId, awardId, provider: signer.peerId, ...r, truncated: false, resultHash: computeResultHash(jobId, r), usage: { wallMs: 1, memoryBytes: 1, outputBytes: 1 }, ts: Date.now() }) }))
      } else {
        const hb = setInterval(() => { void ch.send(canonicalEncode({ t: 'hb', ts: Date.now(), state: 'running' })).catch(() => {}) }, 100)
        try { for (;;) { if ((await it.next()).done === true) break } } catch { /* withdrawn */ } finally { clearInterval(hb) }
        return
      }
      try { for (;;) { if ((await it.next()).done === true) break } } catch { /* closed */ }
    })
    return me
  }

  async stop (): Promise<void> {
    await Promise.all(this.stops.splice(0).map(async s => await s().catch(() => {})))
  }
}

/** Time a job spent on awards to these providers (award to end of the attempt). */
function waitedOn (job: JobView, who: Set<string>): number {
  return job.attempts.filter(a => who.has(a.provider)).reduce((sum, a) => sum + ((a.endedAt ?? Date.now()) - a.awardedAt), 0)
}

async function runJob (market: Market, spec: Record<string, unknown> = {}): Promise<JobView> {
  const job = await market.submit({ ...JOB, ...spec })
  return await market.waitFor(job.id, { signal: AbortSignal.timeout(120_000) })
}

describe('market: free identities (Sybils) cannot sink jobs', function () {
  this.timeout(180_000)
  let world: World
  beforeEach(() => { world = new World() })
  afterEach(async () => { await world.stop() })

  it('20 Sybils (10 abort every award, 10 accept and hang) next to 3 honest providers: ≥ 23 of 24 jobs complete, none waits on Sybils longer than one timeout + 5 s', async () => {
    const requester = await world.market({ provide: false })
    const honest = await Promise.all([1, 1, 1].map(async price => await world.market({ provide: true, price })))
    // the honest providers have a history with this requester before the Sybils arrive
    for (let i = 0; i < 30 && !honest.every(h => requester.reputation.get(h.peerId).completed > 0); i++) {
      expect((await runJob(requester)).status).to.equal('completed')
    }
    const sybils = Array.from({ length: 20 }, (_, i) => world.scripted(requester.peerId, i % 2 === 0 ? 'abort' : 'hang'))
    const sybilIds = new Set(sybils.map(s => s.signer.peerId))
    const started = Date.now()
    // four waves of six concurrent jobs
    const jobs: JobView[] = []
    for (let wave = 0; wave < 4; wave++) jobs.push(...await Promise.all(Array.from({ length: 6 }, async () => await runJob(requester))))
    const completed = jobs.filter(j => j.status === 'completed').length
    const maxWait = Math.max(...jobs.map(j => waitedOn(j, sybilIds)))
    const sybilAwards = sybils.reduce((n, s) => n + s.awards, 0)
    process.stderr.write(`      sybils: ${completed}/24 completed, max wait on Sybils ${maxWait} ms, ${sybilAwards} awards to Sybils, ${Date.now() - started} ms\n`)
    expect(sybilAwards, 'the Sybils were offered work').to.be.greaterThan(0)
    expect(completed, JSON.stringify(jobs.filter(j => j.status !== 'completed').slice(0, 2).map(j => j.attempts))).to.be.greaterThanOrEqual(23)
    expect(maxWait).to.be.at.most(TIMEOUT_MS + 5000)
    for (const j of jobs.filter(j => j.status === 'completed')) expect(sybilIds.has(j.provider as string)).to.equal(false)
    for (const j of jobs) expect(j.attempts.filter(a => sybilIds.has(a.provider)).length, 'Sybil attempts in one job').to.be.at.most(1)
    // an auditor re-runs every award from the requester's log: the winner is the best eligible bid
    // not awarded before in the job, and is paid the uniform price over the eligible bids
    for (const j of jobs) {
      const records = await requester.ledger.byJob(j.id)
      const bids = records.filter(r => r.type === 'bid').flatMap(r => (r.body as any).bids as Array<Signed<Bid>>)
      const earlier = new Set<string>()
      for (const r of records.filter(r => r.type === 'award')) {
        const { award, eligible } = r.body as { award: Signed<Award>, eligible: string[] }
        const ids = new Set(eligible)
        expect(eligible.every(id => award.payload.bids.includes(id)), 'eligible bids were considered').to.equal(true)
        const ranked = rankBids(j.id, bids.map(b => ({ provider: b.signer, price: b.payload.price, estStartMs: b.payload.estStartMs, id: messageId(b) })).filter(b => ids.has(b.id)))
        const winner = ranked.find(b => !earlier.has(b.provider))
        expect(winner?.provider).to.equal(award.payload.provider)
        expect(winner?.id).to.equal(award.payload.bidId)
        expect(settlementPrice(ranked, 1, ranked.indexOf(winner as any), JOB.maxPrice)).to.equal(award.payload.price)
        earlier.add(award.payload.provider)
      }
    }
  })

  it('an honest newcomer wins work within its first 20 jobs, next to proven providers and Sybils', async () => {
    const requester = await world.market({ provide: false })
    const incumbents = await Promise.all([2, 2, 2].map(async price => await world.market({ provide: true, price })))
    for (let i = 0; i < 30 && !incumbents.every(h => requester.reputation.get(h.peerId).completed > 0); i++) await runJob(requester)
    const sybils = Array.from({ length: 5 }, (_, i) => world.scripted(requester.peerId, i % 2 === 0 ? 'abort' : 'hang'))
    const newcomer = await world.market({ provide: true, price: 1 })
    let won = -1
    for (let i = 0; i < 20 && won < 0; i++) {
      // in the in-memory network the newest node always answers last: ask for more bids than the
      // incumbents can give so the window does not close on them alone (on a real network the
      // order of answers varies)
      const job = await runJob(requester, { minBids: 5 })
      expect(job.status).to.equal('completed')
      if (job.provider === newcomer.peerId) won = i + 1
    }
    process.stderr.write(`      newcomer won its first job at job ${won} (${sybils.reduce((n, s) => n + s.awards, 0)} awards to Sybils meanwhile)\n`)
    expect(won, 'the newcomer won a job').to.be.greaterThan(0)
    expect(requester.reputation.get(newcomer.peerId).completed).to.be.greaterThan(0)
  })

  it('a key that answers wrongly at price 0 is checked by a proven provider: never paid, never proven, and every answer right', async () => {
    const requester = await world.market({ provide: false })
    const honest = await Promise.all([2, 2].map(async price => await world.market({ provide: true, price })))
    for (let i = 0; i < 30 && !honest.every(h => requester.reputation.get(h.peerId).completed > 0); i++) await runJob(requester)
    const liars = [world.scripted(requester.peerId, 'liar'), world.scripted(requester.peerId, 'liar')]
    const liarIds = new Set(liars.map(l => l.signer.peerId))
    for (let i = 0; i < 10; i++) {
      const job = await runJob(requester)
      expect(job.status).to.equal('completed')
      expect((await requester.result(job.id)).output, `job ${i + 1}`).to.equal(2)
      expect(liarIds.has(job.provider as string)).to.equal(false)
    }
    const awards = liars.reduce((n, l) => n + l.awards, 0)
    process.stderr.write(`      ${awards} awards to the liars, none paid\n`)
    expect(awards, 'the liars had their probation').to.be.greaterThan(0)
    for (const l of liars) {
      expect(requester.reputation.get(l.signer.peerId).completed, 'a liar earned no standing').to.equal(0)
      expect(requester.reputation.score(l.signer.peerId)).to.be.lessThan(0)
    }
  })

  it('with only unproven providers (a fresh network), jobs still run', async () => {
    const requester = await world.market({ provide: true, price: 1 })
    const other = await world.market({ provide: true, price: 2 })
    for (let i = 0; i < 3; i++) expect((await runJob(requester)).status).to.equal('completed')
    const solo = await world.market({ provide: true, price: 1 })
    expect((await runJob(solo)).status).to.equal('completed')
    expect(other.peerId).to.be.a('string')
  })

  it('a provider that failed and then behaves recovers its standing', async () => {
    const requester = await world.market({ provide: false, requester: { forgiveHalfLifeMs: 400 } })
    const steady = await world.market({ provide: true, price: 5 })
    const flaky = world.scripted(requester.peerId, 'honest', 1)
    // flaky (cheapest) earns its standing, then fails several times in a row
    expect((await runJob(requester)).provider).to.equal(flaky.signer.peerId)
    flaky.behaviour = 'abort'
    let failures = 0
    for (let i = 0; i < 6; i++) {
      const job = await runJob(requester)
      expect(job.status, JSON.stringify(job)).to.equal('completed')
      expect(job.provider).to.equal(steady.peerId)
      failures += job.attempts.filter(a => a.provider === flaky.signer.peerId).length
      await new Promise(resolve => setTimeout(resolve, 450))
    }
    expect(requester.reputation.score(flaky.signer.peerId), 'its failures cost it').to.be.lessThan(1)
    // it behaves again: after a while it is heard again, wins, and its standing is back
    flaky.behaviour = 'honest'
    let won = false
    for (let i = 0; i < 20 && !won; i++) {
      await new Promise(resolve => setTimeout(resolve, 300))
      const job = await runJob(requester)
      expect(job.status).to.equal('completed')
      won = job.provider === flaky.signer.peerId
    }
    expect(won, 'the recovered provider wins work again').to.equal(true)
    expect(requester.reputation.score(flaky.signer.peerId)).to.be.greaterThan(0)
    expect(failures).to.be.greaterThan(0)
    process.stderr.write(`      flaky provider failed ${failures} awards, then won again\n`)
  })
})
