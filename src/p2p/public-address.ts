import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { isPrivateIp } from '@libp2p/utils'

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
