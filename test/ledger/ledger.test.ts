/**
 * One suite, two implementations: everything here runs against the in-memory
 * backend and the LevelDB backend.
 */
import { expect } from 'chai'
import { canonicalDecode, canonicalEncode, randomSigner, signMessage, type Signer } from '../../src/crypto/index.js'
import {
  RECORD_TYPES, createRecord, verifyRecords, spliceSig, stripSig, recordId,
  type Ledger, type LedgerRecord, type RecordType, type VerifyReason
} from '../../src/ledger/index.js'
import type { BackendOp } from '../../src/ledger/backend.js'
import { IMPLEMENTATIONS, delRaw, getRaw, putRaw, type LedgerEnv } from './helpers.js'

function bodyFor (type: RecordType, i: number, other: Signer): Record<string, unknown> {
  const signed = signMessage(other, `mercato/v1/${type}`, { v: 1, n: i, nonce: `n${i}` })
  return { jobId: `job-${i % 3}`, side: 'requester', [type]: signed, note: `record ${i}`, bytes: Uint8Array.of(i, 1, 2) }
}

async function fill (ledger: Ledger, n: number, other: Signer): Promise<Array<{ record: LedgerRecord, id: string }>> {
  const out = []
  for (let i = 0; i < n; i++) out.push(await ledger.append(RECORD_TYPES[i % RECORD_TYPES.length], bodyFor(RECORD_TYPES[i % RECORD_TYPES.length], i, other)))
  return out
}

