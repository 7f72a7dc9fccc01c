/** Wrapping libp2p's components without subclassing them. */

/** `target` with some of its members replaced; the others read from it (methods bound to it). */
export function withOverrides<T extends object> (target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get (t, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop as keyof T]
      const v = Reflect.get(t, prop, t)
      return typeof v === 'function' ? v.bind(t) : v
    }
  })
}
