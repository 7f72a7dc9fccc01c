/**
 * A minimal, in-memory WASI preview1 host (worker side).
 *
 * What a guest gets: args, env, stdin (bytes given by the job), stdout and
 * stderr (captured, capped), a virtual clock and seeded randomness, and one
 * preopened directory, `/outputs` (fd 3): an in-memory, write-only directory
 * whose files are the job's output files (files.ts: paths checked, caps
 * checked before any allocation, a write past a cap stops the job with
 * `output-limit`). Files there can be created, written, seeked, stat'ed and
 * unlinked; directories created; nothing can be read back or listed. When
 * the job has input files, a second preopened directory, `/inputs` (fd 4):
 * read-only (creating, truncating, writing, removing answer EROFS), its files
 * read, pread, seeked and stat'ed, its directories listed (fd_readdir, names
 * sorted by their UTF-8 bytes); reads go from the host file straight into
 * guest memory (inputs.ts), never through a copy of the whole file. What it
 * does not get: any host file or directory, socket, or host environment.
 * Every other preview1 call answers ENOSYS / EBADF.
 *
 * Memory safety: every pointer + length a guest passes is checked against
 * its memory BEFORE any work is done (no host allocation sized by the
 * guest, no partial write); out of range answers EFAULT, like a kernel.
 * Pointers and lengths arrive as signed i32 and are read as u32.
 *
 * Nothing blocks: `poll_oneoff` (sleep) advances the virtual clock and
 * returns at once, and stdin is a byte array, so `Worker.terminate()` can
 * always stop a guest (FACTS.md: a guest blocked in a real poll_oneoff held
 * terminate for 30 s).
 *
 * Determinism: the realtime clock starts at VIRTUAL_EPOCH_MS and every clock
 * read advances it by WASI_CLOCK_TICK_NS; `random_get` is a ChaCha20
 * keystream keyed by sha256(seed). The same job reads the same clock and
 * random bytes on every provider.
 */
import { createCipheriv, createHash } from 'node:crypto'
import { INPUTS_DIR, MAX_OPEN_INPUT_FDS, MAX_OPEN_OUTPUT_FDS, MAX_OUTPUT_PATH_BYTES, OUTPUTS_DIR, VIRTUAL_EPOCH_MS, WASI_CLOCK_TICK_NS } from './constants.js'
import type { OutputSink } from './output.js'
import { normaliseOutputPath, type CreateProblem, type OutputFiles } from './files.js'
import type { InputFiles } from './inputs.js'

const ESUCCESS = 0
const EBADF = 8
const EEXIST = 20
const EFAULT = 21
const EILSEQ = 25
const EINVAL = 28
const EISDIR = 31
const EMFILE = 33
const ENAMETOOLONG = 37
const ENOENT = 44
const ENOSYS = 52
const ENOTDIR = 54
const ENOTSOCK = 57
const ENOTSUP = 58
const ESPIPE = 70
const EROFS = 69
const ENOTCAPABLE = 76

const FILETYPE_DIRECTORY = 3
const FILETYPE_REGULAR_FILE = 4
const OFLAGS_CREAT = 1
const OFLAGS_DIRECTORY = 2
const OFLAGS_EXCL = 4
const OFLAGS_TRUNC = 8
const FDFLAGS_APPEND = 1
/** The output directory's descriptor (the first after stdio, where libc looks for preopens). */
const OUTPUTS_FD = 3
/** The input directory's descriptor (the second preopen), when the job has inputs. */
const INPUTS_FD = 4
/** fd_write among an fd's rights: an input is opened read-only or not at all */
const RIGHT_FD_WRITE = 1n << 6n
const ENCODER = new TextEncoder()

const PROBLEM_ERRNO: Record<CreateProblem, number> = {
  empty: ENOENT,
  escape: ENOTCAPABLE,
  invalid: EILSEQ,
  'too-long': ENAMETOOLONG,
  exists: EEXIST,
  'is-dir': EISDIR,
  'not-dir': ENOTDIR,
  'not-found': ENOENT,
  limit: EMFILE
}

/** random_get fills guest memory in pieces of this size: host memory stays small, and the loop can be terminated. */
const RANDOM_CHUNK = 65536
const ZEROS = new Uint8Array(RANDOM_CHUNK)
/** Guest paths must be valid UTF-8 (EILSEQ otherwise); one decoder for them all (it keeps no state between calls). */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true })

const FILETYPE_CHARACTER_DEVICE = 2
const RIGHTS_ALL = 0x1fffffffn

/** proc_exit unwinds the guest with this. */
export class WasiExit {
  constructor (readonly code: number) {}
}

/** Thrown from fd_write when the job's output cap is reached: the guest is stopped. */
export class OutputLimitReached extends Error {
  constructor () { super('output limit reached'); this.name = 'OutputLimitReached' }
}

