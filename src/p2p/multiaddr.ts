import { multiaddr } from '@multiformats/multiaddr'

/** True when the string parses as a multiaddr. */
export function isMultiaddr (value: string): boolean {
  try { multiaddr(value); return true } catch { return false }
}
