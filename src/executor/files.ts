/**
 * Output files: what a job writes under `/outputs` (wasm) or through
 * `writeFile(path, data)` (js), written to the job's staging folder on the
 * provider's disk as the guest writes them, and handed back with the result
 * as host files (the worker never holds a whole file).
 *
 * Caps are checked before any byte is written: a file never grows past the
 * per-file cap, all files together never past the total cap, and no more
 * files than the file cap are created. Exceeding one stops the job with
 * `output-limit` (the worker engines turn `false` from {@link OutputFiles.write}
 * into that failure). Paths are relative, `/`-separated, with no empty,
 * `.` or `..` segment, no NUL or control character, no backslash, at most
 * MAX_OUTPUT_PATH_BYTES of UTF-8; a file and a directory never share a name.
 * {@link OutputFiles.take} returns the files sorted by the UTF-8 bytes of
 * their paths, so the same job lists the same outputs in the same order on
 * every provider.
 */
import { closeSync, ftruncateSync, openSync, unlinkSync, writeSync, constants as fsc } from 'node:fs'
import { isAbsolute, join, relative, resolve, sep } from 'node:path'
import { MAX_OUTPUT_DIRS, MAX_OUTPUT_FILE_BYTES, MAX_OUTPUT_FILES, MAX_OUTPUT_PATH_BYTES, MAX_OUTPUT_TOTAL_BYTES, OUTPUT_GAP_FILL_BYTES } from './constants.js'

export interface OutputCaps {
  /** Most files a job may create. */
  files: number
  /** Largest single file (bytes). */
  fileBytes: number
  /** All files together (bytes). */
  totalBytes: number
}

export const DEFAULT_OUTPUT_CAPS: OutputCaps = { files: MAX_OUTPUT_FILES, fileBytes: MAX_OUTPUT_FILE_BYTES, totalBytes: MAX_OUTPUT_TOTAL_BYTES }

/** Why a path is refused. */
export type PathProblem = 'empty' | 'escape' | 'invalid' | 'too-long'

const encoder = new TextEncoder()
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/**
 * Check an output path as the guest wrote it. Returns the normalised path
 * (`./` segments and repeated or trailing slashes dropped) or the problem.
 * Absolute paths and `..` are `escape`: an output names a file inside the
 * job's output directory and nothing else.
 */
export function normaliseOutputPath (path: string): { path: string } | { problem: PathProblem } {
  if (path.length === 0) return { problem: 'empty' }
  if (encoder.encode(path).length > MAX_OUTPUT_PATH_BYTES) return { problem: 'too-long' }
  if (path.startsWith('/')) return { problem: 'escape' }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(path) || LONE_SURROGATE.test(path)) return { problem: 'invalid' }
  const segments: string[] = []
  for (const s of path.split('/')) {
    if (s === '' || s === '.') continue
    if (s === '..') return { problem: 'escape' }
    segments.push(s)
  }
  if (segments.length === 0) return { problem: 'empty' }
  return { path: segments.join('/') }
}

/** A path exactly as an output list must carry it (already normalised): what a requester and a downloader accept. */
export function isCanonicalOutputPath (path: string): boolean {
  const n = normaliseOutputPath(path)
  return 'path' in n && n.path === path
}

/** `target` is `root` itself or lies below it (both absolute). */
export function isWithin (root: string, target: string): boolean {
  const rel = relative(root, target)
  return rel === '' || (rel !== '..' && !rel.startsWith('..' + sep) && !isAbsolute(rel))
}

/**
 * Where output `path` lands in directory `root` on disk, or undefined when it is not a canonical
 * output path or would not land strictly inside `root`: what `mercato get` and `mercato exec
 * --outputs` check before they write a file a job named.
 */
export function outputTarget (root: string, path: string): string | undefined {
  if (!isCanonicalOutputPath(path)) return undefined
  const target = resolve(root, path)
  return target !== resolve(root) && isWithin(resolve(root), target) ? target : undefined
}

/** Compare paths by their UTF-8 bytes (the one order every provider and requester uses). */
export function comparePaths (a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

/**
 * A list of output paths is well formed: canonical paths, strictly sorted
 * (so no duplicates), and no path is a directory of another (`a` and `a/b`).
 * Returns the first problem, or undefined.
 */
export function outputListProblem (paths: string[]): string | undefined {
  for (let i = 0; i < paths.length; i++) {
    if (!isCanonicalOutputPath(paths[i])) return `output path ${JSON.stringify(paths[i].slice(0, 64))} is not a plain relative path`
    if (i > 0) {
      const c = comparePaths(paths[i - 1], paths[i])
      if (c === 0) return `output path ${JSON.stringify(paths[i])} is listed twice`
      if (c > 0) return 'output paths are not sorted'
    }
  }
  const set = new Set(paths)
  for (const p of paths) {
    for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) {
      if (set.has(p.slice(0, i))) return `output path ${JSON.stringify(p.slice(0, i))} is both a file and a directory`
    }
  }
  return undefined
}