export interface WasiOptions {
  args: string[]
  env: Record<string, string>
  stdin: Uint8Array
  sink: OutputSink
  seed: string
  /** The job's output directory, preopened as /outputs (fd 3); absent: no directory at all. */
  outputs?: OutputFiles
  /** The job's input files, preopened read-only as /inputs (fd 4); absent: no /inputs. Needs `outputs`. */
  inputs?: InputFiles
}

interface OpenFile { path: string, pos: number, append: boolean }
/** An open input file or directory ('' is /inputs itself). */
interface OpenInput { path: string, dir: boolean, pos: number }

export type WasiFunction = (...args: any[]) => number | undefined

export class Wasi {
  private memory?: WebAssembly.Memory
  private view!: DataView
  private u8!: Uint8Array
  private viewBuffer?: ArrayBuffer
  private readonly args: Uint8Array[]
  private readonly env: Uint8Array[]
  private readonly stdin: Uint8Array
  private stdinPos = 0
  private readonly sink: OutputSink
  private elapsedNs = 0n
  private readonly epochNs = BigInt(VIRTUAL_EPOCH_MS) * 1_000_000n
  private readonly seed: string
  private rng?: ReturnType<typeof createCipheriv>
  private readonly outputs?: OutputFiles
  private readonly outputsName = new TextEncoder().encode(OUTPUTS_DIR)
  private readonly inputs?: InputFiles
  private readonly inputsName = new TextEncoder().encode(INPUTS_DIR)
  /** Open input files and directories by descriptor (5 and up, shared with output files). */
  private readonly inOpen = new Map<number, OpenInput>()
  /** Open output files by descriptor (4 and up). */
  private readonly open = new Map<number, OpenFile>()
  /** Virtual nanoseconds the guest asked to sleep (reported, never waited). */
  sleptNs = 0n

  constructor (opts: WasiOptions) {
    const enc = new TextEncoder()
    const z = (s: string): Uint8Array => { const b = enc.encode(s); const o = new Uint8Array(b.length + 1); o.set(b); return o }
    this.args = ['job', ...opts.args].map(z)
    this.env = Object.entries(opts.env).map(([k, v]) => z(`${k}=${v}`))
    this.stdin = opts.stdin
    this.sink = opts.sink
    this.seed = opts.seed
    this.outputs = opts.outputs
    this.inputs = opts.outputs != null ? opts.inputs : undefined
  }

  bind (memory: WebAssembly.Memory): void {
    this.memory = memory
  }

  private mem (): DataView {
    const buf = (this.memory as WebAssembly.Memory).buffer
    if (buf !== this.viewBuffer) {
      this.viewBuffer = buf
      this.view = new DataView(buf)
      this.u8 = new Uint8Array(buf)
    }
    return this.view
  }

  private tick (): bigint {
    const t = this.elapsedNs
    this.elapsedNs += WASI_CLOCK_TICK_NS
    return t
  }

  /** The guest range [ptr, ptr + len) lies inside its memory (u32 arguments). */
  private inBounds (ptr: number, len: number): boolean {
    if (this.memory == null) return len === 0 && ptr === 0
    return ptr + len <= this.memory.buffer.byteLength
  }

  private writeStrings (list: Uint8Array[], ptrs: number, buf: number): number {
    const total = list.reduce((n, s) => n + s.length, 0)
    if (!this.inBounds(ptrs, list.length * 4) || !this.inBounds(buf, total)) return EFAULT
    const v = this.mem()
    let p = buf
    for (let i = 0; i < list.length; i++) {
      v.setUint32(ptrs + i * 4, p, true)
      this.u8.set(list[i], p)
      p += list[i].length
    }
    return ESUCCESS
  }

  private sizes (list: Uint8Array[], countPtr: number, sizePtr: number): number {
    if (!this.inBounds(countPtr, 4) || !this.inBounds(sizePtr, 4)) return EFAULT
    const v = this.mem()
    v.setUint32(countPtr, list.length, true)
    v.setUint32(sizePtr, list.reduce((n, s) => n + s.length, 0), true)
    return ESUCCESS
  }

  /** Check an iovec array and every buffer it names; returns the total length, or -1 when anything is out of range. */
  private iovecs (iovs: number, n: number): number {
    if (!this.inBounds(iovs, n * 8)) return -1
    const v = this.mem()
    let total = 0
    for (let i = 0; i < n; i++) {
      const ptr = v.getUint32(iovs + i * 8, true)
      const len = v.getUint32(iovs + i * 8 + 4, true)
      if (!this.inBounds(ptr, len)) return -1
      total += len
    }
    return total
  }

