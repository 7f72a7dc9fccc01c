/**
 * Open audit on the in-memory network: heads gossip, log pages, audits,
 * forged pages, equivocation proofs and flags.
 */
import { expect } from 'chai'
import { canonicalDecode, canonicalEncode, randomSigner, signMessage, type Signer } from '../../src/crypto/index.js'
import {
  EQUIVOCATIONS_TOPIC, HEADS_TOPIC, LOG_PROTOCOL, createLedgerAudit, refillBucket, createRecord, decodeLogRequest, encodeHead, encodeLogPage, encodeProof, headSpacing, headStretch,
  openLedger, signHead, type Ledger, type LedgerAudit, type LedgerRecord, type LogPageWire
} from '../../src/ledger/index.js'
import { EQUIVOCATION_RECORD_BURST, HEAD_CONNECT_DELAY_MS, HEAD_MESH_FREE, HEAD_REFRESH_MS, HEAD_STRETCH_RECOUNT_MS, MAX_FLAGGED_SIGNERS } from '../../src/ledger/constants.js'
import { MemoryHub, type MemoryNetwork } from '../helpers/memory-network.js'

interface TestNode { signer: Signer, ledger: Ledger, net: MemoryNetwork, audit: LedgerAudit }

async function waitFor (cond: () => boolean | Promise<boolean>, timeoutMs = 3000, stepMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, stepMs))
  }
}