/** What creating a file can answer (besides a normalised path problem). */
export type CreateProblem = PathProblem | 'exists' | 'is-dir' | 'not-dir' | 'not-found' | 'limit'

/**
 * The host could not write an output file (its disk is full, the staging folder is gone): the
 * provider's problem, not the job's. The engines end the job with it and the pool throws
 * {@link OutputStorageError}, so no result is signed for it.
 */
export class OutputDiskError extends Error {
  constructor (message: string) { super(message); this.name = 'OutputDiskError' }
}

/** One output file as the worker hands it back: its path, the host file holding its bytes, its size. */
export interface StagedOutput { path: string, file: string, size: number }

interface OpenOutput { name: string, fd: number, size: number, slot: number }

const gapZeros = new Uint8Array(OUTPUT_GAP_FILL_BYTES)

/**
 * The worker's view of a job's output directory. The names, the tree and the caps live here; the
 * bytes go to disk as the guest writes them, one host file per output in the job's staging folder
 * `dir`, named by a counter (`o1`, `o2`, ...) and never by the guest's path, so no guest path ever
 * reaches the host's filesystem. Each file's descriptor is kept open while it exists and recorded
 * in `fdTable` (shared with the pool), so a worker killed mid-job leaks no descriptor: the pool
 * closes what the table still names once the thread is gone. A job that fails keeps nothing
 * ({@link discard}).
 */
export class OutputFiles {
  readonly caps: OutputCaps
  private readonly files = new Map<string, OpenOutput>()
  private readonly dirs = new Set<string>()
  private readonly dir?: string
  private readonly fdTable?: Int32Array
  private total = 0
  private counter = 0
  /** Set when a cap was hit: the job must stop with `output-limit`. */
  limitHit?: string

  constructor (caps: OutputCaps, dir?: string, fdTable?: Int32Array) {
    this.caps = caps
    this.dir = dir
    this.fdTable = fdTable
  }

  get totalBytes (): number { return this.total }
  get count (): number { return this.files.size }

  has (path: string): boolean { return this.files.has(path) }
  isDir (path: string): boolean { return this.dirs.has(path) }
  size (path: string): number { return this.files.get(path)?.size ?? 0 }

