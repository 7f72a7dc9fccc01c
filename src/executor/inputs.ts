/**
 * Input files, worker side: the job's inputs as a read-only tree the guest reads from (wasm:
 * `/inputs`, preopened; js: `readFile` / `listFiles`).
 *
 * The bytes stay on the provider's disk. The pool opens each staged file on the main thread and
 * hands the worker its descriptor and size; the guest's reads become `fs.readSync` calls straight
 * into guest memory, so a 100 MiB input costs the worker no more memory than the guest's own
 * buffer. The pool closes the descriptors when the job ends, however it ends (a worker killed on
 * its deadline opens nothing and so leaks nothing). Reads never go past the size taken when the
 * file was opened. Listings are sorted by the UTF-8 bytes of the names, so a guest that lists its
 * inputs sees the same order on every provider.
 */
import { readSync } from 'node:fs'
import { comparePaths } from './files.js'

/** `length` bytes at `offset` of the open read-only descriptor `fd`. */
export interface InputPart { fd: number, offset: number, length: number }
/**
 * One input file as the worker gets it: its path under /inputs, its size, and where its bytes are,
 * in order: one part for a plain file (its whole), several for a blob read in place (ranges of
 * the provider's pack files).
 */
export interface InputEntry { path: string, size: number, parts: InputPart[] }

export class InputFiles {
  /** each file, with its parts' positions in it */
  private readonly files = new Map<string, InputEntry & { starts: number[] }>()
  /** directory ('' for /inputs itself) → its entries' names, sorted */
  private readonly dirs = new Map<string, string[]>()
  private readonly sorted: string[]

  constructor (entries: InputEntry[]) {
    const children = new Map<string, Set<string>>([['', new Set()]])
    for (const e of entries) {
      let at = 0
      this.files.set(e.path, { ...e, starts: e.parts.map(p => { const start = at; at += p.length; return start }) })
      let parent = ''
      for (const name of e.path.split('/')) {
        const child = parent === '' ? name : `${parent}/${name}`
        let set = children.get(parent)
        if (set == null) { set = new Set(); children.set(parent, set) }
        set.add(name)
        parent = child
      }
    }
    for (const [dir, names] of children) this.dirs.set(dir, [...names].sort(comparePaths))
    this.sorted = [...this.files.keys()].sort(comparePaths)
  }

  isFile (path: string): boolean { return this.files.has(path) }
  isDir (path: string): boolean { return this.dirs.has(path) }
  size (path: string): number { return this.files.get(path)?.size ?? 0 }
  /** A directory's entries (names, sorted), or undefined when it is none. */
  entries (dir: string): string[] | undefined { return this.dirs.get(dir) }
  /** Every file's path, sorted. */
  list (): string[] { return [...this.sorted] }

  /** Read up to `length` bytes of file `path` at `position` into `target[offset..]`; returns the count (0 at the end). */
  read (path: string, target: Uint8Array, offset: number, length: number, position: number): number {
    const e = this.files.get(path)
    if (e == null) return 0
    const starts = e.starts
    const n = Math.max(0, Math.min(length, e.size - position))
    let done = 0
    // the part that holds `position` (the last one starting at or before it)
    let lo = 0
    let hi = starts.length - 1
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (starts[mid] <= position) lo = mid; else hi = mid - 1 }
    for (let i = lo; done < n && i < e.parts.length;) {
      const part = e.parts[i]
      const within = position + done - starts[i]
      if (within >= part.length) { i++; continue }
      const k = readSync(part.fd, target, offset + done, Math.min(n - done, part.length - within), part.offset + within)
      if (k === 0) break
      done += k
    }
    return done
  }
}