  /** The import object for `wasi_snapshot_preview1`, restricted to `names` (unknown names answer ENOSYS). */
  imports (names: string[]): Record<string, WasiFunction> {
    const impl = this.implementation()
    const out: Record<string, WasiFunction> = {}
    for (const name of names) out[name] = impl[name] ?? (() => ENOSYS)
    return out
  }

  /** Socket calls: stdio is not a socket (ENOTSOCK), any other descriptor does not exist (EBADF). */
  private static notSocket (fd: number): number {
    return (fd >>> 0) <= 2 ? ENOTSOCK : EBADF
  }

  private implementation (): Record<string, WasiFunction> {
    // i32 arguments arrive signed: every pointer, length and count is read as u32 (`>>> 0`)
    return {
      args_get: (argv: number, buf: number) => this.writeStrings(this.args, argv >>> 0, buf >>> 0),
      args_sizes_get: (c: number, s: number) => this.sizes(this.args, c >>> 0, s >>> 0),
      environ_get: (envp: number, buf: number) => this.writeStrings(this.env, envp >>> 0, buf >>> 0),
      environ_sizes_get: (c: number, s: number) => this.sizes(this.env, c >>> 0, s >>> 0),

      clock_res_get: (id: number, ptr: number) => {
        if ((id >>> 0) > 3) return EINVAL
        if (!this.inBounds(ptr >>> 0, 8)) return EFAULT
        this.mem().setBigUint64(ptr >>> 0, WASI_CLOCK_TICK_NS, true)
        return ESUCCESS
      },
      clock_time_get: (id: number, _precision: bigint, ptr: number) => {
        if ((id >>> 0) > 3) return EINVAL
        if (!this.inBounds(ptr >>> 0, 8)) return EFAULT
        const t = this.tick()
        this.mem().setBigUint64(ptr >>> 0, id === 0 ? this.epochNs + t : t, true)
        return ESUCCESS
      },

      fd_write: (fd: number, iovs: number, n: number, nwritten: number) => {
        if (this.open.has(fd >>> 0)) return this.fileWrite(fd >>> 0, iovs >>> 0, n >>> 0, nwritten >>> 0)
        if (this.isInput(fd >>> 0)) return EBADF // inputs are read-only
        if (fd !== 1 && fd !== 2) return EBADF
        iovs >>>= 0; n >>>= 0; nwritten >>>= 0
        if (!this.inBounds(nwritten, 4) || this.iovecs(iovs, n) < 0) return EFAULT
        const v = this.mem()
        let total = 0
        for (let i = 0; i < n; i++) {
          const ptr = v.getUint32(iovs + i * 8, true)
          const len = v.getUint32(iovs + i * 8 + 4, true)
          if (len === 0) continue
          total += this.sink.write(fd, this.u8.subarray(ptr, ptr + len))
          if (this.sink.truncated) throw new OutputLimitReached()
        }
        v.setUint32(nwritten, total, true)
        return ESUCCESS
      },
      fd_read: (fd: number, iovs: number, n: number, nread: number) => {
        if (this.isInput(fd >>> 0)) return this.inputRead(fd >>> 0, iovs >>> 0, n >>> 0, nread >>> 0, undefined)
        if (fd !== 0) return EBADF
        iovs >>>= 0; n >>>= 0; nread >>>= 0
        if (!this.inBounds(nread, 4) || this.iovecs(iovs, n) < 0) return EFAULT
        const v = this.mem()
        let total = 0
        for (let i = 0; i < n && this.stdinPos < this.stdin.length; i++) {
          const ptr = v.getUint32(iovs + i * 8, true)
          const len = v.getUint32(iovs + i * 8 + 4, true)
          const k = Math.min(len, this.stdin.length - this.stdinPos)
          this.u8.set(this.stdin.subarray(this.stdinPos, this.stdinPos + k), ptr)
          this.stdinPos += k
          total += k
        }
        v.setUint32(nread, total, true)
        return ESUCCESS
      },
      fd_pread: (fd: number, iovs: number, n: number, offset: bigint, nread: number) => {
        if (!this.isInput(fd >>> 0)) return this.known(fd >>> 0) ? ESPIPE : EBADF
        const at = BigInt.asIntN(64, BigInt(offset))
        if (at < 0n) return EINVAL
        return this.inputRead(fd >>> 0, iovs >>> 0, n >>> 0, nread >>> 0, at > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(at))
      },
      fd_close: (fd: number) => {
        fd >>>= 0
        if (this.open.delete(fd) || this.inOpen.delete(fd)) return ESUCCESS
        return fd <= 2 || this.isOutputsDir(fd) || this.isInputsDir(fd) ? ESUCCESS : EBADF
      },
      fd_sync: (fd: number) => this.known(fd >>> 0) ? ESUCCESS : EBADF,
      fd_datasync: (fd: number) => this.known(fd >>> 0) ? ESUCCESS : EBADF,
      fd_seek: (fd: number, offset: bigint, whence: number, ptr: number) => this.seek(fd >>> 0, BigInt.asIntN(64, BigInt(offset)), whence >>> 0, ptr >>> 0),
      fd_tell: (fd: number, ptr: number) => this.seek(fd >>> 0, 0n, 1, ptr >>> 0),
      fd_fdstat_get: (fd: number, ptr: number) => {
        fd >>>= 0
        if (!this.known(fd)) return EBADF
        ptr >>>= 0
        if (!this.inBounds(ptr, 24)) return EFAULT
        const v = this.mem()
        const input = this.inputAt(fd)
        if (input != null) {
          v.setUint8(ptr, input.dir ? FILETYPE_DIRECTORY : FILETYPE_REGULAR_FILE)
          v.setUint16(ptr + 2, 0, true)
          v.setBigUint64(ptr + 8, RIGHTS_ALL & ~RIGHT_FD_WRITE, true)
          v.setBigUint64(ptr + 16, input.dir ? RIGHTS_ALL & ~RIGHT_FD_WRITE : 0n, true)
          return ESUCCESS
        }
        const file = this.open.get(fd)
        v.setUint8(ptr, file != null ? FILETYPE_REGULAR_FILE : this.isOutputsDir(fd) ? FILETYPE_DIRECTORY : FILETYPE_CHARACTER_DEVICE)
        v.setUint16(ptr + 2, fd === 0 || this.isOutputsDir(fd) ? 0 : file != null && !file.append ? 0 : FDFLAGS_APPEND, true)
        v.setBigUint64(ptr + 8, RIGHTS_ALL, true)
        v.setBigUint64(ptr + 16, this.isOutputsDir(fd) ? RIGHTS_ALL : 0n, true)
        return ESUCCESS
      },
      fd_fdstat_set_flags: (fd: number) => this.known(fd >>> 0) ? ESUCCESS : EBADF,
      fd_filestat_get: (fd: number, ptr: number) => {
        fd >>>= 0
        if (!this.known(fd)) return EBADF
        ptr >>>= 0
        if (!this.inBounds(ptr, 64)) return EFAULT
        const input = this.inputAt(fd)
        if (input != null) return this.filestat(ptr, input.dir ? FILETYPE_DIRECTORY : FILETYPE_REGULAR_FILE, input.dir ? 0 : this.inputs?.size(input.path) ?? 0)
        const file = this.open.get(fd)
        return this.filestat(ptr, file != null ? FILETYPE_REGULAR_FILE : this.isOutputsDir(fd) ? FILETYPE_DIRECTORY : FILETYPE_CHARACTER_DEVICE, file != null ? this.outputs?.size(file.path) ?? 0 : 0)
      },
      // preopened directories: /outputs (fd 3) when the job has an output directory, /inputs (fd 4) when it has inputs; nothing else
      fd_prestat_get: (fd: number, ptr: number) => {
        const name = this.preopenName(fd >>> 0)
        if (name == null) return EBADF
        ptr >>>= 0
        if (!this.inBounds(ptr, 8)) return EFAULT
        const v = this.mem()
        v.setUint8(ptr, 0 /* directory */)
        v.setUint32(ptr + 4, name.length, true)
        return ESUCCESS
      },
      fd_prestat_dir_name: (fd: number, ptr: number, len: number) => {
        const name = this.preopenName(fd >>> 0)
        if (name == null) return EBADF
        ptr >>>= 0; len >>>= 0
        if (len < name.length) return EINVAL
        if (!this.inBounds(ptr, name.length)) return EFAULT
        this.mem()
        this.u8.set(name, ptr)
        return ESUCCESS
      },
      path_open: (fd: number, _dirflags: number, path: number, pathLen: number, oflags: number, base: bigint, _inheriting: bigint, fdflags: number, fdPtr: number) =>
        this.inputDir(fd >>> 0) != null
          ? this.inputOpen(fd >>> 0, path >>> 0, pathLen >>> 0, oflags >>> 0, BigInt(base), fdflags >>> 0, fdPtr >>> 0)
          : this.pathOpen(fd >>> 0, path >>> 0, pathLen >>> 0, oflags >>> 0, fdflags >>> 0, fdPtr >>> 0),
      path_filestat_get: (fd: number, _flags: number, path: number, pathLen: number, ptr: number) => {
        if (this.inputDir(fd >>> 0) != null) {
          const ip = this.inputPath(fd >>> 0, path >>> 0, pathLen >>> 0)
          if (typeof ip === 'number') return ip
          ptr >>>= 0
          if (!this.inBounds(ptr, 64)) return EFAULT
          const inputs = this.inputs as InputFiles
          if (inputs.isFile(ip)) return this.filestat(ptr, FILETYPE_REGULAR_FILE, inputs.size(ip))
          if (inputs.isDir(ip)) return this.filestat(ptr, FILETYPE_DIRECTORY, 0)
          return ENOENT
        }
        const p = this.guestPath(fd >>> 0, path >>> 0, pathLen >>> 0)
        if (typeof p === 'number') return p
        ptr >>>= 0
        if (!this.inBounds(ptr, 64)) return EFAULT
        const outputs = this.outputs as OutputFiles
        if (p === '') return this.filestat(ptr, FILETYPE_DIRECTORY, 0)
        if (outputs.has(p)) return this.filestat(ptr, FILETYPE_REGULAR_FILE, outputs.size(p))
        if (outputs.isDir(p)) return this.filestat(ptr, FILETYPE_DIRECTORY, 0)
        return ENOENT
      },
      path_create_directory: (fd: number, path: number, pathLen: number) => {
        if (this.inputDir(fd >>> 0) != null) return EROFS
        const p = this.guestPath(fd >>> 0, path >>> 0, pathLen >>> 0)
        if (typeof p === 'number') return p
        if (p === '') return EEXIST
        const problem = (this.outputs as OutputFiles).mkdir(p)
        if (problem === 'limit') throw new OutputLimitReached()
        return problem != null ? PROBLEM_ERRNO[problem] : ESUCCESS
      },
      path_unlink_file: (fd: number, path: number, pathLen: number) => {
        if (this.inputDir(fd >>> 0) != null) return EROFS
        const p = this.guestPath(fd >>> 0, path >>> 0, pathLen >>> 0)
        if (typeof p === 'number') return p
        const outputs = this.outputs as OutputFiles
        if (outputs.isDir(p) || p === '') return EISDIR
        for (const f of this.open.values()) if (f.path === p) return ENOTSUP // keep it simple: no unlinking open files
        return outputs.remove(p) ? ESUCCESS : ENOENT
      },
      path_remove_directory: (fd: number) => this.inputDir(fd >>> 0) != null ? EROFS : this.isOutputsDir(fd >>> 0) ? ENOTSUP : EBADF,
      path_rename: (fd: number, _p: number, _l: number, fd2: number) => this.inputDir(fd >>> 0) != null || this.inputDir(fd2 >>> 0) != null ? EROFS : this.isOutputsDir(fd >>> 0) ? ENOTSUP : EBADF,
      path_symlink: (_old: number, _len: number, fd: number) => this.inputDir(fd >>> 0) != null ? EROFS : this.isOutputsDir(fd >>> 0) ? ENOTSUP : EBADF,
      path_readlink: (fd: number) => this.isOutputsDir(fd >>> 0) || this.inputDir(fd >>> 0) != null ? EINVAL : EBADF,
      path_link: (fd: number, _f: number, _p: number, _l: number, fd2: number) => this.inputDir(fd >>> 0) != null || this.inputDir(fd2 >>> 0) != null ? EROFS : this.isOutputsDir(fd >>> 0) ? ENOTSUP : EBADF,
      fd_readdir: (fd: number, buf: number, bufLen: number, cookie: bigint, usedPtr: number) =>
        this.inputDir(fd >>> 0) != null ? this.readdir(fd >>> 0, buf >>> 0, bufLen >>> 0, BigInt(cookie), usedPtr >>> 0) : this.isOutputsDir(fd >>> 0) ? ENOTSUP : EBADF,

      poll_oneoff: (inPtr: number, outPtr: number, nsubs: number, neventsPtr: number) => this.poll(inPtr >>> 0, outPtr >>> 0, nsubs >>> 0, neventsPtr >>> 0),
      sched_yield: () => ESUCCESS,
      random_get: (ptr: number, len: number) => {
        ptr >>>= 0; len >>>= 0
        if (!this.inBounds(ptr, len)) return EFAULT
        if (len === 0) return ESUCCESS
        this.mem()
        if (this.rng == null) {
          const key = createHash('sha256').update('mercato/v1/executor/random\0').update(this.seed).digest()
          this.rng = createCipheriv('chacha20', key, Buffer.alloc(16))
        }
        // the keystream in pieces, straight into guest memory (same bytes as one call)
        for (let off = 0; off < len; off += RANDOM_CHUNK) {
          const k = Math.min(RANDOM_CHUNK, len - off)
          this.u8.set(this.rng.update(k === RANDOM_CHUNK ? ZEROS : ZEROS.subarray(0, k)), ptr + off)
        }
        return ESUCCESS
      },
      proc_exit: (code: number) => { throw new WasiExit(code >>> 0) },
      proc_raise: () => ENOSYS,
      sock_accept: (fd: number) => Wasi.notSocket(fd),
      sock_recv: (fd: number) => Wasi.notSocket(fd),
      sock_send: (fd: number) => Wasi.notSocket(fd),
      sock_shutdown: (fd: number) => Wasi.notSocket(fd)
    }
  }

