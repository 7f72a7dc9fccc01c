/**
 * Reaching nodes behind home routers: the libp2p parts for NAT traversal and
 * what the node reports about its own reachability.
 *
 * - **Circuit relay v2, client** (every node): a node that is not publicly
 *   reachable listens on `/p2p-circuit`, which makes libp2p reserve a slot on
 *   a relay it is connected to (any peer that speaks the hop protocol) and
 *   advertise `/ip4/RELAY/tcp/PORT/p2p/RELAY/p2p-circuit/p2p/US`. Peers dial
 *   that address; the relay splices the two connections.
 * - **Circuit relay v2, server**: on nodes that have a public address (a
 *   public IP on an interface or in `--announce`) or `--relay-server`.
 *   Its limits ({@link RELAY_DURATION_LIMIT_MS}, {@link RELAY_DATA_LIMIT_BYTES})
 *   are sized for market traffic, see constants.ts.
 * - **AutoNAT v2** asks peers to dial our addresses back; an address they reach
 *   is marked verified. **UPnP/NAT-PMP** asks the home router to forward a
 *   port (on by default, off by config). **DCUtR** tries to turn a relayed
 *   connection into a direct one (simultaneous dials). Node's TCP cannot
 *   reuse a listening port for outbound dials, so through a port-rewriting
 *   NAT DCUtR rarely succeeds over TCP; the relayed connection then stays.
 *
 * Reachability (what `GET /v1/node` shows) is derived from the address
 * manager: `public` when some non-relay public address is verified (AutoNAT,
 * UPnP mapping confirmed, or announced by the operator), `private` when the
 * node has no public address of its own or already holds a relay slot while
 * none of its public candidates is verified, `unknown` before that is known.
 */
import { networkInterfaces } from 'node:os'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { autoNATv2 } from '@libp2p/autonat-v2'
import { dcutr } from '@libp2p/dcutr'
import { webSockets } from '@libp2p/websockets'
import { isLoopback, isPrivateIp } from '@libp2p/utils'
import { isPublicAddress } from './public-address.js'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { AddressManager, RandomWalk } from '@libp2p/interface-internal'
import type { PeerId, PeerInfo, PeerRouting } from '@libp2p/interface'
import { peerRoutingClosest, type ClosestPeers } from './walk.js'
import {
  AUTONAT_STARTUP_DELAY_MS, RANDOM_WALK_MAX_MET, RANDOM_WALK_MAX_PAUSE_MS, RANDOM_WALK_PAUSE_MS, RELAY_DATA_LIMIT_BYTES, RELAY_DURATION_LIMIT_MS, RELAY_MAX_RESERVATIONS, RELAY_RESERVATIONS
} from './constants.js'

export type Reachability = 'public' | 'private' | 'unknown'

export interface NatInit {
  /** run a relay server: `auto` (default) = when the node has a public address */
  relayServer?: boolean | 'auto'
  /** relay slots to hold when not publicly reachable (default RELAY_RESERVATIONS); 0 = none */
  relayReservations?: number
  /** ask the router for a port mapping by UPnP/NAT-PMP (default false here; the daemon turns it on from config) */
  upnp?: boolean
  /** UPnP gateways to use instead of searching by multicast (tests) */
  upnpGateways?: string[]
}

/** What the node tells about its own reachability. */
export interface NatStatus {
  reachability: Reachability
  /** public addresses others saw us at (identify), UPnP mappings, with whether they are verified */
  observed: Array<{ address: string, type: string, verified: boolean }>
  /** addresses we advertise to peers */
  announced: string[]
  /** relays we hold a reservation on, as their address */
  relays: string[]
  relayServer: boolean
  upnp: boolean
  /** connections open now, by path */
  connections: { direct: number, relayed: number }
}

/** Whether an address (a connection's remote address, one of ours) goes through a relay: it has a /p2p-circuit component. */
export function isRelayed (ma: Multiaddr): boolean {
  return ma.getComponents().some(c => c.name === 'p2p-circuit')
}

