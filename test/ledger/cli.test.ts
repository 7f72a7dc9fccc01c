import { expect } from 'chai'
import { Command } from 'commander'
import Fastify, { type FastifyInstance } from 'fastify'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { canonicalDecode, canonicalEncode, randomSigner, type Signer } from '../../src/crypto/index.js'
import { LevelBackend, openLedger, recordKey, type Ledger, type LedgerRecord } from '../../src/ledger/index.js'
import { registerLedgerCommands } from '../../src/ledger/cli.js'
import { ledgerRoutes } from '../../src/gateway/routes/ledger.js'

describe('mercato ledger (CLI)', () => {
  let dataDir: string
  let signer: Signer
  let gatewayUrl = 'http://127.0.0.1:1'

  async function cli (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
    const program = new Command().name('mercato').exitOverride()
    registerLedgerCommands(program, {
      openLocalLedger: async (dir, opts) => await openLedger({ signer, path: join(dir, 'ledger'), readOnly: opts?.readOnly }),
      gatewayUrl: () => gatewayUrl,
      resolveDataDir: (flag) => flag ?? dataDir
    })
    let stdout = ''
    let stderr = ''
    const ow = process.stdout.write.bind(process.stdout)
    const ew = process.stderr.write.bind(process.stderr)
    process.stdout.write = ((s: string) => { stdout += s; return true }) as any
    process.stderr.write = ((s: string) => { stderr += s; return true }) as any
    process.exitCode = 0
    try {
      await program.parseAsync(['node', 'mercato', 'ledger', ...args])
    } finally {
      process.stdout.write = ow
      process.stderr.write = ew
    }
    const code = Number(process.exitCode ?? 0)
    process.exitCode = 0
    return { code, stdout, stderr }
  }

  async function fill (n: number): Promise<Ledger> {
    const l = await openLedger({ signer, path: join(dataDir, 'ledger') })
    for (let i = 0; i < n; i++) await l.append(i % 4 === 0 ? 'bid' : 'job', { jobId: `job-${i % 3}`, i })
    return l
  }

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'mercato-cli-ledger-'))
    signer = randomSigner()
  })
  afterEach(async () => { await rm(dataDir, { recursive: true, force: true }) })

  it('verify: exit 0 with count and head id; exit 1 naming the first bad seq and reason', async () => {
    const l = await fill(10)
    const head = l.head()
    await l.close()
    let r = await cli('verify', '--data-dir', dataDir)
    expect(r.code).to.equal(0)
    expect(r.stdout).to.contain('records: 10')
    expect(r.stdout).to.contain(`head:    ${head.id as string}`)
    expect(r.stdout).to.contain('status:  ok')

    const b = new LevelBackend(join(dataDir, 'ledger'))
    await b.open()
    const rec = canonicalDecode<LedgerRecord>(await b.get(recordKey(4)) as Uint8Array)
    rec.body.i = 40
    await b.batch([{ type: 'put', key: recordKey(4), value: canonicalEncode(rec) }])
    await b.close()
    r = await cli('verify', '--data-dir', dataDir)
    expect(r.code).to.equal(1)
    expect(r.stdout).to.contain('status:  FAILED at seq 4: bad-signature')
    expect(r.stdout).to.contain('records: 4')
    r = await cli('verify', '--data-dir', dataDir, '--json')
    expect(JSON.parse(r.stdout)).to.deep.include({ ok: false, count: 4, firstBad: { seq: 4, reason: 'bad-signature' } })
  })

  it('show: the last records, --type, --job, --limit, --json', async () => {
    await (await fill(10)).close()
    let r = await cli('show', '--data-dir', dataDir, '--limit', '3')
    expect(r.code).to.equal(0)
    const lines = r.stdout.trim().split('\n')
    expect(lines.length).to.equal(3)
    expect(lines[0].trim().startsWith('7 ')).to.equal(true)
    r = await cli('show', '--data-dir', dataDir, '--type', 'bid', '--json')
    expect(JSON.parse(r.stdout).map((x: any) => x.seq)).to.deep.equal([0, 4, 8])
    r = await cli('show', '--data-dir', dataDir, '--job', 'job-1', '--limit', '2', '--json')
    expect(JSON.parse(r.stdout).map((x: any) => x.seq)).to.deep.equal([4, 7])
    r = await cli('show', '--data-dir', dataDir, '--type', 'nope')
    expect(r.code).to.equal(1)
    expect(r.stderr).to.contain('--type')
  })

  it('export: NDJSON of every record', async () => {
    await (await fill(25)).close()
    const r = await cli('export', '--data-dir', dataDir)
    expect(r.code).to.equal(0)
    const recs = r.stdout.trim().split('\n').map((l) => JSON.parse(l))
    expect(recs.map((x) => x.seq)).to.deep.equal([...Array(25).keys()])
    expect(recs[3].id).to.be.a('string')
    expect(recs[3].body.i).to.equal(3)
  })

  describe('through the running node\'s gateway', () => {
    let app: FastifyInstance
    let ledger: Ledger

    beforeEach(async () => {
      ledger = await fill(6) // holds the LevelDB lock, as a running node does
      app = Fastify()
      await app.register(ledgerRoutes({
        ledger,
        audit: {
          audit: async (peer: string) => ({ peer, ok: false, count: 3, headId: 'bafyx', head: { seq: 5, id: 'bafyy', ts: 1 }, firstBad: { seq: 3, reason: 'bad-signature' }, flagged: false, pages: 1, ms: 2 }),
          flagged: () => []
        } as any
      }))
      await app.listen({ host: '127.0.0.1', port: 0 })
      const addr = app.server.address() as { port: number }
      gatewayUrl = `http://127.0.0.1:${addr.port}`
    })
    afterEach(async () => {
      await app.close()
      await ledger.close()
    })

    it('verify/show/export fall back to the gateway while the log is locked', async () => {
      let r = await cli('verify', '--data-dir', dataDir)
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.contain('records: 6')
      r = await cli('show', '--data-dir', dataDir, '--json', '--limit', '2')
      expect(JSON.parse(r.stdout).map((x: any) => x.seq)).to.deep.equal([4, 5])
      r = await cli('export', '--data-dir', dataDir)
      expect(r.stdout.trim().split('\n').length).to.equal(6)
    })

    it('audit <peer>: prints the verdict, exit 1 when it fails', async () => {
      const peer = randomSigner().peerId
      const r = await cli('audit', peer, '--data-dir', dataDir)
      expect(r.code).to.equal(1)
      expect(r.stdout).to.contain(`peer:    ${peer}`)
      expect(r.stdout).to.contain('verdict: FAILED at seq 3: bad-signature')
    })

    it('audit: a clear error when no node answers', async () => {
      gatewayUrl = 'http://127.0.0.1:1'
      const r = await cli('audit', randomSigner().peerId)
      expect(r.code).to.equal(1)
      expect(r.stderr).to.contain('is the node running?')
    })
  })
})
