import { expect } from 'chai'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cidOfBytes } from '../../src/crypto/index.js'
import { unixfsCidOfBytes } from '../../src/crypto/unixfs.js'
import { computeResultHash, createExecutor, normaliseOutputPath, outputListProblem, type Executor, type ExecJob, type ExecResult } from '../../src/executor/index.js'
import { LIMITS, text, wasm } from './helpers.js'

/** Small caps, so the hostile jobs hit them fast. */
const CAPS = { files: 8, fileBytes: 256 * 1024, totalBytes: 512 * 1024 }

describe('executor: output files', function () {
  this.timeout(20_000)
  let executor: Executor

  /** every job's output folder lives here: a job's files are on disk, in the folder it names */
  let root: string
  let n = 0
  let lastDir = ''

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'mercato-outputs-test-'))
    executor = createExecutor({ poolSize: 1, warmWorkers: 1, queueSize: 8, outputFiles: CAPS })
    await executor.start()
  })
  after(async () => {
    await executor.stop()
    rmSync(root, { recursive: true, force: true })
  })

  const run = async (job: Partial<ExecJob> & { engine: ExecJob['engine'] }, id = 'job-outputs'): Promise<ExecResult> => {
    lastDir = join(root, `job-${++n}`)
    return await executor.run({ id, limits: LIMITS, outputDir: lastDir, ...job })
  }

  const bytesOf = (r: ExecResult, path: string): Uint8Array => new Uint8Array(readFileSync((r.outputs ?? []).find(o => o.path === path)?.file as string))
  const files = (r: ExecResult): Record<string, string> =>
    Object.fromEntries((r.outputs ?? []).map(o => [o.path, Buffer.from(bytesOf(r, o.path)).toString('hex')]))
  /** what is left in the last job's output folder */
  const leftOnDisk = (): string[] => existsSync(lastDir) ? readdirSync(lastDir) : []

  describe('wasm: /outputs', () => {
    it('captures the files a guest writes under the preopened /outputs, sorted, with CIDs the hash covers', async () => {
      const r = await run({ engine: 'wasm', module: wasm('outputs') })
      expect(r.error).to.equal(undefined)
      expect(r.exitCode, text(r.stdout)).to.equal(0)
      expect(text(r.stdout)).to.equal('ok\n')
      expect(r.outputs?.map(o => o.path)).to.deep.equal(['data/bytes.bin', 'report.txt'])
      expect(files(r)).to.deep.equal({ 'data/bytes.bin': '000102ff', 'report.txt': Buffer.from('hello from wasm\nsecond line\n').toString('hex') })
      for (const o of r.outputs ?? []) {
        const bytes = bytesOf(r, o.path)
        // UnixFS (ipfs add --cid-version 1); a file of one chunk is its raw leaf, the raw CID of its bytes
        expect(o.cid).to.equal(await unixfsCidOfBytes(bytes))
        expect(o.cid).to.equal(cidOfBytes(bytes))
        expect(o.size).to.equal(bytes.length)
        expect(o.file.startsWith(lastDir)).to.equal(true)
      }
      expect(r.resultHash).to.equal(computeResultHash('job-outputs', r))
      // one altered byte in one output changes the hash
      const altered = (r.outputs ?? []).map(o => ({ ...o }))
      altered[0] = { ...altered[0], cid: cidOfBytes(new Uint8Array([0, 1, 2, 0xfe])) }
      expect(computeResultHash('job-outputs', { ...r, outputs: altered })).to.not.equal(r.resultHash)
      // and a job without files hashes as before (no outputs key)
      expect(computeResultHash('job-outputs', { ...r, outputs: [] })).to.equal(computeResultHash('job-outputs', { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }))
    })

    it('names each file through the job\'s nameOutput (a provider stores it there: one read), and the hash covers what it returns', async () => {
      const calls: Array<{ bytes: string, size: number }> = []
      const plain = await run({ engine: 'wasm', module: wasm('outputs') }, 'named')
      const r = await run({
        engine: 'wasm',
        module: wasm('outputs'),
        nameOutput: async (file, size) => {
          const bytes = readFileSync(file)
          calls.push({ bytes: bytes.toString('hex'), size })
          return await unixfsCidOfBytes(bytes)
        }
      }, 'named')
      // once per file, with its size, after the guest wrote it whole
      expect(calls).to.deep.equal([{ bytes: '000102ff', size: 4 }, { bytes: Buffer.from('hello from wasm\nsecond line\n').toString('hex'), size: 28 }])
      expect(r.outputs?.map(o => o.cid)).to.deep.equal(plain.outputs?.map(o => o.cid))
      expect(r.resultHash).to.equal(plain.resultHash)
      // a hook that fails is a host failure (output-storage), not a result
      const err = await run({ engine: 'wasm', module: wasm('outputs'), nameOutput: async () => { throw new Error('disk full') } }).catch(e => e)
      expect(err?.code).to.equal('output-storage')
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
      // nothing half-written is left on disk
      expect(leftOnDisk()).to.deep.equal([])
      expect(r.resultHash).to.equal(computeResultHash('job-outputs', r))
      expect(Date.now() - started).to.be.below(5000)
    })

    it('stops a guest creating too many files with output-limit', async () => {
      const r = await run({ engine: 'wasm', module: wasm('many-files') })
      expect(r.error?.name).to.equal('output-limit')
      expect(r.error?.message).to.match(/more than 8 output files/)
      expect(r.outputs).to.equal(undefined)
      expect(leftOnDisk()).to.deep.equal([])
    })

    it('copies a 20 MiB input to a 20 MiB output (inverted) in pieces: on disk, named by its UnixFS CID', async () => {
      const inputDir = mkdtempSync(join(root, 'in-'))
      const data = randomBytes(20 * 1024 * 1024 + 12345)
      writeFileSync(join(inputDir, 'in.bin'), data)
      const caps = { files: 4, fileBytes: 64 * 1024 * 1024, totalBytes: 64 * 1024 * 1024 }
      const wide = createExecutor({ poolSize: 1, warmWorkers: 1, queueSize: 2, outputFiles: caps })
      await wide.start()
      try {
        const outDir = join(root, 'copy')
        const r = await wide.run({ id: 'copy', engine: 'wasm', module: wasm('copy-input'), limits: { ...LIMITS, timeoutMs: 20_000 }, inputs: [{ path: 'in.bin', file: join(inputDir, 'in.bin') }], outputDir: outDir })
        expect(r.error, r.error?.message).to.equal(undefined)
        expect(r.exitCode).to.equal(0)
        expect(r.outputs?.map(o => [o.path, o.size])).to.deep.equal([['out.bin', data.length]])
        const o = (r.outputs ?? [])[0]
        const out = readFileSync(o.file)
        const inverted = data.map(b => b ^ 0xff)
        expect(createHash('sha256').update(out).digest('hex')).to.equal(createHash('sha256').update(inverted).digest('hex'))
        // the CID `ipfs add --cid-version 1` gives these bytes (a DAG of 256 KiB leaves, not one raw block)
        expect(o.cid).to.equal(await unixfsCidOfBytes(inverted))
        expect(o.cid).to.match(/^bafybei/)
        expect(r.resultHash).to.equal(computeResultHash('copy', r))
        // the guest ran in 32 MiB of memory: the file never was in it whole
        expect(r.usage.memoryBytes).to.be.below(2 * 1024 * 1024)
        // over a per-file cap: output-limit, and nothing left on disk
        const small = createExecutor({ poolSize: 1, warmWorkers: 1, queueSize: 2, outputFiles: { files: 4, fileBytes: 8 * 1024 * 1024, totalBytes: 64 * 1024 * 1024 } })
        await small.start()
        try {
          const capped = join(root, 'capped')
          const c = await small.run({ id: 'copy', engine: 'wasm', module: wasm('copy-input'), limits: { ...LIMITS, timeoutMs: 20_000 }, inputs: [{ path: 'in.bin', file: join(inputDir, 'in.bin') }], outputDir: capped })
          expect(c.error?.name).to.equal('output-limit')
          expect(c.error?.message).to.match(/out.bin exceeded 8388608 bytes/)
          expect(c.outputs).to.equal(undefined)
          expect(readdirSync(capped)).to.deep.equal([])
        } finally { await small.stop() }
      } finally { await wide.stop() }
    })

    it('a job that names no output folder gets one of its own, removed when it keeps no file', async () => {
      const own = mkdtempSync(join(root, 'own-'))
      const ex = createExecutor({ poolSize: 1, warmWorkers: 0, queueSize: 2, outputFiles: CAPS, outputsRoot: own })
      try {
        const ok = await ex.run({ id: 'own', engine: 'wasm', module: wasm('outputs'), limits: LIMITS })
        expect(ok.outputs?.length).to.equal(2)
        expect(readdirSync(own)).to.have.length(1)
        rmSync(join(own, readdirSync(own)[0]), { recursive: true })
        const failed = await ex.run({ id: 'own', engine: 'wasm', module: wasm('output-flood'), limits: LIMITS })
        expect(failed.error?.name).to.equal('output-limit')
        const none = await ex.run({ id: 'own', engine: 'wasm', module: wasm('hello'), limits: LIMITS })
        expect(none.outputs).to.equal(undefined)
        expect(readdirSync(own)).to.deep.equal([])
      } finally { await ex.stop() }
    })

    it('refuses an output folder that already holds something (output-storage): a job\'s folder is its own', async () => {
      await run({ engine: 'wasm', module: wasm('outputs') }) // fills lastDir
      const err = await executor.run({ id: 'job-outputs', engine: 'wasm', module: wasm('outputs'), limits: LIMITS, outputDir: lastDir }).catch(e => e)
      expect(err.code).to.equal('output-storage')
      expect(err.retryable).to.equal(true)
      // and the files of the job that had it are left alone
      expect(readdirSync(lastDir)).to.have.length(2)
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
      expect(leftOnDisk()).to.deep.equal([])
    })

    it('a job that fails after writing files keeps none (killed on its deadline: nothing left on disk)', async () => {
      const r = await run({ engine: 'js', source: `function main () { writeFile('a', 'x'); while (true) {} }`, limits: { ...LIMITS, timeoutMs: 200 } })
      expect(r.error?.name).to.equal('timeout')
      expect(r.outputs).to.equal(undefined)
      // removed once the killed worker's thread is gone (it may still be writing when the result is out)
      for (let i = 0; i < 100 && leftOnDisk().length > 0; i++) await new Promise(resolve => setTimeout(resolve, 20))
      expect(leftOnDisk()).to.deep.equal([])
    })

    it('appendFile writes a 20 MiB file in 1 MiB pieces within a 16 MiB heap; an append past a cap is output-limit', async () => {
      const wide = createExecutor({ poolSize: 1, warmWorkers: 1, queueSize: 2, outputFiles: { files: 4, fileBytes: 24 * 1024 * 1024, totalBytes: 64 * 1024 * 1024 } })
      await wide.start()
      try {
        const piece = 1024 * 1024
        const source = `function main (n) { const b = new Uint8Array(${piece}); for (let k = 0; k < n; k++) { b.fill(k); appendFile('log/big.bin', b) } appendFile('note.txt', 'a'); appendFile('note.txt', 'b'); return n }`
        const r = await wide.run({ id: 'js-append', engine: 'js', source, input: 20, limits: { ...LIMITS, memoryMb: 16, timeoutMs: 20_000 }, outputDir: join(root, 'js-append') })
        expect(r.error, r.error?.message).to.equal(undefined)
        expect(r.outputs?.map(o => [o.path, o.size])).to.deep.equal([['log/big.bin', 20 * piece], ['note.txt', 2]])
        const expected = new Uint8Array(20 * piece)
        for (let k = 0; k < 20; k++) expected.fill(k, k * piece, (k + 1) * piece)
        expect(Buffer.compare(readFileSync((r.outputs ?? [])[0].file), expected)).to.equal(0)
        expect((r.outputs ?? [])[0].cid).to.equal(await unixfsCidOfBytes(expected))
        expect(readFileSync((r.outputs ?? [])[1].file, 'utf8')).to.equal('ab')
        const over = await wide.run({ id: 'js-append', engine: 'js', source, input: 30, limits: { ...LIMITS, memoryMb: 16, timeoutMs: 20_000 }, outputDir: join(root, 'js-append-over') })
        expect(over.error?.name).to.equal('output-limit')
        expect(over.error?.message).to.match(/log\/big.bin exceeded .*25165824 bytes/)
        expect(readdirSync(join(root, 'js-append-over'))).to.deep.equal([])
      } finally { await wide.stop() }
    })

    it('a js job copies a 20 MiB input to a 20 MiB output in 1 MiB pieces (readFile with offset and length, appendFile) within a 16 MiB heap', async () => {
      const inputDir = mkdtempSync(join(root, 'js-in-'))
      const data = randomBytes(20 * 1024 * 1024 + 333)
      writeFileSync(join(inputDir, 'in.bin'), data)
      const wide = createExecutor({ poolSize: 1, warmWorkers: 1, queueSize: 2, outputFiles: { files: 4, fileBytes: 32 * 1024 * 1024, totalBytes: 64 * 1024 * 1024 } })
      await wide.start()
      try {
        const source = `function main () {
          let offset = 0
          for (;;) {
            const piece = readFile('in.bin', { offset, length: 1048576 })
            if (piece.length === 0) break
            appendFile('out.bin', piece)
            offset += piece.length
          }
          const bad = []
          for (const o of [{ offset: -1, length: 1 }, { length: 1.5 }, { offset: 0 }]) { try { readFile('in.bin', o) } catch (e) { bad.push(e.name) } }
          return [offset, readFile('in.bin', { offset: offset + 10, length: 5 }).length, bad]
        }`
        const r = await wide.run({ id: 'js-copy', engine: 'js', source, limits: { ...LIMITS, memoryMb: 16, timeoutMs: 20_000 }, inputs: [{ path: 'in.bin', file: join(inputDir, 'in.bin') }], outputDir: join(root, 'js-copy') })
        expect(r.error, r.error?.message).to.equal(undefined)
        expect(r.output).to.deep.equal([data.length, 0, ['TypeError', 'TypeError', 'TypeError']])
        const o = (r.outputs ?? [])[0]
        expect([o.path, o.size]).to.deep.equal(['out.bin', data.length])
        expect(Buffer.compare(readFileSync(o.file), data)).to.equal(0)
        expect(o.cid).to.equal(await unixfsCidOfBytes(data))
      } finally { await wide.stop() }
    })

    it('writes a 20 MiB file (over the old 16 MiB cap) to disk, named by its UnixFS CID', async () => {
      const wide = createExecutor({ poolSize: 1, warmWorkers: 1, queueSize: 2, outputFiles: { files: 4, fileBytes: 32 * 1024 * 1024, totalBytes: 64 * 1024 * 1024 } })
      await wide.start()
      try {
        const size = 20 * 1024 * 1024
        const source = `function main (n) { const b = new Uint8Array(n); for (let i = 0; i < n; i += 4096) b[i] = (i >> 12) & 255; writeFile('data/big.bin', b); return n }`
        const r = await wide.run({ id: 'js-big', engine: 'js', source, input: size, limits: { ...LIMITS, memoryMb: 64, timeoutMs: 20_000 }, outputDir: join(root, 'js-big') })
        expect(r.error, r.error?.message).to.equal(undefined)
        const o = (r.outputs ?? [])[0]
        expect([o.path, o.size]).to.deep.equal(['data/big.bin', size])
        const expected = new Uint8Array(size)
        for (let i = 0; i < size; i += 4096) expected[i] = (i >> 12) & 255
        expect(Buffer.compare(readFileSync(o.file), expected)).to.equal(0)
        expect(o.cid).to.equal(await unixfsCidOfBytes(expected))
        expect(r.resultHash).to.equal(computeResultHash('js-big', r))
      } finally { await wide.stop() }
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
