/**
 * A minimal, in-memory WASI preview1 host (worker side).
 *
 * What a guest gets: args, env, stdin (bytes given by the job), stdout and
 * stderr (captured, capped), a virtual clock and seeded randomness. What it
 * does not get: any file, directory (no preopens, so libc cannot even name a
 * path), socket, or host environment. Every other preview1 call answers
 * ENOSYS / EBADF.
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
const EINVAL = 28
const ENOSYS = 52
const ESPIPE = 70

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

  private writeStrings (list: Uint8Array[], ptrs: number, buf: number): number {
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
    const v = this.mem()
    v.setUint32(countPtr, list.length, true)
    v.setUint32(sizePtr, list.reduce((n, s) => n + s.length, 0), true)
    return ESUCCESS
  }

  /** The import object for `wasi_snapshot_preview1`, restricted to `names` (unknown names answer ENOSYS). */
  imports (names: string[]): Record<string, WasiFunction> {
    const impl = this.implementation()
    const out: Record<string, WasiFunction> = {}
    for (const name of names) out[name] = impl[name] ?? (() => ENOSYS)
    return out
  }

  private implementation (): Record<string, WasiFunction> {
    return {
      args_get: (argv: number, buf: number) => this.writeStrings(this.args, argv, buf),
      args_sizes_get: (c: number, s: number) => this.sizes(this.args, c, s),
      environ_get: (envp: number, buf: number) => this.writeStrings(this.env, envp, buf),
      environ_sizes_get: (c: number, s: number) => this.sizes(this.env, c, s),

      clock_res_get: (_id: number, ptr: number) => { this.mem().setBigUint64(ptr, WASI_CLOCK_TICK_NS, true); return ESUCCESS },
      clock_time_get: (id: number, _precision: bigint, ptr: number) => {
        if (id > 3) return EINVAL
        const t = this.tick()
        this.mem().setBigUint64(ptr, id === 0 ? this.epochNs + t : t, true)
        return ESUCCESS
      },

      fd_write: (fd: number, iovs: number, n: number, nwritten: number) => {
        if (fd !== 1 && fd !== 2) return EBADF
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
      fd_close: (fd: number) => fd <= 2 ? ESUCCESS : EBADF,
      fd_sync: (fd: number) => fd <= 2 ? ESUCCESS : EBADF,
      fd_datasync: (fd: number) => fd <= 2 ? ESUCCESS : EBADF,
      fd_seek: (fd: number) => fd <= 2 ? ESPIPE : EBADF,
      fd_tell: (fd: number) => fd <= 2 ? ESPIPE : EBADF,
      fd_fdstat_get: (fd: number, ptr: number) => {
        if (fd > 2) return EBADF
        const v = this.mem()
        v.setUint8(ptr, FILETYPE_CHARACTER_DEVICE)
        v.setUint16(ptr + 2, fd === 0 ? 0 : 1 /* append */, true)
        v.setBigUint64(ptr + 8, RIGHTS_ALL, true)
        v.setBigUint64(ptr + 16, 0n, true)
        return ESUCCESS
      },
      fd_fdstat_set_flags: (fd: number) => fd <= 2 ? ESUCCESS : EBADF,
      fd_filestat_get: (fd: number, ptr: number) => {
        if (fd > 2) return EBADF
        const v = this.mem()
        for (let i = 0; i < 64; i += 8) v.setBigUint64(ptr + i, 0n, true)
        v.setUint8(ptr + 16, FILETYPE_CHARACTER_DEVICE)
        v.setBigUint64(ptr + 24, 1n, true)
        return ESUCCESS
      },
      // no preopened directories: libc finds nothing to resolve paths against
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

      poll_oneoff: (inPtr: number, outPtr: number, nsubs: number, neventsPtr: number) => this.poll(inPtr, outPtr, nsubs, neventsPtr),
      sched_yield: () => ESUCCESS,
      random_get: (ptr: number, len: number) => {
        this.mem()
        if (this.rng == null) {
          const key = createHash('sha256').update('mercato/v1/executor/random\0').update(this.seed).digest()
          this.rng = createCipheriv('chacha20', key, Buffer.alloc(16))
        }
        this.u8.set(this.rng.update(Buffer.alloc(len)), ptr)
        return ESUCCESS
      },
      proc_exit: (code: number) => { throw new WasiExit(code >>> 0) },
      proc_raise: () => ENOSYS,
      sock_accept: () => ENOSYS,
      sock_recv: () => ENOSYS,
      sock_send: () => ENOSYS,
      sock_shutdown: () => ENOSYS
    }
  }

  /** Never blocks: fd events are ready at once; otherwise the virtual clock jumps to the earliest timeout. */
  private poll (inPtr: number, outPtr: number, nsubs: number, neventsPtr: number): number {
    if (nsubs === 0) return EINVAL
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