  /** A parent of `path` is a file (so `path` cannot exist), or undefined. */
  private fileParent (path: string): boolean {
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
      if (this.files.has(path.slice(0, i))) return true
    }
    return false
  }

  /** Make a directory (and its parents). Past MAX_OUTPUT_DIRS: 'limit', and {@link limitHit} is set. */
  mkdir (path: string): CreateProblem | undefined {
    if (this.files.has(path)) return 'exists'
    if (this.fileParent(path)) return 'not-dir'
    if (this.dirs.has(path)) return 'exists'
    return this.addDirs(path, true) ? undefined : 'limit'
  }

  /** Record `path`'s parents (and `path` itself when `self`); false, and nothing recorded, past MAX_OUTPUT_DIRS. */
  private addDirs (path: string, self: boolean): boolean {
    const added: string[] = []
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
      const dir = path.slice(0, i)
      if (!this.dirs.has(dir)) added.push(dir)
    }
    if (self) added.push(path)
    if (this.dirs.size + added.length > MAX_OUTPUT_DIRS) {
      this.limitHit = `more than ${MAX_OUTPUT_DIRS} output directories`
      return false
    }
    for (const dir of added) this.dirs.add(dir)
    return true
  }

  /** Run a host file operation; its failure is the host's ({@link OutputDiskError}), never the guest's. */
  private host<T> (what: string, fn: () => T): T {
    try { return fn() } catch (err: any) { throw new OutputDiskError(`cannot ${what} an output file: ${String(err?.code ?? err?.message ?? err)}`) }
  }

  /** A free slot in the descriptor table (there are as many as the file cap). */
  private freeSlot (): number {
    const t = this.fdTable
    if (t == null) return -1
    for (let i = 0; i < t.length; i++) if (Atomics.load(t, i) < 0) return i
    return -1
  }

  /**
   * Open `path` for writing: created when missing (`create`), emptied when
   * `truncate`. A new file beyond the file cap sets {@link limitHit}.
   */
  open (path: string, opts: { create: boolean, exclusive?: boolean, truncate?: boolean }): CreateProblem | undefined {
    if (this.dirs.has(path)) return 'is-dir'
    if (this.fileParent(path)) return 'not-dir'
    const f = this.files.get(path)
    if (f != null) {
      if (opts.create && opts.exclusive === true) return 'exists'
      if (opts.truncate === true && f.size > 0) {
        this.host('truncate', () => { ftruncateSync(f.fd, 0) })
        this.total -= f.size
        f.size = 0
      }
      return undefined
    }
    if (!opts.create) return 'not-found'
    if (this.files.size >= this.caps.files || this.dir == null) {
      this.limitHit = `more than ${this.caps.files} output files`
      return 'limit'
    }
    if (!this.addDirs(path, false)) return 'limit'
    const name = `o${++this.counter}`
    const dir = this.dir
    // O_EXCL and O_NOFOLLOW: a name in the job's own fresh folder, never through a link
    const fd = this.host('create', () => openSync(join(dir, name), fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600))
    const slot = this.freeSlot()
    if (slot >= 0 && this.fdTable != null) Atomics.store(this.fdTable, slot, fd)
    this.files.set(path, { name, fd, size: 0, slot })
    return undefined
  }

  private close (f: OpenOutput): void {
    if (f.slot >= 0 && this.fdTable != null) Atomics.store(this.fdTable, f.slot, -1)
    try { closeSync(f.fd) } catch {}
  }

  /** Remove a file (a guest's unlink). */
  remove (path: string): boolean {
    const f = this.files.get(path)
    if (f == null) return false
    this.total -= f.size
    this.files.delete(path)
    this.close(f)
    if (this.dir != null) { try { unlinkSync(join(this.dir, f.name)) } catch {} }
    return true
  }

  /**
   * Write `data` at `pos` of an open file (growing it; a gap reads as zeros).
   * false when a cap would be passed: nothing is written and {@link limitHit} is set.
   */
  write (path: string, pos: number, data: Uint8Array): boolean {
    const f = this.files.get(path)
    if (f == null) return false
    const end = pos + data.length
    const growth = Math.max(0, end - f.size)
    if (end > this.caps.fileBytes) { this.limitHit = `output file ${path} exceeded ${this.caps.fileBytes} bytes`; return false }
    if (this.total + growth > this.caps.totalBytes) { this.limitHit = `output files exceeded ${this.caps.totalBytes} bytes in total`; return false }
    this.host('write', () => {
      // a gap is written, not left sparse: the zeros cost the guest's time now, as bytes it wrote
      // would, not the provider's when it imports the file after the job (1 GiB of outputs from
      // four one-byte writes took a provider 8 s after a 7 ms run)
      for (let at = f.size; at < pos;) at += writeSync(f.fd, gapZeros, 0, Math.min(gapZeros.length, pos - at), at)
      let done = 0
      while (done < data.length) done += writeSync(f.fd, data, done, data.length - done, pos + done)
    })
    f.size = Math.max(f.size, end)
    this.total += growth
    return true
  }

  /** Write a whole file at once (JS `writeFile`): creates or replaces it. */
  writeWhole (path: string, data: Uint8Array): CreateProblem | undefined {
    const existing = this.files.get(path)
    const freed = existing?.size ?? 0
    if (data.length > this.caps.fileBytes) { this.limitHit = `output file ${path} exceeded ${this.caps.fileBytes} bytes`; return 'limit' }
    if (this.total - freed + data.length > this.caps.totalBytes) { this.limitHit = `output files exceeded ${this.caps.totalBytes} bytes in total`; return 'limit' }
    const problem = this.open(path, { create: true, truncate: true })
    if (problem != null) return problem
    this.write(path, 0, data)
    return undefined
  }

  /** Add `data` at the end of a file (JS `appendFile`), creating it when missing. */
  append (path: string, data: Uint8Array): CreateProblem | undefined {
    const problem = this.open(path, { create: true })
    if (problem != null) return problem
    if (!this.write(path, this.size(path), data)) return 'limit'
    return undefined
  }

  /** The files, sorted by path, their descriptors closed: each a host file in the staging folder. */
  take (): StagedOutput[] {
    const out: StagedOutput[] = []
    for (const [path, f] of this.files) {
      this.close(f)
      out.push({ path, file: join(this.dir as string, f.name), size: f.size })
    }
    this.files.clear()
    return out.sort((a, b) => comparePaths(a.path, b.path))
  }

  /** A failed job keeps no file: every descriptor closed, every file removed. */
  discard (): void {
    for (const f of this.files.values()) {
      this.close(f)
      if (this.dir != null) { try { unlinkSync(join(this.dir, f.name)) } catch {} }
    }
    this.files.clear()
    this.total = 0
  }
}

/**
 * A job's input paths (in any order): each a canonical relative path (the output path rules), none
 * listed twice, and no path a directory of another (`a` and `a/b`). Returns the first problem, or
 * undefined. What the job spec, the wire schema and the executor all check.
 */
export function inputListProblem (paths: string[]): string | undefined {
  const seen = new Set<string>()
  for (const p of paths) {
    const n = normaliseOutputPath(p)
    if ('problem' in n) return `input path ${JSON.stringify(p.slice(0, 64))} is not a plain relative path (${n.problem === 'escape' ? 'absolute or escaping with ..' : n.problem})`
    if (n.path !== p) return `input path ${JSON.stringify(p.slice(0, 64))} is not in canonical form (write ${JSON.stringify(n.path)})`
    if (seen.has(p)) return `input path ${JSON.stringify(p)} is listed twice`
    seen.add(p)
  }
  for (const p of paths) {
    for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) {
      if (seen.has(p.slice(0, i))) return `input path ${JSON.stringify(p.slice(0, i))} is both a file and a directory`
    }
  }
  return undefined
}
