/**
 * Three real libp2p nodes on 127.0.0.1 (port 0): B audits A over
 * /mercato/log/1.0.0, a forged page is rejected, and a node that signs two
 * heads for one seq is flagged by both others within two gossip rounds.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { canonicalDecode, canonicalEncode, signerFromSeed, type Signer } from '../../src/crypto/index.js'
import {
  HEADS_TOPIC, EQUIVOCATIONS_TOPIC, LOG_PROTOCOL, createLedgerAudit, createRecord, decodeLogRequest, encodeHead, encodeLogPage,
  openLedger, signHead, type Ledger, type LedgerAudit, type LedgerRecord
} from '../../src/ledger/index.js'
import { createNetwork, type NetworkNode } from '../../src/p2p/index.js'

const ROUND_MS = 400 // headIntervalMs: one gossip round

interface RealNode { signer: Signer, net: NetworkNode, ledger: Ledger, audit: LedgerAudit }

async function waitFor (cond: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, stepMs))
  }
}

describe('ledger audit over libp2p (3 nodes) @slow', function () {
  this.timeout(60_000)
  const nodes: RealNode[] = []
  let a: RealNode, b: RealNode, c: RealNode

  before(async () => {
    for (let i = 0; i < 3; i++) {
      const seed = randomBytes(32)
      const signer = signerFromSeed(seed)
      const net = await createNetwork({ seed, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
      expect(net.peerId).to.equal(signer.peerId)
      const ledger = await openLedger({ signer })
      const audit = createLedgerAudit({ ledger, network: net, signer, headIntervalMs: ROUND_MS, headDebounceMs: 20, pageLimit: 64 })
      await audit.start()
      nodes.push({ signer, net, ledger, audit })
    }
    [a, b, c] = nodes
    await b.net.dial(a.net.addresses()[0])
    await c.net.dial(a.net.addresses()[0])
    await c.net.dial(b.net.addresses()[0])
    await waitFor(() => nodes.every((n) => n.net.topicPeers(HEADS_TOPIC).length >= 2 && n.net.topicPeers(EQUIVOCATIONS_TOPIC).length >= 2), 15_000)
  })

  after(async () => {
    for (const n of nodes.reverse()) {
      await n.audit.stop().catch(() => {})
      await n.net.stop().catch(() => {})
      await n.ledger.close().catch(() => {})
    }
  })

  it('B fetches and verifies A\'s log over the protocol, against A\'s gossiped head', async () => {
    for (let i = 0; i < 150; i++) await a.ledger.append(i % 2 === 0 ? 'job' : 'receipt', { jobId: `job-${i % 10}`, i, pad: 'p'.repeat(200) })
    await waitFor(() => b.audit.latestHead(a.signer.peerId)?.payload.seq === 149, 5000)
    const report = await b.audit.audit(a.signer.peerId)
    expect(report.ok, JSON.stringify(report)).to.equal(true)
    expect(report.count).to.equal(150)
    expect(report.headId).to.equal(a.ledger.head().id)
    expect(report.head?.seq).to.equal(149)
    expect(report.pages).to.equal(3)
    // by multiaddr too
    expect((await c.audit.audit(a.net.addresses()[0])).ok).to.equal(true)
  })

  it('a forged page (one modified record) is rejected with a named reason', async () => {
    await a.net.unhandle(LOG_PROTOCOL)
    await a.net.handle(LOG_PROTOCOL, async (req) => {
      const r = decodeLogRequest(req)
      const records = await a.ledger.rangeEncoded(r.from, r.limit, 256 * 1024)
      const i = 77 - r.from
      if (i >= 0 && i < records.length) {
        const rec = canonicalDecode<LedgerRecord>(records[i])
        rec.body.i = -1
        records[i] = canonicalEncode(rec)
      }
      const h = a.ledger.head()
      const head = signHead(a.signer, { seq: h.seq, id: h.id as string, ts: Date.now() })
      return encodeLogPage({ signer: a.signer.peerId, from: r.from, records, head, more: r.from + records.length <= h.seq })
    })
    const report = await b.audit.audit(a.signer.peerId)
    expect(report.ok).to.equal(false)
    expect(report.firstBad).to.deep.equal({ seq: 77, reason: 'bad-signature' })
    expect(report.count).to.equal(77)
    expect(b.audit.isFlagged(a.signer.peerId)).to.equal(false)
  })

  it('a node signing two different heads for one seq is flagged by both others within two gossip rounds', async () => {
    // the test helper: C signs two heads for seq 0 that name different records
    const id1 = createRecord(c.signer, 0, null, 'job', { fork: 1 }).id
    const id2 = createRecord(c.signer, 0, null, 'job', { fork: 2 }).id
    const t0 = Date.now()
    await c.net.publish(HEADS_TOPIC, encodeHead(signHead(c.signer, { seq: 0, id: id1, ts: Date.now() })))
    await c.net.publish(HEADS_TOPIC, encodeHead(signHead(c.signer, { seq: 0, id: id2, ts: Date.now() })))
    await waitFor(() => a.audit.isFlagged(c.signer.peerId) && b.audit.isFlagged(c.signer.peerId), 2 * ROUND_MS)
    const took = Date.now() - t0
    expect(took).to.be.below(2 * ROUND_MS)
    for (const n of [a, b]) {
      await waitFor(async () => (await n.ledger.byType('equivocation')).length === 1, 2000)
      const [rec] = await n.ledger.byType('equivocation')
      expect(rec.body.peer).to.equal(c.signer.peerId)
      expect(n.audit.flagged()).to.deep.equal([c.signer.peerId])
    }
    expect(c.audit.isFlagged(c.signer.peerId)).to.equal(false)
  })
})
