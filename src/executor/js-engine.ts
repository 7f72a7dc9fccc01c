/**
 * Runs one JavaScript job in QuickJS (worker side).
 *
 * Each job gets a fresh QuickJS runtime and context (≈ 0.2 ms), so nothing
 * survives from one job to the next. The runtime has a memory limit, a stack
 * cap and an interrupt handler that stops the guest at its deadline, when
 * its output is full, or when its (coarse) fuel is spent. The context has no
 * host objects at all (no require, process, fetch, timers, std/os modules);
 * a prelude replaces Math.random with a generator seeded from the job, Date
 * with a virtual clock, and installs a console that writes to the capped
 * output buffer.
 */
import { RELEASE_SYNC, newQuickJSWASMModuleFromVariant, newVariant, type QuickJSContext, type QuickJSHandle, type QuickJSRuntime, type QuickJSWASMModule } from 'quickjs-emscripten'
import { createHash } from 'node:crypto'
import { StringDecoder } from 'node:string_decoder'
import { JS_CLOCK_TICK_MS, JS_ERROR_TEXT_UNITS, JS_HOST_STRING_UNITS, JS_RESULT_MAX_UNITS, JS_STACK_BYTES, MAX_OUTPUT_PATH_BYTES, RECYCLE_MEMORY_BYTES, VIRTUAL_EPOCH_MS } from './constants.js'
import type { OutputSink } from './output.js'
import { normaliseOutputPath, OutputDiskError, OutputFiles } from './files.js'
import { InputFiles } from './inputs.js'
import { compileQuickJS } from './quickjs-wasm.js'
export { useCompiledQuickJS } from './quickjs-wasm.js'
import type { DoneMessage, FailureName, RunJs } from './protocol.js'

/**
 * QuickJS calls the interrupt handler about every 10 000 "ticks" (function
 * calls and backward jumps). Counting calls gives a coarse, deterministic
 * fuel for one QuickJS build.
 */
export const JS_FUEL_PER_INTERRUPT = 10_000

const PRELUDE = `(function (write, s0, s1, s2, s3, epoch, tick, files) {
  'use strict'
  let a = s0 >>> 0, b = s1 >>> 0, c = s2 >>> 0, d = s3 >>> 0
  function sfc32 () {
    const t = (((a + b) | 0) + d) | 0
    d = (d + 1) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) | 0
    return (t >>> 0) / 4294967296
  }
  for (let i = 0; i < 12; i++) sfc32()
  Object.defineProperty(Math, 'random', { value: function random () { return sfc32() }, writable: true, configurable: true })
  let now = epoch
  const clock = () => { const t = now; now += tick; return t }
  const RealDate = Date
  function VirtualDate (...args) {
    if (new.target === undefined) return new RealDate(clock()).toString()
    return args.length === 0 ? new RealDate(clock()) : new RealDate(...args)
  }
  VirtualDate.prototype = RealDate.prototype
  Object.defineProperty(RealDate.prototype, 'constructor', { value: VirtualDate, writable: true, configurable: true })
  Object.defineProperty(VirtualDate, 'name', { value: 'Date' })
  VirtualDate.now = function now () { return clock() }
  VirtualDate.parse = RealDate.parse
  VirtualDate.UTC = RealDate.UTC
  globalThis.Date = VirtualDate
  const fmt = (v) => {
    if (typeof v === 'string') return v
    if (v instanceof Error) return v.stack ? String(v) + '\\n' + v.stack : String(v)
    if (typeof v === 'function' || typeof v === 'symbol' || typeof v === 'bigint' || v === undefined) return String(v)
    try { const s = JSON.stringify(v); return s === undefined ? String(v) : s } catch { return String(v) }
  }
  // text goes out in pieces: converting one huge string to UTF-8 at once needs as much again of
  // the capped heap, and a failed conversion would lose the output silently
  const CHUNK = 65536
  const put = (fd, text) => {
    for (let i = 0; i < text.length;) {
      let j = Math.min(text.length, i + CHUNK)
      if (j < text.length) { const c = text.charCodeAt(j - 1); if (c >= 0xd800 && c <= 0xdbff) j-- }
      if (!write(fd, i === 0 && j === text.length ? text : text.slice(i, j))) return false
      i = j
    }
    return true
  }
  // a line goes out in one write when it fits in a chunk, so live output never shows half of it
  // (a poll between a line's text and its newline handed over "line 0", then "\\n"); a large
  // argument still goes out by itself, in pieces
  const out = (fd) => (...args) => {
    let line = ''
    for (let i = 0; i < args.length; i++) {
      const t = fmt(args[i])
      if (line.length + t.length + 1 < CHUNK) { line += i > 0 ? ' ' + t : t; continue }
      if (i > 0) line += ' '
      if (line.length > 0 && !put(fd, line)) return
      line = ''
      if (!put(fd, t)) return
    }
    put(fd, line + '\\n')
  }
  globalThis.console = { log: out(1), info: out(1), debug: out(1), warn: out(2), error: out(2), trace: out(2) }
  // the file API (FILES) is compiled the first time a job calls it: most jobs never touch a file,
  // and compiling it with the prelude was ≈ 0.6 ms of every job's ≈ 2 ms. The host compiles it
  // (files() returns it, made once per job); the job cannot reach files() itself.
  let api
  const load = () => { if (api === undefined) api = files(); return api }
  const putFile = (name) => function (path, data) { return load()[name](path, data) }
  Object.defineProperty(globalThis, 'writeFile', { value: putFile('writeFile'), writable: false, configurable: false })
  Object.defineProperty(globalThis, 'appendFile', { value: putFile('appendFile'), writable: false, configurable: false })
  function readFile (path, encoding) { return load().readFile(path, encoding) }
  function listFiles () { return load().listFiles() }
  Object.defineProperty(globalThis, 'readFile', { value: readFile, writable: false, configurable: false })
  Object.defineProperty(globalThis, 'listFiles', { value: listFiles, writable: false, configurable: false })
})`