/** True for a multiaddr that starts with a public IP (public-address.ts) and is not a relay circuit. */
export function isPublicAddr (ma: Multiaddr): boolean {
  return !isRelayed(ma) && isPublicAddress(ma)
}

/** Our public addresses (not relay circuits) that no peer has confirmed yet. */
export function unverifiedPublic (meta: Array<{ multiaddr: Multiaddr, verified: boolean }>): Multiaddr[] {
  return meta.filter(a => !a.verified && isPublicAddr(a.multiaddr)).map(a => a.multiaddr)
}

/**
 * Does this node look publicly reachable from its configuration alone?
 * A public IP in a listen or announce address, or on an interface when it
 * listens on the wildcard. Decides `relayServer: 'auto'` and whether the node
 * needs relay slots at all; AutoNAT then checks the claim.
 */
export function hasPublicAddress (listen: string[], announce: string[]): boolean {
  const addrs = [...listen, ...announce].flatMap(s => { try { return [multiaddr(s)] } catch { return [] } })
  if (addrs.some(isPublicAddr)) return true
  const wildcard = addrs.some(a => { const h = a.getComponents()[0]?.value; return h === '0.0.0.0' || h === '::' })
  if (!wildcard) return false
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) {
      if (!i.internal && isPrivateIp(i.address) === false) return true
    }
  }
  return false
}

/**
 * A random walk that pauses between DHT queries. libp2p's own walk loops
 * `while (walkers > 0)` over `getClosestPeers`; with an empty routing table
 * (and Mercato's DHT answers at once with zero peers) every turn resolves
 * without I/O, so the loop never yields and starves the event loop: a node
 * behind NAT listening on `/p2p-circuit` before it had a peer never finished
 * starting. This one waits RANDOM_WALK_PAUSE_MS after a turn that met a peer
 * it had not yielded before, and doubles the pause (up to
 * RANDOM_WALK_MAX_PAUSE_MS) after a turn that met no one new. The relay
 * search walks for as long as it lacks a relay, which in a mesh without relay
 * servers is forever: counting peers it already knows kept it at one DHT
 * query (and a findPeer per address-less peer) a second on every node.
 */
export function pacedRandomWalk (closestPeers: ClosestPeers): RandomWalk {
  return {
    async * walk (options: { signal?: AbortSignal } = {}): AsyncGenerator<PeerInfo> {
      let pause = RANDOM_WALK_PAUSE_MS
      const aborted = (): boolean => options.signal?.aborted === true
      // peers this walk has yielded (bounded: forgotten all at once when full, so a large mesh only walks sooner)
      const met = new Set<string>()
      while (!aborted()) {
        let found = 0
        try {
          const key = globalThis.crypto.getRandomValues(new Uint8Array(32))
          for await (const peer of closestPeers(key, { signal: options.signal })) {
            const id = peer.id.toString()
            if (!met.has(id)) {
              if (met.size >= RANDOM_WALK_MAX_MET) met.clear()
              met.add(id)
              found++
            }
            yield peer
          }
        } catch {
          if (aborted()) return
        }
        pause = found > 0 ? RANDOM_WALK_PAUSE_MS : Math.min(pause * 2, RANDOM_WALK_MAX_PAUSE_MS)
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, pause)
          options.signal?.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
        })
      }
    }
  }
}

/** Where a paced walk finds peers, given the components of the service or transport that walks. */
export type WalkSource = (components: { peerId: PeerId, peerRouting: PeerRouting }) => ClosestPeers

/** libp2p's peer routing as a walk source (no DHT at hand: unit tests). */
export const peerRoutingWalk: WalkSource = ({ peerRouting }) => peerRoutingClosest(peerRouting)

/** A service or transport factory whose `randomWalk` component is the paced one. */
function withPacedWalk<C extends { randomWalk: RandomWalk, peerId: PeerId, peerRouting?: PeerRouting }, T> (factory: (components: C) => T, source: WalkSource): (components: C & { peerRouting: PeerRouting }) => T {
  return (components) => {
    const walk = pacedRandomWalk(source(components))
    return factory(new Proxy(components, { get: (target, prop, receiver) => prop === 'randomWalk' ? walk : Reflect.get(target, prop, receiver) }))
  }
}

