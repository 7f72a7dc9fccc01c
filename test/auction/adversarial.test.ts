import '../../src/polyfill.js'
import { expect } from 'chai'
import { createNetwork, type NetworkNode, type MessageChannel } from '../../src/p2p/index.js'
import { canonicalDecode, canonicalEncode, cidOfValue, messageId, randomSigner, signerFromSeed, type Signed } from '../../src/crypto/index.js'
import { AWARD_PROTOCOL, BID_PROTOCOL, JOBS_TOPIC, type Offer, type Award } from '../../src/auction/index.js'
import { sign, encodeSigned, encodeBatch } from '../../src/auction/protocol/messages.js'
import { MAX_UNPAID_RESULTS_PER_REQUESTER } from '../../src/auction/constants.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'

const JOB = { engine: 'js' as const, source: 'function main (i) { return i.x + 1 }', input: { x: 1 }, maxPrice: 50 }

function flip (bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes)
  out[out.length - 1] ^= 0xff
  return out
}

describe('market: hostile peers are refused, counted, and never crash a node', function () {
  this.timeout(60_000)
  let requester: MercatoNode
  let provider: MercatoNode
  let attacker: NetworkNode
  const seed = new Uint8Array(32).fill(7)
  const me = signerFromSeed(seed)
  const offers: Array<Signed<Offer>> = []

  before(async () => {
    requester = await startTestNode({ provide: false })
    provider = await startTestNode({ price: 1, bootstrap: [requester.network.addresses()[0]] })
    attacker = await createNetwork({ seed, bootstrap: [requester.network.addresses()[0]] })
    attacker.subscribe(JOBS_TOPIC, (msg) => { offers.push(...canonicalDecode<{ b: Array<Signed<Offer>> }>(msg.data).b) })
    await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).length === 2 && attacker.isConnected(provider.peerId), 15_000)
  })
  after(async () => { await attacker?.stop(); await stopNodes() })

  async function nextOffer (): Promise<Signed<Offer>> {
    const n = offers.length
    await waitFor(() => offers.length > n, 5000, 5)
    return offers[offers.length - 1]
  }

  it('bids: oversize, forged, tampered, wrong sender, expired, replayed, unknown job', async () => {
    const submitted = requester.market.submit({ ...JOB, bidWindowMs: 2000, minBids: 10 })
    const offer = await nextOffer()
    await submitted
    const o = offer.payload
    const offerId = messageId(offer)
    const now = Date.now()
    const bid = (over: Record<string, unknown> = {}, signer = me): Uint8Array => encodeSigned(sign(signer, 'bid', { v: 1, jobId: o.jobId, offerId, provider: signer.peerId, price: 40, estStartMs: 0, ts: now, expires: now + 60_000, ...over } as any))
    const send = async (data: Uint8Array): Promise<any> => await attacker.request(requester.peerId, BID_PROTOCOL, data).then(() => null, (err) => err)

    const oversize = await send(new Uint8Array(64 * 1024))
    expect(oversize?.name).to.equal('MessageTooLargeError')
    const forged = await send(bid({ provider: provider.peerId })) // claims to be the honest provider
    expect(forged?.remoteCode).to.equal('refused-bad-signature')
    const tampered = await send(flip(bid()))
    expect(tampered?.remoteCode).to.be.oneOf(['refused-bad-signature', 'refused-bad-encoding'])
    const other = randomSigner()
    const wrongSender = await send(bid({}, other))
    expect(wrongSender?.remoteCode).to.equal('refused-wrong-sender')
    const expired = await send(bid({ expires: now - 1000 }))
    expect(expired?.remoteCode).to.equal('refused-expired')
    const unknown = await send(bid({ jobId: 'bafyreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' }))
    expect(unknown?.remoteCode).to.equal('refused-unknown-job')
    const garbage = await send(Uint8Array.of(0xff, 0x00, 0x13))
    expect(garbage?.remoteCode).to.equal('refused-bad-encoding')
    const valid = bid()
    expect(await send(valid)).to.equal(null)
    const replayed = await send(valid)
    expect(replayed?.remoteCode).to.equal('refused-replay')

    const refused = requester.market.refusals().requester
    for (const reason of ['bad-signature', 'wrong-sender', 'expired', 'unknown-job', 'bad-encoding', 'replay'] as const) {
      expect(refused.get(reason) ?? 0, reason).to.be.greaterThan(0)
    }
    // the honest provider (ask 1) still wins; the node kept serving
    const job = await requester.market.waitFor(o.jobId, { signal: AbortSignal.timeout(20_000) })
    expect(job.status).to.equal('completed')
    expect(job.provider).to.equal(provider.peerId)
    expect((await requester.market.result(o.jobId)).output).to.equal(2)
  })

  it('results: a winner that returns a forged result is refused and the job fails over', async () => {
    // the attacker bids lowest, accepts the award, then lies about its result
    let channelSeen = false
    await attacker.handleChannel(AWARD_PROTOCOL, async (ch: MessageChannel) => {
      channelSeen = true
      const it = ch[Symbol.asyncIterator]()
      const first = await it.next()
      const award = (canonicalDecode<any>(first.value)).m as Signed<Award>
      const awardId = messageId(award)
      const accept = sign(me, 'accept', { v: 1, jobId: award.payload.jobId, awardId, provider: me.peerId, ts: Date.now() })
      await ch.send(canonicalEncode({ t: 'accept', m: accept }))
      const result = sign(me, 'result', {
        v: 1, jobId: award.payload.jobId, awardId, provider: me.peerId, exitCode: 0,
        stdout: new TextEncoder().encode('trust me'), stderr: new Uint8Array(0), output: 999, truncated: false,
        resultHash: '0'.repeat(64), usage: { wallMs: 1, memoryBytes: 1, outputBytes: 1 }, ts: Date.now()
      })
      await ch.send(canonicalEncode({ t: 'result', m: result }))
      for await (const _ of ch) { /* wait for the requester to hang up */ }
    })
    const before = requester.market.refusals().requester.get('bad-hash') ?? 0
    const submitted = requester.market.submit({ ...JOB, bidWindowMs: 2000, minBids: 2 })
    const offer = await nextOffer()
    await submitted
    const o = offer.payload
    const now = Date.now()
    await attacker.request(requester.peerId, BID_PROTOCOL, encodeSigned(sign(me, 'bid', { v: 1, jobId: o.jobId, offerId: messageId(offer), provider: me.peerId, price: 0, estStartMs: 0, ts: now, expires: now + 60_000 })))
    const job = await requester.market.waitFor(o.jobId, { signal: AbortSignal.timeout(20_000) })
    expect(channelSeen).to.equal(true)
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect(job.provider).to.equal(provider.peerId)
    expect(job.attempts[0]).to.include({ provider: me.peerId, state: 'lost' })
    expect((await requester.market.result(o.jobId)).output).to.equal(2)
    expect(requester.market.refusals().requester.get('bad-hash')).to.equal(before + 1)
    await attacker.unhandle(AWARD_PROTOCOL)
  })

  it('awards: forged, unknown, expired and replayed awards are refused by a provider', async () => {
    // the attacker announces a real job of its own so the provider bids on it
    let bidBytes: Uint8Array | undefined
    await attacker.handle(BID_PROTOCOL, (data) => { bidBytes = data; return new Uint8Array(0) })
    const now = Date.now()
    const offer = sign(me, 'offer', {
      v: 1, jobId: 'bafyreiattackerjob0000000000000000000000000000000000000000', requester: me.peerId, addrs: attacker.addresses(),
      spec: { engine: 'js', source: JOB.source, input: { x: 1 }, args: [], env: {}, limits: { timeoutMs: 1000, memoryMb: 16, outputBytes: 1024 } },
      maxPrice: 50, replicas: 1, bidWindowMs: 50, ts: now, expires: now + 60_000, round: 0
    })
    await waitFor(() => attacker.topicPeers(JOBS_TOPIC).includes(provider.peerId), 10_000)
    await attacker.publish(JOBS_TOPIC, encodeBatch([offer]))
    await waitFor(() => bidBytes != null, 5000)
    const bid = canonicalDecode<Signed<any>>(bidBytes as Uint8Array)
    const awardPayload = { v: 1 as const, jobId: offer.payload.jobId, offerId: messageId(offer), requester: me.peerId, provider: provider.peerId, bidId: messageId(bid), bids: [messageId(bid)], price: 1, attempt: 0, ts: Date.now(), expires: Date.now() + 60_000 }
    const tryAward = async (award: unknown): Promise<string> => {
      const ch = await attacker.openChannel(provider.peerId, AWARD_PROTOCOL)
      await ch.send(canonicalEncode({ t: 'award', m: award }))
      try {
        for await (const data of ch) {
          const f = canonicalDecode<any>(data)
          if (f.t === 'refuse') return `refused:${f.m.payload.reason}`
          if (f.t === 'accept') { await ch.close(); return 'accepted' }
        }
        return 'closed'
      } catch {
        return 'aborted'
      }
    }
    const p = provider.market.refusals().provider
    expect(await tryAward({ ...sign(me, 'award', awardPayload), sig: new Uint8Array(64) })).to.equal('aborted')
    expect(p.get('bad-signature')).to.be.greaterThan(0)
    expect(await tryAward(sign(me, 'award', { ...awardPayload, ts: Date.now() - 120_000, expires: Date.now() - 60_000 }))).to.equal('aborted')
    expect(p.get('expired')).to.be.greaterThan(0)
    expect(await tryAward(sign(me, 'award', { ...awardPayload, offerId: messageId(bid) }))).to.equal('refused:unknown offer')
    expect(await tryAward(sign(me, 'award', { ...awardPayload, price: 0 }))).to.equal('refused:award does not match our bid')
    expect(await tryAward(sign(me, 'award', { ...awardPayload, bidId: messageId(offer) }))).to.equal('refused:award does not match our bid')
    const good = sign(me, 'award', awardPayload)
    expect(await tryAward(good)).to.equal('accepted')
    expect(await tryAward(good)).to.equal('refused:award already seen')
    expect(p.get('replay')).to.equal(1)
    // a forged offer on gossip is rejected by the provider's validator
    const forgedOffer = { ...offer, payload: { ...offer.payload, maxPrice: 1e6 } }
    const before = p.get('bad-signature') ?? 0
    await attacker.publish(JOBS_TOPIC, encodeBatch([forgedOffer as any]))
    await waitFor(() => (p.get('bad-signature') ?? 0) > before, 5000)
    // an offer signed to live for a year is refused (replay tool)
    const longLived = sign(me, 'offer', { ...offer.payload, jobId: 'bafyreilonglivedofferlonglivedofferlonglivedofferlonglived', ts: Date.now(), expires: Date.now() + 365 * 24 * 3600_000 })
    const schemaBefore = p.get('bad-schema') ?? 0
    await attacker.publish(JOBS_TOPIC, encodeBatch([longLived]))
    await waitFor(() => (p.get('bad-schema') ?? 0) > schemaBefore, 5000)
    // receipts heard on gossip cannot sink a provider's standing: anyone can sign one
    const score = requester.market.reputation.score(provider.peerId)
    const fake = (i: number): any => sign(me, 'receipt', { v: 1, jobId: `bafyreifakereceipt${i}fakereceiptfakereceiptfakereceiptfake`, requester: me.peerId, provider: provider.peerId, resultId: messageId(offer), resultHash: '0'.repeat(64), price: 0, status: 'failed', ts: Date.now() })
    await attacker.publish('mercato/receipts/1', encodeBatch([fake(1), fake(2), fake(3), fake(4), fake(5)]))
    await waitFor(() => requester.market.reputation.get(provider.peerId).heardFailed >= 5, 5000)
    expect(requester.market.reputation.score(provider.peerId)).to.equal(score)
    // and the provider still serves the honest market
    const ok = await requester.market.submit(JOB)
    expect((await requester.market.waitFor(ok.id, { signal: AbortSignal.timeout(20_000) })).status).to.equal('completed')
  })

  it('awards: a requester that takes results and never pays gets no more bids once it owes a few, and its channels are not held open', async () => {
    await attacker.unhandle(BID_PROTOCOL).catch(() => {})
    const answers = new Map<string, Signed<any>>()
    await attacker.handle(BID_PROTOCOL, (data) => { const m = canonicalDecode<Signed<any>>(data); answers.set(m.payload.jobId, m); return new Uint8Array(0) })
    await waitFor(() => attacker.topicPeers(JOBS_TOPIC).includes(provider.peerId), 10_000)
    const offerNow = (i: number): Signed<Offer> => {
      const now = Date.now()
      return sign(me, 'offer', {
        v: 1, jobId: cidOfValue({ unpaid: i, at: now }), requester: me.peerId, addrs: attacker.addresses(),
        spec: { engine: 'js', source: JOB.source, input: { x: i }, args: [], env: {}, limits: { timeoutMs: 1000, memoryMb: 16, outputBytes: 1024 } },
        maxPrice: 50, replicas: 1, bidWindowMs: 50, ts: now, expires: now + 60_000, round: 0
      })
    }
    const channelsEnded: number[] = []
    // offer, take the bid, award, take the result, never send a receipt
    const takeWithoutPaying = async (i: number): Promise<boolean> => {
      const offer = offerNow(i)
      await attacker.publish(JOBS_TOPIC, encodeBatch([offer]))
      await waitFor(() => answers.has(offer.payload.jobId), 5000)
      const bid = answers.get(offer.payload.jobId) as Signed<any>
      if (!/bid/.test(bid.domain)) return false
      const award = sign(me, 'award', { v: 1, jobId: offer.payload.jobId, offerId: messageId(offer), requester: me.peerId, provider: provider.peerId, bidId: messageId(bid), bids: [messageId(bid)], price: 1, attempt: 0, ts: Date.now(), expires: Date.now() + 60_000 })
      const ch = await attacker.openChannel(provider.peerId, AWARD_PROTOCOL)
      await ch.send(canonicalEncode({ t: 'award', m: award }))
      const it = ch[Symbol.asyncIterator]()
      for (;;) {
        const next = await it.next()
        if (next.done === true) throw new Error('channel ended before the result')
        if (canonicalDecode<any>(next.value).t === 'result') break
      }
      const resultAt = Date.now()
      // keep reading, and writing junk now and then, as a requester holding the channel would
      const junk = setInterval(() => { void ch.send(Uint8Array.of(0xff)).catch(() => {}) }, 500)
      void (async () => { try { while ((await it.next()).done !== true) {} } catch {} clearInterval(junk); channelsEnded.push(Date.now() - resultAt) })()
      return true
    }
    const before = provider.ledger.head().count
    // (the award taken in the test before is unpaid too)
    let taken = 0
    while (taken <= MAX_UNPAID_RESULTS_PER_REQUESTER && await takeWithoutPaying(taken)) taken++
    expect(taken).to.be.within(MAX_UNPAID_RESULTS_PER_REQUESTER - 1, MAX_UNPAID_RESULTS_PER_REQUESTER)
    const records = provider.ledger.head().count - before
    // owing MAX_UNPAID_RESULTS_PER_REQUESTER results, it is declined, and costs the provider no record more
    const more = offerNow(99)
    await attacker.publish(JOBS_TOPIC, encodeBatch([more]))
    await waitFor(() => answers.has(more.payload.jobId), 5000)
    const answer = answers.get(more.payload.jobId) as Signed<any>
    expect(answer.domain).to.match(/decline/)
    expect(answer.payload.reason).to.equal('requester-flagged')
    expect(answer.payload.detail).to.match(/unpaid/)
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(provider.ledger.head().count - before).to.equal(records)
    // the provider stopped reading each channel RECEIPT_WAIT_MS (10 s) after its result, junk or not
    await waitFor(() => channelsEnded.length === taken, 20_000)
    expect(Math.max(...channelsEnded)).to.be.below(15_000)
    await attacker.unhandle(BID_PROTOCOL)
  })
})
