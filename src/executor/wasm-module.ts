/**
 * A small wasm binary reader and rewriter: everything the executor needs to
 * make a module safe to run, done on the bytes before compilation.
 *
 * - Memory cap: the (single) memory's maximum, defined or imported, is
 *   rewritten to the job's cap, so `memory.grow` fails at the cap instead of
 *   growing the host (Worker resourceLimits do not cover wasm memory).
 *   Shared and 64-bit memories, and more than one memory, are refused: they
 *   cannot be capped this way. An initial size above the cap is a job-limit
 *   failure (`memory-limit`), not a bad module.
 * - Imports: functions only from `wasi_snapshot_preview1`, plus the memory;
 *   anything else (tables, globals, foreign functions) is refused.
 * - Tables: at most MAX_TABLES, MAX_TABLE_ELEMENTS elements in all; each
 *   table's maximum is rewritten (a table without a maximum cannot grow), so
 *   `table.grow` fails (returns -1) at the cap. Table elements are charged
 *   against the job's memory cap: the memory's maximum is lowered by what
 *   the tables may hold, so linear memory + tables stay within the cap.
 * - Budget: counts of everything else the engine allocates for a module
 *   (functions, locals, globals, types, imports, exports, element and data
 *   segments and their entries) are checked before compiling
 *   (constants.ts); over budget is `invalid-module`.
 * - Grow hook: every `memory.grow` is replaced by a call to an appended
 *   function that records a failed grow in an exported global, so the host
 *   knows exactly when a job ran into its memory cap.
 * - Fuel (optional): a deterministic instruction budget. Each straight-line
 *   segment of code (split at block/loop/if/else/end and branches) is
 *   preceded by code that subtracts the segment's instruction count from an
 *   exported i64 global and traps (`unreachable`) when it goes negative. Fuel
 *   used is a pure function of the executed path, the same on every provider.
 *
 * Appending (a type, a function, globals, exports) never shifts existing
 * indices, so no other part of the module needs renumbering.
 */
import {
  FUEL_EXPORT, FUEL_UNMETERED, GROW_FAILED_EXPORT, WASI_MODULE,
  MAX_TABLES, MAX_TABLE_ELEMENTS, TABLE_ELEMENT_BYTES, TABLE_FREE_BYTES, MAX_ELEMENT_ENTRIES, MAX_ELEMENT_SEGMENTS,
  MAX_DATA_SEGMENTS, MAX_FUNCTIONS, MAX_FUNCTION_LOCALS, MAX_TOTAL_LOCALS, MAX_LOCALS_TIMES_NESTING, MAX_GLOBALS, MAX_IMPORTS, MAX_EXPORTS, MAX_TYPES
} from './constants.js'

export const WASM_PAGE = 65536

/** The module cannot run in the sandbox at all. */
export class ModuleRejected extends Error {
  constructor (message: string) { super(message); this.name = 'ModuleRejected' }
}

/** The module needs more memory than the job allows. */
export class MemoryCapExceeded extends Error {
  constructor (message: string) { super(message); this.name = 'MemoryCapExceeded' }
}

/** Unknown opcode or type form: instrumentation is not possible (module may still run uninstrumented). */
class Unsupported extends Error {}

export interface MemoryInfo {
  imported: boolean
  module?: string
  name?: string
  initialPages: number
  maximumPages: number
}

export interface PreparedModule {
  bytes: Uint8Array<ArrayBuffer>
  memory?: MemoryInfo
  /** The module exports `_start` (a WASI command). */
  hasStart: boolean
  /** `memory.grow` calls are hooked (GROW_FAILED_EXPORT exists). */
  growHook: boolean
  /** Fuel metering compiled in (FUEL_EXPORT exists). */
  fuel: boolean
}

export interface PrepareOptions {
  maxPages: number
  fuel: boolean
}

// ---------------------------------------------------------------- reading

class Reader {
  pos: number
  constructor (readonly buf: Uint8Array, pos = 0, readonly end = buf.length) { this.pos = pos }

  eof (): boolean { return this.pos >= this.end }