/**
 * The file API behind the prelude's writeFile, appendFile, readFile and listFiles, given the host's
 * functions (wf, rf, lf); compiled and called by the host at a job's first file call.
 */
const FILES = `(function (wf, rf, lf) {
  'use strict'
  const utf8 = (s) => {
    const out = new Uint8Array(s.length * 3)
    let j = 0
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i)
      if (c < 0x80) { out[j++] = c; continue }
      if (c < 0x800) { out[j++] = 0xc0 | (c >> 6); out[j++] = 0x80 | (c & 63); continue }
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1)
        if (d >= 0xdc00 && d < 0xe000) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++
          out[j++] = 0xf0 | (c >> 18); out[j++] = 0x80 | ((c >> 12) & 63); out[j++] = 0x80 | ((c >> 6) & 63); out[j++] = 0x80 | (c & 63)
          continue
        }
      }
      if (c >= 0xd800 && c < 0xe000) c = 0xfffd
      out[j++] = 0xe0 | (c >> 12); out[j++] = 0x80 | ((c >> 6) & 63); out[j++] = 0x80 | (c & 63)
    }
    return out.subarray(0, j)
  }
  // output files: writeFile(path, data) creates or replaces one, appendFile(path, data) adds to its end
  // (creating it), so a large file can be written in pieces (data: a string, written as UTF-8, an ArrayBuffer or a view)
  // a long string goes to the host in pieces (the first replaces or adds, the rest add): the
  // host's heap holds one piece at a time, never a copy of the whole
  const PIECE = ${JS_HOST_STRING_UNITS}
  const putText = (path, text, append) => {
    let r = true
    for (let i = 0, first = true; first || i < text.length; first = false) {
      let j = Math.min(text.length, i + PIECE)
      if (j < text.length) { const c = text.charCodeAt(j - 1); if (c >= 0xd800 && c <= 0xdbff) j-- }
      r = wf(path, i === 0 && j === text.length ? text : text.slice(i, j), 0, -1, append || !first)
      if (r !== true) return r
      i = j
    }
    return r
  }
  const putFile = (name, append) => function (path, data) {
    if (typeof path !== 'string') throw new TypeError(name + ': the path must be a string')
    let r
    // the host reads strings as C strings, which end at NUL: such a string is encoded here
    if (typeof data === 'string' && data.indexOf('\\0') >= 0) data = utf8(data)
    if (typeof data === 'string') r = putText(path, data, append)
    else if (data instanceof ArrayBuffer) r = wf(path, data, 0, data.byteLength, append)
    else if (ArrayBuffer.isView(data)) r = wf(path, data.buffer, data.byteOffset, data.byteLength, append)
    else throw new TypeError(name + ': data must be a string, an ArrayBuffer or a typed array')
    if (r === true) return undefined
    if (r === false) throw new Error(name + ': output limit reached')
    throw new TypeError(name + ': ' + r)
  }
  // input files: readFile(path) gives a Uint8Array, readFile(path, 'utf8') a string, readFile(path, { offset, length })
  // up to length bytes from offset (fewer at the end, none past it: a file larger than the heap is read in pieces);
  // listFiles() every path, sorted
  function readFile (path, encoding) {
    if (typeof path !== 'string') throw new TypeError('readFile: the path must be a string')
    if (encoding !== null && typeof encoding === 'object') {
      const offset = encoding.offset === undefined ? 0 : encoding.offset
      const length = encoding.length
      if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) throw new TypeError('readFile: offset and length must be whole numbers, 0 or more')
      const r = rf(path, false, offset, length)
      if (r instanceof Error) throw r
      return new Uint8Array(r)
    }
    if (encoding !== undefined && encoding !== 'utf8' && encoding !== 'utf-8') throw new TypeError('readFile: the only encoding is utf8')
    const r = rf(path, encoding !== undefined, 0, -1)
    if (r instanceof Error) throw r
    // a long text comes in pieces (the host's heap holds one at a time)
    if (Array.isArray(r)) return r.join('')
    if (typeof r === 'string' || encoding === undefined) return typeof r === 'string' ? r : new Uint8Array(r)
    // text with NUL bytes (the host passes strings as C strings): decoded here
    const b = new Uint8Array(r)
    let out = ''
    for (let i = 0; i < b.length;) {
      const c = b[i]
      let cp = 0xfffd, n = 1
      if (c < 0x80) { cp = c }
      else if (c >= 0xc2 && c < 0xe0 && (b[i + 1] & 0xc0) === 0x80) { cp = ((c & 31) << 6) | (b[i + 1] & 63); n = 2 }
      else if (c >= 0xe0 && c < 0xf0 && (b[i + 1] & 0xc0) === 0x80 && (b[i + 2] & 0xc0) === 0x80) { cp = ((c & 15) << 12) | ((b[i + 1] & 63) << 6) | (b[i + 2] & 63); n = 3; if (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000)) cp = 0xfffd }
      else if (c >= 0xf0 && c < 0xf5 && (b[i + 1] & 0xc0) === 0x80 && (b[i + 2] & 0xc0) === 0x80 && (b[i + 3] & 0xc0) === 0x80) { cp = ((c & 7) << 18) | ((b[i + 1] & 63) << 12) | ((b[i + 2] & 63) << 6) | (b[i + 3] & 63); n = 4; if (cp < 0x10000 || cp > 0x10ffff) cp = 0xfffd }
      out += String.fromCodePoint(cp)
      i += n
    }
    return out
  }
  function listFiles () { return JSON.parse(lf()) }
  return { writeFile: putFile('writeFile', false), appendFile: putFile('appendFile', true), readFile, listFiles }
})`

