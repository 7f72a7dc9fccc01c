/**
 * Staged jobs (what the Slurm backend writes and a compute node runs), without
 * a cluster: the round trip through a directory gives the local result hash,
 * refusals keep their names, and a result that was tampered with or is too
 * large is refused with a named error.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { execFile } from 'node:child_process'
import { access, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { canonicalDecode, canonicalEncode } from '../../src/crypto/index.js'
import { createExecutor, mercatoCommand, type ExecJob, type Executor } from '../../src/executor/index.js'
import { execStaged, readStagedResult, stageJob, STAGED_RESULT_FILE } from '../../src/executor/staged.js'

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname
const LIMITS = { timeoutMs: 5000, memoryMb: 64, outputBytes: 4096 }
const quiet = { stderr: { write: () => true } }

describe('staged jobs (the Slurm backend\'s hand-over format)', function () {
  this.timeout(60_000)
  let dir: string
  let executor: Executor
  /** where the local pool keeps the output files of the jobs it runs for comparison */
  let localOutputs: string

  before(async () => {
    localOutputs = await mkdtemp(join(tmpdir(), 'mercato-staged-local-'))
    executor = createExecutor({ poolSize: 1, outputsRoot: localOutputs })
    await executor.start()
  })
  after(async () => {
    await executor.stop()
    await rm(localOutputs, { recursive: true, force: true })
  })
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'mercato-staged-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('a job run from its stage dir gives the same result and hash as the local pool (wasm with args, env, stdin; js with input)', async () => {
    const jobs: ExecJob[] = [
      { id: 'st-wasm', engine: 'wasm', module: new Uint8Array(await readFile(join(FIXTURES, 'wasm/echo.wasm'))), args: ['x', 'y z'], env: { A: 'b' }, stdin: new Uint8Array([0, 255, 10]), limits: LIMITS },
      { id: 'st-js', engine: 'js', source: await readFile(join(FIXTURES, 'js/random.js'), 'utf8'), input: { n: 3, nested: [1, 'two', null] }, limits: LIMITS, seed: 'other-seed' },
      // output files travel in result.cbor; their CIDs are recomputed on the provider's side
      { id: 'st-files', engine: 'wasm', module: new Uint8Array(await readFile(join(FIXTURES, 'wasm/outputs.wasm'))), limits: LIMITS }
    ]
    for (const job of jobs) {
      const d = join(dir, job.id)
      await stageJob(d, job, 'none')
      expect(await execStaged(d, quiet)).to.equal(0)
      const staged = await readStagedResult(d, job.id, LIMITS.outputBytes)
      const local = await executor.run(job)
      expect(staged?.resultHash, job.id).to.equal(local.resultHash)
      expect(staged?.stdout, job.id).to.deep.equal(local.stdout)
      expect(staged?.output, job.id).to.deep.equal(local.output)
      expect(staged?.outputs?.map(o => [o.path, o.cid, o.size]), job.id).to.deep.equal(local.outputs?.map(o => [o.path, o.cid, o.size]))
    }
    expect(jobs.length).to.equal(3)
  })

  it('a refusal on the compute node is the same named error on the provider', async () => {
    const job: ExecJob = { id: 'st-bad', engine: 'wasm', module: new Uint8Array(await readFile(join(FIXTURES, 'wasm/shared-memory.wasm'))), limits: LIMITS }
    await stageJob(dir, job, 'none')
    expect(await execStaged(dir, quiet)).to.equal(0)
    const local = await executor.run(job).then(() => undefined, (err: any) => err)
    const staged = await readStagedResult(dir, job.id, LIMITS.outputBytes).then(() => undefined, (err: any) => err)
    expect(local?.code).to.equal('invalid-module')
    expect(staged?.name).to.equal(local.name)
    expect(staged?.message).to.equal(local.message)
  })

  it('no result yet is undefined; a tampered or oversized result is a named error', async () => {
    const job: ExecJob = { id: 'st-t', engine: 'js', source: 'function main () { console.log("honest"); return 1 }', limits: LIMITS }
    await stageJob(dir, job, 'none')
    expect(await readStagedResult(dir, job.id, LIMITS.outputBytes)).to.equal(undefined)
    expect(await execStaged(dir, quiet)).to.equal(0)
    const file = join(dir, STAGED_RESULT_FILE)
    const honest = canonicalDecode<Record<string, unknown>>(new Uint8Array(await readFile(file)))
    // someone with write access to the shared dir changes the output but not the hash
    await writeFile(file, canonicalEncode({ ...honest, stdout: new TextEncoder().encode('forged\n') }))
    const forged = await readStagedResult(dir, job.id, LIMITS.outputBytes).then(() => undefined, (err: any) => err)
    expect(forged?.code).to.equal('staged-result-invalid')
    // or makes it huge: refused by size before it is decoded
    // (room for stdout, stderr and the names of the output files, then some: the files themselves are beside it)
    await writeFile(file, new Uint8Array(LIMITS.outputBytes * 2 + 128 * 1024))
    const huge = await readStagedResult(dir, job.id, LIMITS.outputBytes).then(() => undefined, (err: any) => err)
    expect(huge?.code).to.equal('staged-result-invalid')
    expect(huge?.message).to.match(/cap/)
    // or not CBOR at all
    await writeFile(file, 'not cbor')
    const junk = await readStagedResult(dir, job.id, LIMITS.outputBytes).then(() => undefined, (err: any) => err)
    expect(junk?.code).to.equal('staged-result-invalid')
  })

  it('output files stay on disk in <dir>/outputs: named in result.cbor, re-hashed (UnixFS) by the provider; a swapped, cut or linked file is a named error', async () => {
    const source = 'function main () { const b = new Uint8Array(600000); for (let i = 0; i < b.length; i++) b[i] = i % 13; writeFile("a/big.bin", b); writeFile("b.txt", "bee"); return 2 }'
    const job: ExecJob = { id: 'st-out', engine: 'js', source, limits: LIMITS }
    await stageJob(dir, job, 'none')
    expect(await execStaged(dir, quiet)).to.equal(0)
    const staged = await readStagedResult(dir, job.id, LIMITS.outputBytes)
    const local = await executor.run({ ...job, outputDir: join(dir, 'local') })
    expect(staged?.resultHash).to.equal(local.resultHash)
    expect(staged?.outputs?.map(o => [o.path, o.cid, o.size])).to.deep.equal(local.outputs?.map(o => [o.path, o.cid, o.size]))
    expect(staged?.outputs?.[0].file).to.equal(join(dir, 'outputs', 'o1'))
    const big = join(dir, 'outputs', 'o1')
    const honest = await readFile(big)
    const refused = async (): Promise<string | undefined> => await readStagedResult(dir, job.id, LIMITS.outputBytes).then(() => undefined, (err: any) => `${err.code}: ${err.message}`)
    // other bytes of the same size: the CID differs, so the hash does
    const swapped = Buffer.from(honest)
    swapped[1000] ^= 1
    await writeFile(big, swapped)
    expect(await refused()).to.match(/^staged-result-invalid: .*hash/)
    // a cut file
    await writeFile(big, honest.subarray(0, 1000))
    expect(await refused()).to.match(/^staged-result-invalid: .*not a file of 600000 bytes/)
    // a link to a file elsewhere (someone on the cluster pointing the provider at its own files)
    await rm(big)
    await symlink('/etc/hostname', big)
    expect(await refused()).to.match(/^staged-result-invalid: .*not a file/)
  })

  it('the mercato command for compute nodes is this Node and the package\'s bin, and it runs', async () => {
    const [node, bin] = mercatoCommand()
    expect(node).to.equal(process.execPath)
    await access(bin)
    const job: ExecJob = { id: 'st-cli', engine: 'js', source: 'function main (x) { return x * 2 }', input: 21, limits: LIMITS }
    await stageJob(dir, job, 'none')
    await new Promise<void>((resolve, reject) => {
      execFile(node, [bin, 'exec-staged', dir], { env: {}, timeout: 50_000 }, (err) => { if (err != null) reject(err); else resolve() })
    })
    const r = await readStagedResult(dir, job.id, LIMITS.outputBytes)
    expect(r?.output).to.equal(42)
    expect(r?.resultHash).to.equal((await executor.run(job)).resultHash)
  })
})
