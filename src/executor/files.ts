/**
 * Output files: what a job writes under `/outputs` (wasm) or through
 * `writeFile(path, data)` (js), captured in the worker's memory and handed
 * back with the result.
 *
 * Caps are checked before any allocation: a file never grows past the
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
import { isAbsolute, relative, resolve, sep } from 'node:path'
import { MAX_OUTPUT_FILE_BYTES, MAX_OUTPUT_FILES, MAX_OUTPUT_PATH_BYTES, MAX_OUTPUT_TOTAL_BYTES } from './constants.js'

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

interface FileBuf { buf: Uint8Array, size: number }

/** The worker's in-memory output directory. */
export class OutputFiles {
  readonly caps: OutputCaps
  private readonly files = new Map<string, FileBuf>()
  private readonly dirs = new Set<string>()
  private total = 0
  /** Set when a cap was hit: the job must stop with `output-limit`. */
  limitHit?: string

  constructor (caps: OutputCaps) {
    this.caps = caps
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

  /** Make a directory (and its parents). */
  mkdir (path: string): CreateProblem | undefined {
    if (this.files.has(path)) return 'exists'
    if (this.fileParent(path)) return 'not-dir'
    if (this.dirs.has(path)) return 'exists'
    this.addDirs(path, true)
    return undefined
  }

  private addDirs (path: string, self: boolean): void {
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) this.dirs.add(path.slice(0, i))
    if (self) this.dirs.add(path)
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
      if (opts.truncate === true) { this.total -= f.size; f.size = 0; f.buf = new Uint8Array(0) }
      return undefined
    }
    if (!opts.create) return 'not-found'
    if (this.files.size >= this.caps.files) {
      this.limitHit = `more than ${this.caps.files} output files`
      return 'limit'
    }
    this.files.set(path, { buf: new Uint8Array(0), size: 0 })
    this.addDirs(path, false)
    return undefined
  }

  /** Remove a file (a guest's unlink). */
  remove (path: string): boolean {
    const f = this.files.get(path)
    if (f == null) return false
    this.total -= f.size
    this.files.delete(path)
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
    if (end > f.buf.length) {
      // grow by doubling (bounded by the file cap): a byte-at-a-time writer costs O(n), and at most twice its size
      const next = new Uint8Array(Math.min(this.caps.fileBytes, Math.max(end, f.buf.length * 2, 4096)))
      next.set(f.buf.subarray(0, f.size))
      f.buf = next
    }
    f.buf.set(data, pos)
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
    const f = this.files.get(path) as FileBuf
    f.buf = data
    f.size = data.length
    this.total += data.length
    return undefined
  }

  /** The files, sorted by path; each buffer exactly its size (transferable). */
  take (): Array<{ path: string, bytes: Uint8Array }> {
    const out: Array<{ path: string, bytes: Uint8Array }> = []
    for (const [path, f] of this.files) {
      const exact = f.buf.length === f.size && f.buf.byteOffset === 0 && f.buf.buffer.byteLength === f.size
      out.push({ path, bytes: exact ? f.buf : f.buf.slice(0, f.size) })
      f.buf = new Uint8Array(0)
    }
    this.files.clear()
    return out.sort((a, b) => comparePaths(a.path, b.path))
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