const HARNESS = `(function (input) {
  if (typeof main !== 'function') return undefined
  return main(JSON.parse(input))
})`

const STRINGIFY = `(function (v) { const s = JSON.stringify(v); return s === undefined ? undefined : s })`

/**
 * QuickJS's own memory limit does not count every allocation (ArrayBuffer
 * storage escaped it in a measurement: 2 GB under a 32 MB limit). So each
 * QuickJS instance also gets a wasm Memory whose maximum is the job's cap plus
 * the module's own initial heap: what a job can take is bounded by wasm, like
 * a wasm job. Instances are kept per cap (a couple at a time); creating one
 * from the precompiled module takes ≈ 1 ms.
 */
const QJS_BASE_PAGES = 256 // the emscripten module's initial memory (16 MiB)
const ENGINES_KEPT = 2
const engines = new Map<number, QuickJSWASMModule>()
/** each instance's wasm Memory: it only grows, so a job's peak shows in its size */
const memories = new WeakMap<QuickJSWASMModule, WebAssembly.Memory>()

/** A QuickJS instance whose whole heap is capped at `memoryBytes` + its base. */
export async function loadQuickJS (memoryBytes = 0): Promise<QuickJSWASMModule> {
  const maxPages = QJS_BASE_PAGES + Math.ceil(memoryBytes / 65536)
  const have = engines.get(maxPages)
  if (have != null) return have
  const wasmModule = await compileQuickJS()
  const wasmMemory = new WebAssembly.Memory({ initial: QJS_BASE_PAGES, maximum: maxPages })
  const engine = await newQuickJSWASMModuleFromVariant(newVariant(RELEASE_SYNC, wasmModule != null ? { wasmMemory, wasmModule } : { wasmMemory }))
  engines.set(maxPages, engine)
  memories.set(engine, wasmMemory)
  while (engines.size > ENGINES_KEPT) engines.delete(engines.keys().next().value as number)
  return engine
}