  private isOutputsDir (fd: number): boolean {
    return fd === OUTPUTS_FD && this.outputs != null
  }

  /** stdio, the output directory, an open output file, or an input */
  private known (fd: number): boolean {
    return fd <= 2 || this.isOutputsDir(fd) || this.open.has(fd) || this.isInput(fd)
  }

  private isInputsDir (fd: number): boolean {
    return fd === INPUTS_FD && this.inputs != null
  }

  private preopenName (fd: number): Uint8Array | undefined {
    return this.isOutputsDir(fd) ? this.outputsName : this.isInputsDir(fd) ? this.inputsName : undefined
  }

  /** The input directory or an open input (file or directory) at `fd`. */
  private inputAt (fd: number): OpenInput | undefined {
    return this.isInputsDir(fd) ? { path: '', dir: true, pos: 0 } : this.inOpen.get(fd)
  }

  private isInput (fd: number): boolean { return this.inputAt(fd) != null }

  /** The input directory path ('' for /inputs) of a directory descriptor, or undefined. */
  private inputDir (fd: number): string | undefined {
    const i = this.inputAt(fd)
    return i?.dir === true ? i.path : undefined
  }

  /** The lowest descriptor free for a newly opened file (after stdio and the preopens). */
  private nextFd (): number {
    let next = (this.inputs != null ? INPUTS_FD : OUTPUTS_FD) + 1
    while (this.open.has(next) || this.inOpen.has(next)) next++
    return next
  }

