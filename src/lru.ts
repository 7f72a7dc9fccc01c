/**
 * A bounded least-recently-used map with hit and miss counts: a `get` or
 * `set` makes the key the newest; past `max` entries the oldest goes. Used for
 * the executor's compiled modules and the provider's dial hints.
 */
export class LruCache<V> {
  private readonly map = new Map<string, V>()
  hits = 0
  misses = 0

  constructor (readonly max: number) {}

  get (key: string): V | undefined {
    const v = this.map.get(key)
    if (v === undefined) { this.misses++; return undefined }
    this.hits++
    this.map.delete(key)
    this.map.set(key, v)
    return v
  }

  set (key: string, value: V): void {
    if (this.max <= 0) return
    this.map.delete(key)
    this.map.set(key, value)
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string)
  }

  /** Whether `key` is held (its place in the order unchanged, no hit or miss counted). */
  has (key: string): boolean { return this.map.has(key) }

  delete (key: string): void { this.map.delete(key) }

  /** The entries, least recently used first (reading them does not change the order). */
  entries (): IterableIterator<[string, V]> { return this.map.entries() }

  get size (): number { return this.map.size }

  clear (): void { this.map.clear() }
}