function seedWords (seed: string): number[] {
  const h = createHash('sha256').update('mercato/v1/executor/math-random\0').update(seed).digest()
  return [h.readUInt32LE(0), h.readUInt32LE(4), h.readUInt32LE(8), h.readUInt32LE(12)]
}

const encoder = new TextEncoder()

class Stop extends Error {
  constructor (readonly reason: FailureName, message: string) { super(message) }
}

/**
 * A runtime and context made ready for the next job while the worker is idle:
 * compiling the prelude is most of a trivial job's cost (≈ 0.4 ms of ≈ 0.9 ms
 * in QuickJS), and none of it depends on the job. The prelude, harness and
 * stringify functions are compiled, never called: nothing in the context has
 * run yet, so a job that takes the spare starts as clean as one that builds
 * its own (the seed, clock and host functions are given to the prelude when
 * the job calls it). One spare per worker, for the engine of the last job.
 */
interface Spare {
  QJS: QuickJSWASMModule
  rt: QuickJSRuntime
  ctx: QuickJSContext
  prelude: QuickJSHandle
  harness: QuickJSHandle
  stringify: QuickJSHandle
}

let spare: Spare | undefined
let spareTimer: NodeJS.Immediate | undefined

function compile (ctx: QuickJSContext, code: string, file: string): QuickJSHandle {
  const r = ctx.evalCode(code, file)
  if (r.error != null) {
    const why = JSON.stringify(ctx.dump(r.error))
    r.error.dispose()
    throw new Error(`QuickJS could not compile ${file}: ${why}`)
  }
  return r.value
}

function prepare (QJS: QuickJSWASMModule): Spare {
  // the module's newContext makes the runtime too, and makes this context the runtime's own: its
  // computeMemoryUsage() then works in this context instead of creating a second one (≈ 0.1 ms a job)
  const ctx = QJS.newContext()
  const rt = ctx.runtime
  rt.setMaxStackSize(JS_STACK_BYTES)
  try {
    return { QJS, rt, ctx, prelude: compile(ctx, PRELUDE, 'mercato:prelude'), harness: compile(ctx, HARNESS, 'mercato:harness'), stringify: compile(ctx, STRINGIFY, 'mercato:harness') }
  } catch (err) {
    free([], ctx, rt)
    throw err
  }
}

/** Free a job's (or a spare's) handles, context and runtime; the context owns the runtime. */
function free (handles: QuickJSHandle[], ctx: QuickJSContext, rt: QuickJSRuntime): void {
  for (const h of handles) if (h.alive) h.dispose()
  if (ctx.alive) ctx.dispose()
  if (rt.alive) rt.dispose()
}

function disposeSpare (s: Spare): void {
  free([s.prelude, s.harness, s.stringify], s.ctx, s.rt)
}

/**
 * Freeing a finished job's runtime (QuickJS collects its whole heap) waits until its result is
 * posted: the next job of this worker, or the worker's idle time, pays for it, and a job always
 * starts after the last one's runtime is freed (its heap shares the instance's capped memory).
 * If freeing fails, QuickJS itself is in doubt: the instance is dropped and the next job of that
 * cap gets a fresh one.
 */
let pendingFree: (() => void) | undefined

function freeLater (QJS: QuickJSWASMModule, handles: QuickJSHandle[], ctx: QuickJSContext, rt: QuickJSRuntime): void {
  flushFree()
  pendingFree = () => {
    try {
      free(handles, ctx, rt)
    } catch {
      for (const [pages, engine] of engines) if (engine === QJS) engines.delete(pages)
      if (spare?.QJS === QJS) spare = undefined
    }
  }
  setImmediate(flushFree).unref()
}

function flushFree (): void {
  const run = pendingFree
  pendingFree = undefined
  run?.()
}

