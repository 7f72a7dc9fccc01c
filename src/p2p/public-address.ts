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

/**
 * The connection gater's half of a dial a stranger asked for (a provider answering an offer):
 * while such a dial runs, only public addresses of its peers may be dialled, whoever dials them.
 * libp2p can dial a peer by PeerId on its own: a relay circuit whose relay connection closed
 * makes the circuit transport dial the relay with every address it holds for it, the private
 * and loopback ones that peer claimed included. `open` registers the target and the relays of its
 * circuits, and the exact addresses we built ourselves on connections we hold (circuitsVia),
 * which pass whatever their first hop; the returned function ends the registration. Counted, so
 * overlapping dials of one peer hold it until the last ends.
 */
export class StrangerDials {
  private readonly peers = new Map<string, number>()
  private readonly allowed = new Map<string, number>()

  open (peers: readonly string[], allowed: readonly Multiaddr[] = []): () => void {
    const keys = [...new Set(peers)]
    const exact = [...new Set(allowed.map(a => a.toString()))]
    for (const p of keys) this.peers.set(p, (this.peers.get(p) ?? 0) + 1)
    for (const a of exact) this.allowed.set(a, (this.allowed.get(a) ?? 0) + 1)
    let done = false
    return () => {
      if (done) return
      done = true
      release(this.peers, keys)
      release(this.allowed, exact)
    }
  }

  /** For the connection gater: refuse a non-public address of a peer a stranger's dial is reaching. */
  denies (ma: Multiaddr): boolean {
    if (this.peers.size === 0) return false
    const peer = ma.getComponents().findLast(c => c.name === 'p2p')?.value
    if (peer == null || !this.peers.has(peer)) return false
    return !isPublicAddress(ma) && !this.allowed.has(ma.toString())
  }
}

function release (counts: Map<string, number>, keys: readonly string[]): void {
  for (const k of keys) {
    const n = (counts.get(k) ?? 1) - 1
    if (n <= 0) counts.delete(k)
    else counts.set(k, n)
  }
}

/** The relays a dial's circuit addresses go through (the peer before each /p2p-circuit). */
export function relaysIn (addrs: readonly Multiaddr[]): string[] {
  const out: string[] = []
  for (const a of addrs) {
    const c = a.getComponents()
    for (let i = 1; i < c.length; i++) if (c[i].name === 'p2p-circuit' && c[i - 1].name === 'p2p' && c[i - 1].value != null) out.push(c[i - 1].value as string)
  }
  return out
}
