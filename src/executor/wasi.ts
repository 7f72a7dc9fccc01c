/**
 * A minimal, in-memory WASI preview1 host (worker side).
 *
 * What a guest gets: args, env, stdin (bytes given by the job), stdout and
 * stderr (captured, capped), a virtual clock and seeded randomness. What it
 * does not get: any file, directory (no preopens, so libc cannot even name a
 * path), socket, or host environment. Every other preview1 call answers
 * ENOSYS / EBADF.
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
import { VIRTUAL_EPOCH_MS, WASI_CLOCK_TICK_NS } from './constants.js'
import type { OutputSink } from './output.js'

const ESUCCESS = 0
const EBADF = 8
const EFAULT = 21
const EINVAL = 28
const ENOSYS = 52
const ENOTSOCK = 57
const ESPIPE = 70

/** random_get fills guest memory in pieces of this size: host memory stays small, and the loop can be terminated. */
const RANDOM_CHUNK = 65536
const ZEROS = new Uint8Array(RANDOM_CHUNK)

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
}

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
      fd_close: (fd: number) => fd >>> 0 <= 2 ? ESUCCESS : EBADF,
      fd_sync: (fd: number) => fd >>> 0 <= 2 ? ESUCCESS : EBADF,
      fd_datasync: (fd: number) => fd >>> 0 <= 2 ? ESUCCESS : EBADF,
      fd_seek: (fd: number) => fd >>> 0 <= 2 ? ESPIPE : EBADF,
      fd_tell: (fd: number) => fd >>> 0 <= 2 ? ESPIPE : EBADF,
      fd_fdstat_get: (fd: number, ptr: number) => {
        if (fd >>> 0 > 2) return EBADF
        ptr >>>= 0
        if (!this.inBounds(ptr, 24)) return EFAULT
        const v = this.mem()
        v.setUint8(ptr, FILETYPE_CHARACTER_DEVICE)
        v.setUint16(ptr + 2, fd === 0 ? 0 : 1 /* append */, true)
        v.setBigUint64(ptr + 8, RIGHTS_ALL, true)
        v.setBigUint64(ptr + 16, 0n, true)
        return ESUCCESS
      },
      fd_fdstat_set_flags: (fd: number) => fd >>> 0 <= 2 ? ESUCCESS : EBADF,
      fd_filestat_get: (fd: number, ptr: number) => {
        if (fd >>> 0 > 2) return EBADF
        ptr >>>= 0
        if (!this.inBounds(ptr, 64)) return EFAULT
        const v = this.mem()
        for (let i = 0; i < 64; i += 8) v.setBigUint64(ptr + i, 0n, true)
        v.setUint8(ptr + 16, FILETYPE_CHARACTER_DEVICE)
        v.setBigUint64(ptr + 24, 1n, true)
        return ESUCCESS
      },
      // no preopened directories: libc finds nothing to resolve paths against (these touch no memory)
      fd_prestat_get: () => EBADF,
      fd_prestat_dir_name: () => EBADF,
      path_open: () => EBADF,
      path_filestat_get: () => EBADF,
      path_create_directory: () => EBADF,
      path_unlink_file: () => EBADF,
      path_remove_directory: () => EBADF,
      path_rename: () => EBADF,
      path_symlink: () => EBADF,
      path_readlink: () => EBADF,
      path_link: () => EBADF,
      fd_readdir: () => EBADF,

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