  u8 (): number {
    if (this.pos >= this.end) throw new ModuleRejected('unexpected end of module')
    return this.buf[this.pos++]
  }

  u32 (): number {
    let result = 0
    let shift = 0
    for (let i = 0; i < 5; i++) {
      const b = this.u8()
      result += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return result
      shift += 7
    }
    throw new ModuleRejected('bad LEB128')
  }

  /** Signed LEB, returned as a number (blocktypes, small constants). */
  s33 (): number {
    let result = 0
    let shift = 0
    let b: number
    do {
      b = this.u8()
      result += (b & 0x7f) * 2 ** shift
      shift += 7
    } while ((b & 0x80) !== 0 && shift < 70)
    if ((b & 0x40) !== 0) result -= 2 ** shift
    return result
  }

  skipLeb (): void {
    for (let i = 0; i < 10; i++) if ((this.u8() & 0x80) === 0) return
    throw new ModuleRejected('bad LEB128')
  }

  skip (n: number): void {
    if (this.pos + n > this.end) throw new ModuleRejected('unexpected end of module')
    this.pos += n
  }

  name (): string {
    const n = this.u32()
    const start = this.pos
    this.skip(n)
    return new TextDecoder().decode(this.buf.subarray(start, start + n))
  }
}

function leb (value: number): number[] {
  const out: number[] = []
  do {
    let b = value % 128
    value = Math.floor(value / 128)
    if (value !== 0) b |= 0x80
    out.push(b)
  } while (value !== 0)
  return out
}

function sleb (value: bigint): number[] {
  const out: number[] = []
  for (;;) {
    const b = Number(value & 0x7fn)
    value >>= 7n
    if ((value === 0n && (b & 0x40) === 0) || (value === -1n && (b & 0x40) !== 0)) {
      out.push(b)
      return out
    }
    out.push(b | 0x80)
  }
}

function concat (parts: Array<Uint8Array | number[]>): Uint8Array<ArrayBuffer> {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

interface Section { id: number, start: number, end: number }

/** Canonical order of known sections (tag 13 sits between memory and global, datacount 12 before code). */
const ORDER: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 }

function readValtype (r: Reader): void {
  const b = r.u8()
  if (b === 0x63 || b === 0x64) { r.s33(); return } // (ref null? ht)
  if (b < 0x6a || b > 0x7f) throw new Unsupported(`value type 0x${b.toString(16)}`)
}

interface Limits { flags: number, min: number, max?: number }

function readLimits (r: Reader): Limits {
  const flags = r.u8()
  if (flags > 0x07) throw new ModuleRejected(`bad limits flags 0x${flags.toString(16)}`)
  const min = r.u32()
  const max = (flags & 1) !== 0 ? r.u32() : undefined
  return { flags, min, max }
}

function cappedLimits (l: Limits, maxPages: number): { bytes: number[], info: { initialPages: number, maximumPages: number } } {
  if ((l.flags & 0x02) !== 0) throw new ModuleRejected('shared memory is not allowed')
  if ((l.flags & 0x04) !== 0) throw new ModuleRejected('64-bit memory is not allowed')
  if (l.min > maxPages) throw new MemoryCapExceeded(`initial memory ${l.min} pages exceeds the cap of ${maxPages} pages`)
  const max = Math.min(l.max ?? maxPages, maxPages)
  return { bytes: [0x01, ...leb(l.min), ...leb(max)], info: { initialPages: l.min, maximumPages: max } }
}

// ---------------------------------------------------------------- budget

interface TableEntry {
  /** Bytes before the limits (reftype, or the 0x40 0x00 reftype prefix). */
  head: Uint8Array
  limits: Limits
  /** Bytes after the limits (the init expression of a 0x40 table). */
  tail: Uint8Array
}

function overBudget (what: string, n: number, max: number): void {
  if (n > max) throw new ModuleRejected(`${what}: ${n} exceeds the sandbox's limit of ${max}`)
}

