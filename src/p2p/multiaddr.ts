import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { isPrivateIp } from '@libp2p/utils'

/** True when the string parses as a multiaddr. */
export function isMultiaddr (value: string): boolean {
  try { multiaddr(value); return true } catch { return false }
}

/**
 * True when a multiaddr starts with a public IP address: IPv4 or IPv6, not loopback, private
 * (RFC 1918), shared (CGNAT), link-local, unique-local, documentation, multicast or reserved.
 * DNS names are not public here: a name can resolve to anything, loopback included.
 */
export function isPublicAddress (ma: Multiaddr | string): boolean {
  let addr: Multiaddr
  try { addr = typeof ma === 'string' ? multiaddr(ma) : ma } catch { return false }
  const first = addr.getComponents()[0]
  if (first == null || (first.name !== 'ip4' && first.name !== 'ip6') || first.value == null) return false
  const host = first.value
  if (first.name === 'ip4' && Number(host.split('.')[0]) >= 224) return false // multicast and reserved
  return isPrivateIp(host) === false
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
