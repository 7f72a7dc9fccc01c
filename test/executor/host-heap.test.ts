/**
 * What a job can make its worker hold outside its own capped memory. V8 does not stop a worker
 * that makes one allocation too large for its heap (WORKER_HEAP_MB): it aborts the whole process,
 * the provider with it. So every guest string is measured before the host copies it, long texts
 * cross in pieces, and the output tree's directories are capped. Each case here aborted (or, for
 * the last ones, cost) a provider before.
 */
import { expect } from 'chai'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import wabtInit from 'wabt'
import { JS_HOST_STRING_UNITS, JS_RESULT_MAX_UNITS, MAX_OUTPUT_DIRS, RECYCLE_MEMORY_BYTES } from '../../src/executor/constants.js'
import { createExecutor, type ExecJob, type ExecResult, type Executor } from '../../src/executor/index.js'
import { LIMITS, text } from './helpers.js'

const MiB = 1024 * 1024
const WASI = 'wasi_snapshot_preview1'
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('executor: what a job can make its worker copy', function () {
  this.timeout(120_000)
  let executor: Executor
  let wabt: Awaited<ReturnType<typeof wabtInit>>
  let root: string
  let n = 0

  before(async () => {
    wabt = await wabtInit()
    root = mkdtempSync(join(tmpdir(), 'mercato-host-heap-'))
    executor = createExecutor({ poolSize: 1, warmWorkers: 1, queueSize: 4, maxMemoryMb: 512 })
    await executor.start()
  })
  after(async () => {
    await executor.stop()
    rmSync(root, { recursive: true, force: true })
  })

  const run = async (job: Partial<ExecJob> & { engine: ExecJob['engine'] }): Promise<ExecResult> =>
    await executor.run({ id: `heap-${++n}`, limits: { ...LIMITS, timeoutMs: 60_000, memoryMb: 512 }, outputDir: join(root, `job-${n}`), ...job })
  const file = (r: ExecResult, path: string): string => (r.outputs ?? []).find(o => o.path === path)?.file as string
  const input = (name: string, bytes: Uint8Array): { path: string, file: string } => {
    const f = join(root, name)
    writeFileSync(f, bytes)
    return { path: name, file: f }
  }
  const wat = (source: string): Uint8Array<ArrayBuffer> => {
    const m = wabt.parseWat('job.wat', source)
    try { return new Uint8Array(m.toBinary({}).buffer) } finally { m.destroy() }
  }

  it('writeFile of a 150 MiB string (more than the worker heap) writes it whole', async () => {
    const r = await run({ engine: 'js', source: "function main () { const s = 'x'.repeat(150 * 1024 * 1024); writeFile('big.txt', s); return s.length }" })
    expect(r.error, r.error?.message).to.equal(undefined)
    expect(r.output).to.equal(150 * MiB)
    expect(statSync(file(r, 'big.txt')).size).to.equal(150 * MiB)
  })

  it('a long string crosses in pieces: surrogate pairs and multi-byte characters at a piece boundary come out as its UTF-8', async () => {
    // '😀x' repeated puts a high surrogate at the last unit of the first piece
    expect((JS_HOST_STRING_UNITS - 1) % 3).to.equal(0)
    const count = Math.ceil(2.2 * JS_HOST_STRING_UNITS / 3)
    const r = await run({ engine: 'js', source: `function main () { writeFile('t.txt', '😀x'.repeat(${count}) + 'é'); appendFile('t.txt', '€'.repeat(${JS_HOST_STRING_UNITS + 7})) }` })
    expect(r.exitCode, text(r.stderr)).to.equal(0)
    const expected = Buffer.from('😀x'.repeat(count) + 'é' + '€'.repeat(JS_HOST_STRING_UNITS + 7), 'utf8')
    expect(sha256(readFileSync(file(r, 't.txt')))).to.equal(sha256(expected))
  })

  it("readFile(path, 'utf8') of a text longer than a piece gives the same string (multi-byte characters across pieces)", async () => {
    const bytes = Buffer.from('é€😀x'.repeat(Math.ceil(1.5 * JS_HOST_STRING_UNITS / 10)), 'utf8')
    expect(bytes.length).to.be.greaterThan(JS_HOST_STRING_UNITS)
    const r = await run({ engine: 'js', source: "function main () { const t = readFile('in.txt', 'utf8'); writeFile('out.txt', t); return t.length }", inputs: [input('in.txt', bytes)] })
    expect(r.error, r.error?.message).to.equal(undefined)
    expect(r.output).to.equal(bytes.toString('utf8').length)
    expect(sha256(readFileSync(file(r, 'out.txt')))).to.equal(sha256(bytes))
  })

  it("readFile(path, 'utf8') of a 150 MB input (more than the worker heap) reads it", async () => {
    const r = await run({ engine: 'js', source: "function main () { const t = readFile('big.txt', 'utf8'); return [t.length, t.charCodeAt(0), t.charCodeAt(t.length - 1)] }", inputs: [input('big.txt', Buffer.alloc(150 * 1000 * 1000, 'y'))] })
    expect(r.error, r.error?.message).to.equal(undefined)
    expect(r.output).to.deep.equal([150 * 1000 * 1000, 121, 121])
  })

  it('an exception carrying a 150 MiB message is reported with its length, not copied', async () => {
    const r = await run({ engine: 'js', source: "function main () { throw new RangeError('x'.repeat(150 * 1024 * 1024)) }" })
    expect(r.exitCode).to.equal(1)
    expect(text(r.stderr)).to.match(new RegExp(`^Uncaught RangeError: \\(${150 * MiB} characters, not shown\\)\\n`))
  })

  it(`a return value over ${JS_RESULT_MAX_UNITS} characters as JSON fails with output-limit before it is copied`, async () => {
    const r = await run({ engine: 'js', source: `function main () { return 'é'.repeat(${JS_RESULT_MAX_UNITS + 1}) }`, limits: { ...LIMITS, timeoutMs: 60_000, memoryMb: 256, outputBytes: 64 * MiB } })
    expect(r.error?.name).to.equal('output-limit')
    expect(r.error?.message).to.match(/output file/)
  })

  it(`a wasm job making directories without end stops with output-limit at ${MAX_OUTPUT_DIRS}`, async () => {
    // mkdir of 255-byte paths 127 levels deep, the first level counting up: 126 new directories a call
    const module = wat(`(module
      (import "${WASI}" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "aaaaa${'/a'.repeat(125)}")
      (func (export "_start") (local $i i32) (local $k i32)
        (loop $L
          (local.set $k (i32.const 0))
          (loop $K
            (i32.store8 (local.get $k) (i32.add (i32.const 97) (i32.and (i32.shr_u (local.get $i) (i32.mul (local.get $k) (i32.const 4))) (i32.const 15))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br_if $K (i32.lt_u (local.get $k) (i32.const 5))))
          (drop (call $mkdir (i32.const 3) (i32.const 0) (i32.const 255)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $L (i32.lt_u (local.get $i) (i32.const 1000000))))))`)
    const r = await run({ engine: 'wasm', module, limits: { ...LIMITS, timeoutMs: 30_000, memoryMb: 1 } })
    expect(r.error?.name).to.equal('output-limit')
    expect(r.error?.message).to.equal(`more than ${MAX_OUTPUT_DIRS} output directories`)
  })

  it("a write past a file's end writes the gap (the guest's time pays for it): the file is not sparse", async () => {
    // seek to 8 MiB - 1 in a new file and write one byte there
    const module = wat(`(module
      (import "${WASI}" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "${WASI}" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
      (import "${WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "gap")
      (data (i32.const 100) "\\c8\\00\\00\\00\\01\\00\\00\\00")
      (data (i32.const 200) "X")
      (func (export "_start")
        (drop (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 1) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 300)))
        (drop (call $seek (i32.load (i32.const 300)) (i64.const ${8 * MiB - 1}) (i32.const 0) (i32.const 400)))
        (drop (call $write (i32.load (i32.const 300)) (i32.const 100) (i32.const 1) (i32.const 500)))))`)
    const r = await run({ engine: 'wasm', module, limits: { ...LIMITS, memoryMb: 1 } })
    expect(r.error, r.error?.message).to.equal(undefined)
    const st = statSync(file(r, 'gap'))
    expect(st.size).to.equal(8 * MiB)
    expect(st.blocks * 512, 'bytes on disk').to.be.at.least(8 * MiB)
    const bytes = readFileSync(file(r, 'gap'))
    expect(bytes.subarray(0, 8 * MiB - 1).every(b => b === 0)).to.equal(true)
    expect(bytes[8 * MiB - 1]).to.equal(0x58)
  })

  it(`a js job that grew its memory past ${RECYCLE_MEMORY_BYTES / MiB} MiB and let it go: its usage says so, and its worker is replaced`, async () => {
    const slots = (executor as any).slots as Array<{ worker: unknown }>
    const before = slots[0].worker
    const r = await run({ engine: 'js', source: 'function main () { let b = []; for (let i = 0; i < 200; i++) { const a = new Uint8Array(1024 * 1024); a[0] = 1; b.push(a) } b = null; return 1 }', limits: { ...LIMITS, timeoutMs: 60_000, memoryMb: 256 } })
    expect(r.error, r.error?.message).to.equal(undefined)
    expect(r.usage.memoryBytes).to.be.greaterThan(100 * MiB)
    for (let i = 0; i < 100 && slots[0].worker === before; i++) await new Promise(resolve => setTimeout(resolve, 50))
    expect(slots[0].worker).to.not.equal(before)
    // and the fresh worker serves
    const again = await run({ engine: 'js', source: 'function main () { return 2 }' })
    expect(again.output).to.equal(2)
  })
})
