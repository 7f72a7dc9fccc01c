/**
 * The market at network scale, simulated: `npm run sim -- --nodes 1000`.
 * Not a test: nothing here asserts. One process, a discrete-event scheduler
 * and simulated time; prints one JSON line per run.
 *
 * What is real: the requester's provider book (requester/book.ts), the
 * invitation rule (requester/invite.ts), the trust rule and the winner's
 * eligibility (requester/trust.ts), the protocol's timings and limits
 * (constants.ts and config/default.json: bid window, extension, no-bid grace,
 * advert schedule and echo, strikes, lost-after). What is modelled: the
 * network (a direct message takes 5–15 ms; a gossip message reaches every
 * node after log_D(N) such hops and costs N·(D−1) transmissions, D = 6 as in
 * gossipsub's mesh), signing and execution (a job runs 0.2–1 s), and the
 * providers: asks spread 1..100, 1–4 slots; `--liars` of them lie in their
 * adverts (half advertise a third of the price they bid, half advertise and
 * never answer); `--churn` of the providers leave (at once, mid-job too) and
 * as many new ones join per simulated minute; halfway through, a newcomer
 * asking less than everyone joins.
 *
 * Counted per job: every message of its life (offers, answers, award,
 * accept, heartbeats, result, receipt gossip); per node: messages received
 * for jobs it did not run, per second of its life. Adverts are counted apart.
 * `cheapestWonRatio`: awards that went to a provider whose price was the
 * lowest of every live, answering provider with a free slot at that moment.
 *
 *   npm run sim                                       300 and 1,000 nodes, 5 and 20 jobs/s, invitations on and off
 *   npm run sim -- --nodes 1000 --rates 5,20,50       one size, several network-wide job rates
 *   --minutes 5 --churn 0.05 --liars 0.1 --requesters 0.02 --seed 1 --modes invite,open
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { ADVERT_ECHO_MS, ADVERT_START_DELAYS_MS, ADVERT_TTL_MS, INVITE_ANSWER_GRACE_MS, MAX_BATCH_ITEMS, NO_BID_GRACE_MS, RECEIPT_PUBLISHERS_WINDOW_MS } from '../src/auction/constants.js'
import type { Signed } from '../src/crypto/index.js'
import type { Advert, JobSpecWire } from '../src/auction/protocol/messages.js'
import { advertRefreshDelay } from '../src/auction/provider/advert.js'
import { effectiveAsk, ProviderBook } from '../src/auction/requester/book.js'
import { chooseInvitees, roundDecided } from '../src/auction/requester/invite.js'
import { receiptGossipDelayMs } from '../src/auction/requester/settle.js'
import { eligibleBids, trustOf, type Trust } from '../src/auction/requester/trust.js'
import { pct } from './util.js'
import { mulberry32 } from '../test/helpers/random.js'

const { values: opts } = parseArgs({
  options: {
    nodes: { type: 'string', default: '300,1000' },
    rates: { type: 'string', default: '5,20' },
    modes: { type: 'string', default: 'invite,open' },
    minutes: { type: 'string', default: '5' },
    churn: { type: 'string', default: '0.05' },
    liars: { type: 'string', default: '0.1' },
    requesters: { type: 'string', default: '0.02' },
    seed: { type: 'string', default: '1' }
  }
})
const list = (s: string): number[] => s.split(',').map(Number)

// the protocol's figures (config/default.json, constants.ts)
const AUCTION = JSON.parse(readFileSync(new URL('../config/default.json', import.meta.url), 'utf8')).auction
const BID_WINDOW_MS: number = AUCTION.bidWindowMs
const MIN_BIDS: number = AUCTION.minBids
const MAX_ATTEMPTS: number = AUCTION.maxAttempts
const HEARTBEAT_MS: number = AUCTION.heartbeatMs
const LOST_AFTER_MS: number = AUCTION.lostAfterMs
const MAX_PRICE = 100
const GOSSIP_D = 6
const SPEC: JobSpecWire = { engine: 'js', source: 'x', args: [], env: {}, limits: { timeoutMs: 10_000, memoryMb: 64, outputBytes: 65536 } }

interface Provider {
  id: string
  /** the price it bids */
  price: number
  /** the ask it advertises */
  advertAsk: number
  silent: boolean
  slots: number
  busy: number
  alive: boolean
  joinedAt: number
  leftAt?: number
  seq: number
  lastAdvert: number
  /** messages received for jobs it did not run */
  otherJobMsgs: number
  runs: number
}