/** The spare for this engine, or a fresh one; the spare is the caller's from here on. */
function takeSpare (QJS: QuickJSWASMModule): Spare {
  const s = spare
  spare = undefined
  if (s != null && s.QJS === QJS) return s
  if (s != null) disposeSpare(s)
  return prepare(QJS)
}

/** Ready the next job's context once the worker has nothing else to do. */
function prepareSpare (QJS: QuickJSWASMModule): void {
  if (spareTimer != null) return
  spareTimer = setImmediate(() => {
    spareTimer = undefined
    if (spare != null) return
    try { spare = prepare(QJS) } catch { /* the next job builds its own and reports what fails */ }
  })
  spareTimer.unref()
}

export async function runJs (job: RunJs, sink: OutputSink): Promise<DoneMessage> {
  flushFree()
  const QJS = await loadQuickJS(job.memoryBytes)
  const memory = memories.get(QJS)
  const sizeAtStart = memory?.buffer.byteLength ?? 0
  const started = performance.now()
  const deadline = started + job.timeoutMs
  sink.reset(job.outputBytes)

  let stop: Stop | undefined
  let interrupts = 0
  let recycle = false
  let exitCode = 0
  let output: string | undefined
  let error: DoneMessage['error']
  let memoryBytes = 0
  const outputs = new OutputFiles(job.files, job.outputDir, job.fdTable != null ? new Int32Array(job.fdTable) : undefined)
  let hostError: string | undefined

  let rt: QuickJSRuntime | undefined
  let ctx: QuickJSContext | undefined
  const handles: QuickJSHandle[] = []
  const keep = (h: QuickJSHandle): QuickJSHandle => { handles.push(h); return h }
  const stderr = (text: string): void => { sink.write(2, encoder.encode(text)) }
  /**
   * A guest value's length in UTF-16 units, read without copying it. Every guest string is
   * measured before it is copied into this worker's heap (WORKER_HEAP_MB): a string near that
   * size, copied whole, ends the whole process, not the worker.
   */
  const unitsOf = (h: QuickJSHandle): number => (ctx as QuickJSContext).getNumber(keep((ctx as QuickJSContext).getProp(h, 'length')))
  /** A guest value as text for an error report: a string only when short (JS_ERROR_TEXT_UNITS); never copied whole. */
  const shortText = (h: QuickJSHandle): string => {
    const c = ctx as QuickJSContext
    const t = c.typeof(h)
    if (t === 'undefined') return ''
    if (t === 'number') return String(c.getNumber(h))
    if (t !== 'string') return `[${t}]`
    const units = unitsOf(h)
    return units <= JS_ERROR_TEXT_UNITS ? c.getString(h) : `(${units} characters, not shown)`
  }
  /**
   * A guest exception's name, message and stack, read one by one and each only when short (an
   * exception can carry a string as large as the job's memory); null when the guest threw null.
   */
  const describeError = (h: QuickJSHandle): { name: string, message: string, stack: string } | null => {
    const c = ctx as QuickJSContext
    const t = c.typeof(h)
    if (t === 'object' && c.sameValue(h, c.null)) return null
    if (t !== 'object' && t !== 'function') return { name: 'Error', message: t === 'boolean' ? String(c.dump(h)) : shortText(h), stack: '' }
    const name = keep(c.getProp(h, 'name'))
    return { name: c.typeof(name) === 'undefined' ? 'Error' : shortText(name), message: shortText(keep(c.getProp(h, 'message'))), stack: shortText(keep(c.getProp(h, 'stack'))) }
  }
  /** UTF-8 bytes as a guest string; a long text as an array of pieces the guest joins (our heap holds one at a time). */
  const textOf = (bytes: Uint8Array): QuickJSHandle => {
    const c = ctx as QuickJSContext
    const whole = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
    if (whole.length <= JS_HOST_STRING_UNITS) return keep(c.newString(whole.toString('utf8')))
    const decoder = new StringDecoder('utf8')
    const pieces = keep(c.newArray())
    let n = 0
    const add = (text: string): void => {
      if (text === '') return
      const h = c.newString(text)
      c.setProp(pieces, n++, h)
      h.dispose()
    }
    for (let i = 0; i < whole.length; i += JS_HOST_STRING_UNITS) add(decoder.write(whole.subarray(i, i + JS_HOST_STRING_UNITS)))
    add(decoder.end())
    return pieces
  }

  try {
    const ready = takeSpare(QJS)
    rt = ready.rt
    ctx = ready.ctx
    keep(ready.prelude)
    keep(ready.harness)
    keep(ready.stringify)
    rt.setMemoryLimit(job.memoryBytes)
    rt.setInterruptHandler(() => {
      interrupts++
      if (stop != null) return true
      if (performance.now() > deadline) { stop = new Stop('timeout', `timed out after ${job.timeoutMs} ms`); return true }
      if (job.fuel != null && interrupts * JS_FUEL_PER_INTERRUPT > job.fuel) { stop = new Stop('fuel-exhausted', `fuel budget of ${job.fuel} exhausted`); return true }
      return false
    })
    const c = ctx
    const write = keep(c.newFunction('write', (fdH, textH) => {
      if (stop != null) return c.false
      const fd = c.getNumber(fdH) === 2 ? 2 : 1
      const text = c.getString(textH)
      if (text === '' && unitsOf(textH) > 0) {
        // QuickJS could not convert the string (its heap is full): never drop output silently
        stop = new Stop('memory-limit', `JS heap exceeded ${job.memoryBytes} bytes while writing output`)
        return c.false
      }
      sink.write(fd, encoder.encode(text))
      if (sink.truncated) { stop = new Stop('output-limit', `output exceeded ${job.outputBytes} bytes`); return c.false }
      return c.true
    }))
    // writeFile(path, data) / appendFile: the caps are checked on the sizes before any byte is copied out of QuickJS
    const caps = job.files
    const writeFile = keep(c.newFunction('writeFile', (pathH, dataH, offH, lenH, appendH) => {
      if (stop != null) return c.false
      const pathUnits = unitsOf(pathH)
      if (pathUnits > MAX_OUTPUT_PATH_BYTES) return keep(c.newString('invalid output path (too-long)'))
      const path = c.getString(pathH)
      // a C string conversion stops at NUL: a path whose length changed held one
      if (path.length !== pathUnits) return keep(c.newString('invalid output path (invalid)'))
      const n = normaliseOutputPath(path)
      if ('problem' in n) return keep(c.newString(`invalid output path ${JSON.stringify(path.slice(0, 64))} (${n.problem})`))
      const append = c.dump(appendH) === true
      // what this write may add: a replaced file frees its bytes, an appended one keeps them
      const room = append
        ? Math.min(caps.fileBytes - outputs.size(n.path), caps.totalBytes - outputs.totalBytes)
        : Math.min(caps.fileBytes, caps.totalBytes - (outputs.totalBytes - outputs.size(n.path)))
      const limit = (): QuickJSHandle => {
        stop = new Stop('output-limit', outputs.limitHit ?? `output file ${n.path} exceeded the output file caps (${caps.fileBytes} bytes a file, ${caps.totalBytes} in total)`)
        return c.false
      }
      const len = c.getNumber(lenH)
      let bytes: Uint8Array
      if (len < 0) {
        // a string: its UTF-8 form is at least as long as its length in UTF-16 units
        const units = unitsOf(dataH)
        if (units > room) return limit()
        // the API sends long strings in pieces (FILES): a longer one is not copied into our heap
        if (units > JS_HOST_STRING_UNITS) return keep(c.newString(`a string of over ${JS_HOST_STRING_UNITS} characters in one piece`))
        const text = c.getString(dataH)
        if (text === '' && units > 0) { stop = new Stop('memory-limit', `JS heap exceeded ${job.memoryBytes} bytes while writing a file`); return c.false }
        if (text.length !== units) return keep(c.newString('the string could not be read whole'))
        bytes = encoder.encode(text)
      } else {
        const off = c.getNumber(offH)
        const real = c.getNumber(keep(c.getProp(dataH, 'byteLength')))
        if (!Number.isInteger(off) || !Number.isInteger(len) || off < 0 || off + len > real) return keep(c.newString('data out of range'))
        if (len > room) return limit()
        const view = c.getArrayBuffer(dataH)
        try { bytes = view.value.slice(off, off + len) } finally { view.dispose() }
      }
      let problem
      try {
        problem = append ? outputs.append(n.path, bytes) : outputs.writeWhole(n.path, bytes)
      } catch (err) {
        if (!(err instanceof OutputDiskError)) throw err
        hostError = err.message
        stop = new Stop('trap', err.message)
        return c.false
      }
      if (problem === 'limit') return limit()
      if (problem != null) return keep(c.newString(`cannot write ${JSON.stringify(n.path)} (${problem === 'is-dir' ? 'a directory of other outputs' : problem === 'not-dir' ? 'a parent is a file' : problem})`))
      return c.true
    }))
    // readFile(path, text): the file's size is checked against the job's memory before a byte is read
    const inputs = new InputFiles(job.inputs ?? [])
    const fail = (why: string): QuickJSHandle => keep(c.newError({ name: 'Error', message: `readFile: ${why}` }))
    const readFile = keep(c.newFunction('readFile', (pathH, textH, offH, lenH) => {
      if (stop != null) return fail('stopped')
      const pathUnits = unitsOf(pathH)
      if (pathUnits > MAX_OUTPUT_PATH_BYTES) return fail('invalid input path (too-long)')
      const path = c.getString(pathH)
      if (path.length !== pathUnits) return fail('invalid input path')
      const n = normaliseOutputPath(path)
      if ('problem' in n) return fail(`invalid input path ${JSON.stringify(path.slice(0, 64))} (${n.problem})`)
      if (!inputs.isFile(n.path)) return fail(`no input file ${JSON.stringify(n.path)}${inputs.isDir(n.path) ? ' (a directory)' : ''}`)
      // a range (offset, length ≥ 0) or the whole file (length -1)
      const offset = c.getNumber(offH)
      const wanted = c.getNumber(lenH)
      const whole = inputs.size(n.path)
      const size = wanted < 0 ? whole : Math.max(0, Math.min(wanted, whole - offset))
      if (size > job.memoryBytes) {
        stop = new Stop('memory-limit', `input ${n.path}: ${size} bytes do not fit in the job's ${job.memoryBytes} bytes of memory`)
        return c.false
      }
      // one host copy, read in place; QuickJS takes its own copy of it
      const bytes = new Uint8Array(size)
      const got = inputs.read(n.path, bytes, 0, size, wanted < 0 ? 0 : offset)
      const exact = got === size ? bytes : bytes.slice(0, got)
      if (c.dump(textH) === true && !exact.includes(0)) return textOf(exact)
      return keep(c.newArrayBuffer(exact.buffer))
    }))
    const listFiles = keep(c.newFunction('listFiles', () => keep(c.newString(JSON.stringify(inputs.list())))))
    const call = (fn: QuickJSHandle, ...args: QuickJSHandle[]): QuickJSHandle => {
      const r = c.callFunction(fn, c.undefined, ...args)
      if (r.error != null) throw keep(r.error)
      return keep(r.value)
    }
    const evaluate = (code: string, file: string): QuickJSHandle => {
      const r = c.evalCode(code, file)
      if (r.error != null) throw keep(r.error)
      return keep(r.value)
    }

    // the file API over the host's functions, compiled when the job first calls it (the prelude keeps it)
    let api: QuickJSHandle | undefined
    const files = keep(c.newFunction('files', () => {
      api ??= call(evaluate(FILES, 'mercato:files'), writeFile, readFile, listFiles)
      return api
    }))

    call(ready.prelude, write, ...seedWords(job.seed).map(n => keep(c.newNumber(n))), keep(c.newNumber(VIRTUAL_EPOCH_MS)), keep(c.newNumber(JS_CLOCK_TICK_MS)), files)
    evaluate(job.source, 'job.js')
    let value = call(ready.harness, keep(c.newString(job.input)))
    const promise = c.getPromiseState(value)
    if (promise.type !== 'fulfilled' || promise.notAPromise !== true) {
      // an async main: run its jobs (there are no timers, so it settles now or never)
      if (promise.type === 'fulfilled') keep(promise.value)
      else if (promise.type === 'rejected') keep(promise.error)
      const pending = rt.executePendingJobs(-1)
      if (pending.error != null) throw keep(pending.error)
      const settled = c.getPromiseState(value)
      if (settled.type === 'pending') throw new Stop('trap', 'main() returned a promise that never settles')
      if (settled.type === 'rejected') throw keep(settled.error)
      value = keep(settled.value)
    }
    if (stop != null) throw stop
    const json = call(ready.stringify, value)
    if (c.typeof(json) === 'string') {
      // its UTF-8 form is at least as long as its UTF-16 length: measured before it is copied
      const units = unitsOf(json)
      if (units > JS_RESULT_MAX_UNITS) {
        stop = new Stop('output-limit', `main's return value is over ${JS_RESULT_MAX_UNITS} characters as JSON: write large results to an output file`)
      } else if (units > job.outputBytes) {
        stop = new Stop('output-limit', `output exceeded ${job.outputBytes} bytes`)
      } else {
        const text = c.getString(json)
        if (sink.charge(Buffer.byteLength(text))) output = text
        else stop = new Stop('output-limit', `output exceeded ${job.outputBytes} bytes`)
      }
    }
    if (stop != null) throw stop
  } catch (err) {
    if (stop != null) {
      error = { name: stop.reason, message: stop.message }
    } else if (err instanceof Stop) {
      error = { name: err.reason, message: err.message }
    } else if (ctx != null && err != null && typeof err === 'object' && 'alive' in err) {
      // a guest exception (a handle)
      let name = 'Error'
      let message = ''
      let stack = ''
      let isNull = false
      try {
        const d = describeError(err as QuickJSHandle)
        if (d === null) isNull = true
        else ({ name, message, stack } = d)
      } catch { message = 'unprintable exception' }
      if (isNull || (name === 'InternalError' && /out of memory/.test(message))) {
        // when QuickJS cannot even allocate its "out of memory" error, the exception is null
        // (a job that itself throws null is reported the same way: documented)
        error = { name: 'memory-limit', message: `JS heap exceeded ${job.memoryBytes} bytes` }
      } else if (name === 'InternalError' && /stack overflow/.test(message)) {
        error = { name: 'memory-limit', message: `stack overflow (stack cap ${JS_STACK_BYTES} bytes)` }
      } else if (name === 'InternalError' && /interrupted/.test(message)) {
        error = { name: 'timeout', message: `timed out after ${job.timeoutMs} ms` }
      } else {
        // an uncaught exception is the job's own failure, like `node` exiting 1
        exitCode = 1
        stderr(`Uncaught ${name}: ${message}\n${stack}`)
      }
    } else {
      // QuickJS itself failed (e.g. its wasm heap): throw the engine away
      recycle = true
      error = { name: 'trap', message: `QuickJS fault: ${err instanceof Error ? err.message : String(err)}` }
    }
  } finally {
    const oom = error?.name === 'memory-limit' && !error.message.startsWith('stack')
    try {
      if (oom) {
        memoryBytes = job.memoryBytes
      } else if (rt != null && ctx != null) {
        const mu = keep(rt.computeMemoryUsage())
        memoryBytes = ctx.getNumber(keep(ctx.getProp(mu, 'memory_used_size'))) || 0
      }
    } catch { /* best effort */ }
    // what the heap held at the end can be far below what the job took: the instance's memory
    // grew to hold its peak, and never shrinks
    memoryBytes = Math.max(memoryBytes, (memory?.buffer.byteLength ?? 0) - sizeAtStart)
    if (ctx != null && rt != null) {
      if (recycle) {
        try { free(handles, ctx, rt) } catch {}
      } else {
        freeLater(QJS, handles, ctx, rt)
      }
    }
  }
  if (error != null) {
    exitCode = -1
    output = undefined
  }
  // the next job's context, built while this worker waits for it (not when the engine is thrown away).
  // A job that hit its cap, or grew the instance's memory past RECYCLE_MEMORY_BYTES (wasm memory
  // never shrinks: a job that took 230 MiB and let it go left the worker that large), gives the
  // worker back: a fresh one takes its place
  const grown = (memory?.buffer.byteLength ?? 0) - QJS_BASE_PAGES * 65536
  const recycling = recycle || (error?.name === 'memory-limit' && !error.message.startsWith('stack')) || grown > RECYCLE_MEMORY_BYTES
  if (!recycling) prepareSpare(QJS)
  // a failed job has no output files (like its output value)
  const files = error == null && hostError == null ? outputs.take() : undefined
  if (files == null) outputs.discard()
  return {
    type: 'done',
    hostError,
    exitCode,
    output,
    files: files != null && files.length > 0 ? files : undefined,
    truncated: sink.truncated,
    wallMs: performance.now() - started,
    memoryBytes,
    fuel: job.fuel != null ? Math.min(job.fuel, interrupts * JS_FUEL_PER_INTERRUPT) : undefined,
    error,
    // a runtime that hit its memory limit leaves the QuickJS wasm heap grown: give it back
    recycle: recycling
  }
}