/** Skip a constant expression (up to and including its `end`). */
function skipConstExpr (r: Reader): void {
  for (;;) {
    const op = r.u8()
    if (op === Op.End) return
    try {
      skipImmediates(r, op)
    } catch (err) {
      if (err instanceof Unsupported) throw new ModuleRejected(`unsupported constant expression: ${err.message}`)
      throw err
    }
  }
}

function readRefType (r: Reader): void {
  try { readValtype(r) } catch (err) {
    if (err instanceof Unsupported) throw new ModuleRejected(`unsupported reference type: ${err.message}`)
    throw err
  }
}

function readTables (bytes: Uint8Array, s: Section | undefined): TableEntry[] {
  if (s == null) return []
  const r = new Reader(bytes, s.start, s.end)
  const n = r.u32()
  overBudget('tables', n, MAX_TABLES)
  const tables: TableEntry[] = []
  for (let i = 0; i < n; i++) {
    const headStart = r.pos
    const withInit = r.buf[r.pos] === 0x40
    if (withInit) { r.u8(); if (r.u8() !== 0x00) throw new ModuleRejected('bad table encoding') }
    readRefType(r)
    const head = bytes.subarray(headStart, r.pos)
    const limits = readLimits(r)
    if ((limits.flags & 0x04) !== 0) throw new ModuleRejected('64-bit tables are not allowed')
    if ((limits.flags & 0x02) !== 0) throw new ModuleRejected('shared tables are not allowed')
    const tailStart = r.pos
    if (withInit) skipConstExpr(r)
    tables.push({ head, limits, tail: bytes.subarray(tailStart, r.pos) })
  }
  return tables
}

/**
 * Check the counts of everything the engine allocates for a module against
 * the sandbox's budget (constants.ts). Tables are handled by readTables.
 */
function checkBudget (bytes: Uint8Array, find: (id: number) => Section | undefined, importedFuncs: number): void {
  overBudget('types', vecCount(bytes, find(1)), MAX_TYPES)
  overBudget('functions', importedFuncs + vecCount(bytes, find(3)), MAX_FUNCTIONS)
  overBudget('globals', vecCount(bytes, find(6)), MAX_GLOBALS)
  overBudget('exports', vecCount(bytes, find(7)), MAX_EXPORTS)
  overBudget('data segments', vecCount(bytes, find(11)), MAX_DATA_SEGMENTS)
  const dc = find(12)
  if (dc != null) overBudget('data segments', new Reader(bytes, dc.start, dc.end).u32(), MAX_DATA_SEGMENTS)

  const elem = find(9)
  if (elem != null) {
    const r = new Reader(bytes, elem.start, elem.end)
    const n = r.u32()
    overBudget('element segments', n, MAX_ELEMENT_SEGMENTS)
    let entries = 0
    for (let i = 0; i < n; i++) {
      const flags = r.u32()
      if (flags > 7) throw new ModuleRejected(`bad element segment flags ${flags}`)
      const passiveOrDeclared = (flags & 1) !== 0
      const explicitTable = (flags & 2) !== 0
      const exprs = (flags & 4) !== 0
      if (!passiveOrDeclared && explicitTable) r.u32() // table index
      if (!passiveOrDeclared) skipConstExpr(r) // offset
      if (passiveOrDeclared || explicitTable) {
        if (exprs) readRefType(r); else r.u8() // reftype / elemkind
      }
      const k = r.u32()
      entries += k
      overBudget('element segment entries', entries, MAX_ELEMENT_ENTRIES)
      for (let j = 0; j < k; j++) { if (exprs) skipConstExpr(r); else r.u32() }
    }
  }

  const code = find(10)
  if (code != null) {
    const r = new Reader(bytes, code.start, code.end)
    const n = r.u32()
    let total = 0
    for (let i = 0; i < n; i++) {
      const size = r.u32()
      const end = r.pos + size
      const br = new Reader(bytes, r.pos, Math.min(end, code.end))
      const groups = br.u32()
      let locals = 0
      for (let g = 0; g < groups; g++) {
        locals += br.u32()
        overBudget(`locals of function ${importedFuncs + i}`, locals, MAX_FUNCTION_LOCALS)
        readRefType(br)
      }
      total += locals
      overBudget('locals of all functions', total, MAX_TOTAL_LOCALS)
      // the baseline compiler keeps a copy of the locals' state for every open block: its memory
      // grows with locals × nesting, outside every cap (50,000 locals in 1,000 nested ifs, 5 KB of
      // module, took 1.26 GB). The most blocks a body could nest is a bound when its code cannot be read
      if (locals > 0) {
        const fnEnd = Math.min(end, code.end)
        const depth = maxNesting(bytes, br.pos, fnEnd) ?? Math.ceil((fnEnd - br.pos) / 2)
        overBudget(`locals × block nesting of function ${importedFuncs + i} (${locals} × ${depth})`, locals * depth, MAX_LOCALS_TIMES_NESTING)
      }
      r.skip(size)
    }
  }
}

