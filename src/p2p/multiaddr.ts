/**
 * Multiaddr syntax, light enough for the CLI and the config loader (only
 * @multiformats/multiaddr): what needs libp2p's IP tables is in public-address.ts.
 */
import { BlockList, isIPv4 } from 'node:net'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'

/** True when the string parses as a multiaddr. */
export function isMultiaddr (value: string): boolean {
  try { multiaddr(value); return true } catch { return false }
}

/** The PeerId a multiaddr string ends in (`…/p2p/<id>`), or undefined when it does not parse or ends otherwise. */
export function peerOfAddress (value: string): string | undefined {
  try {
    const components = multiaddr(value).getComponents()
    const last = components[components.length - 1]
    return last?.name === 'p2p' ? last.value : undefined
  } catch {
    return undefined
  }
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

/**
 * Relay circuits to `peer` among addresses a stranger named (an offer's `addrs`), rebuilt on the
 * connection we hold to the relay: `<that connection's address>/p2p/<relay>/p2p-circuit/p2p/<peer>`.
 * A hint is used only when it is a circuit that ends in `peer` and its relay is `relayAddr`'s
 * peer (one we are connected to now); its own host and port are never dialled. So dialling the
 * result reaches nothing we do not already talk to: the relay is asked for a hop to `peer`, and the
 * handshake proves it is `peer`. At most one address per relay; unparseable hints are skipped.
 */
export function circuitsVia (peer: string, hints: readonly string[], relayAddr: (relay: string) => Multiaddr | undefined): Multiaddr[] {
  const out = new Map<string, Multiaddr>()
  for (const hint of hints) {
    let components
    try { components = multiaddr(hint).getComponents() } catch { continue }
    const at = components.findIndex(c => c.name === 'p2p-circuit')
    if (at < 1 || at !== components.length - 2) continue
    const relay = components[at - 1]
    const last = components[at + 1]
    if (relay.name !== 'p2p' || relay.value == null || last.name !== 'p2p' || last.value !== peer || relay.value === peer) continue
    if (out.has(relay.value)) continue
    const base = relayAddr(relay.value)
    if (base == null) continue
    const own = base.getComponents()
    // a relay we reach through another relay is no first hop of ours
    if (own.some(c => c.name === 'p2p-circuit')) continue
    out.set(relay.value, multiaddr(own.filter(c => c.name !== 'p2p')).encapsulate(`/p2p/${relay.value}/p2p-circuit/p2p/${peer}`))
  }
  return [...out.values()]
}

/** The IP address a direct connection comes from (its first ip4/ip6 part); none for a relayed one (that is the relay's). */
export function ipOf (ma: Multiaddr): string | undefined {
  const components = ma.getComponents()
  if (components.some(c => c.name === 'p2p-circuit')) return undefined
  return components.find(c => c.name === 'ip4' || c.name === 'ip6')?.value
}

/** The IP entries of an allow-list (`/ip4/A` or `/ip6/A`, with an optional `/ipcidr/N`); other entries are skipped. */
export function allowEntries (allow: readonly string[]): Array<{ address: string, prefix?: number, type: 'ipv4' | 'ipv6' }> {
  const out: Array<{ address: string, prefix?: number, type: 'ipv4' | 'ipv6' }> = []
  for (const a of allow) {
    const m = /^\/ip([46])\/([^/]+)(?:\/ipcidr\/(\d+))?$/.exec(a)
    if (m != null) out.push({ address: m[2], ...(m[3] != null ? { prefix: Number(m[3]) } : {}), type: m[1] === '4' ? 'ipv4' : 'ipv6' })
  }
  return out
}

/**
 * A test for the IP addresses an allow-list names (`p2p.allow`: `/ip4/A`, `/ip6/A`, with an optional
 * `/ipcidr/N`), as libp2p's connection manager reads it; other entries match nothing.
 */
export function allowedIps (allow: readonly string[]): (ip: string) => boolean {
  const list = new BlockList()
  for (const { address, prefix, type } of allowEntries(allow)) {
    try {
      if (prefix != null) list.addSubnet(address, prefix, type)
      else list.addAddress(address, type)
    } catch {}
  }
  return (ip) => list.check(ip, isIPv4(ip) ? 'ipv4' : 'ipv6')
}
