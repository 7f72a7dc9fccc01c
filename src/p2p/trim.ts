/**
 * Trimming: a node keeps a bounded number of peers, whatever the size of the mesh.
 *
 * libp2p accepts every inbound connection up to `maxConnections` (300) and its
 * own pruner closes nothing that carries a gossipsub stream, which is every
 * connection to a Mercato node. So each node ended up connected to nearly every
 * other: 20–39 peers each in a mesh of 40, and an idle node's CPU grew with
 * them (gossip heartbeats, IHAVEs and yamux pings are paid per peer). Gossipsub
 * needs 6–12 peers per topic; the market reaches a provider it invites by
 * dialling it when it is not connected.
 *
 * The rule, after go-libp2p's connection manager: above `high` settled peers
 * (connected for `graceMs` or longer), close the connections of the least
 * valued idle ones until `low` settled peers remain, but never below `keep`
 * idle ones. A peer is never trimmed while it is:
 * - busy: a stream of any protocol other than the mesh's own housekeeping
 *   (gossipsub, identify, the DHT, ping, AutoNAT, DCUtR) is open on one of its
 *   connections: an award channel, an offer or bid stream, a blob transfer, a
 *   relay hop, or a stream whose protocol is still being negotiated;
 * - young: connected for less than `graceMs` (a newcomer gets time to
 *   identify, subscribe and be grafted). Young peers do not count towards
 *   `high` either: a stranger that reconnects every few seconds cannot push
 *   settled peers out;
 * - protected: tagged `keep-alive-circuit-relay` (a relay we hold a reservation with) or
 *   `circuit-relay-source` (a home node we relay for), or reached over a relay
 *   (such a peer may have no other way to us).
 * Among the rest, peers with the lowest summed tag value go first (gossipsub
 * tags its mesh peers 100 per topic, the DHT its closest peers 50 and its
 * routing table 1), then the oldest connection first: a newcomer's connections
 * are the youngest, and trimming them first kept the last nodes of a 40-node
 * mesh at 2–3 peers, each dialling back in and being trimmed again.
 *
 * `keep` (MIN_PEERS) is the floor against busy peers: strangers that hold
 * market streams open (an offer every few seconds), or a requester with many
 * jobs in flight, count towards `high`, and without the floor they would have
 * the node trim every idle peer, its gossip mesh included. The most valued
 * idle peers stay.
 */
import type { Connection, Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from '../logger.js'
import { DHT_PROTOCOL, MIN_PEERS, TARGET_PEERS } from './constants.js'
import { isRelayed } from './nat.js'

/** Protocols that every connection runs on its own; a stream of one of them does not make a peer busy. */
const HOUSEKEEPING = [
  '/meshsub/', '/floodsub/', '/ipfs/id/', '/ipfs/ping/', '/libp2p/autonat/', '/libp2p/dcutr', DHT_PROTOCOL
]
/** Tags whose peers are never trimmed. */
const PROTECTED_TAG_PREFIXES = ['keep-alive-circuit-relay', 'circuit-relay-source']

/**
 * The number of peers a node past `maxPeers` trims down to: halfway between `minPeers` (MIN_PEERS)
 * and `maxPeers`, rounded down, at most TARGET_PEERS (16 at the default 24) and never more than
 * `maxPeers`. Room on both sides is what keeps a mesh still: above the target, newcomers come in
 * without a trim each time; below it, the trims of our peers (closing their side of our
 * connections) do not take us under `minPeers`, where DHT walks and bootstrap redials start. With
 * the target at 8 (maxPeers 12, two thirds of it) a 20-node mesh opened 13 connections in 15 s,
 * settled.
 */
export function trimTarget (maxPeers: number, minPeers = MIN_PEERS): number {
  return Math.min(TARGET_PEERS, maxPeers, minPeers + Math.floor(Math.max(0, maxPeers - minPeers) / 2))
}

/** A stream of the mesh's own housekeeping; one whose protocol is not known yet (still negotiating) is not. */
export function isHousekeeping (protocol: string | undefined): boolean {
  return protocol != null && protocol !== '' && HOUSEKEEPING.some(p => protocol.startsWith(p))
}

/** A stream other than housekeeping is open (or being opened) on one of these connections. */
function isBusy (conns: readonly Connection[]): boolean {
  return conns.some(c => c.streams.some(s => !isHousekeeping(s.protocol)))
}

/** What the trim rule knows of one connected peer. */
export interface PeerState {
  peer: string
  /** when its newest connection opened (ms since epoch) */
  openedAt: number
  /** sum of its tag values */
  value: number
  /** a stream other than housekeeping is open to it (or being opened) */
  busy: boolean
  /** our relay, or a peer we relay for, or connected through a relay */
  protected: boolean
}

export interface TrimLimits {
  /** trim only above this many settled peers... */
  high: number
  /** ...down to this many */
  low: number
  /** idle peers never trimmed, however many busy ones there are */
  keep: number
  /** a connection younger than this is neither trimmed nor counted */
  graceMs: number
}

/** The peers to disconnect, least valued first (none while at or below `high` settled peers). */
export function chooseTrims (peers: readonly PeerState[], limits: TrimLimits, now: number): string[] {
  const settled = peers.filter(p => now - p.openedAt >= limits.graceMs)
  if (settled.length <= limits.high) return []
  const idle = settled.filter(p => !p.busy && !p.protected)
  const count = Math.min(settled.length - limits.low, idle.length - limits.keep)
  if (count <= 0) return []
  return idle
    .sort((a, b) => a.value - b.value || a.openedAt - b.openedAt)
    .slice(0, count)
    .map(p => p.peer)
}

/** Gather each connected peer's state for {@link chooseTrims}. */
export async function peerStates (node: Libp2p): Promise<PeerState[]> {
  const byPeer = new Map<string, { id: PeerId, conns: Connection[] }>()
  for (const c of node.getConnections()) {
    const key = c.remotePeer.toString()
    const entry = byPeer.get(key) ?? { id: c.remotePeer, conns: [] }
    entry.conns.push(c)
    byPeer.set(key, entry)
  }
  const states: PeerState[] = []
  for (const [peer, { id, conns }] of byPeer) {
    let value = 0
    let tagged = false
    try {
      const { tags } = await node.peerStore.get(id)
      for (const [name, tag] of tags) {
        value += tag.value
        if (PROTECTED_TAG_PREFIXES.some(p => name.startsWith(p))) tagged = true
      }
    } catch {}
    states.push({
      peer,
      openedAt: Math.max(...conns.map(c => c.timeline.open)),
      value,
      busy: isBusy(conns),
      protected: tagged || conns.some(c => isRelayed(c.remoteAddr))
    })
  }
  return states
}

/** Close the connections of the peers {@link chooseTrims} names; returns how many peers were trimmed. */
export async function trimPeers (node: Libp2p, limits: TrimLimits, log: Logger): Promise<number> {
  if (node.getPeers().length <= limits.high) return 0
  const states = await peerStates(node)
  const chosen = chooseTrims(states, limits, Date.now())
  if (chosen.length === 0) return 0
  let trimmed = 0
  await Promise.all(chosen.map(async peer => {
    const id = peerIdFromString(peer)
    // a stream may have opened while the tags were read: such a peer is busy now, and kept
    const conns = node.getConnections(id)
    if (conns.length === 0 || isBusy(conns)) return
    trimmed++
    await node.hangUp(id, { signal: AbortSignal.timeout(1000) }).catch(() => {})
  }))
  log.debug({ trimmed, peers: node.getPeers().length }, 'trimmed idle peers')
  return trimmed
}