  /**
   * A path the guest names relative to an input directory descriptor: the path under /inputs ('' for
   * /inputs itself), or an errno. The output path rules apply (no absolute path, no `..`).
   */
  private inputPath (fd: number, ptr: number, len: number): string | number {
    const base = this.inputDir(fd)
    if (base == null) return this.isInput(fd) ? ENOTDIR : EBADF
    const text = this.pathText(ptr, len)
    if (typeof text === 'number') return text
    if (/^(\.\/)*\.?\/*$/.test(text)) return base
    const n = normaliseOutputPath(text)
    if ('problem' in n) return PROBLEM_ERRNO[n.problem]
    return base === '' ? n.path : `${base}/${n.path}`
  }

  private inputOpen (fd: number, path: number, pathLen: number, oflags: number, rights: bigint, fdflags: number, fdPtr: number): number {
    const p = this.inputPath(fd, path, pathLen)
    if (typeof p === 'number') return p
    if (!this.inBounds(fdPtr, 4)) return EFAULT
    const inputs = this.inputs as InputFiles
    const exists = inputs.isFile(p) || inputs.isDir(p)
    // nothing under /inputs can be created, truncated or written
    if ((oflags & (OFLAGS_TRUNC | OFLAGS_EXCL)) !== 0 || (fdflags & FDFLAGS_APPEND) !== 0 || (rights & RIGHT_FD_WRITE) !== 0n) return EROFS
    if (!exists) return (oflags & OFLAGS_CREAT) !== 0 ? EROFS : ENOENT
    const dir = inputs.isDir(p)
    if ((oflags & OFLAGS_DIRECTORY) !== 0 && !dir) return ENOTDIR
    if (this.inOpen.size >= MAX_OPEN_INPUT_FDS) return EMFILE
    const next = this.nextFd()
    this.inOpen.set(next, { path: p, dir, pos: 0 })
    this.mem().setUint32(fdPtr, next, true)
    return ESUCCESS
  }

  /** fd_read (at the file's position) and fd_pread (at `at`) on an input file: straight from the host file into guest memory. */
  private inputRead (fd: number, iovs: number, n: number, nread: number, at: number | undefined): number {
    const file = this.inOpen.get(fd)
    if (file == null) return this.isInputsDir(fd) ? EISDIR : EBADF
    if (file.dir) return EISDIR
    if (!this.inBounds(nread, 4) || this.iovecs(iovs, n) < 0) return EFAULT
    const inputs = this.inputs as InputFiles
    const v = this.mem()
    let pos = at ?? file.pos
    let total = 0
    for (let i = 0; i < n; i++) {
      const ptr = v.getUint32(iovs + i * 8, true)
      const len = v.getUint32(iovs + i * 8 + 4, true)
      if (len === 0) continue
      const k = inputs.read(file.path, this.u8, ptr, len, pos)
      pos += k
      total += k
      if (k < len) break
    }
    if (at == null) file.pos = pos
    v.setUint32(nread, total, true)
    return ESUCCESS
  }

  /**
   * fd_readdir on an input directory: its entries sorted by the UTF-8 bytes of their names (the same
   * order on every provider), `cookie` the index to start at. Entries that do not fit are cut, as
   * preview1 says (a full buffer tells the caller to ask again).
   */
  private readdir (fd: number, buf: number, bufLen: number, cookie: bigint, usedPtr: number): number {
    const dir = this.inputDir(fd) as string
    if (!this.inBounds(buf, bufLen) || !this.inBounds(usedPtr, 4)) return EFAULT
    const inputs = this.inputs as InputFiles
    const names = inputs.entries(dir) ?? []
    this.mem()
    let used = 0
    const header = new DataView(new ArrayBuffer(24))
    for (let i = cookie < 0n ? names.length : Number(cookie > BigInt(names.length) ? BigInt(names.length) : cookie); i < names.length && used < bufLen; i++) {
      const name = ENCODER.encode(names[i])
      const child = dir === '' ? names[i] : `${dir}/${names[i]}`
      header.setBigUint64(0, BigInt(i + 1), true)
      header.setBigUint64(8, BigInt(i + 2), true) // a non-zero inode, so libc does not stat each entry
      header.setUint32(16, name.length, true)
      header.setUint8(20, inputs.isDir(child) ? FILETYPE_DIRECTORY : FILETYPE_REGULAR_FILE)
      const entry = new Uint8Array(24 + name.length)
      entry.set(new Uint8Array(header.buffer), 0)
      entry.set(name, 24)
      const k = Math.min(entry.length, bufLen - used)
      this.u8.set(entry.subarray(0, k), buf + used)
      used += k
    }
    this.mem().setUint32(usedPtr, used, true)
    return ESUCCESS
  }

  private filestat (ptr: number, type: number, size: number): number {
    const v = this.mem()
    for (let i = 0; i < 64; i += 8) v.setBigUint64(ptr + i, 0n, true)
    v.setUint8(ptr + 16, type)
    v.setBigUint64(ptr + 24, 1n, true)
    v.setBigUint64(ptr + 32, BigInt(size), true)
    return ESUCCESS
  }

  /**
   * The text of a path in guest memory, or an errno: empty, too long, out of range or not UTF-8.
   * The length is checked before anything is copied out of guest memory.
   */
  private pathText (ptr: number, len: number): string | number {
    if (len === 0) return ENOENT
    if (len > MAX_OUTPUT_PATH_BYTES) return ENAMETOOLONG
    if (!this.inBounds(ptr, len)) return EFAULT
    this.mem()
    try { return STRICT_UTF8.decode(this.u8.subarray(ptr, ptr + len)) } catch { return EILSEQ }
  }

  /**
   * A path the guest names relative to the output directory: '' for the directory itself, the
   * normalised path, or an errno (bad descriptor, out of range, too long, not UTF-8, escaping).
   * The length is checked before anything is copied out of guest memory.
   */
  private guestPath (fd: number, ptr: number, len: number): string | number {
    if (!this.isOutputsDir(fd)) return this.open.has(fd) ? ENOTDIR : EBADF
    const text = this.pathText(ptr, len)
    if (typeof text === 'number') return text
    if (/^(\.\/)*\.?$/.test(text)) return ''
    const n = normaliseOutputPath(text)
    return 'problem' in n ? PROBLEM_ERRNO[n.problem] : n.path
  }

  private pathOpen (fd: number, path: number, pathLen: number, oflags: number, fdflags: number, fdPtr: number): number {
    const p = this.guestPath(fd, path, pathLen)
    if (typeof p === 'number') return p
    if (!this.inBounds(fdPtr, 4)) return EFAULT
    const outputs = this.outputs as OutputFiles
    // directories (opendir, O_DIRECTORY) are not listed: the output directory is write-only
    if (p === '' || (oflags & OFLAGS_DIRECTORY) !== 0) return p === '' || outputs.isDir(p) ? ENOTSUP : outputs.has(p) ? ENOTDIR : ENOENT
    if (this.open.size >= MAX_OPEN_OUTPUT_FDS) return EMFILE
    const problem = outputs.open(p, { create: (oflags & OFLAGS_CREAT) !== 0, exclusive: (oflags & OFLAGS_EXCL) !== 0, truncate: (oflags & OFLAGS_TRUNC) !== 0 })
    if (problem === 'limit') throw new OutputLimitReached()
    if (problem != null) return PROBLEM_ERRNO[problem]
    const next = this.nextFd()
    this.open.set(next, { path: p, pos: 0, append: (fdflags & FDFLAGS_APPEND) !== 0 })
    this.mem().setUint32(fdPtr, next, true)
    return ESUCCESS
  }

  private fileWrite (fd: number, iovs: number, n: number, nwritten: number): number {
    if (!this.inBounds(nwritten, 4) || this.iovecs(iovs, n) < 0) return EFAULT
    const file = this.open.get(fd) as OpenFile
    const outputs = this.outputs as OutputFiles
    const v = this.mem()
    let total = 0
    if (file.append) file.pos = outputs.size(file.path)
    for (let i = 0; i < n; i++) {
      const ptr = v.getUint32(iovs + i * 8, true)
      const len = v.getUint32(iovs + i * 8 + 4, true)
      if (len === 0) continue
      // a write past a cap stops the job (output-limit): nothing is allocated beyond the cap
      if (!outputs.write(file.path, file.pos, this.u8.subarray(ptr, ptr + len))) throw new OutputLimitReached()
      file.pos += len
      total += len
    }
    v.setUint32(nwritten, total, true)
    return ESUCCESS
  }

  private seek (fd: number, offset: bigint, whence: number, ptr: number): number {
    const input = this.inOpen.get(fd)
    if (input != null && !input.dir) {
      if (!this.inBounds(ptr, 8)) return EFAULT
      const size = BigInt((this.inputs as InputFiles).size(input.path))
      const base = whence === 0 ? 0n : whence === 1 ? BigInt(input.pos) : whence === 2 ? size : -1n
      if (base < 0n) return EINVAL
      const pos = base + offset
      if (pos < 0n || pos > BigInt(Number.MAX_SAFE_INTEGER)) return EINVAL
      input.pos = Number(pos)
      this.mem().setBigUint64(ptr, pos, true)
      return ESUCCESS
    }
    if (this.isInput(fd)) return ESPIPE
    const file = this.open.get(fd)
    if (file == null) return fd <= 2 || this.isOutputsDir(fd) ? ESPIPE : EBADF
    if (!this.inBounds(ptr, 8)) return EFAULT
    const size = BigInt((this.outputs as OutputFiles).size(file.path))
    const base = whence === 0 ? 0n : whence === 1 ? BigInt(file.pos) : whence === 2 ? size : -1n
    if (base < 0n) return EINVAL
    const pos = base + offset
    if (pos < 0n || pos > BigInt((this.outputs as OutputFiles).caps.fileBytes)) return EINVAL
    file.pos = Number(pos)
    this.mem().setBigUint64(ptr, pos, true)
    return ESUCCESS
  }

  /** Never blocks: fd events are ready at once; otherwise the virtual clock jumps to the earliest timeout. */
  private poll (inPtr: number, outPtr: number, nsubs: number, neventsPtr: number): number {
    if (nsubs === 0) return EINVAL
    if (!this.inBounds(inPtr, nsubs * 48) || !this.inBounds(outPtr, nsubs * 32) || !this.inBounds(neventsPtr, 4)) return EFAULT
    const v = this.mem()
    const fdEvents: Array<{ userdata: bigint, type: number, error: number, nbytes: bigint }> = []
    let minWait: bigint | undefined
    const clocks: Array<{ userdata: bigint, wait: bigint }> = []
    for (let i = 0; i < nsubs; i++) {
      const base = inPtr + i * 48
      const userdata = v.getBigUint64(base, true)
      const tag = v.getUint8(base + 8)
      if (tag === 0) {
        const clockId = v.getUint32(base + 16, true)
        const timeout = v.getBigUint64(base + 24, true)
        const abs = (v.getUint16(base + 40, true) & 1) !== 0
        const now = clockId === 0 ? this.epochNs + this.elapsedNs : this.elapsedNs
        let wait = abs ? timeout - now : timeout
        if (wait < 0n) wait = 0n
        clocks.push({ userdata, wait })
        if (minWait == null || wait < minWait) minWait = wait
      } else if (tag === 1 || tag === 2) {
        const fd = v.getUint32(base + 16, true)
        const ok = tag === 1 ? fd === 0 : (fd === 1 || fd === 2)
        const nbytes = ok && tag === 1 ? BigInt(this.stdin.length - this.stdinPos) : 0n
        fdEvents.push({ userdata, type: tag, error: ok ? ESUCCESS : EBADF, nbytes })
      } else {
        return EINVAL
      }
    }
    let events = fdEvents
    if (events.length === 0 && minWait != null) {
      this.elapsedNs += minWait
      this.sleptNs += minWait
      events = clocks.filter(c => c.wait === minWait).map(c => ({ userdata: c.userdata, type: 0, error: ESUCCESS, nbytes: 0n }))
    }
    for (let i = 0; i < events.length; i++) {
      const base = outPtr + i * 32
      const e = events[i]
      v.setBigUint64(base, e.userdata, true)
      v.setUint16(base + 8, e.error, true)
      v.setUint8(base + 10, e.type)
      v.setBigUint64(base + 16, e.nbytes, true)
      v.setUint16(base + 24, 0, true)
    }
    v.setUint32(neventsPtr, events.length, true)
    return ESUCCESS
  }
}