interface Requester {
  id: string
  book: ProviderBook
  standing: Map<string, { completed: number, penalty: number }>
  /** receipts waiting for the next receipts batch (gossiped every receiptGossipDelayMs, ≤ MAX_BATCH_ITEMS each) */
  receipts: number
  /** when its last receipts batch went out (the others hear it: RecentPublishers) */
  publishedAt?: number
}

interface Job {
  id: string
  requester: Requester
  submittedAt: number
  round: number
  invited?: Set<string>
  openNext: boolean
  bids: Map<string, number>
  answered: Set<string>
  excluded: Set<string>
  tried: Set<string>
  probationUsed: boolean
  closed: boolean
  extended: boolean
  windowElapsed: boolean
  msgs: number
  done: boolean
}

/** A binary heap of timed callbacks: the scheduler. */
class Scheduler {
  now = 0
  private readonly heap: Array<{ at: number, n: number, fn: () => void }> = []
  private n = 0
  events = 0

  at (at: number, fn: () => void): void {
    const h = this.heap
    h.push({ at, n: this.n++, fn })
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (h[p].at < h[i].at || (h[p].at === h[i].at && h[p].n < h[i].n)) break
      ;[h[p], h[i]] = [h[i], h[p]]
      i = p
    }
  }

  after (ms: number, fn: () => void): void { this.at(this.now + ms, fn) }

  run (until: number): void {
    const h = this.heap
    while (h.length > 0 && h[0].at <= until) {
      const top = h[0]
      const last = h.pop() as typeof top
      if (h.length > 0) {
        h[0] = last
        let i = 0
        for (;;) {
          const l = 2 * i + 1
          const r = l + 1
          let m = i
          if (l < h.length && (h[l].at < h[m].at || (h[l].at === h[m].at && h[l].n < h[m].n))) m = l
          if (r < h.length && (h[r].at < h[m].at || (h[r].at === h[m].at && h[r].n < h[m].n))) m = r
          if (m === i) break
          ;[h[m], h[i]] = [h[i], h[m]]
          i = m
        }
      }
      this.now = top.at
      this.events++
      top.fn()
    }
    this.now = until
  }
}