// ---------------------------------------------------------------- code

/** The deepest nesting of blocks (block, loop, if, try, try_table) in a function body's code; undefined when it cannot be read. */
function maxNesting (bytes: Uint8Array, start: number, end: number): number | undefined {
  const r = new Reader(bytes, start, end)
  let depth = 0
  let max = 0
  try {
    while (!r.eof()) {
      const op = r.u8()
      skipImmediates(r, op)
      if (op === Op.Block || op === Op.Loop || op === Op.If || op === Op.Try || op === 0x1f) { if (++depth > max) max = depth } else if (op === Op.End) depth--
    }
  } catch (err) {
    if (err instanceof Unsupported) return undefined
    throw err
  }
  return max
}

const enum Op {
  Unreachable = 0x00, Block = 0x02, Loop = 0x03, If = 0x04, Else = 0x05, Try = 0x06, Catch = 0x07,
  End = 0x0b, Br = 0x0c, BrIf = 0x0d, BrTable = 0x0e, Return = 0x0f, Delegate = 0x18, CatchAll = 0x19,
  MemoryGrow = 0x40
}

/** Instructions after which a new metered segment starts (branch targets and branches). */
function endsSegment (op: number): boolean {
  return op === Op.Block || op === Op.Loop || op === Op.If || op === Op.Else || op === Op.End ||
    op === Op.Br || op === Op.BrIf || op === Op.BrTable || op === Op.Return || op === Op.Unreachable ||
    op === Op.Try || op === Op.Catch || op === Op.CatchAll || op === Op.Delegate || op === 0x1f ||
    op === 0x12 || op === 0x13 || op === 0x08 || op === 0x09 || op === 0x0a
}

function memarg (r: Reader): void {
  const align = r.u32()
  if ((align & 0x40) !== 0) r.u32() // multi-memory index
  r.u32()
}

/** Skip one instruction's immediates; returns the opcode (prefix opcodes return the prefix). */
function skipImmediates (r: Reader, op: number): void {
  switch (op) {
    case 0x02: case 0x03: case 0x04: case 0x06: {
      const first = r.buf[r.pos]
      if (first === 0x63 || first === 0x64) throw new Unsupported('typed-reference block type')
      r.s33()
      return
    }
    case 0x07: case 0x08: case 0x09: case 0x18: case 0x0c: case 0x0d: case 0x10: case 0x12:
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: case 0xd2:
      r.u32(); return
    case 0x0e: { const n = r.u32(); for (let i = 0; i <= n; i++) r.u32(); return }
    case 0x11: case 0x13: r.u32(); r.u32(); return
    case 0x1c: { const n = r.u32(); for (let i = 0; i < n; i++) readValtype(r); return }
    case 0x1f: {
      const first = r.buf[r.pos]
      if (first === 0x63 || first === 0x64) throw new Unsupported('typed-reference block type')
      r.s33()
      const n = r.u32()
      for (let i = 0; i < n; i++) { const k = r.u8(); if (k < 2) r.u32(); r.u32() }
      return
    }
    case 0x3f: case 0x40: r.u32(); return
    case 0x41: case 0x42: r.skipLeb(); return
    case 0x43: r.skip(4); return
    case 0x44: r.skip(8); return
    case 0xd0: r.s33(); return
    case 0xfc: {
      const sub = r.u32()
      if (sub <= 7) return
      if (sub === 8) { r.u32(); r.u32(); return }
      if (sub === 9 || sub === 11 || sub === 13 || (sub >= 15 && sub <= 17)) { r.u32(); return }
      if (sub === 10 || sub === 12 || sub === 14) { r.u32(); r.u32(); return }
      throw new Unsupported(`0xfc ${sub}`)
    }
    case 0xfd: {
      const sub = r.u32()
      if (sub <= 0x0b || sub === 0x5c || sub === 0x5d) { memarg(r); return }
      if (sub === 0x0c || sub === 0x0d) { r.skip(16); return }
      if (sub >= 0x15 && sub <= 0x22) { r.skip(1); return }
      if (sub >= 0x54 && sub <= 0x5b) { memarg(r); r.skip(1); return }
      return
    }
    case 0xfe: {
      const sub = r.u32()
      if (sub === 0x03) { r.skip(1); return }
      memarg(r); return
    }
    default:
      if (op >= 0x28 && op <= 0x3e) { memarg(r); return }
      if (op === 0x00 || op === 0x01 || op === 0x05 || op === 0x0a || op === 0x0b || op === 0x0f ||
        op === 0x19 || op === 0x1a || op === 0x1b || (op >= 0x45 && op <= 0xc4) || op === 0xd1) return
      throw new Unsupported(`opcode 0x${op.toString(16)}`)
  }
}

