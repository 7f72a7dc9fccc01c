/**
 * Mercato's peer-to-peer layer: the only folder that imports libp2p.
 *
 * A node runs TCP + Noise + Yamux, identify, ping, a Kademlia DHT on Mercato's
 * own protocol id (`/mercato/kad/1.0.0`, so it is a DHT apart from IPFS'),
 * gossipsub (StrictNoSign: every payload is signed by Mercato itself), and
 * bootstrap + mDNS discovery. Everything else sees the small {@link Network}
 * interface.
 *
 * @example
 * ```ts
 * const net = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'] })
 * await net.handle('/echo/1.0.0', (req) => req)
 * const res = await other.request(net.addresses()[0], '/echo/1.0.0', bytes)
 * await net.stop()
 * ```
 */
import { buildNetwork, type NetworkInit, type Libp2pNetwork, type NetworkStatus } from './network-node.js'
import type { Network } from './network.js'
import { SCORE_THRESHOLDS } from './scoring.js'

export type * from './network.js'
export type { NetworkInit, NetworkStatus } from './network-node.js'
export { MessageTooLargeError, RemoteError, RequestTimeoutError, PeerUnreachableError, NetworkKeyError } from './errors.js'
export { loadNetworkKey, writeNetworkKey, type NetworkKey } from './pnet.js'
export type { NatStatus, Reachability } from './nat.js'
export { loadOrCreateIdentity, identityFromSeed, IDENTITY_FILE, type Identity } from './identity.js'
export { DIAL_TIMEOUT_MS, MAX_MESSAGE_BYTES, REQUEST_TIMEOUT_MS } from './constants.js'
export { withLoopback, LoopbackNetwork } from './loopback.js'

export interface NetworkNode extends Network {
  start (): Promise<void>
  stop (): Promise<void>
  /** the gossip score we give a peer; below GRAYLIST_THRESHOLD everything it sends is dropped */
  gossipScore (peerId: string): number
  /** peers in our gossip mesh for a topic */
  meshPeers (topic: string): string[]
  /** reachability, observed/announced addresses, relays in use, connections by path */
  natStatus (): NetworkStatus
  /** connections open now and opened since start, by path (a metrics scrape's share of natStatus) */
  connectionsByPath (): ConnectionsByPath
  /** call `listener` when our addresses change (a relay slot, a verified or mapped address); returns the function that stops it */
  onAddressChange (listener: () => void): () => void
}

export interface ConnectionsByPath {
  open: { direct: number, relayed: number }
  opened: { direct: number, relayed: number }
}

/** Gossip score below which a peer's messages are dropped unread. */
export const GRAYLIST_THRESHOLD = SCORE_THRESHOLDS.graylistThreshold

/** Build and start a network node. */
export async function createNetwork (init: NetworkInit = {}): Promise<NetworkNode> {
  const net: Libp2pNetwork = await buildNetwork(init)
  await net.start()
  return net
}

/** Build a network node without starting it. */
export async function buildNetworkNode (init: NetworkInit = {}): Promise<NetworkNode> {
  return buildNetwork(init)
}

/** True when the string parses as a multiaddr. */
export { isMultiaddr, peerOfAddress } from './multiaddr.js'
