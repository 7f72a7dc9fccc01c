/**
 * Coalesce messages produced in the same turn of the event loop into one
 * network message. One job at a time sees no delay (a batch of one goes out
 * on the next `setImmediate`); under load, N offers, bids or receipts cost one
 * gossip round or one stream frame instead of N.
 */
export class Batcher<T> {
  private items: T[] = []
  private bytes = 0
  private scheduled = false
  private readonly flushFn: (items: T[]) => void
  private readonly maxItems: number
  private readonly maxBytes: number
  private readonly sizeOf: (item: T) => number

  private readonly delayMs: number | (() => number)

  /** `delayMs` > 0 holds a batch that long (may be a function, read when a batch starts); 0 flushes on the next turn */
  constructor (flush: (items: T[]) => void, opts: { maxItems: number, maxBytes: number, sizeOf: (item: T) => number, delayMs?: number | (() => number) }) {
    this.flushFn = flush
    this.delayMs = opts.delayMs ?? 0
    this.maxItems = opts.maxItems
    this.maxBytes = opts.maxBytes
    this.sizeOf = opts.sizeOf
  }

  add (item: T): void {
    const size = this.sizeOf(item)
    if (this.items.length > 0 && this.bytes + size > this.maxBytes) this.flush()
    this.items.push(item)
    this.bytes += size
    if (this.items.length >= this.maxItems) { this.flush(); return }
    if (!this.scheduled) {
      this.scheduled = true
      const run = (): void => { this.scheduled = false; this.flush() }
      const delay = typeof this.delayMs === 'function' ? this.delayMs() : this.delayMs
      if (delay > 0) setTimeout(run, delay).unref(); else setImmediate(run)
    }
  }

  flush (): void {
    if (this.items.length === 0) return
    const items = this.items
    this.items = []
    this.bytes = 0
    this.flushFn(items)
  }
}