for (const impl of IMPLEMENTATIONS) {
  describe(`ledger (${impl.name})`, function () {
    let env: LedgerEnv
    let signer: Signer
    let other: Signer
    const open: Ledger[] = []

    async function openL (opts?: { readOnly?: boolean }, who: Signer | { peerId: string } = signer): Promise<Ledger> {
      const l = await env.open(who, opts)
      open.push(l)
      return l
    }

    beforeEach(async () => {
      env = await impl.create()
      signer = randomSigner()
      other = randomSigner()
    })

    afterEach(async () => {
      for (const l of open.splice(0)) await l.close()
      await env.cleanup()
    })

    it('starts empty and verifies', async () => {
      const l = await openL()
      expect(l.head()).to.deep.equal({ seq: -1, id: null, count: 0 })
      expect(l.signer).to.equal(signer.peerId)
      expect(await l.verify()).to.deep.equal({ ok: true, count: 0, headId: null })
      expect(await l.get(0)).to.equal(undefined)
      expect(await l.range(0, 10)).to.deep.equal([])
    })

    it('round-trips a record of every type, across a reopen', async () => {
      let l = await openL()
      const appended = []
      for (const [i, type] of RECORD_TYPES.entries()) {
        const res = await l.append(type, bodyFor(type, i, other))
        expect(res.record.seq).to.equal(i)
        expect(res.record.type).to.equal(type)
        expect(res.record.signer).to.equal(signer.peerId)
        expect(res.record.prev).to.equal(i === 0 ? null : appended[i - 1].id)
        expect(res.id).to.equal(recordId(res.record))
        appended.push(res)
      }
      await l.close()
      l = await openL()
      expect(l.head()).to.deep.equal({ seq: RECORD_TYPES.length - 1, id: appended[appended.length - 1].id, count: RECORD_TYPES.length })
      for (const [i, { record, id }] of appended.entries()) {
        expect(await l.get(i)).to.deep.equal(record)
        expect(await l.getById(id)).to.deep.equal(record)
      }
      expect(await l.range(3, 4)).to.deep.equal(appended.slice(3, 7).map((a) => a.record))
      const report = await l.verify()
      expect(report).to.deep.equal({ ok: true, count: RECORD_TYPES.length, headId: appended[appended.length - 1].id })
      expect(verifyRecords(appended.map((a) => a.record), signer.peerId).ok).to.equal(true)
    })

    it('indexes body.jobId and the rare types', async () => {
      const l = await openL()
      await fill(l, 12, other)
      const job1 = await l.byJob('job-1')
      expect(job1.map((r) => r.seq)).to.deep.equal([1, 4, 7, 10])
      expect(await l.byJob('nope')).to.deep.equal([])
      expect((await l.byType('handover')).map((r) => r.seq)).to.deep.equal([6])
      expect((await l.byType('bid')).map((r) => r.seq)).to.deep.equal([2])
      expect(await l.getById('bafyreigarbage')).to.equal(undefined)
    })

    it('reads the types a node reads on start (jobs, receipts, handovers, mismatches, equivocations) through the type index, pages by seq', async () => {
      const l = await openL()
      await fill(l, 3 * RECORD_TYPES.length, other)
      const seqsOf = (type: RecordType): number[] => [0, 1, 2].map(k => k * RECORD_TYPES.length + RECORD_TYPES.indexOf(type))
      for (const type of ['job', 'receipt', 'handover', 'mismatch', 'equivocation', 'bid'] as const) {
        const it: number[] = []
        for await (const r of l.ofType(type)) it.push(r.seq)
        expect(it, type).to.deep.equal(seqsOf(type))
        expect((await l.byType(type, { from: seqsOf(type)[1] })).map(r => r.seq), type).to.deep.equal(seqsOf(type).slice(1))
        expect((await l.byType(type, { from: seqsOf(type)[0] + 1, limit: 1 })).map(r => r.seq), type).to.deep.equal([seqsOf(type)[1]])
      }
    })

    it('a log from before the job and receipt type index gets it on the next writable open; a read-only open scans instead', async () => {
      let l = await openL()
      await fill(l, 2 * RECORD_TYPES.length, other)
      await l.close()
      // what an older version left: t! keys only for handover, mismatch, equivocation, and no m!types
      await env.raw(async (b) => {
        const ops: BackendOp[] = [{ type: 'del', key: 'm!types' }]
        for await (const [k] of b.iterate({ gte: 't!', lt: 't"' })) if (k.startsWith('t!job\0') || k.startsWith('t!receipt\0')) ops.push({ type: 'del', key: k })
        expect(ops.length).to.equal(5)
        await b.batch(ops)
      })
      const jobSeqs = [0, RECORD_TYPES.length]
      const ro = await openL({ readOnly: true })
      expect((await ro.byType('job')).map(r => r.seq)).to.deep.equal(jobSeqs)
      await ro.close()
      l = await openL()
      expect((await l.byType('job')).map(r => r.seq)).to.deep.equal(jobSeqs)
      expect((await l.byType('receipt')).length).to.equal(2)
      await l.close()
      // the rebuilt index is stored: the t! keys are back
      const keys = await env.raw(async (b) => { const out: string[] = []; for await (const [k] of b.iterate({ gte: 't!job\0', lt: 't!job\x01' })) out.push(k); return out })
      expect(keys).to.have.length(2)
    })

    it('verifies embedded signed messages before appending', async () => {
      const l = await openL()
      const good = signMessage(other, 'mercato/v1/bid', { v: 1, price: 3 })
      const forged = { ...good, payload: { v: 1, price: 1 } }
      await l.append('bid', { jobId: 'j', bid: good })
      for (const body of [
        { jobId: 'j', bid: forged },
        { jobId: 'j', bids: [good, forged] },
        { jobId: 'j', award: signMessage(other, 'mercato/v1/award', { bids: [forged] }) },
        { jobId: 'j', x: { deep: { er: { ...good, sig: new Uint8Array(64) } } } }
      ]) {
        try {
          await l.append('award', body)
          expect.fail('should have thrown')
        } catch (err: any) {
          expect(err.name).to.equal('InvalidEvidenceError')
          expect(err.code).to.equal('invalid-evidence')
        }
      }
      expect(l.head().count).to.equal(1)
      expect((await l.verify()).ok).to.equal(true)
    })

    it('rejects malformed appends with named errors', async () => {
      const l = await openL()
      for (const [type, body] of [['nope', {}], ['job', []], ['job', null], ['job', { jobId: 'a\0b' }]] as const) {
        try {
          await l.append(type as RecordType, body as any)
          expect.fail('should have thrown')
        } catch (err: any) {
          expect(err.name).to.equal('InvalidRecordError')
        }
      }
      expect(l.head().count).to.equal(0)
    })

    it('serialises concurrent appends in call order (group commit)', async () => {
      const l = await openL()
      const ps = []
      for (let i = 0; i < 1500; i++) ps.push(l.append('job', { jobId: `j${i % 7}`, i }))
      const res = await Promise.all(ps)
      res.forEach((r, i) => { expect(r.record.seq).to.equal(i); expect(r.record.body.i).to.equal(i) })
      expect(l.head()).to.deep.equal({ seq: 1499, id: res[1499].id, count: 1500 })
      expect(await l.verify()).to.deep.equal({ ok: true, count: 1500, headId: res[1499].id })
      expect(await l.verify({ workers: 2 })).to.deep.equal({ ok: true, count: 1500, headId: res[1499].id })
      expect((await l.byJob('j3')).length).to.equal(Math.ceil((1500 - 3) / 7))
      expect((await l.range(1490, 100)).length).to.equal(10)
    })

    it('notifies head changes after commit', async () => {
      const l = await openL()
      const heads: number[] = []
      const off = l.onChange((h) => heads.push(h.seq))
      await Promise.all([l.append('job', {}), l.append('job', {})])
      await l.append('job', {})
      off()
      await l.append('job', {})
      expect(heads.length).to.be.greaterThan(0)
      expect(heads[heads.length - 1]).to.equal(2)
    })

    it('refuses appends after close and honours an aborted verify', async () => {
      const l = await env.open(signer)
      await l.append('job', {})
      const ac = new AbortController()
      ac.abort()
      try { await l.verify({ signal: ac.signal }); expect.fail('should abort') } catch (err: any) { expect(err.name).to.equal('AbortError') }
      await l.close()
      try { await l.append('job', {}); expect.fail('closed') } catch (err: any) { expect(err.name).to.equal('LedgerClosedError') }
    })

    describe('tampering is caught and named', () => {
      const N = 10
      const AT = 4

      // each case changes stored record AT (or around it); verify must name seq AT and the reason
      const cases: Array<{ name: string, reason: VerifyReason, seq?: number, tamper: (env: LedgerEnv, ctx: { other: Signer, fork: Uint8Array[] }) => Promise<void> }> = [
        {
          name: 'a flipped byte in a body',
          reason: 'bad-signature',
          tamper: async (env) => await env.raw(async (b) => {
            const r = canonicalDecode<LedgerRecord>(await getRaw(b, AT))
            const note = r.body.note as string
            r.body.note = String.fromCharCode(note.charCodeAt(0) ^ 1) + note.slice(1)
            await putRaw(b, AT, canonicalEncode(r))
          })
        },
        {
          name: 'a flipped byte in a signature',
          reason: 'bad-signature',
          tamper: async (env) => await env.raw(async (b) => {
            const r = canonicalDecode<LedgerRecord>(await getRaw(b, AT))
            r.sig[10] ^= 0x01
            await putRaw(b, AT, canonicalEncode(r))
          })
        },
        {
          name: 'a flipped byte in a link',
          reason: 'broken-link',
          tamper: async (env) => await env.raw(async (b) => {
            const r = canonicalDecode<LedgerRecord>(await getRaw(b, AT))
            const prev = r.prev as string
            r.prev = prev.slice(0, 20) + (prev[20] === 'a' ? 'b' : 'a') + prev.slice(21)
            await putRaw(b, AT, canonicalEncode(r))
          })
        },
        {
          name: 'a deleted record',
          reason: 'gap',
          tamper: async (env) => await env.raw(async (b) => { await delRaw(b, AT) })
        },
        {
          name: 'two records swapped',
          reason: 'gap',
          tamper: async (env) => await env.raw(async (b) => {
            const a = await getRaw(b, AT)
            const c = await getRaw(b, AT + 1)
            await putRaw(b, AT, c)
            await putRaw(b, AT + 1, a)
          })
        },
        {
          name: 'a record signed by another key',
          reason: 'wrong-signer',
          tamper: async (env, { other }) => await env.raw(async (b) => {
            const r = canonicalDecode<LedgerRecord>(await getRaw(b, AT))
            const forged = createRecord(other, r.seq, r.prev, r.type, r.body, r.ts)
            await putRaw(b, AT, forged.bytes)
          })
        },
        {
          name: 'a record from a fork of the same signer',
          reason: 'broken-link',
          tamper: async (env, { fork }) => await env.raw(async (b) => { await putRaw(b, AT, fork[AT]) })
        },
        {
          name: 'bytes that are not a record',
          reason: 'bad-encoding',
          tamper: async (env) => await env.raw(async (b) => {
            const bytes = await getRaw(b, AT)
            await putRaw(b, AT, bytes.subarray(0, bytes.length - 7))
          })
        },
        {
          name: 'a record with an extra field',
          reason: 'bad-encoding',
          tamper: async (env) => await env.raw(async (b) => {
            const r = canonicalDecode<Record<string, unknown>>(await getRaw(b, AT))
            r.extra = 1
            await putRaw(b, AT, canonicalEncode(r))
          })
        }
      ]

      for (const c of cases) {
        it(`${c.name} → ${c.reason}`, async () => {
          let l = await env.open(signer)
          await fill(l, N, other)
          await l.close()
          // a fork: same signer, different records
          const forkEnv = await impl.create()
          const fl = await forkEnv.open(signer)
          const fork: Uint8Array[] = []
          for (let i = 0; i < N; i++) fork.push(createRecord(signer, i, i === 0 ? null : recordId(canonicalDecode(fork[i - 1])), 'job', { fork: i }).bytes)
          await fl.close()
          await forkEnv.cleanup()

          await c.tamper(env, { other, fork })

          // the tail check sees damage that is not a torn tail and refuses to open
          try {
            l = await env.open(signer)
            open.push(l)
            expect.fail('open should refuse a damaged log')
          } catch (err: any) {
            expect(err.name).to.equal('LedgerCorruptError')
            expect(err.seq).to.equal(c.seq ?? AT)
            expect(err.reason).to.equal(c.reason)
          }
          // read-only open (what `mercato ledger verify` does) names the first bad record
          l = await openL({ readOnly: true })
          const inline = await l.verify({ workers: 0 })
          expect(inline.ok).to.equal(false)
          expect(inline.firstBad).to.deep.equal({ seq: c.seq ?? AT, reason: c.reason })
          expect(inline.count).to.equal(AT)
          const threaded = await l.verify({ workers: 2 })
          expect(threaded).to.deep.equal(inline)
          // the same on records as fetched from a peer
          const recs = await l.range(0, N)
          if (c.reason !== 'bad-encoding') {
            expect(verifyRecords(recs, signer.peerId).firstBad).to.deep.equal({ seq: c.seq ?? AT, reason: c.reason })
          }
        })
      }
    })

    describe('tail check on open', () => {
      it('truncates a torn tail with a warning and keeps appending', async () => {
        let l = await env.open(signer)
        const appended = await fill(l, 6, other)
        await l.close()
        await env.raw(async (b) => {
          const last = await getRaw(b, 5)
          await putRaw(b, 5, last.subarray(0, 40)) // a half-written record
        })
        l = await openL()
        expect(l.head()).to.deep.equal({ seq: 4, id: appended[4].id, count: 5 })
        const next = await l.append('job', { after: 'truncation' })
        expect(next.record.seq).to.equal(5)
        expect(next.record.prev).to.equal(appended[4].id)
        expect(await l.verify()).to.deep.equal({ ok: true, count: 6, headId: next.id })
        expect(await l.getById(appended[5].id)).to.equal(undefined)
      })

      it('truncates a trailing record whose signature fails', async () => {
        let l = await env.open(signer)
        const appended = await fill(l, 3, other)
        await l.close()
        await env.raw(async (b) => {
          const r = canonicalDecode<LedgerRecord>(await getRaw(b, 2))
          r.sig[0] ^= 0xff
          await putRaw(b, 2, canonicalEncode(r))
        })
        l = await openL()
        expect(l.head().seq).to.equal(1)
        expect(l.head().id).to.equal(appended[1].id)
      })

      it('refuses a log written by another key', async () => {
        const l = await env.open(signer)
        await fill(l, 3, other)
        await l.close()
        try {
          open.push(await env.open(other))
          expect.fail('should refuse')
        } catch (err: any) {
          expect(err.name).to.equal('LedgerCorruptError')
          expect(err.reason).to.equal('wrong-signer')
        }
      })
    })
  })
}

describe('record encoding', () => {
  it('splices the signature into the canonical encoding exactly', () => {
    const s = randomSigner()
    for (const [seq, ts] of [[0, 0], [23, 24], [255, 65535], [65536, 2 ** 32 - 1], [2 ** 32, Date.now()], [2 ** 50, -5], [7, -300000]]) {
      const { record, bytes } = createRecord(s, seq, seq === 0 ? null : 'bafyprev', 'job', { a: 1, b: 'x' }, ts)
      expect(bytes).to.deep.equal(canonicalEncode(record))
      const { sig, ...unsigned } = record
      expect(stripSig(bytes)).to.deep.equal(canonicalEncode(unsigned))
      expect(spliceSig(canonicalEncode(unsigned), sig)).to.deep.equal(bytes)
      expect(verifyRecords([record], s.peerId, { startSeq: seq, prevId: record.prev }).ok).to.equal(true)
    }
  })
})
