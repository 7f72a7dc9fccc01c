/**
 * What a node reads of its log on start: the unfinished jobs (for restart
 * recovery) and the records that decide standing, both through the ledger's
 * indexes. A log full of other records (bids, results, declines: most of a
 * busy node's log) is not read at all.
 */
import { expect } from 'chai'
import { randomSigner } from '../../../src/crypto/index.js'
import { MemoryBackend, openLedger, type Ledger } from '../../../src/ledger/index.js'
import type { IterateOptions } from '../../../src/ledger/backend.js'
import { Journal, readRecord, readStandingRecords } from '../../../src/auction/protocol/journal.js'
import { sign, type JobSpecWire } from '../../../src/auction/protocol/messages.js'
import { readUnfinished } from '../../../src/auction/requester/recover.js'

/** A memory backend that counts the stored records (r! keys) it hands out. */
class CountingBackend extends MemoryBackend {
  recordsRead = 0
  override async get (key: string): Promise<Uint8Array | undefined> {
    const v = await super.get(key)
    if (v != null && key.startsWith('r!')) this.recordsRead++
    return v
  }

  override async * iterate (opts: IterateOptions = {}): AsyncIterable<[string, Uint8Array]> {
    for await (const e of super.iterate(opts)) {
      if (e[0].startsWith('r!')) this.recordsRead++
      yield e
    }
  }
}

const spec: JobSpecWire = { engine: 'js', source: 'input', args: [], env: {}, limits: { timeoutMs: 1000, memoryMb: 64, outputBytes: 1024 } }
const FILLER = 3000

describe('requester: what a node reads of its log on start', () => {
  let backend: CountingBackend
  let ledger: Ledger

  beforeEach(async () => {
    backend = new CountingBackend()
    ledger = await openLedger({ signer: randomSigner(), backend })
  })
  afterEach(async () => { await ledger.close() })

  it('the unfinished jobs and the standing records, without reading the rest of the log', async () => {
    const journal = new Journal(ledger)
    const ids = ['job-done-0001', 'job-open-0002', 'job-fail-0003', 'job-open-0004']
    for (const id of ids) await journal.submitted(id, spec, 5, 1, Date.now())
    // most of a busy log: records of other types, of these jobs and others
    const filler: Array<Promise<unknown>> = []
    for (let i = 0; i < FILLER; i++) filler.push(ledger.append(i % 2 === 0 ? 'result' : 'decline', { jobId: ids[i % 4], side: 'provider', n: i }))
    await Promise.all(filler)
    const requester = randomSigner()
    const receipt = sign(requester, 'receipt', { v: 1, jobId: 'job-done-0001', requester: requester.peerId, provider: randomSigner().peerId, resultId: 'bafyresult0001', resultHash: 'ab'.repeat(32), price: 3, status: 'paid', ts: Date.now() })
    await journal.receipt('requester', receipt)
    await journal.ended('job-fail-0003', 'failed', Date.now(), { reason: 'no-bids' })
    await journal.handover('job-open-0002', { from: 'peer-a', to: null, reason: 'lost', attempt: 1, awardId: 'aw-1', at: Date.now() })
    await journal.handover('job-done-0001', { from: 'peer-b', to: 'peer-c', reason: 'lost', attempt: 1, awardId: 'aw-2', at: Date.now() })

    backend.recordsRead = 0
    const unfinished = await readUnfinished(ledger)
    const readForRecovery = backend.recordsRead
    const jobsRead = new Set(unfinished.map(r => r.body.jobId))
    expect([...jobsRead].sort()).to.deep.equal(['job-open-0002', 'job-open-0004'])
    // every record of the two open jobs, in log order
    const expected = [...await ledger.byJob('job-open-0002'), ...await ledger.byJob('job-open-0004')].map(r => r.seq)
    expect(unfinished.map(r => r.seq)).to.deep.equal(expected)
    // 5 job records and 1 receipt, then the open jobs' own records; not the other jobs' 1500 records
    expect(readForRecovery).to.be.at.most(6 + expected.length)

    backend.recordsRead = 0
    const standing = await readStandingRecords(ledger)
    expect(standing.map(r => readRecord(r)?.type)).to.deep.equal(['receipt', 'handover', 'handover'])
    expect(standing.map(r => r.seq)).to.deep.equal([...standing.map(r => r.seq)].sort((a, b) => a - b))
    expect(backend.recordsRead).to.equal(3)
    expect(ledger.head().count).to.be.greaterThan(FILLER)
  })
})