function simulate (nodes: number, rate: number, mode: 'invite' | 'open'): Record<string, unknown> {
  const random = mulberry32(Number(opts.seed) * 1_000_003 + nodes * 7 + rate)
  const sim = new Scheduler()
  const durationMs = Number(opts.minutes) * 60_000
  const churnPerMin = Number(opts.churn)
  const liarShare = Number(opts.liars)
  const hop = (): number => 5 + 10 * random()
  const hops = Math.max(1, Math.ceil(Math.log(nodes) / Math.log(GOSSIP_D)))
  const gossipDelay = (): number => { let d = 0; for (let i = 0; i < hops; i++) d += hop(); return d }
  const gossipCost = nodes * (GOSSIP_D - 1)

  const requesters: Requester[] = []
  const providers = new Map<string, Provider>()
  let nextId = 0
  const totals = { advertMsgs: 0, jobMsgs: 0, receiptMsgs: 0, receiptBatches: 0, openCalls: 0, rounds: 0, awards: 0, cheapestWon: 0, lostAwards: 0, strikes: 0 }
  const latencies: number[] = []
  const outcome = { completed: 0, noBids: 0, failed: 0 }
  let newcomer: { id: string, awardsSince: number, wonAt?: number } | undefined

  const alive = (): Provider[] => [...providers.values()].filter(p => p.alive)

  // ---- providers: adverts and answers ----
  function advertise (p: Provider): void {
    if (!p.alive) return
    p.seq++
    p.lastAdvert = sim.now
    totals.advertMsgs += gossipCost
    const advert: Advert = {
      v: 1, provider: p.id, engines: ['js'], ask: p.advertAsk, slots: p.slots,
      caps: { timeoutMs: 60_000, memoryMb: 512, outputBytes: 1 << 20 }, addrs: [], seq: p.seq, ts: sim.now, expires: sim.now + ADVERT_TTL_MS
    } as Advert
    for (const r of requesters) {
      // the book reads the payload; signatures are checked before it and cost nothing here
      sim.after(gossipDelay(), () => { r.book.add({ payload: advert } as unknown as Signed<Advert>, sim.now) })
    }
  }

  function join (price?: number, honest = false): Provider {
    const id = `p${nextId++}`
    const liar = !honest && random() < liarShare
    const ask = price ?? 1 + Math.floor(random() * 100)
    const p: Provider = {
      id, price: ask, advertAsk: liar && random() < 0.5 ? Math.max(1, Math.floor(ask / 3)) : ask, silent: false,
      slots: 1 + Math.floor(random() * 4), busy: 0, alive: true, joinedAt: sim.now, seq: 0, lastAdvert: 0, otherJobMsgs: 0, runs: 0
    }
    if (liar && p.advertAsk === ask) p.silent = true
    providers.set(id, p)
    advertise(p)
    for (const ms of ADVERT_START_DELAYS_MS) sim.after(ms, () => { advertise(p) })
    // jittered as the provider's own (advert.ts): the seeded random keeps a run reproducible
    const refresh = (): void => { if (!p.alive) return; advertise(p); sim.after(advertRefreshDelay(random), refresh) }
    sim.after(advertRefreshDelay(random), refresh)
    return p
  }

  /** An offer reached provider `p` (directly, or by gossip for an open call). */
  function offerArrives (job: Job, p: Provider, open: boolean, offerId: number): void {
    if (!p.alive) return
    p.otherJobMsgs++
    if (open && sim.now - p.lastAdvert >= ADVERT_ECHO_MS) advertise(p)
    if (p.silent) return
    const bid = p.busy < p.slots
    job.msgs++
    sim.after(hop(), () => { answerArrives(job, p, bid, offerId) })
  }

  // ---- requesters ----
  const trust = (r: Requester, p: string): Trust => {
    const s = r.standing.get(p)
    return trustOf({ completed: s?.completed ?? 0, penalty: s?.penalty ?? 0, score: (s?.completed ?? 0) - (s?.penalty ?? 0) })
  }

  function announce (job: Job): void {
    totals.rounds++
    job.bids.clear()
    job.answered.clear()
    job.closed = false
    job.extended = false
    job.windowElapsed = false
    const offerId = job.round
    const inv = mode === 'open' || job.openNext
      ? { mode: 'open' as const }
      : chooseInvitees({ id: job.id, spec: SPEC, maxPrice: MAX_PRICE, need: MIN_BIDS, excluded: job.excluded }, {
        entries: job.requester.book.current(sim.now), trustOf: (p) => trust(job.requester, p), random, now: sim.now
      })
    job.invited = inv.mode === 'invite' ? new Set(inv.peers) : undefined
    if (inv.mode === 'invite') {
      for (const id of inv.peers) {
        job.msgs++
        const p = providers.get(id)
        if (p != null) sim.after(hop(), () => { offerArrives(job, p, false, offerId) })
      }
    } else {
      totals.openCalls++
      job.msgs += gossipCost
      for (const p of alive()) sim.after(gossipDelay(), () => { offerArrives(job, p, true, offerId) })
    }
    const windowEnd = (): void => {
      if (job.closed || job.round !== offerId) return
      if (!job.extended && awaitingCheaper(job)) { job.extended = true; sim.after(BID_WINDOW_MS, windowEnd); return }
      if (job.bids.size > 0 || allAnswered(job)) { close(job); return }
      job.windowElapsed = true
      sim.after(Math.max(NO_BID_GRACE_MS, BID_WINDOW_MS), () => { if (!job.closed && job.round === offerId) close(job) })
    }
    sim.after(BID_WINDOW_MS, windowEnd)
  }

  function awaitingCheaper (job: Job): boolean {
    if (job.invited == null) return false
    let best = Infinity
    for (const price of job.bids.values()) best = Math.min(best, price)
    for (const id of job.invited) {
      if (job.answered.has(id)) continue
      const e = job.requester.book.get(id)
      if (e != null && effectiveAsk(e, sim.now) < best) return true
    }
    return false
  }

  function allAnswered (job: Job): boolean {
    if (job.invited != null) { for (const id of job.invited) if (!job.answered.has(id)) return false; return true }
    return false // an open call closes on minBids proven bids or the window
  }

  /** the requester's early close of an invited round (requester/invite.ts `roundDecided`) */
  function decided (job: Job): boolean {
    if (job.invited == null) return false
    const bids = [...job.bids].filter(([id]) => !job.tried.has(id)).map(([provider, price]) => ({ provider, price }))
    const silent = [...job.invited].filter(id => !job.answered.has(id))
    return roundDecided({ bids, silent, minBids: MIN_BIDS, replicas: 1, probationUsed: job.probationUsed, trustOf: (p) => trust(job.requester, p), entryOf: (p) => job.requester.book.get(p), now: sim.now })
  }

  function answerArrives (job: Job, p: Provider, bid: boolean, offerId: number): void {
    const book = job.requester.book
    if (job.invited?.has(p.id) === true) book.answered(p.id)
    // a bid after its round closed counts for nothing but still ranks its provider (bidding.ts)
    if (job.closed && job.round === offerId && bid) book.observe(p.id, p.price, sim.now)
    if (job.closed || job.round !== offerId || job.done) return
    job.answered.add(p.id)
    if (bid) { job.bids.set(p.id, p.price); book.observe(p.id, p.price, sim.now) } else book.full(p.id, sim.now) // declined: no free slot
    const proven = [...job.bids.keys()].filter(id => trust(job.requester, id) === 'proven').length
    if ((job.invited == null && proven >= MIN_BIDS) || allAnswered(job) || decided(job) || (job.extended && !awaitingCheaper(job)) || (job.windowElapsed && job.bids.size > 0)) close(job)
  }

  function close (job: Job): void {
    job.closed = true
    if (job.invited != null) {
      const silent = [...job.invited].filter(id => !job.answered.has(id))
      if (silent.length > 0) sim.after(INVITE_ANSWER_GRACE_MS, () => { for (const id of silent) { job.requester.book.strike(id, sim.now); totals.strikes++ } })
    }
    job.openNext = job.invited != null && job.bids.size === 0
    awardNext(job)
  }

  function awardNext (job: Job): void {
    const ranked = [...job.bids].filter(([id]) => !job.excluded.has(id)).map(([provider, price]) => ({ provider, price, k: random() }))
      .sort((a, b) => a.price - b.price || a.k - b.k)
    const eligible = eligibleBids(ranked, (p) => trust(job.requester, p), job.tried, job.probationUsed)
    const winner = eligible.find(b => !job.tried.has(b.provider))
    if (winner == null) {
      if (job.tried.size === 0 && job.bids.size === 0 && job.invited == null) { end(job, 'noBids'); return }
      if (job.round + 1 < MAX_ATTEMPTS) { job.round++; announce(job); return }
      end(job, job.tried.size === 0 ? 'noBids' : 'failed')
      return
    }
    job.tried.add(winner.provider)
    if (trust(job.requester, winner.provider) !== 'proven') job.probationUsed = true
    totals.awards++
    // was it the cheapest live provider with a free slot that would have bid?
    let cheapest = Infinity
    for (const p of providers.values()) if (p.alive && !p.silent && p.busy < p.slots) cheapest = Math.min(cheapest, p.price)
    if (winner.price <= cheapest) totals.cheapestWon++
    if (newcomer != null && newcomer.wonAt == null) {
      newcomer.awardsSince++
      if (winner.provider === newcomer.id) newcomer.wonAt = newcomer.awardsSince
    }
    const p = providers.get(winner.provider) as Provider
    job.msgs++ // the award
    sim.after(hop(), () => {
      if (!p.alive) { lost(job, p); return }
      if (p.busy >= p.slots) { job.msgs++; sim.after(hop(), () => { refused(job, p) }); return } // declined at award: full
      p.busy++
      job.msgs++ // accept
      const runMs = 200 + 800 * random()
      job.msgs += Math.floor(runMs / HEARTBEAT_MS)
      const epoch = p.joinedAt
      sim.after(runMs, () => {
        if (!p.alive || p.joinedAt !== epoch) { lost(job, p); return } // it left mid-job
        p.busy--
        p.runs++
        job.msgs++ // the result
        sim.after(hop(), () => { finish(job, p) })
      })
    })
  }

  function lost (job: Job, p: Provider): void {
    // the requester hears nothing: the attempt is lost after LOST_AFTER_MS; the book benches it
    sim.after(LOST_AFTER_MS, () => {
      totals.lostAwards++
      const s = job.requester.standing.get(p.id) ?? { completed: 0, penalty: 0 }
      s.penalty++
      job.requester.standing.set(p.id, s)
      job.requester.book.bench(p.id, sim.now)
      job.excluded.add(p.id)
      awardNext(job)
    })
  }

  function refused (job: Job, p: Provider): void {
    job.excluded.add(p.id)
    awardNext(job)
  }

  function finish (job: Job, p: Provider): void {
    const s = job.requester.standing.get(p.id) ?? { completed: 0, penalty: 0 }
    s.completed++
    job.requester.standing.set(p.id, s)
    queueReceipt(job.requester)
    latencies.push(sim.now - job.submittedAt)
    end(job, 'completed')
  }

  /** Receipts go out in batches, as settle.ts does: one gossip message carries up to MAX_BATCH_ITEMS. */
  function queueReceipt (r: Requester): void {
    r.receipts++
    if (r.receipts === 1) sim.after(receiptGossipDelayMs(r.book.size + 1, publishersHeard(r)), () => { flushReceipts(r) })
    else if (r.receipts >= MAX_BATCH_ITEMS) flushReceipts(r)
  }

  /** the requesters that published receipts within the window (everyone hears every batch), `r` included (RecentPublishers) */
  function publishersHeard (r: Requester): number {
    let n = 0
    for (const q of requesters) if (q === r || (q.publishedAt != null && q.publishedAt >= sim.now - RECEIPT_PUBLISHERS_WINDOW_MS)) n++
    return n
  }

  function flushReceipts (r: Requester): void {
    if (r.receipts === 0) return
    r.receipts = 0
    r.publishedAt = sim.now
    totals.receiptMsgs += gossipCost
    totals.receiptBatches++
    // every node receives the batch: D−1 copies each (a batch is about jobs it mostly did not run)
    for (const q of providers.values()) if (q.alive) q.otherJobMsgs += GOSSIP_D - 1
  }

  function end (job: Job, how: 'completed' | 'noBids' | 'failed'): void {
    if (job.done) return
    job.done = true
    outcome[how]++
    totals.jobMsgs += job.msgs
  }

  // ---- the run ----
  const nRequesters = Math.max(1, Math.round(nodes * Number(opts.requesters)))
  for (let i = 0; i < nRequesters; i++) requesters.push({ id: `r${i}`, book: new ProviderBook(), standing: new Map(), receipts: 0 })
  for (let i = 0; i < nodes - nRequesters; i++) join()
  // churn: every simulated second, leave and join at churnPerMin / 60 of the providers
  const churnTick = (): void => {
    const live = alive()
    const expected = live.length * churnPerMin / 60
    let n = Math.floor(expected) + (random() < expected % 1 ? 1 : 0)
    while (n-- > 0 && live.length > 0) {
      const [gone] = live.splice(Math.floor(random() * live.length), 1)
      if (gone.id === newcomer?.id) continue
      gone.alive = false
      gone.leftAt = sim.now
      join()
    }
    sim.after(1000, churnTick)
  }
  sim.after(1000, churnTick)
  // jobs: Poisson arrivals at `rate` per second network-wide, from a random requester; start after
  // the adverts' start-up schedule has run once (30 s), as a market does once it is formed
  const warmup = ADVERT_START_DELAYS_MS.at(-1) as number
  const submit = (): void => {
    const r = requesters[Math.floor(random() * requesters.length)]
    const job: Job = {
      id: `job${nextId++}`, requester: r, submittedAt: sim.now, round: 0, openNext: false, bids: new Map(), answered: new Set(),
      excluded: new Set(), tried: new Set(), probationUsed: false, closed: false, extended: false, windowElapsed: false, msgs: 0, done: false
    }
    announce(job)
    sim.after(-Math.log(1 - random()) * 1000 / rate, submit)
  }
  sim.at(warmup, submit)
  sim.at(warmup + (durationMs - warmup) / 2, () => { newcomer = { id: join(0.5, true).id, awardsSince: 0 } })
  const started = performance.now()
  sim.run(durationMs)
  const wallMs = performance.now() - started

  const measuredSec = (durationMs - warmup) / 1000
  const jobs = outcome.completed + outcome.noBids + outcome.failed
  const perNode = [...providers.values()].map(p => p.otherJobMsgs / (((p.leftAt ?? durationMs) - p.joinedAt) / 1000 || 1))
  return {
    mode,
    nodes,
    requesters: nRequesters,
    providersEver: providers.size,
    jobRatePerSec: rate,
    simulatedSec: durationMs / 1000,
    jobsSubmitted: jobs,
    jobsCompleted: outcome.completed,
    jobsNoBids: outcome.noBids,
    jobsFailed: outcome.failed,
    messagesPerJob: round((totals.jobMsgs + totals.receiptMsgs) / Math.max(1, jobs)),
    messagesPerJobWithoutReceipts: round(totals.jobMsgs / Math.max(1, jobs)),
    receiptsPerGossipMessage: round(outcome.completed / Math.max(1, totals.receiptBatches)),
    openCallShare: round(totals.openCalls / Math.max(1, totals.rounds)),
    perNodeMsgsPerSecFromJobsNotRun: { mean: round(perNode.reduce((a, b) => a + b, 0) / perNode.length), p99: pct(perNode, 99), max: round(Math.max(...perNode)) },
    advertMsgsPerNodePerSec: round(totals.advertMsgs / nodes / (durationMs / 1000)),
    cheapestWonRatio: round(totals.cheapestWon / Math.max(1, totals.awards)),
    newcomerWonAfterAwards: newcomer?.wonAt ?? null,
    lostAwards: totals.lostAwards,
    latencyMsP50: pct(latencies, 50),
    latencyMsP99: pct(latencies, 99),
    measuredSec,
    events: sim.events,
    wallMs: Math.round(wallMs)
  }
}

function round (x: number): number { return Math.round(x * 100) / 100 }

for (const nodes of list(opts.nodes)) {
  for (const mode of opts.modes.split(',') as Array<'invite' | 'open'>) {
    for (const rate of list(opts.rates)) process.stdout.write(JSON.stringify(simulate(nodes, rate, mode)) + '\n')
  }
}
