import { expect } from 'chai'
import { mkdtempSync, rmSync, writeFileSync, openSync, ftruncateSync, closeSync, readdirSync, readlinkSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createExecutor, inputListProblem, type Executor, type ExecJob, type ExecResult } from '../../src/executor/index.js'
import { LIMITS, text, wasm } from './helpers.js'

describe('executor: input files', function () {
  this.timeout(30_000)
  let executor: Executor
  let dir: string
  const file = (name: string, data: string | Uint8Array): string => { const p = join(dir, name); writeFileSync(p, data); return p }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mercato-inputs-'))
    executor = createExecutor({ poolSize: 1, warmWorkers: 1, queueSize: 8 })
    await executor.start()
  })
  after(async () => {
    await executor.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const run = async (job: Partial<ExecJob> & { engine: ExecJob['engine'] }, id = 'job-inputs'): Promise<ExecResult> =>
    await executor.run({ id, limits: LIMITS, ...job })

  /** descriptors of this process open on files in the test's folder (what the pool opened and must close) */
  const openInDir = (): string[] => readdirSync('/proc/self/fd').map(fd => { try { return readlinkSync(`/proc/self/fd/${fd}`) } catch { return '' } }).filter(t => t.startsWith(realpathSync(dir)))

  describe('wasm: /inputs', () => {
    it('lists /inputs sorted by UTF-8 bytes, reads a file, and refuses to create one (EROFS)', async () => {
      const inputs = [
        { path: 'data.txt', file: file('a', 'hello inputs\n') },
        { path: 'z/deep.txt', file: file('b', 'x') },
        { path: 'B.txt', file: file('c', 'y') },
        { path: 'é.txt', file: file('d', 'z') }
      ]
      const r = await run({ engine: 'wasm', module: wasm('read-inputs'), inputs })
      expect(r.error).to.equal(undefined)
      expect(r.exitCode).to.equal(0)
      // 'B' < 'd' < 'z' < 'é' in UTF-8 bytes
      expect(text(r.stdout)).to.equal('B.txt\ndata.txt\nz\né.txt\nhello inputs\nrofs\n')
    })

    it('reads a 100 MiB input in pieces without loading it (worker stays far below the file size)', async () => {
      const big = join(dir, 'big')
      const fd = openSync(big, 'w')
      ftruncateSync(fd, 100 * 1024 * 1024)
      closeSync(fd)
      const rssBefore = process.memoryUsage().rss
      const r = await run({ engine: 'wasm', module: wasm('read-inputs'), inputs: [{ path: 'big.bin', file: big }], limits: { ...LIMITS, timeoutMs: 20_000 } })
      const grew = process.memoryUsage().rss - rssBefore
      expect(r.error).to.equal(undefined)
      expect(text(r.stdout)).to.equal('big.bin\nrofs\n104857600\n')
      expect(grew, `rss grew ${grew} bytes`).to.be.below(48 * 1024 * 1024)
      // the pool closed the descriptor it opened
      expect(openInDir()).to.deep.equal([])
    })

    it('gives the same result hash for the same inputs, a different one for other bytes', async () => {
      const a = await run({ engine: 'wasm', module: wasm('read-inputs'), inputs: [{ path: 'data.txt', file: file('s1', 'same') }] }, 'same-id')
      const b = await run({ engine: 'wasm', module: wasm('read-inputs'), inputs: [{ path: 'data.txt', file: file('s2', 'same') }] }, 'same-id')
      const c = await run({ engine: 'wasm', module: wasm('read-inputs'), inputs: [{ path: 'data.txt', file: file('s3', 'other') }] }, 'same-id')
      expect(a.resultHash).to.equal(b.resultHash)
      expect(c.resultHash).to.not.equal(a.resultHash)
    })

    it('has no /inputs when the job has no inputs (the guest prints nothing it could read)', async () => {
      const r = await run({ engine: 'wasm', module: wasm('read-inputs') })
      expect(r.error).to.equal(undefined)
      expect(text(r.stdout)).to.equal('')
    })
  })

  describe('js: readFile / listFiles', () => {
    it('reads inputs as bytes and as text, lists them sorted', async () => {
      const inputs = [
        { path: 'data/b.csv', file: file('j1', 'a,b\n1,2\n') },
        { path: 'bin', file: file('j2', new Uint8Array([0, 1, 255])) },
        { path: 'nul.txt', file: file('j3', 'a\u0000b€') }
      ]
      const source = `function main () {
        const bytes = readFile('bin')
        return { list: listFiles(), csv: readFile('data/b.csv', 'utf8'), bytes: Array.from(bytes), isU8: bytes instanceof Uint8Array,
          nul: readFile('nul.txt', 'utf8'), missing: (() => { try { readFile('nope'); return 'read' } catch (e) { return e.message } })(),
          escape: (() => { try { readFile('../etc/passwd'); return 'read' } catch (e) { return e.message } })() }
      }`
      const r = await run({ engine: 'js', source, inputs })
      expect(r.error).to.equal(undefined)
      expect(r.output).to.deep.equal({
        list: ['bin', 'data/b.csv', 'nul.txt'],
        csv: 'a,b\n1,2\n',
        bytes: [0, 1, 255],
        isU8: true,
        nul: 'a\u0000b€',
        missing: 'readFile: no input file "nope"',
        escape: 'readFile: invalid input path "../etc/passwd" (escape)'
      })
    })

    it('stops with memory-limit rather than read an input larger than the job memory', async () => {
      const big = join(dir, 'big-js')
      const fd = openSync(big, 'w')
      ftruncateSync(fd, 40 * 1024 * 1024)
      closeSync(fd)
      const r = await run({ engine: 'js', source: 'function main () { return readFile("big").length }', inputs: [{ path: 'big', file: big }] })
      expect(r.error?.name).to.equal('memory-limit')
    })

    it('lists nothing without inputs', async () => {
      const r = await run({ engine: 'js', source: 'function main () { return listFiles() }' })
      expect(r.output).to.deep.equal([])
    })
  })

  describe('an input given as ranges of files (a blob read in place from the provider\'s packs)', () => {
    it('reads as one file across its ranges, in order, from wasm and js; every descriptor closed after', async () => {
      const a = file('pack-a', 'xxHELLOyy')
      const b = file('pack-b', ', rangesZZ')
      // "HELLO" + ", ranges" + "x": ranges of two files, one of them twice, one range empty
      const extents = [{ file: a, offset: 2, length: 5 }, { file: b, offset: 0, length: 8 }, { file: a, offset: 0, length: 0 }, { file: a, offset: 0, length: 1 }]
      const js = await run({ engine: 'js', source: 'function main () { const t = readFile("in.txt", "utf8"); return { t, n: readFile("in.txt").length } }', inputs: [{ path: 'in.txt', extents }] })
      expect(js.error).to.equal(undefined)
      expect(js.output).to.deep.equal({ t: 'HELLO, rangesx', n: 14 })
      const w = await run({ engine: 'wasm', module: wasm('read-inputs'), inputs: [{ path: 'data.txt', extents }] })
      expect(w.error).to.equal(undefined)
      expect(text(w.stdout)).to.equal('data.txt\nHELLO, rangesxrofs\n')
      expect(openInDir()).to.deep.equal([])
    })

    it('a 24 MiB input in 97 ranges reads the same bytes as the file itself (the wasm copy job, its output\'s hash)', async () => {
      const bytes = new Uint8Array(24 * 1024 * 1024 + 7)
      for (let i = 0; i < bytes.length; i += 4093) bytes[i] = i & 255
      const whole = file('whole', bytes)
      // the bytes cut in 256 KiB pieces, laid out in two files in another order, as packs would hold them
      const pieces: Array<{ at: number, length: number }> = []
      for (let at = 0; at < bytes.length; at += 256 * 1024) pieces.push({ at, length: Math.min(256 * 1024, bytes.length - at) })
      const odd = pieces.filter((_, i) => i % 2 === 1)
      const even = pieces.filter((_, i) => i % 2 === 0)
      const packOf = (list: typeof pieces, name: string): Map<number, number> => {
        const where = new Map<number, number>()
        let off = 3
        const parts: Uint8Array[] = [new Uint8Array(3)]
        for (const p of list.reverse()) { where.set(p.at, off); parts.push(bytes.subarray(p.at, p.at + p.length)); off += p.length }
        file(name, Buffer.concat(parts))
        return where
      }
      const inOdd = packOf(odd, 'pack-odd')
      const inEven = packOf(even, 'pack-even')
      const extents = pieces.map(p => inOdd.has(p.at) ? { file: join(dir, 'pack-odd'), offset: inOdd.get(p.at)!, length: p.length } : { file: join(dir, 'pack-even'), offset: inEven.get(p.at)!, length: p.length })
      const module = wasm('copy-input')
      // (their output files in the test's folder, removed with it)
      const fromRanges = await run({ engine: 'wasm', module, inputs: [{ path: 'in.bin', extents }], limits: { ...LIMITS, timeoutMs: 20_000 }, outputDir: join(dir, 'out-ranges') })
      const fromFile = await run({ engine: 'wasm', module, inputs: [{ path: 'in.bin', file: whole }], limits: { ...LIMITS, timeoutMs: 20_000 }, outputDir: join(dir, 'out-file') })
      expect(fromRanges.error, JSON.stringify(fromRanges.error)).to.equal(undefined)
      expect(fromRanges.outputs?.map(o => [o.path, o.size, o.cid])).to.deep.equal(fromFile.outputs?.map(o => [o.path, o.size, o.cid]))
      expect(fromRanges.resultHash).to.equal(fromFile.resultHash)
    })

    it('refuses a range past the end of its file, one that is not two counts of bytes, too many, or in too many files, and leaks no descriptor', async () => {
      const a = file('short', '12345')
      for (const extents of [
        [{ file: a, offset: 0, length: 5 }, { file: a, offset: 3, length: 3 }],
        [{ file: a, offset: -1, length: 2 }],
        [{ file: a, offset: 0, length: 1.5 }],
        [{ file: join(dir, 'missing'), offset: 0, length: 1 }],
        Array.from({ length: 20_000 }, () => ({ file: a, offset: 0, length: 1 })),
        // ranges in 17 files: a descriptor each while the job runs; 16 is the most
        Array.from({ length: 17 }, (_, k) => ({ file: file(`scattered-${k}`, 'x'), offset: 0, length: 1 }))
      ]) {
        const err = await run({ engine: 'js', source: 'function main () {}', inputs: [{ path: 'x', extents }] }).then(() => undefined, e => e)
        expect(err?.code, JSON.stringify(extents[0])).to.equal('invalid-inputs')
        expect(openInDir()).to.deep.equal([])
      }
    })
  })

  describe('refusals', () => {
    for (const [paths, why] of [
      [['../x'], /escaping/],
      [['/etc/passwd'], /absolute/],
      [['a\u0000b'], /invalid/],
      [['a\\b'], /invalid/],
      [['a', 'a'], /listed twice/],
      [['a', 'a/b'], /both a file and a directory/],
      [['./a'], /canonical/]
    ] as Array<[string[], RegExp]>) {
      it(`refuses inputs ${JSON.stringify(paths)}`, async () => {
        expect(inputListProblem(paths)).to.match(why)
        const err = await run({ engine: 'js', source: 'function main () {}', inputs: paths.map(p => ({ path: p, file: file('r', 'r') })) }).then(() => undefined, e => e)
        expect(err?.code).to.equal('invalid-inputs')
      })
    }

    it('refuses an input file that does not exist, and leaks no descriptor', async () => {
      const err = await run({ engine: 'js', source: 'function main () {}', inputs: [{ path: 'a', file: file('ok', '1') }, { path: 'b', file: join(dir, 'missing') }] }).then(() => undefined, e => e)
      expect(err?.code).to.equal('invalid-inputs')
      expect(openInDir()).to.deep.equal([])
    })
  })
})
