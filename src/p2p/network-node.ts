import { createLibp2p, type Libp2p } from 'libp2p'
import { coalescingTcp } from './tcp.js'
import { piecewiseNoise } from './noise.js'
import { halfWindowYamux, type LivenessInit } from './yamux.js'
import { identify, type Identify } from '@libp2p/identify'
import { ping, type Ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { gossipsub, StrictNoSign, TopicValidatorResult, type GossipSub, type GossipsubMessage, type Message } from '@libp2p/gossipsub'
import { mdns } from '@libp2p/mdns'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { lpStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { KEEP_ALIVE } from '@libp2p/interface'
import { canonicalDecode, canonicalEncode, sha256, SHA256_CODE } from '../crypto/index.js'
import { logger, type Logger } from '../logger.js'
import { libp2pKeyFromSeed } from './identity.js'
import { addressesOf, allowedIps, circuitsVia, ipOf } from './multiaddr.js'
import { isPublicAddress, relaysIn, StrangerDials } from './public-address.js'
import { PeerBans } from './bans.js'
import { natPieces, reachabilityOf, relaysOf, isRelayed, unverifiedPublic, type AddressView, type NatInit, type NatStatus, type WalkSource } from './nat.js'
import { dhtClosestPeers, peerRoutingClosest } from './walk.js'
import { explainDialFailure, networkProtector, type NetworkKey } from './pnet.js'
import {
  DHT_PROTOCOL, FRAME_ERROR, FRAME_OK, INITIAL_QUERY_SELF_MS, MAX_GOSSIP_BYTES,
  CHANNEL_CLOSE_GRACE_MS, MAX_INBOUND_CONNECTIONS_PER_IP, MAX_INBOUND_STREAMS, MAX_MESSAGE_BYTES, MAX_MESSAGE_PARTS, MAX_OUTBOUND_STREAMS, REQUEST_TIMEOUT_MS, ADDRESS_REFRESH_MS, MAX_ADDRESS_REFRESHES, REVERIFY_DELAY_MS, REVERIFY_PEERS, ADDRESS_WATCH_MS, EVENT_LOOP_LAG_RESOLUTION_MS, GRAYLIST_BAN_MS, BAN_CHECK_DELAY_MS
} from './constants.js'
import { PeerKeeper, type PeerKeeperInit } from './discovery.js'
import { gossipScore, peerScoreParams, SCORE_THRESHOLDS, scoreTopic } from './scoring.js'
import { MessageTooLargeError, PeerUnreachableError, RemoteError, RequestTimeoutError } from './errors.js'
import type {
  ChannelHandler, ChannelOptions, DialOptions, HandleOptions, MessageChannel, Network, NetworkEvents, PeerSummary,
  RequestHandler, RequestOptions, TopicDecoder, TopicHandler, TopicVerdict,
  NetworkTraffic
} from './network.js'

/** The tag @libp2p/kad-dht puts on its closest peers so that libp2p redials them (see the constructor). */
const KAD_KEEP_ALIVE_TAG = `${KEEP_ALIVE}-kad-dht`

export interface NetworkInit {
  /** 32-byte Ed25519 seed; a random identity when absent */
  seed?: Uint8Array
  /** listen multiaddrs (default: loopback, random port) */
  listen?: string[]
  /** extra addresses to announce (e.g. a public IP behind NAT) */
  announce?: string[]
  bootstrap?: string[]
  /** LAN discovery by multicast DNS (default false here; the node turns it on from config) */
  mdns?: boolean
  maxConnections?: number
  dialTimeoutMs?: number
  /**
   * multiaddr prefixes (e.g. `/ip4/127.0.0.1`) exempt from every inbound connection limit: rate, pending
   * and maxConnections. Empty by default: a local process is as much a stranger as a remote one.
   * Devnets and tests opt in to loopback.
   */
  allow?: string[]
  /** bootstrap redial and discovery dial tuning (defaults in constants.ts) */
  discovery?: Omit<PeerKeeperInit, 'bootstrap'>
  /** largest gossip message accepted (bytes) */
  maxGossipBytes?: number
  /** libp2p's own Prometheus metrics, in prom-client's default registry (the gateway's /metrics serves them) */
  metrics?: boolean
  /** NAT traversal: relay client/server, UPnP (see nat.ts) */
  nat?: NatInit
  /** private network: only peers holding the same key can connect (see pnet.ts) */
  networkKey?: NetworkKey
  /** how often connections are pinged and how long an answer may take (defaults in constants.ts; yamux.ts) */
  liveness?: LivenessInit
}

/** What `natStatus()` reports: NAT traversal, the private network, connections opened. */
export type NetworkStatus = NatStatus & {
  /** fingerprint of the private-network key, or null on the open market */
  privateNetwork: string | null
  /** connections opened since start, by path */
  opened: { direct: number, relayed: number }
}

type Services = { identify: Identify, ping: Ping, dht: KadDHT, pubsub: GossipSub, addressView: AddressView }

/**
 * Mercato's own protocols (offers, bids, awards, status, blobs, ledger audit)
 * may run on limited (relayed) connections: that is how two nodes behind
 * NATs trade. The relay's limits are sized for them (constants.ts). Gossipsub
 * runs on them too (offers are KiB); the DHT keeps libp2p's default (direct
 * connections only) and reaches NAT'd peers through public ones.
 */
const RUN_ON_LIMITED = true

/** the decoder of a topic subscribed without one: every message, as bytes */
const rawDecoder: TopicDecoder<Uint8Array> = (msg) => ({ result: 'accept', value: msg.data })

/**
 * libp2p's byte stream buffers unread bytes up to 4 MiB by default and aborts the stream past
 * that, whatever frame size we allow: a frame larger than 4 MiB (a 16 MiB blob, an output file)
 * could never arrive. The buffer may hold a whole frame of the size we accept (plus its length
 * prefix), never less than libp2p's default.
 */
const LP_DEFAULT_BUFFER_BYTES = 4 * 1024 * 1024
function lpLimits (maxDataLength: number, maxBufferBytes?: number): { maxDataLength: number, maxBufferSize: number } {
  return { maxDataLength, maxBufferSize: Math.max(maxBufferBytes ?? LP_DEFAULT_BUFFER_BYTES, maxDataLength + 16) }
}

function isLengthError (err: any): boolean {
  return err?.name === 'InvalidDataLengthError' || err?.name === 'InvalidMessageLengthError' || err?.name === 'InvalidDataLengthLengthError'
}

function keyToCid (key: string): CID {
  return CID.createV1(raw.code, createDigest(SHA256_CODE, sha256(new TextEncoder().encode(key))))
}

function errorFrame (code: string, message: string): Uint8Array {
  const body = canonicalEncode({ code, message: message.slice(0, 512) })
  const out = new Uint8Array(body.length + 1)
  out[0] = FRAME_ERROR
  out.set(body, 1)
  return out
}

function okFrame (body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 1)
  out[0] = FRAME_OK
  out.set(body, 1)
  return out
}

/**
 * The libp2p implementation of {@link Network}. Built by {@link createNetwork}.
 */
export class Libp2pNetwork implements Network {
  private readonly events = new EventTarget()
  readonly peerId: string
  private readonly node: Libp2p<Services>
  private readonly log: Logger
  /** per topic: its handler, and the decoder that runs as gossipsub's validator */
  private readonly topics = new Map<string, { handler: TopicHandler<any>, decode: TopicDecoder<any> }>()
  /** messages received from peers (see NetworkTraffic) */
  private readonly received: NetworkTraffic = { gossip: 0, requests: 0, frames: 0 }
  private readonly gossipByTopic = new Map<string, number>()
  /** values accepted by topic decoders, keyed by the message bytes they checked (validator → handler) */
  private readonly decoded = new WeakMap<Uint8Array, unknown>()
  private readonly maxGossipBytes: number
  private readonly keeper: PeerKeeper
  private stopped = false
  private readonly natInfo: { relayServer: boolean, upnp: boolean }
  private readonly networkKey?: NetworkKey
  /** connections opened since start, by path */
  private readonly opened = { direct: 0, relayed: 0 }
  /** dials a stranger asked for, in flight: the connection gater lets only public addresses of their peers through */
  private readonly strangerDials: StrangerDials
  /** when each peer's addresses were last asked of the DHT (see freshAddresses); oldest first */
  private readonly refreshedAt = new Map<string, number>()

  /** peers refused for a while: their gossip score fell below the graylist threshold (bans.ts); the connection gater reads it */
  private readonly bans: PeerBans

  constructor (node: Libp2p<Services>, init: NetworkInit, natInfo: { relayServer: boolean, upnp: boolean } = { relayServer: false, upnp: false }, strangerDials = new StrangerDials(), bans = new PeerBans()) {
    this.node = node
    this.strangerDials = strangerDials
    this.bans = bans
    this.natInfo = natInfo
    this.networkKey = init.networkKey
    node.addEventListener('connection:open', (evt) => {
      if (isRelayed(evt.detail.remoteAddr)) this.opened.relayed++
      else this.opened.direct++
    })
    this.peerId = node.peerId.toString()
    this.log = logger('p2p', { peerId: this.peerId })
    this.maxGossipBytes = init.maxGossipBytes ?? MAX_GOSSIP_BYTES
    // a bootstrap peer's first failed dial is explained in a warning (a wrong private-network key
    // otherwise looks like a node that simply finds nobody)
    this.keeper = new PeerKeeper(node, {
      ...init.discovery,
      bootstrap: init.bootstrap,
      closestPeers: dhtClosestPeers(() => node.services.dht, node.peerId, peerRoutingClosest(node.peerRouting)),
      explainFailure: async (addr, err) => await explainDialFailure(addr, err, this.networkKey)
    }, this.log)
    // The DHT tags its 20 closest peers keep-alive, and libp2p redials a keep-alive peer the moment
    // it disconnects. Closeness is not mutual, so a peer trimmed by us (trim.ts) that holds us
    // among its closest dialled straight back in, to be trimmed again 30 s later: in a 40-node
    // mesh every node churned. Which peers a node keeps is the PeerKeeper's to decide (discovery.ts:
    // bootstrap redial and walks below MIN_PEERS, discovered peers up to its target, trimming past
    // maxPeers; DHT queries still dial whom they ask); the DHT keeps its tag's value (kad-close,
    // 50), which ranks those peers above others when trimming.
    node.addEventListener('peer:update', (evt) => {
      const { peer } = evt.detail
      if (peer.tags.has(KAD_KEEP_ALIVE_TAG)) void node.peerStore.merge(peer.id, { tags: { [KAD_KEEP_ALIVE_TAG]: undefined } }).catch(() => {})
    })
    node.addEventListener('peer:connect', (evt: CustomEvent<PeerId>) => {
      this.events.dispatchEvent(new CustomEvent('peer:connect', { detail: evt.detail.toString() }))
    })
    node.addEventListener('peer:disconnect', (evt: CustomEvent<PeerId>) => {
      this.events.dispatchEvent(new CustomEvent('peer:disconnect', { detail: evt.detail.toString() }))
    })
    node.services.pubsub.addEventListener('gossipsub:message', (evt: CustomEvent<GossipsubMessage>) => {
      const { msg, propagationSource } = evt.detail
      void this.deliver(msg.topic, msg.data, propagationSource.toString())
    })
  }

  async start (): Promise<void> {
    await this.node.start()
    // dial the bootstrap list, again while alone; dial what mDNS and the DHT find; walk the DHT (discovery.ts)
    this.keeper.start()
    this.node.addEventListener('self:peer:update', this.onSelfUpdate)
    // a UPnP mapping is added to the address manager without a self:peer:update event: watch for it
    if (this.natInfo.upnp) {
      this.addressWatch = setInterval(() => { this.watchAddresses() }, ADDRESS_WATCH_MS)
      this.addressWatch.unref()
    }
    this.log.info({ addresses: this.addresses() }, 'network started')
  }

  private reverifyTimer?: NodeJS.Timeout
  private addressWatch?: NodeJS.Timeout
  private unverifiedKey = ''
  /** Re-check when the set of our unverified public addresses changed since the last look (a new UPnP mapping). */
  private watchAddresses (): void {
    const key = unverifiedPublic(this.node.services.addressView.addressManager.getAddressesWithMetadata())
      .map(a => a.toString()).sort().join(' ')
    if (key === this.unverifiedKey) return
    this.unverifiedKey = key
    if (key !== '') this.onSelfUpdate()
    else this.tellAddressListeners()
  }

  private readonly addressListeners = new Set<() => void>()
  /**
   * Call `listener` when our addresses change: libp2p's self:peer:update (a relay slot, a verified
   * address, a DNS mapping) and, with UPnP on, the address watch's look every ADDRESS_WATCH_MS at
   * our unverified public addresses (a new UPnP mapping, which libp2p adds without that event, or
   * one a peer observed). Returns the function that stops it.
   */
  onAddressChange (listener: () => void): () => void {
    this.addressListeners.add(listener)
    return () => { this.addressListeners.delete(listener) }
  }

  /** A listener that throws is logged, never thrown into libp2p's event dispatch or our timer. */
  private tellAddressListeners (): void {
    for (const listener of this.addressListeners) {
      try { listener() } catch (err) { this.log.warn({ err }, 'address change listener failed') }
    }
  }

  /** Our addresses changed (self:peer:update, or the address watch): re-check them soon, and tell the listeners. */
  private readonly onSelfUpdate = (): void => {
    this.tellAddressListeners()
    clearTimeout(this.reverifyTimer)
    this.reverifyTimer = setTimeout(() => { this.reverify() }, REVERIFY_DELAY_MS)
    this.reverifyTimer.unref()
  }

  /**
   * AutoNAT v2 asks a peer to dial our unverified addresses only when that peer connects. A UPnP
   * mapping appears seconds after start, once the first peers are already connected, so it was
   * never checked and the node stayed `private` behind a router that forwards its port. When our
   * addresses change and a public one is unverified, ask a few of the peers we are directly
   * connected to (at most REVERIFY_PEERS, once per change).
   */
  private reverify (): void {
    if (this.stopped) return
    if (unverifiedPublic(this.node.services.addressView.addressManager.getAddressesWithMetadata()).length === 0) return
    const client = (this.node.services as any).autonat?.client
    if (typeof client?.verifyExternalAddresses !== 'function') return
    let asked = 0
    for (const conn of this.node.getConnections()) {
      if (asked >= REVERIFY_PEERS) break
      if (conn.status !== 'open' || conn.limits != null) continue
      asked++
      client.verifyExternalAddresses(conn).catch((err: unknown) => { this.log.debug({ err }, 'AutoNAT re-check failed') })
    }
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.keeper.stop()
    clearTimeout(this.reverifyTimer)
    clearInterval(this.addressWatch)
    this.node.removeEventListener('self:peer:update', this.onSelfUpdate)
    await this.node.stop()
    this.log.info('network stopped')
  }

  addresses (): string[] {
    return this.node.getMultiaddrs().map(ma => ma.toString())
  }

  /** Reachability, observed and announced addresses, relays in use, connections by path. */
  natStatus (): NetworkStatus {
    const meta = this.node.services.addressView.addressManager.getAddressesWithMetadata()
    const announced = this.node.getMultiaddrs()
    const { open: connections, opened } = this.connectionsByPath()
    return {
      reachability: reachabilityOf(meta),
      observed: meta.filter(a => a.type === 'observed' || a.type === 'ip-mapping').map(a => ({ address: a.multiaddr.toString(), type: a.type, verified: a.verified })),
      announced: announced.map(a => a.toString()),
      relays: relaysOf(announced),
      relayServer: this.natInfo.relayServer,
      upnp: this.natInfo.upnp,
      privateNetwork: this.networkKey?.fingerprint ?? null,
      connections,
      opened
    }
  }

  connectionsByPath (): { open: { direct: number, relayed: number }, opened: { direct: number, relayed: number } } {
    const open = { direct: 0, relayed: 0 }
    for (const c of this.node.getConnections()) {
      if (isRelayed(c.remoteAddr)) open.relayed++
      else open.direct++
    }
    return { open, opened: { ...this.opened } }
  }

  peers (): PeerSummary[] {
    const byPeer = new Map<string, Set<string>>()
    for (const conn of this.node.getConnections()) {
      const id = conn.remotePeer.toString()
      let set = byPeer.get(id)
      if (set == null) { set = new Set(); byPeer.set(id, set) }
      set.add(conn.remoteAddr.toString())
    }
    return [...byPeer].map(([peerId, addrs]) => ({ peerId, addresses: [...addrs] }))
  }

  isConnected (peerId: string): boolean {
    try {
      return this.node.getConnections(peerIdFromString(peerId)).length > 0
    } catch {
      return false
    }
  }

  private target (peer: string): PeerId | ReturnType<typeof multiaddr> {
    try {
      return peer.startsWith('/') ? multiaddr(peer) : peerIdFromString(peer)
    } catch (err) {
      throw new PeerUnreachableError(`not a PeerId or multiaddr: ${peer.slice(0, 100)}`, err)
    }
  }

  async dial (target: string, opts: DialOptions = {}): Promise<string> {
    if (opts.publicOnly === true) return await this.dialPublic(target, opts.signal, opts.hints)
    try {
      const conn = await this.node.dial(this.target(target), { signal: opts.signal })
      return conn.remotePeer.toString()
    } catch (err: any) {
      if (err instanceof PeerUnreachableError) throw err
      // what the peer store holds failed: the circuits a hint names through relays we are connected to
      const via = !target.startsWith('/') && opts.signal?.aborted !== true ? this.hintedCircuits(target, opts.hints) : []
      if (via.length > 0) {
        const conn = await this.node.dial(via, { signal: opts.signal }).catch(() => undefined)
        if (conn != null) return conn.remotePeer.toString()
      }
      const reason = target.startsWith('/') ? await explainDialFailure(target, err, this.networkKey) : String(err?.message ?? err)
      throw new PeerUnreachableError(`could not dial ${target}: ${reason}`, err)
    }
  }

  /**
   * Dial only public IP addresses: the target's own, or those the peer store / DHT hold for a PeerId.
   * A relay circuit through a public relay counts as public (its first hop is). When the peer store
   * has no public address for the peer, or dialling them fails, the DHT is asked afresh once.
   * `hints` add circuits through relays we are connected to (multiaddr.ts circuitsVia): a peer
   * behind NAT that the DHT does not know yet is reached through the relay it named.
   */
  private async dialPublic (target: string, signal?: AbortSignal, hints: readonly string[] = []): Promise<string> {
    const t = this.target(target)
    if ('getComponents' in t) return await this.dialPublicAddrs(target, undefined, [t], signal)
    if (this.node.getConnections(t).length > 0) return target
    const via = this.hintedCircuits(target, hints)
    let addrs = (await this.node.peerStore.get(t).catch(() => null))?.addresses.map(a => a.multiaddr) ?? []
    if (via.length > 0 || addrs.some(a => isPublicAddress(a))) {
      try {
        return await this.dialPublicAddrs(target, t, addrs, signal, via)
      } catch (err) {
        if (signal?.aborted === true) throw err
      }
    }
    addrs = await this.freshAddresses(t, signal)
    return await this.dialPublicAddrs(target, t, addrs, signal)
  }

  /** The circuits to `target` that hints name through relays we hold a direct connection to (circuitsVia). */
  private hintedCircuits (target: string, hints: readonly string[] = []): Multiaddr[] {
    if (hints.length === 0) return []
    return circuitsVia(target, hints, (relay) => {
      let id: PeerId
      try { id = peerIdFromString(relay) } catch { return undefined }
      return this.node.getConnections(id).find(c => c.status === 'open' && !isRelayed(c.remoteAddr))?.remoteAddr
    })
  }

  /** `via`: circuits through relays we are connected to, dialled as they are (see circuitsVia) */
  private async dialPublicAddrs (target: string, peer: PeerId | undefined, addrs: Multiaddr[], signal?: AbortSignal, via: Multiaddr[] = []): Promise<string> {
    const publicAddrs = addrs.filter(a => isPublicAddress(a))
    if (publicAddrs.length === 0 && via.length === 0) throw new PeerUnreachableError(`could not dial ${target}: no public address known`)
    try {
      const dialable = [...(peer != null ? addressesOf(peer.toString(), publicAddrs) : publicAddrs), ...via]
      if (dialable.length === 0) throw new Error('no address of this peer')
      // whatever libp2p dials for this (a relay by PeerId too): public addresses only, and ours
      const end = this.strangerDials.open([...(peer != null ? [peer.toString()] : []), ...relaysIn(dialable)], via)
      try {
        const conn = await this.node.dial(dialable, { signal })
        return conn.remotePeer.toString()
      } finally {
        end()
      }
    } catch (err: any) {
      throw new PeerUnreachableError(`could not dial ${target}: ${err?.message ?? err}`, err)
    }
  }

  /**
   * Ask the DHT for a peer's addresses, skipping the peer store (`useCache: false`), and merge them
   * into it; at most once per ADDRESS_REFRESH_MS per peer. What the peer store holds for a peer we
   * are not connected to can be stale: a node behind NAT is first heard of with its private and
   * loopback addresses, and gets its relay (`/p2p-circuit`) address only once it holds a slot.
   * Returns the addresses found (none when refreshed too recently or not found).
   */
  private async freshAddresses (peer: PeerId, signal?: AbortSignal): Promise<Multiaddr[]> {
    const id = peer.toString()
    const last = this.refreshedAt.get(id)
    if (last != null && Date.now() - last < ADDRESS_REFRESH_MS) return []
    this.refreshedAt.delete(id)
    this.refreshedAt.set(id, Date.now())
    if (this.refreshedAt.size > MAX_ADDRESS_REFRESHES) this.refreshedAt.delete(this.refreshedAt.keys().next().value as string)
    try {
      const info = await this.node.peerRouting.findPeer(peer, { signal, useCache: false } as any)
      if (info.multiaddrs.length > 0) await this.node.peerStore.merge(peer, { multiaddrs: info.multiaddrs }).catch(() => {})
      return info.multiaddrs
    } catch (err) {
      this.log.debug({ err, peer: id }, 'DHT lookup of a peer\'s addresses failed')
      return []
    }
  }

  /**
   * Open a protocol stream, with the connection it rides on. To a PeerId we are not connected to,
   * a failed dial asks the DHT for fresh addresses (see freshAddresses) and tries once more.
   */
  private async openStream (peer: string, protocol: string, signal: AbortSignal): Promise<{ stream: Stream, connection: Connection }> {
    const target = this.target(peer)
    const opts = { signal, negotiateFully: false, runOnLimitedConnection: RUN_ON_LIMITED }
    const on = async (connection: Connection): Promise<{ stream: Stream, connection: Connection }> => ({ stream: await connection.newStream(protocol, opts), connection })
    if (!('getComponents' in target)) {
      // libp2p never reuses a limited (relayed) connection for a dial: it opens a new circuit
      // through the relay for every stream, and drops it again as a duplicate. Two nodes behind
      // NATs then churn circuits, and an award channel died with the circuit it rode on. Use the
      // connection we have, an unlimited one first.
      const open = this.node.getConnections(target).filter(c => c.status === 'open')
      const conn = open.find(c => c.limits == null) ?? open[0]
      if (conn != null) {
        try {
          return await on(conn)
        } catch (err) {
          if (signal.aborted || conn.status === 'open') throw err
          // closed under us: dial below
        }
      }
    }
    // what libp2p's dialProtocol does (dial, then a stream on that connection), keeping the connection
    try {
      return await on(await this.node.dial(target, opts))
    } catch (err) {
      if ('getComponents' in target || signal.aborted || this.node.getConnections(target).length > 0) throw err
      const fresh = addressesOf(target.toString(), await this.freshAddresses(target, signal))
      if (fresh.length === 0) throw err
      // the addresses the DHT gave, not what the peer store holds (the dead ones first, on a busy
      // node: the suite once failed here with the stale address's ECONNREFUSED)
      return await on(await this.node.dial(fresh, opts))
    }
  }

  async hangUp (peerId: string): Promise<void> {
    await this.node.hangUp(peerIdFromString(peerId))
  }

  // ---------------------------------------------------------------- pubsub

  subscribe (topic: string, handler: TopicHandler<Uint8Array>): void
  subscribe<T> (topic: string, decode: TopicDecoder<T>, handler: TopicHandler<T>): void
  subscribe (topic: string, a: TopicHandler<any> | TopicDecoder<any>, b?: TopicHandler<any>): void {
    const [decoder, handler]: [TopicDecoder<any>, TopicHandler<any>] = b != null ? [a as TopicDecoder<any>, b] : [rawDecoder, a as TopicHandler<any>]
    this.topics.set(topic, { handler, decode: decoder })
    const pubsub = this.node.services.pubsub
    pubsub.topicValidators.set(topic, async (peer: PeerId, msg: Message) => {
      this.received.gossip++
      this.gossipByTopic.set(topic, (this.gossipByTopic.get(topic) ?? 0) + 1)
      const verdict = await this.check(topic, decoder, msg.data, peer.toString())
      if (verdict.result === 'reject') {
        this.checkBanSoon(peer)
        return TopicValidatorResult.Reject
      }
      if (verdict.result !== 'accept') return TopicValidatorResult.Ignore
      // what the decoder produced travels on to the handler: no second decode or signature check
      this.decoded.set(msg.data, verdict.value)
      return TopicValidatorResult.Accept
    })
    // every topic we take part in is scored: rejected messages on it count against their forwarder (scoring.ts)
    scoreTopic(pubsub, topic)
    pubsub.subscribe(topic)
  }

  /**
   * After a rejected message, look at its forwarder's score once gossipsub has counted it (scores
   * are cached between heartbeats): one look per peer at a time, BAN_CHECK_DELAY_MS later.
   */
  private checkBanSoon (peer: PeerId): void {
    const id = peer.toString()
    if (this.banChecks.has(id) || this.bans.has(id)) return
    this.banChecks.add(id)
    setTimeout(() => {
      this.banChecks.delete(id)
      this.banIfGraylisted(peer)
    }, BAN_CHECK_DELAY_MS).unref()
  }

  /** peers with a look at their score pending (checkBanSoon) */
  private readonly banChecks = new Set<string>()

  /**
   * A peer whose gossip score fell below the graylist threshold is disconnected and refused for
   * GRAYLIST_BAN_MS: graylisting alone still decrypts and parses all it sends before dropping it.
   */
  private banIfGraylisted (peer: PeerId): void {
    const id = peer.toString()
    if (this.stopped) return
    const score = this.gossipScore(id)
    if (score >= SCORE_THRESHOLDS.graylistThreshold || this.bans.has(id)) return
    this.bans.ban(id, GRAYLIST_BAN_MS)
    this.log.info({ peer: id, score, minutes: GRAYLIST_BAN_MS / 60_000 }, 'peer banned: its gossip score fell below the graylist threshold')
    void this.node.hangUp(peer).catch(() => {})
  }

  /** Size cap, then the topic's decoder; a decoder that throws rejects. */
  private async check (topic: string, decode: TopicDecoder<any>, data: Uint8Array, from: string): Promise<TopicVerdict<unknown>> {
    if (data.length > this.maxGossipBytes) return { result: 'reject' }
    try {
      return await decode({ topic, data, from })
    } catch (err) {
      this.log.debug({ err, topic }, 'topic decoder threw; rejecting')
      return { result: 'reject' }
    }
  }

  /** Hand an accepted message to its topic's handler with the value its decoder produced. */
  private async deliver (topic: string, data: Uint8Array, from: string): Promise<void> {
    const sub = this.topics.get(topic)
    if (sub == null) return
    let value = this.decoded.get(data)
    if (value === undefined) {
      // not seen by our validator (it cannot happen with gossipsub's validation on, but never hand over bytes unchecked)
      const verdict = await this.check(topic, sub.decode, data, from)
      if (verdict.result !== 'accept') return
      value = verdict.value
    }
    this.decoded.delete(data)
    try {
      sub.handler({ topic, data, from, value })
    } catch (err) {
      this.log.warn({ err, topic }, 'topic handler threw')
    }
  }

  /** The gossip score we give a peer (below SCORE_THRESHOLDS.graylistThreshold we drop all it sends). */
  gossipScore (peerId: string): number {
    return gossipScore(this.node.services.pubsub, peerId)
  }

  /** Peers in our gossip mesh for `topic`. */
  meshPeers (topic: string): string[] {
    return (this.node.services.pubsub as any).getMeshPeers?.(topic) ?? []
  }

  unsubscribe (topic: string): void {
    this.topics.delete(topic)
    this.node.services.pubsub.topicValidators.delete(topic)
    this.node.services.pubsub.unsubscribe(topic)
  }

  async publish (topic: string, data: Uint8Array): Promise<number> {
    if (data.length > this.maxGossipBytes) throw new MessageTooLargeError(`gossip message of ${data.length} bytes exceeds ${this.maxGossipBytes}`)
    try {
      const res = await this.node.services.pubsub.publish(topic, data)
      return res.recipients.length
    } catch (err: any) {
      if (err?.message === 'PublishError.Duplicate' || err?.name === 'PublishError.Duplicate') return 0
      throw err
    }
  }

  topicPeers (topic: string): string[] {
    return this.node.services.pubsub.getSubscribers(topic).map(p => p.toString())
  }

  // ---------------------------------------------------------------- request / response

  traffic (): NetworkTraffic {
    return { ...this.received, gossipByTopic: Object.fromEntries(this.gossipByTopic) }
  }

  async handle (protocol: string, handler: RequestHandler, opts: HandleOptions = {}): Promise<void> {
    const maxRequestBytes = opts.maxRequestBytes ?? MAX_MESSAGE_BYTES
    const timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS
    await this.node.handle(protocol, async (stream: Stream, connection: Connection) => {
      const signal = AbortSignal.timeout(timeoutMs)
      const lp = lpStream(stream, lpLimits(Math.max(maxRequestBytes, 1)))
      const from = connection.remotePeer.toString()
      let end!: () => void
      const ended = new Promise<void>(resolve => { end = resolve })
      let response: Uint8Array
      try {
        let request: Uint8Array
        try {
          request = (await lp.read({ signal })).subarray()
          this.received.requests++
        } catch (err: any) {
          if (isLengthError(err)) {
            await lp.write(errorFrame('message-too-large', `request exceeds ${maxRequestBytes} bytes`), { signal }).catch(() => {})
            await stream.close({ signal }).catch(() => stream.abort(err))
            return
          }
          throw err
        }
        try {
          response = okFrame(await handler(request, { from, protocol, signal, ended }))
        } catch (err: any) {
          const code = typeof err?.code === 'string' ? err.code : 'internal'
          this.log.debug({ err, protocol, from }, 'request handler failed')
          response = errorFrame(code, String(err?.message ?? err))
        }
        await lp.write(response, { signal })
        await stream.close({ signal })
      } catch (err: any) {
        this.log.debug({ err, protocol, from }, 'inbound request stream failed')
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      } finally {
        end()
      }
    }, { maxInboundStreams: opts.maxInboundStreams ?? MAX_INBOUND_STREAMS, maxOutboundStreams: MAX_OUTBOUND_STREAMS, runOnLimitedConnection: RUN_ON_LIMITED })
  }

  async unhandle (protocol: string): Promise<void> {
    await this.node.unhandle(protocol)
  }

  async request (peer: string, protocol: string, data: Uint8Array, opts: RequestOptions = {}): Promise<Uint8Array> {
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? REQUEST_TIMEOUT_MS)
    const signal = opts.signal != null ? AbortSignal.any([opts.signal, timeout]) : timeout
    const maxResponseBytes = opts.maxResponseBytes ?? MAX_MESSAGE_BYTES
    let stream: Stream
    try {
      ({ stream } = await this.openStream(peer, protocol, signal))
    } catch (err: any) {
      if (timeout.aborted) throw new RequestTimeoutError(`${protocol} to ${peer}: timed out dialing`)
      if (err instanceof PeerUnreachableError) throw err
      throw new PeerUnreachableError(`${protocol} to ${peer}: ${err?.message ?? err}`, err)
    }
    const lp = lpStream(stream, lpLimits(maxResponseBytes + 1))
    try {
      let writeError: unknown
      await lp.write(data, { signal }).catch(err => { writeError = err })
      if (writeError == null) await stream.close({ signal }).catch(() => {})
      let frame: Uint8Array
      try {
        frame = (await lp.read({ signal })).subarray()
      } catch (err) {
        if (isLengthError(err)) throw new MessageTooLargeError(`response from ${peer} exceeds ${maxResponseBytes} bytes`)
        throw writeError ?? err
      }
      if (frame[0] === FRAME_OK) return frame.subarray(1)
      let code = 'remote-error'
      let message = 'remote error'
      try {
        // the remote's error frame: a map with a short code and message; anything else stays generic
        const body: unknown = canonicalDecode(frame.subarray(1))
        if (typeof body === 'object' && body !== null) {
          const { code: c, message: m } = body as Record<string, unknown>
          if (typeof c === 'string' && c.length <= 64) code = c
          if (typeof m === 'string') message = m.slice(0, 1000)
        }
      } catch {}
      if (code === 'message-too-large') throw new MessageTooLargeError(`${protocol}: ${message}`)
      throw new RemoteError(`${protocol} to ${peer}: ${message}`, code)
    } catch (err: any) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      if (timeout.aborted) throw new RequestTimeoutError(`${protocol} to ${peer}: no answer in ${opts.timeoutMs ?? REQUEST_TIMEOUT_MS} ms`)
      if (err instanceof MessageTooLargeError || err instanceof RemoteError) throw err
      if (opts.signal?.aborted) throw err
      throw new PeerUnreachableError(`${protocol} to ${peer}: ${err?.message ?? err}`, err)
    } finally {
      if (stream.status === 'open') await stream.close().catch(() => {})
    }
  }

  // ---------------------------------------------------------------- channels

  private wrapChannel (stream: Stream, remotePeer: string, protocol: string, maxMessageBytes: number, connection: Connection, maxBufferBytes?: number): MessageChannel {
    const lp = lpStream(stream, lpLimits(maxMessageBytes, maxBufferBytes))
    const received = this.received
    // each message as the list of the pieces it arrived in
    async function * read (): AsyncGenerator<Uint8ArrayList> {
      while (true) {
        let msg
        try {
          msg = await lp.read()
        } catch (err: any) {
          // a clean end of stream at a message boundary ends the iteration
          if (err?.name === 'UnexpectedEOFError' && stream.status !== 'reset' && stream.status !== 'aborted') return
          if (isLengthError(err)) throw new MessageTooLargeError(`channel message exceeds ${maxMessageBytes} bytes`)
          throw err
        }
        received.frames++
        yield msg
      }
    }
    return {
      remotePeer,
      protocol,
      relayed: connection.limits != null || isRelayed(connection.remoteAddr),
      send: async (data: Uint8Array) => { await lp.write(data) },
      sendMany: async (messages: Array<Uint8Array | Uint8Array[]>) => { await lp.writeV(messages.map(m => Array.isArray(m) ? new Uint8ArrayList(...m) : m)) },
      // graceful, but not at the other end's pleasure: a remote that has not closed its side
      // CHANNEL_CLOSE_GRACE_MS later is reset (a half-closed stream keeps its connection busy, untrimmed)
      close: async () => {
        await stream.close({ signal: AbortSignal.timeout(CHANNEL_CLOSE_GRACE_MS) }).catch(err => { stream.abort(err) })
        resetUnlessClosed(stream, CHANNEL_CLOSE_GRACE_MS)
      },
      abort: (err?: Error) => { stream.abort(err ?? new Error('channel aborted')) },
      [Symbol.asyncIterator]: async function * () {
        for await (const msg of read()) yield msg.subarray()
      },
      parts: async function * () {
        // a sender that cuts a message into many tiny frames gets it joined (one copy), so a reader
        // never holds more than MAX_MESSAGE_PARTS views of one
        for await (const msg of read()) {
          const pieces = [...msg]
          yield pieces.length > MAX_MESSAGE_PARTS ? [msg.subarray()] : pieces
        }
      }
    }
  }

  async handleChannel (protocol: string, handler: ChannelHandler, opts: ChannelOptions = {}): Promise<void> {
    const max = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES
    await this.node.handle(protocol, async (stream: Stream, connection: Connection) => {
      try {
        await handler(this.wrapChannel(stream, connection.remotePeer.toString(), protocol, max, connection, opts.maxBufferBytes))
      } catch (err: any) {
        this.log.debug({ err, protocol }, 'channel handler failed')
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      }
    }, { maxInboundStreams: opts.maxInboundStreams ?? MAX_INBOUND_STREAMS, maxOutboundStreams: MAX_OUTBOUND_STREAMS, runOnLimitedConnection: RUN_ON_LIMITED })
  }

  async openChannel (peer: string, protocol: string, opts: ChannelOptions & { signal?: AbortSignal } = {}): Promise<MessageChannel> {
    const signal = opts.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS)
    let opened: { stream: Stream, connection: Connection }
    try {
      opened = await this.openStream(peer, protocol, signal)
    } catch (err: any) {
      // the peer is there but does not speak it (an older release): not unreachable
      if (err?.name === 'UnsupportedProtocolError') throw new RemoteError(`${protocol} is not supported by ${peer}`, 'unsupported-protocol')
      throw new PeerUnreachableError(`${protocol} to ${peer}: ${err?.message ?? err}`, err)
    }
    const remote = peer.startsWith('/') ? peer.split('/p2p/').pop() ?? peer : peer
    return this.wrapChannel(opened.stream, remote, protocol, opts.maxMessageBytes ?? MAX_MESSAGE_BYTES, opened.connection, opts.maxBufferBytes)
  }

  // ---------------------------------------------------------------- DHT

  async provide (key: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    await this.node.contentRouting.provide(keyToCid(key), { signal: opts.signal })
  }

  async findProviders (key: string, opts: { signal?: AbortSignal, limit?: number } = {}): Promise<string[]> {
    const out = new Set<string>()
    const limit = opts.limit ?? 50
    try {
      for await (const info of this.node.contentRouting.findProviders(keyToCid(key), { signal: opts.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS) })) {
        out.add(info.id.toString())
        if (out.size >= limit) break
      }
    } catch (err: any) {
      if (out.size === 0 && err?.name !== 'NotFoundError' && err?.name !== 'AbortError' && err?.name !== 'TimeoutError') throw err
    }
    return [...out]
  }

  addEventListener<K extends keyof NetworkEvents> (type: K, listener: (evt: CustomEvent<NetworkEvents[K]>) => void): void {
    this.events.addEventListener(type, listener as EventListener)
  }

  removeEventListener<K extends keyof NetworkEvents> (type: K, listener: (evt: CustomEvent<NetworkEvents[K]>) => void): void {
    this.events.removeEventListener(type, listener as EventListener)
  }
}