function meterCode (fuelGlobal: number, cost: number): number[] {
  const g = leb(fuelGlobal)
  return [
    0x23, ...g, 0x42, ...sleb(BigInt(cost)), 0x7d, 0x24, ...g, // fuel -= cost
    0x23, ...g, 0x42, 0x00, 0x53, // fuel < 0
    0x04, 0x40, 0x00, 0x0b // if unreachable end
  ]
}

interface CodeRewrite { growFunc?: number, fuelGlobal?: number }

function rewriteBody (buf: Uint8Array, start: number, end: number, rw: CodeRewrite): Uint8Array {
  const r = new Reader(buf, start, end)
  const nLocalGroups = r.u32()
  for (let i = 0; i < nLocalGroups; i++) { r.u32(); readValtype(r) }
  const chunks: Array<Uint8Array | number[]> = [buf.subarray(start, r.pos)]
  const metered = rw.fuelGlobal != null
  let slot = -1 // index in chunks of the current segment's meter placeholder
  let cost = 0
  let copyFrom = r.pos
  const flushCopy = (upTo: number): void => { if (upTo > copyFrom) chunks.push(buf.subarray(copyFrom, upTo)); copyFrom = upTo }
  const openSegment = (): void => { if (metered) { chunks.push([]); slot = chunks.length - 1; cost = 0 } }
  const closeSegment = (): void => { if (metered && slot >= 0 && cost > 0) chunks[slot] = meterCode(rw.fuelGlobal as number, cost); slot = -1 }
  openSegment()
  while (!r.eof()) {
    if (metered && slot < 0) { flushCopy(r.pos); openSegment() }
    const opStart = r.pos
    const op = r.u8()
    skipImmediates(r, op)
    cost++
    if (op === Op.MemoryGrow && rw.growFunc != null) {
      flushCopy(opStart)
      chunks.push([0x10, ...leb(rw.growFunc)])
      copyFrom = r.pos
    }
    if (endsSegment(op)) { flushCopy(r.pos); closeSegment() }
  }
  flushCopy(r.pos)
  closeSegment()
  const body = concat(chunks)
  return concat([leb(body.length), body])
}

// ---------------------------------------------------------------- prepare

/**
 * Validate the module's shape, cap its memory and (when possible) hook
 * memory.grow and meter fuel. Throws ModuleRejected (→ invalid-module) or
 * MemoryCapExceeded (→ memory-limit). Does not compile: WebAssembly.compile
 * does the full validation afterwards.
 */