describe('ledger audit (memory network)', function () {
  let hub: MemoryHub
  const nodes: TestNode[] = []

  async function makeNode (opts: { pageLimit?: number, signer?: Signer, ledger?: Ledger, headDebounceMs?: number, headIntervalMs?: number } = {}): Promise<TestNode> {
    const signer = opts.signer ?? randomSigner()
    const ledger = opts.ledger ?? await openLedger({ signer })
    const net = hub.createNode(signer.peerId)
    const audit = createLedgerAudit({ ledger, network: net, signer, headDebounceMs: opts.headDebounceMs ?? 10, headIntervalMs: opts.headIntervalMs ?? 200, pageLimit: opts.pageLimit })
    await audit.start()
    const n = { signer, ledger, net, audit }
    nodes.push(n)
    return n
  }

  async function fill (ledger: Ledger, n: number): Promise<void> {
    const other = randomSigner()
    for (let i = 0; i < n; i++) await ledger.append(i % 2 === 0 ? 'job' : 'bid', { jobId: `j${i % 4}`, i, bid: signMessage(other, 'mercato/v1/bid', { i }) })
  }

  beforeEach(() => { hub = new MemoryHub() })
  afterEach(async () => {
    for (const n of nodes.splice(0)) {
      await n.audit.stop()
      await n.ledger.close()
    }
  })

  it('B fetches and verifies A\'s whole log, page by page, against A\'s signed head', async () => {
    const a = await makeNode()
    const b = await makeNode({ pageLimit: 16 })
    await fill(a.ledger, 50)
    await waitFor(() => b.audit.latestHead(a.signer.peerId)?.payload.seq === 49)
    const report = await b.audit.audit(a.signer.peerId)
    expect(report.ok).to.equal(true)
    expect(report.count).to.equal(50)
    expect(report.headId).to.equal(a.ledger.head().id)
    expect(report.head?.seq).to.equal(49)
    expect(report.head?.id).to.equal(a.ledger.head().id)
    expect(report.pages).to.equal(4)
    expect(report.flagged).to.equal(false)
    // a multiaddr works as well as a PeerId
    expect((await b.audit.audit(a.net.addresses()[0])).ok).to.equal(true)
    // fetchLog gives decoded records
    const page = await b.audit.fetchLog(a.signer.peerId, 10, 5)
    expect(page.records.map((r) => r.seq)).to.deep.equal([10, 11, 12, 13, 14])
    expect(page.records[0]).to.deep.equal(await a.ledger.get(10))
    expect(page.more).to.equal(true)
  })

  it('audits an empty log as ok', async () => {
    const a = await makeNode()
    const b = await makeNode()
    const report = await b.audit.audit(a.signer.peerId)
    expect(report).to.include({ ok: true, count: 0, headId: null, head: null })
  })

  it('publishes heads on change (debounced) and validates incoming heads', async () => {
    const a = await makeNode()
    const b = await makeNode()
    await a.ledger.append('job', { jobId: 'x' })
    await waitFor(() => b.audit.latestHead(a.signer.peerId)?.payload.seq === 0)
    expect(b.audit.latestHead(a.signer.peerId)?.payload.id).to.equal(a.ledger.head().id)

    const before = hub.gossipLog.length
    const forged = signHead(a.signer, { seq: 5, id: a.ledger.head().id as string, ts: Date.now() })
    forged.payload = { ...forged.payload, seq: 6 } // signature no longer matches
    await a.net.publish(HEADS_TOPIC, encodeHead(forged))
    await a.net.publish(HEADS_TOPIC, Uint8Array.of(1, 2, 3))
    await a.net.publish(HEADS_TOPIC, canonicalEncode({ domain: 'mercato/v1/head', signer: a.signer.peerId, payload: { seq: -1 }, sig: new Uint8Array(64) }))
    await a.net.publish(HEADS_TOPIC, new Uint8Array(2048))
    await waitFor(() => hub.gossipLog.length >= before + 4)
    expect(hub.gossipLog.slice(before).map((g) => g.result)).to.deep.equal(['reject', 'reject', 'reject', 'reject'])
    expect(b.audit.latestHead(a.signer.peerId)?.payload.seq).to.equal(0)
    expect(b.audit.isFlagged(a.signer.peerId)).to.equal(false)
  })

  it('an unchanged head is not gossiped again every interval; a moved one is', async () => {
    const a = await makeNode()
    const b = await makeNode()
    await a.ledger.append('job', { jobId: 'x' })
    await waitFor(() => b.audit.latestHead(a.signer.peerId)?.payload.seq === 0)
    const headsFromA = (): number => hub.gossipLog.filter((g) => g.topic === HEADS_TOPIC && g.from === a.signer.peerId).length
    await new Promise((resolve) => setTimeout(resolve, 100))
    const before = headsFromA()
    // four intervals (200 ms) with the head unchanged, and a peer that connects: no flood
    const c = await makeNode()
    await new Promise((resolve) => setTimeout(resolve, 850))
    expect(headsFromA() - before).to.equal(0)
    expect(c.audit.latestHead(a.signer.peerId)).to.equal(undefined)
    // the head moves: it goes out, to the newcomer as well
    await a.ledger.append('job', { jobId: 'y' })
    await waitFor(() => b.audit.latestHead(a.signer.peerId)?.payload.seq === 1 && c.audit.latestHead(a.signer.peerId)?.payload.seq === 1)
  })

  it('a head sent before the first connection goes out soon after one, not after the spacing', async () => {
    // a spacing of a minute: only the connect rule can get A's head to B within the test
    const signer = randomSigner()
    const ledger = await openLedger({ signer })
    await ledger.append('job', { jobId: 'x' })
    const a = await makeNode({ signer, ledger, headDebounceMs: 60_000, headIntervalMs: 60_000 }) // its first head reaches nobody
    const headsFromA = (): number => hub.gossipLog.filter((g) => g.topic === HEADS_TOPIC && g.from === a.signer.peerId).length
    expect(headsFromA()).to.equal(0)
    const b = await makeNode()
    await waitFor(() => b.audit.latestHead(a.signer.peerId)?.payload.seq === 0, 5000)
    // once a head reached a peer the spacing holds: a change, and a third node, bring no new head
    await a.ledger.append('job', { jobId: 'y' })
    const c = await makeNode()
    await new Promise((resolve) => setTimeout(resolve, HEAD_CONNECT_DELAY_MS + 300))
    expect(headsFromA()).to.equal(1)
    expect(c.audit.latestHead(a.signer.peerId)).to.equal(undefined)
  })

  /** `audit` hears `n` signers it had not heard (each with a valid head) */
  const hearSigners = (audit: TestNode['audit'], n: number): void => {
    for (let i = 0; i < n; i++) {
      const other = randomSigner()
      expect(audit.observeHead(signHead(other, { seq: 0, id: createRecord(other, 0, null, 'job', { i }).id, ts: Date.now() }))).to.equal(true)
    }
  }
  /** The heads `node` publishes while its log moves every 50 ms for 1.2 s (200 ms apart: about six; 800 ms apart: at most two). */
  const headsWhileMoving = async (node: TestNode): Promise<number> => {
    const published = (): number => hub.gossipLog.filter((g) => g.topic === HEADS_TOPIC && g.from === node.signer.peerId).length
    const before = published()
    const end = Date.now() + 1200
    for (let i = 1; Date.now() < end; i++) {
      await node.ledger.append('job', { jobId: `j${i}` })
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return published() - before
  }

  it('in a large mesh a moved head goes out less often: what the topic costs each node stays flat', async () => {
    // the rule: unchanged up to HEAD_MESH_FREE nodes, then in proportion, at most HEAD_REFRESH_MS
    expect(headStretch(1)).to.equal(1)
    expect(headStretch(HEAD_MESH_FREE)).to.equal(1)
    expect(headStretch(4 * HEAD_MESH_FREE)).to.equal(4)
    expect(headSpacing(30_000, 1)).to.equal(30_000)
    expect(headSpacing(30_000, 40 / HEAD_MESH_FREE)).to.equal(80_000)
    expect(headSpacing(30_000, 1000 / HEAD_MESH_FREE)).to.equal(HEAD_REFRESH_MS)
    expect(headSpacing(10, 4)).to.equal(40)
    // for each node, heads heard per interval: about n / stretch(n), flat past HEAD_MESH_FREE
    for (const n of [60, 300, 1000]) expect(n / headStretch(n)).to.be.closeTo(HEAD_MESH_FREE, 1e-9)

    // a node that hears 4 × HEAD_MESH_FREE signers spaces its moved heads 4 × 200 ms apart
    const node = await makeNode({ headDebounceMs: 200, headIntervalMs: 200 })
    const { signer, ledger } = node
    const listener = await makeNode()
    hearSigners(node.audit, 4 * HEAD_MESH_FREE - 1)
    await ledger.append('job', { jobId: 'first' })
    await waitFor(() => listener.audit.latestHead(signer.peerId)?.payload.seq === 0)
    expect(await headsWhileMoving(node)).to.be.at.most(2)
    // the last change still goes out
    await waitFor(() => listener.audit.latestHead(signer.peerId)?.payload.seq === ledger.head().seq, 5000)
  })

  it('the stretch is counted again when signers appear after our first head (it was kept a whole interval)', async () => {
    // our first heads go out before anyone is heard: the change after the first that reached a
    // peer counts the stretch (1) and kept it for the 5 s interval; then 4 × HEAD_MESH_FREE signers appear
    const node = await makeNode({ headDebounceMs: 200, headIntervalMs: 5000 })
    const { signer, ledger } = node
    const listener = await makeNode()
    await ledger.append('job', { jobId: 'first' })
    await waitFor(() => listener.audit.latestHead(signer.peerId)?.payload.seq === 0)
    await ledger.append('job', { jobId: 'second' })
    await waitFor(() => listener.audit.latestHead(signer.peerId)?.payload.seq === 1)
    hearSigners(node.audit, 4 * HEAD_MESH_FREE - 1)
    await new Promise((resolve) => setTimeout(resolve, HEAD_STRETCH_RECOUNT_MS + 100))
    // spaced 200 ms (the count kept) about six heads; 800 ms (counted again), at most two
    expect(await headsWhileMoving(node)).to.be.at.most(2)
  })

  describe('a forged page is rejected with a named reason', () => {
    const originals = new Map<MemoryNetwork, NonNullable<ReturnType<MemoryNetwork['handlers']['get']>>>()
    async function forgeWith (a: TestNode, forge: (page: LogPageWire) => LogPageWire): Promise<void> {
      const net = a.net
      const original = originals.get(net) ?? net.handlers.get(LOG_PROTOCOL)
      if (original == null) throw new Error('no log handler')
      originals.set(net, original)
      await net.handle(LOG_PROTOCOL, async (req, ctx) => {
        const page = canonicalDecode<LogPageWire>(await original.handler(req, ctx))
        return encodeLogPage(forge(page))
      }, original.opts)
    }

    function editRecord (page: LogPageWire, seq: number, edit: (r: LedgerRecord) => void): LogPageWire {
      const i = seq - page.from
      if (i < 0 || i >= page.records.length) return page
      const r = canonicalDecode<LedgerRecord>(page.records[i])
      edit(r)
      const records = page.records.slice()
      records[i] = canonicalEncode(r)
      return { ...page, records }
    }

    it('a modified record → bad-signature at its seq', async () => {
      const a = await makeNode()
      const b = await makeNode({ pageLimit: 8 })
      await fill(a.ledger, 20)
      await forgeWith(a, (p) => editRecord(p, 11, (r) => { r.body.i = 999 }))
      const report = await b.audit.audit(a.signer.peerId)
      expect(report.ok).to.equal(false)
      expect(report.firstBad).to.deep.equal({ seq: 11, reason: 'bad-signature' })
      expect(report.count).to.equal(11)
    })

    it('a dropped record → gap; a re-linked record → broken-link; a foreign record → wrong-signer', async () => {
      const a = await makeNode()
      const b = await makeNode()
      await fill(a.ledger, 12)
      await forgeWith(a, (p) => ({ ...p, records: p.records.filter((_r, i) => p.from + i !== 7) }))
      expect((await b.audit.audit(a.signer.peerId)).firstBad).to.deep.equal({ seq: 7, reason: 'gap' })

      await forgeWith(a, (p) => editRecord(p, 3, (r) => { r.prev = r.prev?.replace(/.$/, (c) => c === 'a' ? 'b' : 'a') ?? null }))
      expect((await b.audit.audit(a.signer.peerId)).firstBad).to.deep.equal({ seq: 3, reason: 'broken-link' })

      const mallory = randomSigner()
      await forgeWith(a, (p) => {
        const i = 5 - p.from
        const r = canonicalDecode<LedgerRecord>(p.records[i])
        const records = p.records.slice()
        records[i] = createRecord(mallory, r.seq, r.prev, r.type, r.body, r.ts).bytes
        return { ...p, records }
      })
      expect((await b.audit.audit(a.signer.peerId)).firstBad).to.deep.equal({ seq: 5, reason: 'wrong-signer' })
    })

    it('a log cut short of its signed head → truncated', async () => {
      const a = await makeNode()
      const b = await makeNode()
      await fill(a.ledger, 10)
      await waitFor(() => b.audit.latestHead(a.signer.peerId)?.payload.seq === 9)
      await forgeWith(a, (p) => ({ ...p, records: p.records.slice(0, 6), more: false, head: null }))
      const report = await b.audit.audit(a.signer.peerId)
      expect(report.firstBad).to.deep.equal({ seq: 6, reason: 'truncated' })
      expect(report.count).to.equal(6)
    })

    it('a malformed envelope → InvalidLogPageError from fetchLog', async () => {
      const a = await makeNode()
      const b = await makeNode()
      await fill(a.ledger, 3)
      await a.net.handle(LOG_PROTOCOL, async () => Uint8Array.of(0xff, 0x00))
      try {
        await b.audit.fetchLog(a.signer.peerId, 0, 10)
        expect.fail('should throw')
      } catch (err: any) {
        expect(err.name).to.equal('InvalidLogPageError')
      }
      await a.net.handle(LOG_PROTOCOL, async () => encodeLogPage({ signer: b.signer.peerId, from: 0, records: [], head: null, more: false }))
      try {
        await b.audit.audit(a.signer.peerId)
        expect.fail('should throw')
      } catch (err: any) {
        expect(err.name).to.equal('InvalidLogPageError')
      }
    })
  })

  describe('equivocation', () => {
    it('two signed heads for one seq: both other nodes flag the signer, store one proof each and gossip it', async () => {
      const a = await makeNode()
      const b = await makeNode()
      const cSigner = randomSigner()
      const c = hub.createNode(cSigner.peerId) // a raw node that signs whatever it likes
      const flaggedA: string[] = []
      a.audit.onFlagged((p) => flaggedA.push(p))
      const h1 = signHead(cSigner, { seq: 3, id: createRecord(cSigner, 3, 'bafyprev', 'job', { x: 1 }).id, ts: Date.now() })
      const h2 = signHead(cSigner, { seq: 3, id: createRecord(cSigner, 3, 'bafyprev', 'job', { x: 2 }).id, ts: Date.now() })
      await c.publish(HEADS_TOPIC, encodeHead(h1))
      await c.publish(HEADS_TOPIC, encodeHead(h2))
      await waitFor(() => a.audit.isFlagged(cSigner.peerId) && b.audit.isFlagged(cSigner.peerId))
      expect(a.audit.flagged()).to.deep.equal([cSigner.peerId])
      expect(flaggedA).to.deep.equal([cSigner.peerId])
      await waitFor(async () => (await a.ledger.byType('equivocation')).length === 1 && (await b.ledger.byType('equivocation')).length === 1)
      await new Promise((resolve) => setTimeout(resolve, 50)) // proofs gossiped between a and b must not add records
      for (const n of [a, b]) {
        const recs = await n.ledger.byType('equivocation')
        expect(recs.length).to.equal(1)
        expect(recs[0].body.peer).to.equal(cSigner.peerId)
        expect(recs[0].body.seq).to.equal(3)
        expect((await n.ledger.verify()).ok).to.equal(true)
      }
      const proofs = hub.gossipLog.filter((g) => g.topic === EQUIVOCATIONS_TOPIC)
      expect(proofs.length).to.be.greaterThan(0)
      // valid, so never rejected; a receiver that flagged the signer already ignores it (not forwarded again)
      expect(proofs.every((g) => g.result !== 'reject')).to.equal(true)
      // the same head again is not news
      await c.publish(HEADS_TOPIC, encodeHead(h1))
      await new Promise((resolve) => setTimeout(resolve, 20))
      expect((await a.ledger.byType('equivocation')).length).to.equal(1)
    })

    it('a log that contradicts its own signed head: the auditor flags the owner and the proof convinces a third node', async () => {
      const aSigner = randomSigner()
      // A keeps two histories: it gossips the head of one and serves the other
      const shown = await openLedger({ signer: aSigner })
      const hidden = await openLedger({ signer: aSigner })
      await fill(shown, 5)
      for (let i = 0; i < 5; i++) await hidden.append('job', { other: i })
      const aNet = hub.createNode(aSigner.peerId)
      await aNet.handle(LOG_PROTOCOL, async (req) => {
        const r = decodeLogRequest(req)
        const records = await hidden.rangeEncoded(r.from, r.limit)
        return encodeLogPage({ signer: aSigner.peerId, from: r.from, records, head: null, more: r.from + records.length <= hidden.head().seq })
      })
      const a = { net: aNet }
      const b = await makeNode()
      const c = await makeNode()
      const head = signHead(aSigner, { seq: 4, id: shown.head().id as string, ts: Date.now() })
      await a.net.publish(HEADS_TOPIC, encodeHead(head))
      await waitFor(() => b.audit.latestHead(aSigner.peerId)?.payload.id === head.payload.id)
      const report = await b.audit.audit(aSigner.peerId)
      expect(report.ok).to.equal(false)
      expect(report.firstBad?.reason).to.equal('equivocation')
      expect(report.flagged).to.equal(true)
      await waitFor(() => c.audit.isFlagged(aSigner.peerId))
      const rec = (await b.ledger.byType('equivocation'))[0]
      expect(rec.body.peer).to.equal(aSigner.peerId)
      expect((rec.body.a as any).kind).to.not.equal((rec.body.b as any).kind)
      await shown.close()
      await hidden.close()
    })

    it('refuses proofs that prove nothing', async () => {
      const a = await makeNode()
      const mallory = hub.createNode()
      const victim = randomSigner()
      const h = signHead(victim, { seq: 1, id: createRecord(victim, 1, 'bafyprev', 'job', {}).id, ts: Date.now() })
      const forged = signHead(randomSigner(), { seq: 1, id: createRecord(victim, 1, 'bafyprev', 'job', { y: 1 }).id, ts: Date.now() })
      const before = hub.gossipLog.length
      // the same id twice, and a second head signed by someone else
      await mallory.publish(EQUIVOCATIONS_TOPIC, encodeProof({ v: 1, peer: victim.peerId, seq: 1, a: { kind: 'head', head: h }, b: { kind: 'head', head: h } }))
      await mallory.publish(EQUIVOCATIONS_TOPIC, encodeProof({ v: 1, peer: victim.peerId, seq: 1, a: { kind: 'head', head: h }, b: { kind: 'head', head: { ...forged, signer: victim.peerId } } }))
      await waitFor(() => hub.gossipLog.length >= before + 2)
      expect(hub.gossipLog.slice(before).map((g) => g.result)).to.deep.equal(['reject', 'reject'])
      expect(a.audit.isFlagged(victim.peerId)).to.equal(false)
    })

    describe('what throwaway keys can make a node write', () => {
      /** two contradicting heads of a fresh key at `seq` */
      const pairOf = (s: Signer, seq = 3): Uint8Array[] => [1, 2].map(x => encodeHead(signHead(s, { seq, id: createRecord(s, seq, 'bafyprev', 'job', { x }).id, ts: Date.now() })))

      it('40 keys equivocating: EQUIVOCATION_RECORD_BURST records and proofs, every key flagged; no more proofs are forwarded', async () => {
        const a = await makeNode()
        const b = await makeNode()
        const c = hub.createNode()
        const keys = Array.from({ length: 40 }, () => randomSigner())
        for (const k of keys) for (const h of pairOf(k)) await c.publish(HEADS_TOPIC, h)
        await waitFor(() => keys.every(k => a.audit.isFlagged(k.peerId) && b.audit.isFlagged(k.peerId)))
        await new Promise((resolve) => setTimeout(resolve, 50))
        for (const n of [a, b]) {
          expect((await n.ledger.byType('equivocation')).length).to.equal(EQUIVOCATION_RECORD_BURST)
          expect(n.audit.flagged().length).to.equal(40)
          expect((await n.ledger.verify()).ok).to.equal(true)
        }
        // a proof is published only with its record, and a receiver flagged already ignores it
        const published = hub.gossipLog.filter(g => g.topic === EQUIVOCATIONS_TOPIC)
        expect(published.length).to.be.at.most(2 * EQUIVOCATION_RECORD_BURST)
        expect(published.filter(g => g.result === 'accept').length).to.be.at.most(EQUIVOCATION_RECORD_BURST)
      })

      it('the record budget: a full bucket earns nothing, a spent token comes back one refill later', () => {
        const every = 900_000
        let b = refillBucket({ tokens: 16, at: 0 }, 3_600_000, 16, every) // an idle hour, full
        b = { tokens: b.tokens - 1, at: b.at }
        expect(refillBucket(b, 3_601_000, 16, every).tokens, 'a second later').to.equal(15)
        expect(refillBucket(b, 3_600_000 + every, 16, every).tokens, 'one refill later').to.equal(16)
        const low = { tokens: 0, at: 0 }
        expect(refillBucket(low, 2.5 * every, 16, every)).to.deep.equal({ tokens: 2, at: 2 * every })
      })

      it('one key equivocating at 20 seqs: one record', async () => {
        const a = await makeNode()
        const c = hub.createNode()
        const k = randomSigner()
        for (let seq = 0; seq < 20; seq++) for (const h of pairOf(k, seq)) await c.publish(HEADS_TOPIC, h)
        await waitFor(() => a.audit.isFlagged(k.peerId))
        await new Promise((resolve) => setTimeout(resolve, 50))
        expect((await a.ledger.byType('equivocation')).length).to.equal(1)
      })

      it('with the record budget spent, a proof on the topic is ignored before its signatures are checked; one against our own key is still checked', async () => {
        const a = await makeNode()
        const c = hub.createNode()
        for (let i = 0; i < EQUIVOCATION_RECORD_BURST; i++) for (const h of pairOf(randomSigner())) await c.publish(HEADS_TOPIC, h)
        await waitFor(async () => (await a.ledger.byType('equivocation')).length === EQUIVOCATION_RECORD_BURST)
        const victim = randomSigner()
        const h = signHead(victim, { seq: 1, id: createRecord(victim, 1, 'bafyprev', 'job', {}).id, ts: Date.now() })
        const broken = { ...h, sig: new Uint8Array(64) }
        const before = hub.gossipLog.length
        await c.publish(EQUIVOCATIONS_TOPIC, encodeProof({ v: 1, peer: victim.peerId, seq: 1, a: { kind: 'head', head: h }, b: { kind: 'head', head: broken } }))
        const mine = signHead(a.signer, { seq: 1, id: createRecord(a.signer, 1, 'bafyprev', 'job', {}).id, ts: Date.now() })
        await c.publish(EQUIVOCATIONS_TOPIC, encodeProof({ v: 1, peer: a.signer.peerId, seq: 1, a: { kind: 'head', head: mine }, b: { kind: 'head', head: { ...mine, sig: new Uint8Array(64) } } }))
        await waitFor(() => hub.gossipLog.length >= before + 2)
        // 'reject' would mean the signatures were checked
        expect(hub.gossipLog.slice(before).map(g => g.result)).to.deep.equal(['ignore', 'reject'])
        expect(a.audit.isFlagged(victim.peerId)).to.equal(false)
      })

      it('flags are bounded: past MAX_FLAGGED_SIGNERS the oldest flag without a record goes, the stored ones stay', async function () {
        this.timeout(60_000)
        const a = await makeNode()
        const c = hub.createNode()
        const keys = Array.from({ length: MAX_FLAGGED_SIGNERS + 20 }, () => randomSigner())
        for (const k of keys) for (const h of pairOf(k)) await c.publish(HEADS_TOPIC, h)
        await waitFor(() => a.audit.isFlagged(keys[keys.length - 1].peerId), 30_000)
        expect(a.audit.flagged().length).to.equal(MAX_FLAGGED_SIGNERS)
        const stored = (await a.ledger.byType('equivocation')).map(r => r.body.peer as string)
        expect(stored.length).to.equal(EQUIVOCATION_RECORD_BURST)
        for (const p of stored) expect(a.audit.isFlagged(p)).to.equal(true)
        // the first keys past the budget were flagged first, so they made room
        expect(a.audit.isFlagged(keys[EQUIVOCATION_RECORD_BURST].peerId)).to.equal(false)
      })
    })

    it('flags survive a restart (rebuilt from the log)', async () => {
      const signer = randomSigner()
      const ledger = await openLedger({ signer })
      const a = await makeNode({ signer, ledger })
      const c = hub.createNode()
      const cSigner = randomSigner()
      for (const x of [1, 2]) await c.publish(HEADS_TOPIC, encodeHead(signHead(cSigner, { seq: 0, id: createRecord(cSigner, 0, null, 'job', { x }).id, ts: Date.now() })))
      await waitFor(() => a.audit.isFlagged(cSigner.peerId))
      await waitFor(async () => (await ledger.byType('equivocation')).length === 1)
      await a.audit.stop()
      hub.remove(signer.peerId)
      const again = createLedgerAudit({ ledger, network: hub.createNode(signer.peerId), signer })
      await again.start()
      expect(again.isFlagged(cSigner.peerId)).to.equal(true)
      await again.stop()
    })
  })
})
