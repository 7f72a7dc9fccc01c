import '../../src/polyfill.js'
import { expect } from 'chai'
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { loadConfig, fromEnv, loadDefaults } from '../../src/config.js'
import { tempDir, stopAll, runCli } from '../helpers/cli.js'

describe('config', function () {
  this.timeout(60_000)
  after(stopAll)

  it('defaults validate; file, env and flags override in that order', async () => {
    const dir = await tempDir()
    const file = join(dir, 'c.json')
    await writeFile(file, JSON.stringify({ gateway: { port: 9000 }, provider: { price: 3 } }))
    const base = loadConfig({ env: {} })
    expect(base.gateway.port).to.equal(8420)
    const c = loadConfig({ file, env: { MERCATO_GATEWAY_PORT: '9100', MERCATO_P2P_MDNS: 'false' }, overrides: { provider: { price: 7 } } })
    expect(c.gateway.port).to.equal(9100)
    expect(c.p2p.mdns).to.equal(false)
    expect(c.provider.price).to.equal(7)
    expect(c.gateway.host).to.equal('127.0.0.1')
  })

  it('executor.outputFiles: 64 files, 256 MiB a file, 1 GiB a job by default; lowered by MERCATO_EXECUTOR_OUTPUT_FILES_*; never raised past the market-wide caps', () => {
    expect(loadConfig({ env: {} }).executor.outputFiles).to.deep.equal({ files: 64, fileBytes: 256 * 1024 * 1024, totalBytes: 1024 * 1024 * 1024 })
    const lowered = loadConfig({ env: { MERCATO_EXECUTOR_OUTPUT_FILES_FILE_BYTES: '1048576', MERCATO_EXECUTOR_OUTPUT_FILES_TOTAL_BYTES: '4194304' } })
    expect(lowered.executor.outputFiles).to.deep.equal({ files: 64, fileBytes: 1048576, totalBytes: 4194304 })
    expect(() => loadConfig({ env: { MERCATO_EXECUTOR_OUTPUT_FILES_FILE_BYTES: String(512 * 1024 * 1024) } })).to.throw(/executor\.outputFiles\.fileBytes/)
  })

  it('p2p.maxPeers: 24 by default; at least 16, so the trim has room on either side of its target (MERCATO_P2P_MAX_PEERS)', () => {
    expect(loadConfig({ env: {} }).p2p.maxPeers).to.equal(24)
    expect(loadConfig({ env: { MERCATO_P2P_MAX_PEERS: '16' } }).p2p.maxPeers).to.equal(16)
    for (const bad of ['15', '8', '0', '16.5']) expect(() => loadConfig({ env: { MERCATO_P2P_MAX_PEERS: bad } }), bad).to.throw(/p2p\.maxPeers/)
  })

  it('p2p.allow: empty by default (no address skips connection limits); IP prefixes only', () => {
    expect(loadConfig({ env: {} }).p2p.allow).to.deep.equal([])
    expect(loadConfig({ env: { MERCATO_P2P_ALLOW: '/ip4/127.0.0.1,/ip6/::1,/ip4/10.0.0.0/ipcidr/8' } }).p2p.allow).to.have.length(3)
    for (const bad of ['/dns4/localhost', '127.0.0.1', '/ip4/127.0.0.1/tcp/4010']) {
      expect(() => loadConfig({ env: { MERCATO_P2P_ALLOW: bad } }), bad).to.throw(/p2p\.allow/)
    }
  })

  it('provider.labels: none by default; from a file, MERCATO_PROVIDER_LABELS (k=v,k=v) or flags; a bad one names its key', async () => {
    expect(loadConfig({ env: {} }).provider.labels).to.deep.equal({})
    const dir = await tempDir()
    const file = join(dir, 'labels.json')
    await writeFile(file, JSON.stringify({ provider: { labels: { region: 'eu', 'example.com/gpu': 'a100' } } }))
    expect(loadConfig({ file, env: {}, overrides: { provider: { labels: { region: 'uk' } } } }).provider.labels).to.deep.equal({ region: 'uk', 'example.com/gpu': 'a100' })
    expect(loadConfig({ env: { MERCATO_PROVIDER_LABELS: 'region=eu, licence=matlab' } }).provider.labels).to.deep.equal({ region: 'eu', licence: 'matlab' })
    expect(() => loadConfig({ env: { MERCATO_PROVIDER_LABELS: 'region' } })).to.throw(/MERCATO_PROVIDER_LABELS: expected key=value/)
    expect(() => loadConfig({ env: {}, overrides: { provider: { labels: { 'bad key': 'x' } } } })).to.throw(/config key "provider\.labels\.bad key": expected label key "bad key"/)
    expect(() => loadConfig({ env: {}, overrides: { provider: { labels: { region: 'e u' } } } })).to.throw(/config key "provider\.labels\.region": expected label value "e u"/)
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']))
    expect(() => loadConfig({ env: {}, overrides: { provider: { labels: many } } })).to.throw(/at most 16 labels/)
  })

  it('maps every default key to a MERCATO_* variable', () => {
    const env = fromEnv({ MERCATO_DATA_DIR: '/x', MERCATO_AUCTION_BID_WINDOW_MS: '20', MERCATO_P2P_BOOTSTRAP: 'a,b' }, loadDefaults())
    expect(env).to.deep.equal({ dataDir: '/x', auction: { bidWindowMs: 20 }, p2p: { bootstrap: ['a', 'b'] } })
  })

  const cases: Array<[string, string[], RegExp, NodeJS.ProcessEnv?]> = [
    ['unknown key', ['--config', 'UNKNOWN'], /unknown config key "gateway\.colour"/],
    ['wrong type', ['--config', 'WRONGTYPE'], /config key "provider\.price": expected number, got "abc"/],
    ['bad multiaddr', ['--listen', 'not-a-multiaddr'], /config key "p2p\.listen\.0": expected a multiaddr/],
    ['bad bootstrap', ['--bootstrap', '/ip4/127.0.0.1/tcp/1'], /config key "p2p\.bootstrap\.0": expected a multiaddr ending in \/p2p\//],
    ['bad env', [], /MERCATO_GATEWAY_PORT: expected a number/, { MERCATO_GATEWAY_PORT: 'eighty' }],
    ['unwritable data dir', ['--data-dir', '/etc/hostname/sub'], /config key "dataDir": \/etc\/hostname\/sub is not a writable directory/],
    ['port in use', ['--gateway', 'PORT'], /config key "gateway\.port": port \d+ on 127\.0\.0\.1 is in use/],
    ['bad --gateway', ['--gateway', 'nonsense'], /--gateway: expected HOST:PORT/]
  ]

  for (const [name, args, expected, env] of cases) {
    it(`${name}: one line naming the key, exit code 2`, async () => {
      const dir = await tempDir()
      const blocker = createServer()
      await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', resolve))
      const port = (blocker.address() as any).port
      const unknown = join(dir, 'unknown.json')
      const wrongType = join(dir, 'wrong.json')
      await writeFile(unknown, JSON.stringify({ gateway: { colour: 'red' } }))
      await writeFile(wrongType, JSON.stringify({ provider: { price: 'abc' } }))
      const real = args.map(a => a === 'UNKNOWN' ? unknown : a === 'WRONGTYPE' ? wrongType : a === 'PORT' ? `127.0.0.1:${port}` : a)
      const withDefaults = real.includes('--data-dir') ? real : ['--data-dir', join(dir, 'data'), ...real]
      const extra = real.includes('--listen') ? [] : ['--listen', '/ip4/127.0.0.1/tcp/0']
      const gw = real.includes('--gateway') ? [] : ['--gateway', '127.0.0.1:0']
      try {
        const res = await runCli(['start', ...withDefaults, ...extra, ...gw, '--no-mdns', '--log-level', 'silent'], { env })
        expect(res.code, res.stderr).to.equal(2)
        const lines = res.stderr.trim().split('\n')
        expect(lines, res.stderr).to.have.length(1)
        expect(lines[0]).to.match(expected)
        expect(res.stderr).to.not.match(/\n\s+at /)
      } finally {
        blocker.close()
      }
    })
  }
})