export interface NatPieces {
  transports: any[]
  services: Record<string, any>
  /** extra listen addresses (`/p2p-circuit` per relay slot wanted) */
  listen: string[]
  relayServer: boolean
  upnp: boolean
}

/** Address manager accessor: a tiny service so status can read address metadata. */
export interface AddressView { addressManager: AddressManager }

/**
 * The transports and services for NAT traversal, decided from config and
 * listen/announce addresses. UPnP's client (SSDP, an XML parser) is loaded only when it is on:
 * it was ~10 ms of every node's start. The relay search and AutoNAT walk the DHT through `walks`.
 */
export async function natPieces (init: NatInit, listen: string[], announce: string[], walks: WalkSource = peerRoutingWalk): Promise<NatPieces> {
  const publicByConfig = hasPublicAddress(listen, announce)
  const relayServer = init.relayServer === true || (init.relayServer !== false && publicByConfig)
  // a node on loopback only (tests, devnets) has no router to ask and no one outside to reach it
  const beyondLoopback = listen.some(s => { try { return !isLoopback(multiaddr(s)) } catch { return false } })
  const slots = publicByConfig || !beyondLoopback ? 0 : (init.relayReservations ?? RELAY_RESERVATIONS)
  const upnp = init.upnp === true && beyondLoopback
  const services: Record<string, any> = {}
  // reachability checks and hole punching mean nothing on loopback; there they only cost every
  // node of a devnet or a test mesh dial-backs and streams
  if (beyondLoopback) {
    services.autonat = withPacedWalk(autoNATv2({ startupDelay: AUTONAT_STARTUP_DELAY_MS }) as any, walks)
    services.dcutr = dcutr()
  }
  if (relayServer) {
    services.relay = circuitRelayServer({
      reservations: {
        maxReservations: RELAY_MAX_RESERVATIONS,
        applyDefaultLimit: true,
        defaultDurationLimit: RELAY_DURATION_LIMIT_MS,
        defaultDataLimit: RELAY_DATA_LIMIT_BYTES
      }
    })
  }
  if (upnp) {
    const { uPnPNAT } = await import('@libp2p/upnp-nat')
    services.upnp = uPnPNAT({
      gateways: init.upnpGateways,
      portMappingDescription: 'mercato',
      // AutoNAT confirms the mapped address by a dial from outside
      autoConfirmAddress: false
    })
  }
  return {
    transports: [withPacedWalk(circuitRelayTransport({ reservationCompletionTimeout: 10_000 }) as any, walks), webSockets()],
    services,
    listen: Array.from({ length: slots }, () => '/p2p-circuit'),
    relayServer,
    upnp
  }
}

/** Reachability from the address manager's view of our addresses. */
export function reachabilityOf (meta: Array<{ multiaddr: Multiaddr, verified: boolean }>): Reachability {
  const publicCandidates = meta.filter(a => isPublicAddr(a.multiaddr))
  if (publicCandidates.some(a => a.verified)) return 'public'
  const hasRelaySlot = meta.some(a => a.verified && isRelayed(a.multiaddr))
  if (publicCandidates.length === 0 || hasRelaySlot) return 'private'
  return 'unknown'
}

/**
 * Relays named in our circuit addresses: the part before /p2p-circuit, one per relay, its public
 * address preferred (a relay also reaches us over its loopback or LAN address, which says nothing
 * to a user).
 */
export function relaysOf (addrs: Multiaddr[]): string[] {
  const byRelay = new Map<string, string>()
  for (const a of addrs) {
    const s = a.toString()
    const i = s.indexOf('/p2p-circuit')
    if (i <= 0) continue
    const relay = s.slice(0, i)
    const id = relay.slice(relay.lastIndexOf('/p2p/') + 5)
    const known = byRelay.get(id)
    if (known == null || (!isPublicAddress(known) && isPublicAddress(relay))) byRelay.set(id, relay)
  }
  return [...byRelay.values()]
}
