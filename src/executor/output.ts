/**
 * Guest output capture. Each worker owns a SharedArrayBuffer with a small
 * header and two regions (stdout, stderr), each as large as the pool's
 * output ceiling. The worker writes guest output straight into it, counting
 * bytes at write time against the job's cap; the main thread reads the
 * lengths with Atomics, so even the partial output of a job that had to be
 * killed (timeout) survives the worker.
 */

/** Header: Int32 [stdoutLen, stderrLen, reserved, reserved]. */
export const HEADER_BYTES = 16

export function outputBufferSize (maxOutputBytes: number): number {
  return HEADER_BYTES + 2 * maxOutputBytes
}

/** Worker side: writes guest bytes, cuts at the cap. */
export class OutputSink {
  private readonly header: Int32Array
  private readonly bytes: Uint8Array
  private readonly region: number
  private cap = 0
  /** Bytes charged to the cap that are not in stdout/stderr (the JS output JSON). */
  private extra = 0
  truncated = false

  constructor (sab: SharedArrayBuffer, maxOutputBytes: number) {
    this.header = new Int32Array(sab, 0, 4)
    this.bytes = new Uint8Array(sab)
    this.region = maxOutputBytes
  }

  reset (cap: number): void {
    this.cap = Math.min(cap, this.region)
    this.extra = 0
    this.truncated = false
    Atomics.store(this.header, 0, 0)
    Atomics.store(this.header, 1, 0)
  }

  get used (): number {
    return this.header[0] + this.header[1] + this.extra
  }

  /** Write to fd 1 or 2; returns the bytes kept. Sets `truncated` when the cap cut the write. */
  write (fd: 1 | 2, data: Uint8Array): number {
    const room = this.cap - this.used
    const n = Math.max(0, Math.min(room, data.length))
    if (n > 0) {
      const slot = fd - 1
      const len = this.header[slot]
      this.bytes.set(n === data.length ? data : data.subarray(0, n), HEADER_BYTES + slot * this.region + len)
      Atomics.store(this.header, slot, len + n)
    }
    if (n < data.length) this.truncated = true
    return n
  }

  /** Charge bytes that live elsewhere (output JSON); false (and truncated) when they do not fit. */
  charge (n: number): boolean {
    if (this.used + n > this.cap) { this.truncated = true; return false }
    this.extra += n
    return true
  }

  get chargedExtra (): number { return this.extra }
}

/** Main side: copies what a worker's guest wrote. */
export function readOutput (sab: SharedArrayBuffer, maxOutputBytes: number): { stdout: Uint8Array, stderr: Uint8Array } {
  const header = new Int32Array(sab, 0, 4)
  const outLen = Math.min(Atomics.load(header, 0), maxOutputBytes)
  const errLen = Math.min(Atomics.load(header, 1), maxOutputBytes)
  const bytes = new Uint8Array(sab)
  return {
    stdout: bytes.slice(HEADER_BYTES, HEADER_BYTES + outLen),
    stderr: bytes.slice(HEADER_BYTES + maxOutputBytes, HEADER_BYTES + maxOutputBytes + errLen)
  }
}
