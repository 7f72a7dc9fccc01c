/**
 * Multiaddr syntax, light enough for the CLI and the config loader (only
 * @multiformats/multiaddr): what needs libp2p's IP tables is in public-address.ts.
 */
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'

/** True when the string parses as a multiaddr. */
export function isMultiaddr (value: string): boolean {
  try { multiaddr(value); return true } catch { return false }
}

/**
 * The addresses of `peer` in the form a dial takes: each ending in `/p2p/<peer>`. A relay address
 * as identify reports it ends in `/p2p-circuit` (the relay's id inside, not the peer's): it gets
 * the peer's id appended; an address with no id gets it too; an address that ends in another
 * peer's id is not an address of this peer and is dropped. One such address in a list made libp2p
 * refuse the whole dial ("Multiaddrs must all have the same peer id"): a provider behind NAT
 * could not answer a requester behind another NAT through their relays.
 */
export function addressesOf (peer: string, addrs: readonly Multiaddr[]): Multiaddr[] {
  const out: Multiaddr[] = []
  for (const a of addrs) {
    const components = a.getComponents()
    const last = components[components.length - 1]
    if (last?.name === 'p2p') {
      if (last.value === peer) out.push(a)
      continue
    }
    out.push(a.encapsulate(`/p2p/${peer}`))
  }
  return out
}
