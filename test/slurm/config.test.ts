/**
 * Choosing the backend (`executor.backend`, `--executor`), and a Slurm
 * backend that cannot reach a cluster: a node that does not start, with a
 * named error, instead of a provider that bids for work it cannot run.
 * Needs no cluster.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../../src/config.js'
import { MercatoNode } from '../../src/node.js'
import { asBackend, createExecutor, LocalBackend } from '../../src/executor/index.js'
import { runCli, stopAll, tempDir } from '../helpers/cli.js'

describe('executor backend config', function () {
  this.timeout(60_000)
  after(stopAll)

  it('defaults to local; MERCATO_EXECUTOR_BACKEND and the slurm keys come from the environment; other values are refused naming the key', () => {
    expect(loadConfig({ env: {} }).executor.backend).to.equal('local')
    const fromEnv = loadConfig({ env: { MERCATO_EXECUTOR_BACKEND: 'slurm', MERCATO_EXECUTOR_SLURM_STAGE_DIR: '/shared/stage', MERCATO_EXECUTOR_SLURM_SBATCH_ARGS: '--qos=low,--nice=10' } })
    expect(fromEnv.executor.backend).to.equal('slurm')
    expect(fromEnv.executor.slurm.stageDir).to.equal('/shared/stage')
    expect(fromEnv.executor.slurm.sbatchArgs).to.deep.equal(['--qos=low', '--nice=10'])
    expect(() => loadConfig({ env: {}, overrides: { executor: { backend: 'kubernetes' } } })).to.throw(/executor\.backend/)
    expect(() => loadConfig({ env: {}, overrides: { executor: { slurm: { pollMs: 1 } } } })).to.throw(/executor\.slurm\.pollMs/)
  })

  it('the local pool is the local backend: slots from the pool, running reported before it resolves', async () => {
    const backend = asBackend(createExecutor({ poolSize: 2 }))
    expect(backend).to.be.instanceOf(LocalBackend)
    expect(asBackend(backend)).to.equal(backend)
    await backend.start()
    try {
      expect(backend.capacity()).to.include({ slots: 2, inFlight: 0, source: 'pool' })
      const seen: string[] = []
      const r = await backend.run({ id: 'b1', engine: 'js', source: 'function main () { return 7 }', limits: { timeoutMs: 1000, memoryMb: 16, outputBytes: 1024 } }, { onState: (s) => { seen.push(s) } })
      expect(r.output).to.equal(7)
      expect(seen).to.deep.equal(['running'])
    } finally {
      await backend.stop()
    }
  })

  it('mercato start --executor slurm without a reachable cluster exits with one line naming slurm-unavailable; --executor takes only local or slurm', async () => {
    const dataDir = await tempDir()
    const args = ['start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--gateway', '127.0.0.1:0', '--no-mdns', '--log-level', 'silent']
    const r = await runCli([...args, '--executor', 'slurm'], { env: { MERCATO_EXECUTOR_SLURM_CONF: join(dataDir, 'no-such-slurm.conf') }, timeoutMs: 50_000 })
    expect(r.code, r.stderr).to.equal(1)
    expect(r.stderr).to.match(/^mercato: .*\(slurm-unavailable\)\n$/)
    const bad = await runCli([...args, '--executor', 'kubernetes'], { timeoutMs: 50_000 })
    expect(bad.code).to.not.equal(0)
    expect(bad.stderr).to.match(/--executor/)
  })

  it('a Slurm provider whose cluster cannot be asked does not start: slurm-unavailable', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'mercato-slurm-cfg-'))
    try {
      const config = loadConfig({
        env: {},
        overrides: {
          dataDir,
          logLevel: 'silent',
          p2p: { listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false },
          gateway: { enabled: false },
          executor: { backend: 'slurm', slurm: { conf: join(dataDir, 'no-such-slurm.conf') } }
        }
      })
      const node = new MercatoNode(config)
      const err = await node.start().then(() => undefined, (e: any) => e)
      await node.stop()
      expect(err?.code, String(err)).to.equal('slurm-unavailable')
      expect(err?.message).to.match(/sinfo|squeue/)
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
