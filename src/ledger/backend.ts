/**
 * Storage behind the ledger: an ordered key/value store with atomic batches.
 * Two implementations share this shape (OrbitDB style), so one test suite
 * runs against both: {@link MemoryBackend} and `LevelBackend` (LevelDB).
 *
 * Keys are strings, values bytes. A batch is all-or-nothing, also across a
 * kill -9 (LevelDB writes a batch as one write-ahead-log record and drops a
 * torn one on recovery): that is what makes group commit crash-safe.
 */

export type BackendOp =
  | { type: 'put', key: string, value: Uint8Array }
  | { type: 'del', key: string }

export interface IterateOptions {
  gte?: string
  lt?: string
  reverse?: boolean
  limit?: number
}

export interface LedgerBackend {
  /** open (or reopen after close) */
  open (): Promise<void>
  /** apply all ops atomically */
  batch (ops: BackendOp[]): Promise<void>
  get (key: string): Promise<Uint8Array | undefined>
  /** entries in key order (a consistent snapshot taken when iteration starts) */
  iterate (opts?: IterateOptions): AsyncIterable<[string, Uint8Array]>
  close (): Promise<void>
}

/** In-memory backend. Data survives close()/open() (so tests can reopen and tamper); it dies with the object. */
export class MemoryBackend implements LedgerBackend {
  private readonly map = new Map<string, Uint8Array>()
  private keys: string[] = []
  private isOpen = false

  async open (): Promise<void> { this.isOpen = true }

  async close (): Promise<void> { this.isOpen = false }

  private assertOpen (): void {
    if (!this.isOpen) throw new Error('MemoryBackend is not open')
  }

  async batch (ops: BackendOp[]): Promise<void> {
    this.assertOpen()
    for (const op of ops) {
      if (op.type === 'put') {
        if (!this.map.has(op.key)) this.insertKey(op.key)
        this.map.set(op.key, op.value.slice())
      } else if (this.map.delete(op.key)) {
        this.keys.splice(this.lowerBound(op.key), 1)
      }
    }
  }

  async get (key: string): Promise<Uint8Array | undefined> {
    this.assertOpen()
    return this.map.get(key)?.slice()
  }

  async * iterate (opts: IterateOptions = {}): AsyncIterable<[string, Uint8Array]> {
    this.assertOpen()
    const start = opts.gte != null ? this.lowerBound(opts.gte) : 0
    const end = opts.lt != null ? this.lowerBound(opts.lt) : this.keys.length
    let slice = this.keys.slice(start, Math.max(start, end))
    if (opts.reverse === true) slice.reverse()
    if (opts.limit != null && opts.limit >= 0) slice = slice.slice(0, opts.limit)
    // snapshot values too, so writes during iteration are not seen
    const entries = slice.map((k) => [k, this.map.get(k) as Uint8Array] as [string, Uint8Array])
    for (const [k, v] of entries) yield [k, v.slice()]
  }

  private lowerBound (key: string): number {
    let lo = 0
    let hi = this.keys.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.keys[mid] < key) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  private insertKey (key: string): void {
    const n = this.keys.length
    if (n === 0 || this.keys[n - 1] < key) { this.keys.push(key); return }
    this.keys.splice(this.lowerBound(key), 0, key)
  }
}