export function prepareModule (bytes: Uint8Array, opts: PrepareOptions): PreparedModule {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new ModuleRejected('not a wasm module (bad magic)')
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new ModuleRejected('unsupported wasm version (components are not supported)')
  }
  const r = new Reader(bytes, 8)
  const sections: Section[] = []
  let lastOrder = 0
  while (!r.eof()) {
    const id = r.u8()
    const size = r.u32()
    const start = r.pos
    r.skip(size)
    if (id !== 0) {
      const order = ORDER[id]
      if (order == null) throw new ModuleRejected(`unknown section id ${id}`)
      if (order <= lastOrder) throw new ModuleRejected(`section ${id} out of order`)
      lastOrder = order
    }
    sections.push({ id, start, end: r.pos })
  }
  const find = (id: number): Section | undefined => sections.find(s => s.id === id)

  // imports and the memory, capped at `maxPages`
  const capMemories = (maxPages: number): { memory?: MemoryInfo, importedFuncs: number, payloads: Map<number, Uint8Array> } => {
    let memory: MemoryInfo | undefined
    let memoryCount = 0
    let importedFuncs = 0
    const payloads = new Map<number, Uint8Array>()
    const imp = find(2)
    if (imp != null) {
      const ir = new Reader(bytes, imp.start, imp.end)
      const n = ir.u32()
      overBudget('imports', n, MAX_IMPORTS)
      const out: Array<Uint8Array | number[]> = [leb(n)]
      for (let i = 0; i < n; i++) {
        const entryStart = ir.pos
        const mod = ir.name()
        const name = ir.name()
        const kind = ir.u8()
        if (kind === 0) {
          ir.u32()
          if (mod !== WASI_MODULE) throw new ModuleRejected(`import ${mod}.${name}: only ${WASI_MODULE} functions can be imported`)
          importedFuncs++
          out.push(bytes.subarray(entryStart, ir.pos))
        } else if (kind === 2) {
          const headEnd = ir.pos
          const capped = cappedLimits(readLimits(ir), maxPages)
          memoryCount++
          memory = { imported: true, module: mod, name, ...capped.info }
          out.push(bytes.subarray(entryStart, headEnd), capped.bytes)
        } else {
          throw new ModuleRejected(`import ${mod}.${name}: only functions and a memory can be imported (kind ${kind})`)
        }
      }
      payloads.set(2, concat(out))
    }
    const mem = find(5)
    if (mem != null) {
      const mr = new Reader(bytes, mem.start, mem.end)
      const n = mr.u32()
      const out: Array<Uint8Array | number[]> = [leb(n)]
      for (let i = 0; i < n; i++) {
        const capped = cappedLimits(readLimits(mr), maxPages)
        memoryCount++
        memory = { imported: false, ...capped.info }
        out.push(capped.bytes)
      }
      payloads.set(5, concat(out))
    }
    if (memoryCount > 1) throw new ModuleRejected('more than one memory is not allowed')
    return { memory, importedFuncs, payloads }
  }

  // first pass: shape and the memory's initial size against the whole cap
  const first = capMemories(opts.maxPages)
  const importedFuncs = first.importedFuncs
  const importedGlobals = 0 // global imports are refused
  checkBudget(bytes, find, importedFuncs)

  // tables: count, elements, and their bytes against the job's memory cap
  const capBytes = opts.maxPages * WASM_PAGE
  const tables = readTables(bytes, find(4))
  const replaced = new Map<number, Uint8Array>() // section id -> new payload
  let tableBytes = 0
  if (tables.length > 0) {
    const minElements = tables.reduce((n, t) => n + t.limits.min, 0)
    overBudget('table elements', minElements, MAX_TABLE_ELEMENTS)
    const memoryBytes = (first.memory?.initialPages ?? 0) * WASM_PAGE
    const charge = (elements: number): number => Math.max(0, elements * TABLE_ELEMENT_BYTES - TABLE_FREE_BYTES)
    if (memoryBytes + charge(minElements) > capBytes) {
      throw new MemoryCapExceeded(`tables of ${minElements} elements (${minElements * TABLE_ELEMENT_BYTES} bytes) and ${memoryBytes} bytes of initial memory exceed the cap of ${capBytes} bytes`)
    }
    // growth room: what the cap and the element limit leave, given out table by table
    const byCap = Math.floor((capBytes - memoryBytes + TABLE_FREE_BYTES) / TABLE_ELEMENT_BYTES)
    let elements = minElements
    const out: Array<Uint8Array | number[]> = [leb(tables.length)]
    for (const t of tables) {
      const wanted = (t.limits.max ?? t.limits.min) - t.limits.min
      const grant = Math.max(0, Math.min(wanted, MAX_TABLE_ELEMENTS - elements, byCap - elements))
      elements += grant
      out.push(t.head, [0x01, ...leb(t.limits.min), ...leb(t.limits.min + grant)], t.tail)
    }
    replaced.set(4, concat(out))
    tableBytes = charge(elements)
  }

  // second pass: the memory's maximum leaves room for the tables
  const { memory, payloads } = tableBytes > 0
    ? capMemories(Math.min(opts.maxPages, Math.floor((capBytes - tableBytes) / WASM_PAGE)))
    : first
  for (const [id, payload] of payloads) replaced.set(id, payload)

  // exports: is there a _start?
  let hasStart = false
  const exp = find(7)
  if (exp != null) {
    const er = new Reader(bytes, exp.start, exp.end)
    const n = er.u32()
    for (let i = 0; i < n; i++) {
      const name = er.name()
      const kind = er.u8()
      er.u32()
      if (name === '_start' && kind === 0) hasStart = true
    }
  }

  // the module as sent must be valid on its own: the instrumentation appends globals, a function
  // and a type, which would give meaning to indices the module names but does not have (a body
  // writing global 0 in a module with no globals wrote our grow-failed flag, forging memory-limit;
  // another rewrote the fuel counter)
  if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) throw new ModuleRejected('the module is not valid WebAssembly (WebAssembly.validate refused it before instrumentation)')

  // instrumentation (grow hook always, fuel on request)
  let growHook = false
  let fuel = false
  const code = find(10)
  try {
    if (code != null && (memory != null || opts.fuel)) {
      const instrumented = instrument(bytes, sections, importedFuncs, importedGlobals, memory != null, opts.fuel)
      for (const [id, payload] of instrumented) replaced.set(id, payload)
      growHook = memory != null
      fuel = opts.fuel
    }
  } catch (err) {
    if (!(err instanceof Unsupported)) throw err
    if (opts.fuel) throw new ModuleRejected(`fuel metering is not possible for this module: ${err.message}`)
  }

  // assemble
  const parts: Array<Uint8Array | number[]> = [bytes.subarray(0, 8)]
  const pending = new Map(replaced)
  const emit = (id: number, payload: Uint8Array): void => { parts.push([id, ...leb(payload.length)], payload) }
  for (const s of sections) {
    if (s.id !== 0) {
      // sections the rewrite adds that the module lacked go before the first later one
      for (const [id, payload] of pending) {
        if (find(id) == null && ORDER[id] < ORDER[s.id]) { emit(id, payload); pending.delete(id) }
      }
    }
    const payload = pending.get(s.id)
    if (s.id !== 0 && payload != null) { emit(s.id, payload); pending.delete(s.id) } else {
      parts.push(bytes.subarray(sectionHeaderStart(bytes, s), s.end))
    }
  }
  for (const [id, payload] of [...pending].sort((a, b) => ORDER[a[0]] - ORDER[b[0]])) emit(id, payload)
  return { bytes: concat(parts), memory, hasStart, growHook, fuel }
}

