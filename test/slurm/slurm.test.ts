/**
 * The Slurm backend against a real one-node Slurm cluster started by the
 * test (./cluster.ts). Needs root, slurm-wlm and munge: CI installs them
 * (.ci/run); elsewhere the suite is skipped with the reason, and under CI=true
 * a cluster that cannot start fails it with a one-line reason.
 * SLURM_TEST_LOG=<file> writes the nodes' debug logs there.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { readFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { JOBS_TOPIC } from '../../src/auction/index.js'
import { createExecutor, DEFAULT_INIT, LocalBackend, SlurmBackend, type BackendStateEvent, type ExecJob } from '../../src/executor/index.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { clusterUnavailable, startSlurmCluster, type SlurmCluster } from './cluster.js'

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname
const LIMITS = { timeoutMs: 20_000, memoryMb: 64, outputBytes: 65536 }
/** Long enough for both providers to answer on a loaded machine (the window closes early once both did). */
const BID_WINDOW_MS = 10_000
/** CPU work whose length is set by its input, the same answer everywhere. */
const SPIN = 'function main (i) { let s = 0; for (let k = 0; k < i.n; k++) s = (s + k) % 1000003; return s }'

describe('Slurm backend: a provider in front of a cluster (@slow)', function () {
  // generous: on a loaded 2-core machine one Slurm job (Node and the sandbox starting on the node) took 25 s
  this.timeout(300_000)
  let cluster: SlurmCluster | undefined
  let stageDir: string | undefined
  let requester: MercatoNode
  let onSlurm: MercatoNode
  let local: MercatoNode
  let backend: SlurmBackend
  const states: BackendStateEvent[] = []

  before(async function () {
    if (process.env.SLURM_TEST_LOG != null) (await import('../../src/logger.js')).configureLogger({ level: 'debug', destination: (await import('node:fs')).createWriteStream(process.env.SLURM_TEST_LOG) })
    const why = clusterUnavailable()
    if (why != null) {
      if (process.env.CI === 'true') throw new Error(why)
      this.skip()
    }
    try {
      cluster = await startSlurmCluster()
    } catch (err: any) {
      if (process.env.CI === 'true') throw new Error(String(err?.message ?? err).split('\n')[0])
      this.skip()
    }
    stageDir = await mkdtemp(join(tmpdir(), 'mercato-stage-'))
    // the machine may be loaded (in-process nodes share one event loop): silence alone must not fail jobs over here
    const auction = { suspectAfterMs: 5000, lostAfterMs: 20_000 }
    requester = await startTestNode({ provide: false, config: { auction } })
    const boot = [requester.network.addresses()[0]]
    ;[onSlurm, local] = await Promise.all([
      startTestNode({
        price: 1,
        slots: 0,
        bootstrap: boot,
        config: { executor: { backend: 'slurm', slurm: { stageDir, conf: cluster.conf, pollMs: 200, maxPendingMs: 240_000 } } }
      }),
      startTestNode({ price: 5, slots: 2, bootstrap: boot, config: { executor: { poolSize: 2 } } })
    ])
    backend = onSlurm.executor as SlurmBackend
    expect(backend).to.be.instanceOf(SlurmBackend)
    backend.events.on('state', (e) => { states.push(e) })
    await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).length >= 2, 90_000)
  })

  after(async () => {
    await stopNodes()
    await cluster?.stop()
    if (stageDir != null) await rm(stageDir, { recursive: true, force: true })
  })

  // each test starts with the Slurm provider idle (nothing left in flight by the one before) and a
  // slot free as the cluster reports it: a job cancelled by the test before may hold its CPU in
  // Slurm for a moment after the backend let it go, and an offer then is declined for want of a slot
  beforeEach(async () => { if (backend != null) await waitFor(() => backend.capacity().inFlight === 0 && onSlurm.market.capacity().busy === 0 && backend.capacity().slots > 0, 120_000, 100) })

  /** The Slurm job ids that ran a market job. */
  function slurmIds (jobId: string): string[] {
    return [...new Set(states.filter(s => s.jobId === jobId && s.ref != null).map(s => s.ref as string))]
  }

  /**
   * Wait until the Slurm provider has put the market job into Slurm. If the job goes to another
   * provider first, fail at once and say why (its bids, attempts and the Slurm provider's book entry)
   * instead of waiting out the whole time.
   */
  async function untilOnSlurm (jobId: string): Promise<void> {
    let elsewhere: any
    await waitFor(async () => {
      if (states.some(s => s.jobId === jobId && s.ref != null)) return true
      const view = await requester.market.get(jobId)
      if (view.attempts.some(a => a.provider !== onSlurm.peerId) || ['completed', 'failed', 'no-bids', 'cancelled'].includes(view.status)) elsewhere = view
      return elsewhere != null
    }, 90_000, 100)
    if (elsewhere != null) {
      const entry = requester.market.providers().find(p => p.peerId === onSlurm.peerId)
      expect.fail(`the job did not go to the Slurm provider: ${JSON.stringify({ status: elsewhere.status, bids: elsewhere.bids, declines: elsewhere.declines, attempts: elsewhere.attempts, slurmProvider: entry, slurmCapacity: onSlurm.market.capacity(), backendStates: states.filter(s => s.jobId === jobId) })}`)
    }
  }

  async function slurmState (id: string): Promise<{ state: string, name: string }> {
    const [state, name] = (await (cluster as SlurmCluster).cmd('squeue', ['-h', '-t', 'all', '-j', id, '-o', '%T|%j'])).trim().split('|')
    return { state, name }
  }

  it('the provider advertises the cluster\'s free CPUs as its slots', () => {
    const c = cluster as SlurmCluster
    expect(backend.clusterCpus()).to.equal(c.cpus)
    expect(onSlurm.market.capacity().slots).to.equal(c.cpus)
    expect(onSlurm.info().provider.slots).to.equal(c.cpus)
  })

  it('same results and result hash as the local backend (wasm, js, a trap, a refusal)', async () => {
    const localBackend = new LocalBackend(createExecutor({ poolSize: 1 }))
    await localBackend.start()
    try {
      const module = new Uint8Array(await readFile(join(FIXTURES, 'wasm/echo.wasm')))
      const jobs: ExecJob[] = [
        { id: 'same-js', engine: 'js', source: await readFile(join(FIXTURES, 'js/random.js'), 'utf8'), input: { n: 5 }, limits: LIMITS },
        { id: 'same-wasm', engine: 'wasm', module, args: ['a', 'b c'], env: { X: '1' }, stdin: new TextEncoder().encode('in\n'), limits: LIMITS },
        { id: 'same-entropy', engine: 'wasm', module: new Uint8Array(await readFile(join(FIXTURES, 'wasm/entropy.wasm'))), limits: LIMITS, seed: 'seed-1' },
        { id: 'same-trap', engine: 'wasm', module: new Uint8Array(await readFile(join(FIXTURES, 'wasm/trap.wasm'))), limits: LIMITS }
      ]
      // all at once: Slurm queues what its CPUs cannot start yet
      const slurmRuns = await Promise.all(jobs.map(async j => await backend.run(j)))
      for (const [i, j] of jobs.entries()) {
        const l = await localBackend.run(j)
        const s = slurmRuns[i]
        expect(s.resultHash, j.id).to.equal(l.resultHash)
        expect(Buffer.from(s.stdout).toString(), j.id).to.equal(Buffer.from(l.stdout).toString())
        expect(s.exitCode, j.id).to.equal(l.exitCode)
        expect(s.error?.name, j.id).to.equal(l.error?.name)
      }
      expect(slurmRuns[3].error?.name).to.equal('trap')
      // a module that cannot be sandboxed is refused with the same named error on both
      const bad: ExecJob = { id: 'same-bad', engine: 'wasm', module: new Uint8Array(await readFile(join(FIXTURES, 'wasm/foreign-import.wasm'))), limits: LIMITS }
      const refusals = await Promise.all([backend.run(bad), localBackend.run(bad)].map(async p => await p.then(() => 'resolved', (err: any) => `${err.code}: ${err.message}`)))
      expect(refusals[0]).to.match(/^invalid-module/)
      expect(refusals[0]).to.equal(refusals[1])
    } finally {
      await localBackend.stop()
    }
  })

  it('output files: the same files, UnixFS CIDs and result hash as the local backend, moved out of the stage dir into the job\'s folder', async () => {
    const localBackend = new LocalBackend(createExecutor({ poolSize: 1 }))
    await localBackend.start()
    const folders = await mkdtemp(join(tmpdir(), 'mercato-slurm-out-'))
    try {
      const source = 'function main () { const b = new Uint8Array(1048576 + 17); for (let i = 0; i < b.length; i++) b[i] = i % 251; writeFile("data/big.bin", b); writeFile("note.txt", "hi"); return 2 }'
      const jobs: ExecJob[] = [
        { id: 'out-wasm', engine: 'wasm', module: new Uint8Array(await readFile(join(FIXTURES, 'wasm/outputs.wasm'))), limits: LIMITS },
        { id: 'out-js', engine: 'js', source, limits: { ...LIMITS, memoryMb: 32 } }
      ]
      for (const j of jobs) {
        const s = await backend.run({ ...j, outputDir: join(folders, `slurm-${j.id}`) })
        const l = await localBackend.run({ ...j, outputDir: join(folders, `local-${j.id}`) })
        expect(s.error, j.id).to.equal(undefined)
        expect(s.resultHash, j.id).to.equal(l.resultHash)
        expect(s.outputs?.map(o => [o.path, o.cid, o.size]), j.id).to.deep.equal(l.outputs?.map(o => [o.path, o.cid, o.size]))
        for (const o of s.outputs ?? []) {
          expect(o.file.startsWith(join(folders, `slurm-${j.id}`) + '/'), o.file).to.equal(true)
          expect(Buffer.compare(await readFile(o.file), await readFile((l.outputs ?? []).find(x => x.path === o.path)?.file as string))).to.equal(0)
        }
      }
    } finally {
      await localBackend.stop()
      await rm(folders, { recursive: true, force: true })
    }
  })

  it('a job auctioned on the mesh is won by the Slurm provider and runs as a Slurm job', async () => {
    const source = await readFile(join(FIXTURES, 'js/random.js'), 'utf8')
    const submitted = await requester.market.submit({ engine: 'js', source, input: { n: 4 }, limits: LIMITS, maxPrice: 20, bidWindowMs: BID_WINDOW_MS })
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(180_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect(job.provider).to.equal(onSlurm.peerId)
    const events = (await requester.market.jobEvents(job.id)).map(e => e.type)
    expect(events).to.include('running')
    // it ran as a Slurm job: the controller remembers it, by our name
    const ids = slurmIds(job.id)
    expect(ids).to.have.length(1)
    let seen = await slurmState(ids[0])
    // the result comes before the sandbox process has exited
    await waitFor(async () => { seen = await slurmState(ids[0]); return !['RUNNING', 'COMPLETING'].includes(seen.state) }, 30_000, 100)
    expect(seen.state).to.equal('COMPLETED')
    expect(seen.name).to.match(/^mercato-/)
    expect(states.filter(s => s.jobId === job.id).map(s => s.state)).to.include.members(['queued', 'running', 'done'])
    // the same job run by the local sandbox gives the same result hash
    const result = await requester.market.result(job.id)
    const localBackend = new LocalBackend(createExecutor({ poolSize: 1 }))
    try {
      const again = await localBackend.run({ id: job.id, engine: 'js', source, input: { n: 4 }, limits: { ...LIMITS }, seed: job.id })
      expect(again.resultHash).to.equal(result.resultHash)
    } finally {
      await localBackend.stop()
    }
  })

  it('a withdrawal cancels the Slurm job (scancel)', async () => {
    const submitted = await requester.market.submit({ engine: 'js', source: SPIN, input: { n: 2_000_000_000 }, limits: LIMITS, maxPrice: 20, bidWindowMs: BID_WINDOW_MS })
    await untilOnSlurm(submitted.id)
    const [id] = slurmIds(submitted.id)
    await requester.market.cancel(submitted.id)
    await waitFor(() => states.some(s => s.jobId === submitted.id && s.state === 'cancelled'), 15_000)
    await waitFor(async () => (await slurmState(id)).state === 'CANCELLED', 15_000, 100)
    await waitFor(() => onSlurm.market.capacity().busy === 0, 10_000)
  })

  it('a Slurm job killed behind the provider\'s back is a named failure, and the requester fails over', async () => {
    const submitted = await requester.market.submit({ engine: 'js', source: SPIN, input: { n: 3_000_000 }, limits: LIMITS, maxPrice: 20, bidWindowMs: BID_WINDOW_MS })
    await untilOnSlurm(submitted.id)
    const [id] = slurmIds(submitted.id)
    await (cluster as SlurmCluster).cmd('scancel', [id])
    const job = await requester.market.waitFor(submitted.id, { signal: AbortSignal.timeout(180_000) })
    expect(job.status, JSON.stringify(job)).to.equal('completed')
    expect(job.provider).to.equal(local.peerId)
    const first = job.attempts.find(a => a.provider === onSlurm.peerId)
    expect(first?.state).to.equal('lost')
    expect((await requester.market.jobEvents(job.id)).map(e => e.type)).to.include('handover')
    // the backend named the failure with Slurm's own word for it
    const failed = states.find(s => s.jobId === submitted.id && s.state === 'failed')
    expect(failed?.detail).to.equal('CANCELLED')
    expect((await slurmState(id)).state).to.equal('CANCELLED')
  })

  it('50 jobs in flight: the advertised capacity never exceeds the cluster, and every job completes', async () => {
    const c = cluster as SlurmCluster
    const samples: Array<{ slots: number, busy: number, ours: number }> = []
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const ours = (await c.cmd('squeue', ['-h', '-t', 'PENDING,RUNNING,CONFIGURING', '-o', '%j']).catch(() => '')).split('\n').filter(l => l.startsWith('mercato-')).length
        samples.push({ slots: onSlurm.market.capacity().slots, busy: onSlurm.market.capacity().busy, ours })
        await new Promise(resolve => setTimeout(resolve, 50))
      }
    })()
    // the local provider queues most of them: give each attempt the longest deadline a provider accepts
    const limits = { ...LIMITS, timeoutMs: 60_000 }
    const ids = await Promise.all(Array.from({ length: 50 }, async (_, k) => (await requester.market.submit({ engine: 'js', source: SPIN, input: { n: 1000 + k }, limits, maxPrice: 20, bidWindowMs: BID_WINDOW_MS })).id))
    const jobs = await Promise.all(ids.map(async id => await requester.market.waitFor(id, { signal: AbortSignal.timeout(90_000) })))
    sampling = false
    await sampler
    expect(samples.length).to.be.greaterThan(5)
    for (const s of samples) {
      expect(s.slots, JSON.stringify(s)).to.be.at.most(c.cpus)
      expect(s.busy, JSON.stringify(s)).to.be.at.most(c.cpus)
      expect(s.ours, JSON.stringify(s)).to.be.at.most(c.cpus)
    }
    for (const j of jobs) expect(j.status, JSON.stringify(j)).to.equal('completed')
    const bySlurm = jobs.filter(j => j.provider === onSlurm.peerId).length
    expect(bySlurm, 'the Slurm provider took some').to.be.greaterThan(0)
    process.stderr.write(`      50 jobs: ${bySlurm} ran on Slurm, ${50 - bySlurm} elsewhere; max busy on Slurm ${Math.max(...samples.map(s => s.busy))} of ${c.cpus} CPUs\n`)
  })
})