/** Reset `stream` unless both its ends are closed within `ms` (we closed ours: the rest is the remote's). */
function resetUnlessClosed (stream: Stream, ms: number): void {
  const done = (): boolean => stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset'
  if (done()) return
  const timer = setTimeout(() => { if (!done()) stream.abort(new Error(`the remote did not close its side within ${ms} ms`)) }, ms)
  timer.unref()
  stream.addEventListener('close', () => { clearTimeout(timer) }, { once: true })
}

/** Build (but do not start) a libp2p node for Mercato and wrap it as a {@link Network}. */
export async function buildNetwork (init: NetworkInit = {}): Promise<Libp2pNetwork> {
  const privateKey = init.seed != null ? await libp2pKeyFromSeed(init.seed) : undefined
  const listen = init.listen ?? ['/ip4/127.0.0.1/tcp/0']
  // the relay search's and AutoNAT's walks go to the DHT itself (walk.ts), once the node exists
  let dht: KadDHT | undefined
  const walks: WalkSource = (c) => dhtClosestPeers(() => dht, c.peerId, peerRoutingClosest(c.peerRouting))
  const nat = await natPieces(init.nat ?? {}, listen, init.announce ?? [], walks)
  const peerDiscovery: any[] = []
  // the bootstrap list is dialled (and redialled) by the PeerKeeper, not by @libp2p/bootstrap, which dials once
  if (init.mdns === true) peerDiscovery.push(mdns())
  const strangerDials = new StrangerDials()
  const bans = new PeerBans()
  // inbound connections per IP (MAX_INBOUND_CONNECTIONS_PER_IP), the allow-list's addresses excepted
  const exempt = allowedIps(init.allow ?? [])
  const crowded = (remote: Multiaddr): boolean => {
    const ip = ipOf(remote)
    if (ip == null || exempt(ip)) return false
    let n = 0
    for (const c of node.getConnections()) if (c.direction === 'inbound' && ipOf(c.remoteAddr) === ip) n++
    return n >= MAX_INBOUND_CONNECTIONS_PER_IP
  }
  const node = await createLibp2p<Services>({
    privateKey,
    start: false,
    metrics: init.metrics === true ? prometheusMetrics({ defaultMetrics: { eventLoopMonitoringPrecision: EVENT_LOOP_LAG_RESOLUTION_MS } }) : undefined,
    // announced addresses are added to (not instead of) what the node finds itself, relay addresses included
    addresses: { listen: [...listen, ...nat.listen], appendAnnounce: init.announce ?? [] },
    transports: [coalescingTcp(), ...nat.transports],
    connectionProtector: init.networkKey != null ? networkProtector(init.networkKey) : undefined,
    connectionEncrypters: [piecewiseNoise()],
    connectionGater: {
      denyInboundConnection: (maConn) => crowded(maConn.remoteAddr),
      denyDialMultiaddr: (ma) => strangerDials.denies(ma),
      // a banned peer (bans.ts) is refused both ways, as soon as its identity is known
      denyDialPeer: (peer) => bans.has(peer.toString()),
      denyInboundEncryptedConnection: (peer) => bans.has(peer.toString()),
      denyOutboundEncryptedConnection: (peer) => bans.has(peer.toString())
    },
    streamMuxers: [halfWindowYamux({}, init.liveness)],
    peerDiscovery,
    // connections are pinged by yamux (yamux.ts), not by a ping stream each
    connectionMonitor: { enabled: false },
    connectionManager: {
      maxConnections: init.maxConnections ?? 300,
      dialTimeout: init.dialTimeoutMs ?? 5000,
      // exempt from every inbound limit: nobody by default; devnets and tests opt in to loopback (p2p.allow)
      allow: init.allow ?? [],
      inboundConnectionThreshold: 50,
      maxIncomingPendingConnections: 50
    },
    services: {
      ...nat.services,
      addressView: (components: { addressManager: AddressView['addressManager'] }): AddressView => ({ addressManager: components.addressManager }),
      identify: identify(),
      // answers other nodes' connection monitors (0.1 nodes, other libp2p nodes); one stream is not enough
      ping: ping({ maxOutboundStreams: 16, maxInboundStreams: 16 }),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        clientMode: false,
        // keep private and loopback addresses: Mercato meshes on LANs and on one machine too
        peerInfoMapper: passthroughMapper,
        initialQuerySelfInterval: INITIAL_QUERY_SELF_MS,
        allowQueryWithZeroPeers: true
      }),
      pubsub: gossipsub({
        // Mercato signs every payload itself (domain-separated Ed25519), so the
        // gossip layer does not sign again: message ids are content hashes.
        globalSignaturePolicy: StrictNoSign,
        msgIdFn: (msg) => sha256(msg.data),
        fastMsgIdFn: (msg) => Buffer.from(sha256(msg.data ?? new Uint8Array())).toString('base64'),
        allowPublishToZeroTopicPeers: true,
        ignoreDuplicatePublishError: true,
        // IDONTWANT pays off for large messages; ours are a few KiB, where the control frames cost more than they save
        idontwantMinDataSize: 64 * 1024,
        emitSelf: false,
        // gossip also crosses relayed connections: two NAT'd peers joined by a relay hear each
        // other's offers even when the public node between them does not subscribe (offers are KiB)
        runOnLimitedConnection: RUN_ON_LIMITED,
        maxInboundDataLength: init.maxGossipBytes ?? MAX_GOSSIP_BYTES,
        // rejected messages lower their forwarder's score on every topic we subscribe to (scoring.ts)
        scoreParams: peerScoreParams(init.allow ?? []),
        scoreThresholds: SCORE_THRESHOLDS
      }) as any
    }
  })
  dht = node.services.dht
  return new Libp2pNetwork(node, init, { relayServer: nat.relayServer, upnp: nat.upnp }, strangerDials, bans)
}