/** Where the section's id byte is (payload start minus the size LEB and id). */
function sectionHeaderStart (bytes: Uint8Array, s: Section): number {
  // walk back over the size LEB: its bytes all have the top bit set except the last
  let p = s.start - 1 // last byte of the LEB
  while (p - 1 >= 0 && (bytes[p - 1] & 0x80) !== 0) p--
  return p - 1
}

function appendToVec (bytes: Uint8Array, s: Section | undefined, entries: Array<number[]>): Uint8Array {
  let count = 0
  let rest: Uint8Array = new Uint8Array(0)
  if (s != null) {
    const r = new Reader(bytes, s.start, s.end)
    count = r.u32()
    rest = bytes.subarray(r.pos, s.end)
  }
  return concat([leb(count + entries.length), rest, ...entries])
}

function vecCount (bytes: Uint8Array, s: Section | undefined): number {
  return s == null ? 0 : new Reader(bytes, s.start, s.end).u32()
}

function instrument (bytes: Uint8Array, sections: Section[], importedFuncs: number, importedGlobals: number, withGrow: boolean, withFuel: boolean): Map<number, Uint8Array> {
  const find = (id: number): Section | undefined => sections.find(s => s.id === id)
  const out = new Map<number, Uint8Array>()

  // types: make sure every entry is a plain func type (GC rec groups would break index arithmetic)
  const typeSec = find(1)
  let typeCount = 0
  if (typeSec != null) {
    const r = new Reader(bytes, typeSec.start, typeSec.end)
    typeCount = r.u32()
    for (let i = 0; i < typeCount; i++) {
      if (r.u8() !== 0x60) throw new Unsupported('non-function type (GC proposal)')
      const np = r.u32(); for (let j = 0; j < np; j++) readValtype(r)
      const nr = r.u32(); for (let j = 0; j < nr; j++) readValtype(r)
    }
  }
  const funcSec = find(3)
  const definedFuncs = vecCount(bytes, funcSec)
  let growFunc: number | undefined
  if (withGrow) {
    out.set(1, appendToVec(bytes, typeSec, [[0x60, 0x01, 0x7f, 0x01, 0x7f]]))
    growFunc = importedFuncs + definedFuncs
    out.set(3, appendToVec(bytes, funcSec, [leb(typeCount)]))
  }

  const globalSec = find(6)
  let nextGlobal = importedGlobals + vecCount(bytes, globalSec)
  const fuelGlobal = withFuel ? nextGlobal++ : undefined
  const growGlobal = withGrow ? nextGlobal++ : undefined
  const newGlobals: number[][] = []
  if (fuelGlobal != null) newGlobals.push([0x7e, 0x01, 0x42, ...sleb(FUEL_UNMETERED), 0x0b])
  if (growGlobal != null) newGlobals.push([0x7f, 0x01, 0x41, 0x00, 0x0b])
  out.set(6, appendToVec(bytes, globalSec, newGlobals))

  const enc = new TextEncoder()
  const exportEntry = (name: string, kind: number, idx: number): number[] => {
    const n = enc.encode(name)
    return [...leb(n.length), ...n, kind, ...leb(idx)]
  }
  const newExports: number[][] = []
  if (growGlobal != null) newExports.push(exportEntry(GROW_FAILED_EXPORT, 3, growGlobal))
  if (fuelGlobal != null) newExports.push(exportEntry(FUEL_EXPORT, 3, fuelGlobal))
  out.set(7, appendToVec(bytes, find(7), newExports))

  // code: rewrite every body, then append the grow wrapper
  const codeSec = find(10) as Section
  const r = new Reader(bytes, codeSec.start, codeSec.end)
  const n = r.u32()
  const bodies: Uint8Array[] = []
  for (let i = 0; i < n; i++) {
    const size = r.u32()
    const start = r.pos
    r.skip(size)
    bodies.push(rewriteBody(bytes, start, r.pos, { growFunc, fuelGlobal }))
  }
  if (growGlobal != null) {
    const g = leb(growGlobal)
    const wrapper = [
      0x01, 0x01, 0x7f, // one i32 local
      0x20, 0x00, 0x40, 0x00, 0x22, 0x01, // local.get 0; memory.grow 0; local.tee 1
      0x41, 0x7f, 0x46, 0x04, 0x40, // i32.const -1; i32.eq; if
      0x41, 0x01, 0x24, ...g, 0x0b, // i32.const 1; global.set grow; end
      0x20, 0x01, 0x0b // local.get 1; end
    ]
    bodies.push(concat([leb(wrapper.length), wrapper]))
  }
  out.set(10, concat([leb(bodies.length), ...bodies]))
  return out
}
