import { expect } from 'chai'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { unixfsCidOfBytes } from '../../src/crypto/unixfs.js'
import { computeResultHash, createExecutor, type Executor } from '../../src/executor/index.js'
import { isolationCommand, type IsolatedExecutor } from '../../src/executor/isolation.js'
import { LIMITS, text, wasm } from './helpers.js'

/** Whether this host can run the wrapper at all (CI containers often cannot create user namespaces). */
function available (kind: 'unshare' | 'bwrap'): boolean {
  const [cmd, ...args] = isolationCommand(kind)
  const r = spawnSync(cmd, [...args, 'true'], { stdio: 'ignore', timeout: 5000 })
  return r.status === 0
}

for (const kind of ['unshare', 'bwrap'] as const) {
  describe(`executor: outer isolation (${kind})`, function () {
    let executor: Executor
    let marker: string
    /** the jobs' output folders: the one place the isolated pool writes */
    let outputsRoot: string

    before(async function () {
      if (!available(kind)) { this.skip(); return }
      marker = mkdtempSync(join(tmpdir(), 'mercato-iso-'))
      outputsRoot = mkdtempSync(join(tmpdir(), 'mercato-iso-out-'))
      executor = createExecutor({ poolSize: 1, isolation: kind, outputsRoot })
      await executor.start()
    })

    after(async () => {
      try {
        await executor?.stop()
      } finally {
        if (marker != null) rmSync(marker, { recursive: true, force: true })
        if (outputsRoot != null) rmSync(outputsRoot, { recursive: true, force: true })
      }
    })

    it('writes output files to the job\'s folder under the outputs root, named by their UnixFS CIDs', async () => {
      const outputDir = join(outputsRoot, 'job-1')
      const r = await executor.run({ id: 'iso-out', engine: 'wasm', module: wasm('outputs'), limits: LIMITS, outputDir })
      expect(r.error).to.equal(undefined)
      expect(r.outputs?.map(o => o.path)).to.deep.equal(['data/bytes.bin', 'report.txt'])
      for (const o of r.outputs ?? []) {
        expect(o.file.startsWith(outputDir + '/')).to.equal(true)
        expect(o.cid).to.equal(await unixfsCidOfBytes(new Uint8Array(readFileSync(o.file))))
      }
      expect(readFileSync((r.outputs ?? [])[1].file, 'utf8')).to.equal('hello from wasm\nsecond line\n')
      // a job that names no folder gets one under the root, visible here too
      const own = await executor.run({ id: 'iso-out', engine: 'wasm', module: wasm('outputs'), limits: LIMITS })
      expect(own.resultHash).to.equal(r.resultHash)
      expect(dirname((own.outputs ?? [])[0].file).startsWith(outputsRoot + '/')).to.equal(true)
      if (kind === 'bwrap') {
        // outside the root the sandbox process cannot write: the job is not run (retryable), not failed
        const err = await executor.run({ id: 'iso-out', engine: 'wasm', module: wasm('outputs'), limits: LIMITS, outputDir: join(marker, 'elsewhere') }).catch(e => e)
        expect(err.code).to.equal('output-storage')
      }
    })

    it('without an outputs root it writes in a folder of its own, which stop() removes; a job after stop() is refused', async () => {
      const alone = createExecutor({ poolSize: 1, isolation: kind })
      try {
        const r = await alone.run({ id: 'iso-own', engine: 'wasm', module: wasm('outputs'), limits: LIMITS })
        expect(r.error).to.equal(undefined)
        const file = (r.outputs ?? [])[0].file
        expect(readFileSync(file).length).to.equal(4)
        // <os tmp>/mercato-isolated-<pid>-<random>/<the job's folder>/<file>
        const root = dirname(dirname(file))
        expect(dirname(root)).to.equal(tmpdir())
        expect(root).to.match(/\/mercato-isolated-\d+-[0-9a-f]+$/)
        await alone.stop()
        expect(existsSync(root), root).to.equal(false)
        const err = await alone.run({ id: 'iso-late', engine: 'wasm', module: wasm('hello'), limits: LIMITS }).catch(e => e)
        expect(err.code).to.equal('executor-stopped')
      } finally { await alone.stop() }
    })

    it('runs the pool in a process without network', async () => {
      const probe = await (executor as IsolatedExecutor).probe([marker])
      expect(probe.pid).to.not.equal(process.pid)
      expect(probe.networkInterfaces.filter(n => n !== 'lo')).to.deep.equal([])
      if (kind === 'bwrap') expect(probe.visible[marker]).to.equal(false) // private /tmp
    })

    it('gives the same result (hash) as an unisolated run', async () => {
      const r = await executor.run({ id: 'iso', engine: 'wasm', module: wasm('hello'), args: ['x'], limits: LIMITS })
      expect(text(r.stdout)).to.equal('hello, world\narg 1: x\n')
      expect(r.stdout).to.be.instanceOf(Uint8Array)
      expect(r.resultHash).to.equal(computeResultHash('iso', { exitCode: 0, stdout: new TextEncoder().encode('hello, world\narg 1: x\n'), stderr: new Uint8Array(0) }))
    })

    it('keeps limits and named refusals', async () => {
      const r = await executor.run({ id: 'iso', engine: 'wasm', module: wasm('loop'), limits: { ...LIMITS, timeoutMs: 150 } })
      expect(r.error?.name).to.equal('timeout')
      const err = await executor.run({ id: 'iso', engine: 'wasm', module: wasm('shared-memory'), limits: LIMITS }).catch(e => e)
      expect(err.name).to.equal('InvalidModuleError')
      expect(err.code).to.equal('invalid-module')
      const aborted = await executor.run({ id: 'iso', engine: 'wasm', module: wasm('loop'), limits: LIMITS }, { signal: AbortSignal.timeout(100) }).catch(e => e)
      expect(aborted.code).to.equal('aborted')
    })
  })
}
