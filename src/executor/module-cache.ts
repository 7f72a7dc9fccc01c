/**
 * Bounded LRU of compiled modules, keyed by `${cid}/${capPages}/${fuel}`: the
 * same bytes under a different memory cap or with fuel metering are a
 * different compiled module. Entries are promises, so concurrent jobs with the
 * same module share one compilation; a failed compilation is not kept.
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

  delete (key: string): void { this.map.delete(key) }

  get size (): number { return this.map.size }

  clear (): void { this.map.clear() }
}
