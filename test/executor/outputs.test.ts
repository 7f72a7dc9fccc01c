import { expect } from 'chai'
import { cidOfBytes } from '../../src/crypto/index.js'
import { computeResultHash, createExecutor, normaliseOutputPath, outputListProblem, type Executor, type ExecJob, type ExecResult } from '../../src/executor/index.js'
import { LIMITS, text, wasm } from './helpers.js'

/** Small caps, so the hostile jobs hit them fast. */
const CAPS = { files: 8, fileBytes: 256 * 1024, totalBytes: 512 * 1024 }

describe('executor: output files', function () {
  this.timeout(20_000)
  let executor: Executor

  before(async () => {
    executor = createExecutor({ poolSize: 1, warmWorkers: 1, queueSize: 8, outputFiles: CAPS })
    await executor.start()
  })
  after(async () => { await executor.stop() })

  const run = async (job: Partial<ExecJob> & { engine: ExecJob['engine'] }, id = 'job-outputs'): Promise<ExecResult> =>
    await executor.run({ id, limits: LIMITS, ...job })

  const files = (r: ExecResult): Record<string, string> =>
    Object.fromEntries((r.outputs ?? []).map(o => [o.path, Buffer.from(o.bytes).toString('hex')]))

  describe('wasm: /outputs', () => {
    it('captures the files a guest writes under the preopened /outputs, sorted, with CIDs the hash covers', async () => {
      const r = await run({ engine: 'wasm', module: wasm('outputs') })
      expect(r.error).to.equal(undefined)
      expect(r.exitCode, text(r.stdout)).to.equal(0)
      expect(text(r.stdout)).to.equal('ok\n')
      expect(r.outputs?.map(o => o.path)).to.deep.equal(['data/bytes.bin', 'report.txt'])
      expect(files(r)).to.deep.equal({ 'data/bytes.bin': '000102ff', 'report.txt': Buffer.from('hello from wasm\nsecond line\n').toString('hex') })
      for (const o of r.outputs ?? []) {
        expect(o.cid).to.equal(cidOfBytes(o.bytes))
        expect(o.size).to.equal(o.bytes.length)
      }
      expect(r.resultHash).to.equal(computeResultHash('job-outputs', r))
      // one altered byte in one output changes the hash
      const altered = (r.outputs ?? []).map(o => ({ ...o }))
      altered[0] = { ...altered[0], cid: cidOfBytes(new Uint8Array([0, 1, 2, 0xfe])) }
      expect(computeResultHash('job-outputs', { ...r, outputs: altered })).to.not.equal(r.resultHash)
      // and a job without files hashes as before (no outputs key)
      expect(computeResultHash('job-outputs', { ...r, outputs: [] })).to.equal(computeResultHash('job-outputs', { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }))
    })

    it('is deterministic: the same job gives the same outputs and hash twice', async () => {
      const a = await run({ engine: 'wasm', module: wasm('outputs') }, 'same-id')
      const b = await run({ engine: 'wasm', module: wasm('outputs') }, 'same-id')
      expect(a.resultHash).to.equal(b.resultHash)
    })

    it('stops a guest flooding one file at the per-file cap with output-limit, keeping no files', async () => {
      const started = Date.now()
      const r = await run({ engine: 'wasm', module: wasm('output-flood') })
      expect(r.error?.name).to.equal('output-limit')
      expect(r.error?.message).to.match(/flood exceeded 262144 bytes/)
      expect(r.outputs).to.equal(undefined)
      expect(r.resultHash).to.equal(computeResultHash('job-outputs', r))
      expect(Date.now() - started).to.be.below(5000)
    })

    it('stops a guest creating too many files with output-limit', async () => {
      const r = await run({ engine: 'wasm', module: wasm('many-files') })
      expect(r.error?.name).to.equal('output-limit')
      expect(r.error?.message).to.match(/more than 8 output files/)
      expect(r.outputs).to.equal(undefined)
    })

    it('a module that writes no files has no outputs (and stdio still works)', async () => {
      const r = await run({ engine: 'wasm', module: wasm('hello') })
      expect(r.exitCode).to.equal(0)
      expect(r.outputs).to.equal(undefined)
    })
  })

  describe('js: writeFile', () => {
    it('captures strings and bytes, replaces a file written twice, sorts by path', async () => {
      const source = `function main (n) {
        writeFile('z.txt', 'first')
        writeFile('z.txt', 'héllo ' + n)
        writeFile('./bin/data.bin', new Uint8Array([1, 2, 3, 255]))
        writeFile('bin/sub.bin', new Uint16Array([1, 2]).buffer)
        writeFile('view.bin', new Uint8Array([9, 8, 7, 6]).subarray(1, 3))
        writeFile('nul.txt', 'a\u0000b')
        return 'done'
      }`
      const r = await run({ engine: 'js', source, input: 7 })
      expect(r.error).to.equal(undefined)
      expect(r.output).to.equal('done')
      expect(r.outputs?.map(o => o.path)).to.deep.equal(['bin/data.bin', 'bin/sub.bin', 'nul.txt', 'view.bin', 'z.txt'])
      expect(files(r)).to.deep.equal({
        'bin/data.bin': '010203ff',
        'bin/sub.bin': '01000200',
        'nul.txt': '610062',
        'view.bin': '0807',
        'z.txt': Buffer.from('héllo 7').toString('hex')
      })
      expect(r.resultHash).to.equal(computeResultHash('job-outputs', r))
    })

    it('refuses paths that escape, are absolute, empty, hold NUL, or clash with a directory (a TypeError in the guest)', async () => {
      const source = `function main () {
        const out = []
        for (const p of ['../x', '/etc/passwd', '', 'a/../../b', 'nul\\u0000x', 'back\\\\slash', 'dir/f', 'dir', 'dir/f/g', 42]) {
          try { writeFile(p, 'x'); out.push('ok ' + p) } catch (e) { out.push(e.name + ': ' + e.message) }
        }
        return out
      }`
      const r = await run({ engine: 'js', source })
      expect(r.error).to.equal(undefined)
      const out = r.output as string[]
      expect(out[0]).to.match(/^TypeError: .*escape/)
      expect(out[1]).to.match(/^TypeError: .*escape/)
      expect(out[2]).to.match(/^TypeError: .*empty/)
      expect(out[3]).to.match(/^TypeError: .*escape/)
      expect(out[4]).to.match(/^TypeError: .*invalid/)
      expect(out[5]).to.match(/^TypeError: .*invalid/)
      expect(out[6]).to.equal('ok dir/f')
      expect(out[7]).to.match(/^TypeError: .*directory/)
      expect(out[8]).to.match(/^TypeError: .*parent is a file/)
      expect(out[9]).to.match(/^TypeError: .*path must be a string/)
      expect(r.outputs?.map(o => o.path)).to.deep.equal(['dir/f'])
    })

    it('stops an output flood (one big file, then many files) with output-limit before copying it', async () => {
      const big = await run({ engine: 'js', source: `function main () { writeFile('big', 'x'.repeat(${CAPS.fileBytes + 1})) }` })
      expect(big.error?.name).to.equal('output-limit')
      expect(big.outputs).to.equal(undefined)
      const total = await run({ engine: 'js', source: `function main () { for (let i = 0; i < 4; i++) writeFile('f' + i, new Uint8Array(${CAPS.fileBytes})) }` })
      expect(total.error?.name).to.equal('output-limit')
      expect(total.error?.message).to.match(/in total/)
      const many = await run({ engine: 'js', source: `function main () { for (let i = 0; i < 1000; i++) { try { writeFile('f' + i, 'x') } catch (e) {} } return 'survived' }` })
      expect(many.error?.name).to.equal('output-limit')
      expect(many.error?.message).to.match(/more than 8 output files/)
      expect(many.output).to.equal(undefined)
    })

    it('a job that fails after writing files keeps none', async () => {
      const r = await run({ engine: 'js', source: `function main () { writeFile('a', 'x'); while (true) {} }`, limits: { ...LIMITS, timeoutMs: 200 } })
      expect(r.error?.name).to.equal('timeout')
      expect(r.outputs).to.equal(undefined)
    })
  })

  describe('paths', () => {
    it('normalises plain relative paths and names the problem of others', () => {
      expect(normaliseOutputPath('a/./b//c/')).to.deep.equal({ path: 'a/b/c' })
      expect(normaliseOutputPath('../a')).to.deep.equal({ problem: 'escape' })
      expect(normaliseOutputPath('/a')).to.deep.equal({ problem: 'escape' })
      expect(normaliseOutputPath('./')).to.deep.equal({ problem: 'empty' })
      expect(normaliseOutputPath('a\u0000')).to.deep.equal({ problem: 'invalid' })
      expect(normaliseOutputPath('\ud800')).to.deep.equal({ problem: 'invalid' })
      expect(normaliseOutputPath('x'.repeat(300))).to.deep.equal({ problem: 'too-long' })
    })

    it('checks a listed set of outputs: canonical, sorted, no duplicates, no file/directory clash', () => {
      expect(outputListProblem(['a', 'b/c'])).to.equal(undefined)
      expect(outputListProblem(['b', 'a'])).to.match(/not sorted/)
      expect(outputListProblem(['a', 'a'])).to.match(/twice/)
      expect(outputListProblem(['a', 'a/b'])).to.match(/both a file and a directory/)
      expect(outputListProblem(['./a'])).to.match(/not a plain relative path/)
      expect(outputListProblem(['../a'])).to.match(/not a plain relative path/)
    })
  })
})
