/**
 * A DHT walk that meets peers for what they cost: one query.
 *
 * libp2p's `peerRouting.getClosestPeers` runs the DHT query and then, for
 * every peer in its final list (the DHT keeps peer ids only, so all of them),
 * a `findPeer` query that skips the peer store, even for peers we are
 * connected to: a walk in a mesh of five cost ~20 FIND_NODE streams instead of
 * 4, on every node, at every turn. The walks here (the peer keeper's, the
 * relay search's, AutoNAT's) only want to meet peers with addresses to dial,
 * which the DHT's own answers already carry.
 */
import type { PeerId, PeerInfo, PeerRouting } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'

/** Where a walk finds peers close to a key (the DHT, or libp2p's peer routing in tests without one). */
export type ClosestPeers = (key: Uint8Array, options: { signal?: AbortSignal }) => AsyncIterable<PeerInfo>

/** libp2p's peer routing as a walk's source (before the DHT exists, and in tests without one). */
export function peerRoutingClosest (peerRouting: PeerRouting): ClosestPeers {
  return (key, options) => peerRouting.getClosestPeers(key, options)
}

/**
 * The peers the DHT's answers name while it looks for `key`, each once and only with addresses,
 * as they arrive (not at the end of the query): what every peer asked said of its neighbours.
 */
export function dhtClosestPeers (dht: () => KadDHT | undefined, self: PeerId, fallback: ClosestPeers): ClosestPeers {
  return async function * (key, options) {
    const service = dht()
    if (service == null) { yield * fallback(key, options); return }
    const seen = new Set<string>([self.toString()])
    for await (const event of service.getClosestPeers(key, options)) {
      if (event.name !== 'PEER_RESPONSE') continue
      for (const peer of event.closer) {
        const id = peer.id.toString()
        if (seen.has(id) || peer.multiaddrs.length === 0) continue
        seen.add(id)
        yield peer
      }
    }
  }
}
