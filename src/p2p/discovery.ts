/**
 * Keeping a node in the mesh: the peer keeper.
 *
 * libp2p 3 finds peers (bootstrap list, mDNS, the DHT) but dials almost none
 * of them: `@libp2p/bootstrap` dials its list once, mDNS only reports what it
 * hears, and a DHT walk with no peer returns at once. A node whose first dial
 * failed (its bootstrap peer was not up yet, or too busy to answer in time)
 * stayed alone for good. The keeper closes those gaps:
 *
 * - **Bootstrap redial.** While the node has fewer than `minPeers` peers, every
 *   bootstrap address it is not connected to is dialled again, each on its own
 *   backoff: 1 s, 2 s, 4 s … capped at `bootstrapMaxBackoffMs`, each wait
 *   jittered (±25 %) so that many nodes that started together do not redial in
 *   step. A success resets that address' backoff; losing peers restarts the
 *   loop.
 * - **Discovered peers are dialled.** A peer that any discovery reports
 *   (mDNS, identify, the DHT) is dialled while the node has fewer than
 *   `targetPeers` peers: at most `maxDiscoveryDials` dials at a time, and a peer
 *   whose dial failed is not tried again for `failedPeerRetryMs`, so a LAN
 *   neighbour announcing bogus peers costs us a bounded number of dials.
 * - **DHT walks.** While the node has some peers but fewer than `minPeers`, it
 *   walks the DHT towards a random key and dials whom it meets. A walk that
 *   meets nobody new doubles the wait before the next one.
 * - **Trimming.** Above `maxPeers` peers, the least valued idle ones are
 *   disconnected until `targetPeers` remain, never fewer than `minPeers` idle
 *   ones (trim.ts).
 */
import type { Libp2p, PeerId, PeerInfo } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from '../logger.js'
import { peerRoutingClosest, type ClosestPeers } from './walk.js'
import { trimPeers, trimTarget, type TrimLimits } from './trim.js'
import {
  BOOTSTRAP_INITIAL_BACKOFF_MS, BOOTSTRAP_MAX_BACKOFF_MS, DIAL_TIMEOUT_MS, DISCOVERY_INTERVAL_MS, DISCOVERY_MAX_INTERVAL_MS, FAILED_PEER_RETRY_MS, QUICK_WALKS_AFTER_CONNECT, WALK_AFTER_CONNECT_MS, WALK_MIN_GAP_MS,
  MAX_ADDRS_PER_PEER, MAX_DISCOVERY_DIALS, MAX_FAILED_PEERS, MAX_PEERS, MAX_PENDING_DISCOVERIES, MIN_PEERS, TARGET_PEERS, TRIM_GRACE_MS, TRIM_INTERVAL_MS
} from './constants.js'

export interface PeerKeeperInit {
  /** bootstrap multiaddrs, each ending in /p2p/<PeerId> */
  bootstrap?: string[]
  /** redial bootstrap peers and walk the DHT while below this many peers (default MIN_PEERS) */
  minPeers?: number
  /** dial discovered peers while below this many peers, and trim down to it (default TARGET_PEERS, or trimTarget(maxPeers, minPeers) when maxPeers is given) */
  targetPeers?: number
  /** above this many peers, disconnect the least valued idle ones down to targetPeers (default MAX_PEERS) */
  maxPeers?: number
  /** a connection younger than this is not trimmed (default TRIM_GRACE_MS) */
  trimGraceMs?: number
  /** how often the peer count is checked against maxPeers (default TRIM_INTERVAL_MS) */
  trimIntervalMs?: number
  /** wait between DHT walks while they meet new peers (default DISCOVERY_INTERVAL_MS) */
  walkIntervalMs?: number
  /** least time between two walks (default WALK_MIN_GAP_MS) */
  walkMinGapMs?: number
  bootstrapInitialBackoffMs?: number
  bootstrapMaxBackoffMs?: number
  /** where DHT walks meet peers (default: libp2p's peer routing) */
  closestPeers?: ClosestPeers
  /** words for a failed bootstrap dial, logged as a warning once per bootstrap peer (e.g. a private-network key mismatch) */
  explainFailure?: (addr: string, err: unknown) => Promise<string>
}

interface BootstrapPeer {
  addr: Multiaddr
  peerId: PeerId
  /** current backoff; doubles after each failed dial */
  backoffMs: number
  nextDialAt: number
  dialing: boolean
  /** a failed dial of this peer was already explained in a warning */
  warned: boolean
}

function isLoopback (ma: Multiaddr): boolean {
  const host = ma.getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value ?? ''
  return host.startsWith('127.') || host === '::1'
}

/** `ms` ± 25 %, so that nodes started together spread their redials. */
export function jitter (ms: number, random: () => number = Math.random): number {
  return Math.round(ms * (0.75 + random() * 0.5))
}

/**
 * The keeper's peer counts from its init: `minPeers` (walks and bootstrap redials below it),
 * `targetPeers` (discovered peers dialled below it, and what a trim leaves: trimTarget of maxPeers
 * unless given) and the trim's limits (past `maxPeers` settled peers, down to `targetPeers`,
 * keeping `minPeers` idle ones). Never low above high.
 */
export function peerLimits (init: Pick<PeerKeeperInit, 'minPeers' | 'targetPeers' | 'maxPeers' | 'trimGraceMs'>): { minPeers: number, targetPeers: number, trim: TrimLimits } {
  const minPeers = init.minPeers ?? MIN_PEERS
  const maxPeers = init.maxPeers ?? MAX_PEERS
  const targetPeers = Math.max(init.targetPeers ?? (init.maxPeers != null ? trimTarget(maxPeers, minPeers) : TARGET_PEERS), minPeers)
  return { minPeers, targetPeers, trim: { low: targetPeers, high: Math.max(maxPeers, targetPeers), keep: minPeers, graceMs: init.trimGraceMs ?? TRIM_GRACE_MS } }
}

export class PeerKeeper {
  private readonly node: Libp2p
  private readonly log: Logger
  private readonly minPeers: number
  private readonly targetPeers: number
  private readonly trimLimits: TrimLimits
  private readonly trimIntervalMs: number
  private trimTimer?: NodeJS.Timeout
  private trimming = false
  private readonly initialBackoffMs: number
  private readonly maxBackoffMs: number
  private readonly explainFailure?: (addr: string, err: unknown) => Promise<string>
  private readonly bootstrap: BootstrapPeer[] = []
  /** peers whose discovery dial failed, with the time it failed (insertion order = age) */
  private readonly failed = new Map<string, number>()
  private readonly dialing = new Set<string>()
  /**
   * peers discovered while MAX_DISCOVERY_DIALS dials were in flight, dialled as those end (oldest
   * first, at most MAX_PENDING_DISCOVERIES, the newest kept). Dropped instead, a peer the peer store
   * then knew was never reported again: two nodes of a 10-node devnet that each had 8 peers but
   * not each other (walks stop at MIN_PEERS) stayed apart for good.
   */
  private readonly pending = new Map<string, PeerInfo>()
  private bootstrapTimer?: NodeJS.Timeout
  private walkTimer?: NodeJS.Timeout
  /** when the scheduled walk is due (ms since epoch), and when the last one began */
  private walkDueAt = 0
  private lastWalkAt = 0
  /** the scheduled walk was brought forward by a connection: meeting no one there does not double the wait */
  private walkForConnect = false
  private walking = false
  /** walks still to take walkMinGap apart (set by a connection while below minPeers) */
  private quickWalks = 0
  private readonly walkInterval: number
  private readonly walkMinGap: number
  private readonly closestPeers: ClosestPeers
  private walkDelay: number
  private running = false
  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => { this.dialDiscovered(evt.detail) }
  /**
   * A new connection while we have few peers brings the next walk forward: the peer may know the
   * mesh. (The DHT's first self-query may have run before any connection, and met no one.)
   */
  private readonly onConnect = (): void => {
    if (!this.running || this.peerCount() >= this.minPeers) return
    this.quickWalks = QUICK_WALKS_AFTER_CONNECT
    if (this.walking) return
    const soon = Math.max(WALK_AFTER_CONNECT_MS, this.lastWalkAt + this.walkMinGap - Date.now())
    if (this.walkDueAt - Date.now() > soon) this.scheduleWalk(soon, true)
  }

  /**
   * No walk is due (park): the last look found minPeers or more. The loop used to look every
   * walkInterval (2 s) anyway, counting peers (libp2p's getPeers, over every connection): 5 % of an
   * idle node's CPU with 19 peers. A disconnect or a connection below minPeers wakes it (and a
   * look every DISCOVERY_MAX_INTERVAL_MS).
   */
  private get walkParked (): boolean {
    return this.walkDueAt === Number.POSITIVE_INFINITY
  }

  private readonly onDisconnect = (): void => {
    if (!this.running) return
    this.scheduleBootstrap(0)
    // a parked walk loop (enough peers when it last looked) looks again; a backed-off one comes sooner
    if ((this.walkParked || this.walkDelay > this.walkInterval) && !this.walking) this.scheduleWalk(this.walkInterval)
  }

  constructor (node: Libp2p, init: PeerKeeperInit, log: Logger) {
    this.node = node
    this.log = log
    const limits = peerLimits(init)
    this.minPeers = limits.minPeers
    this.targetPeers = limits.targetPeers
    this.trimLimits = limits.trim
    this.trimIntervalMs = init.trimIntervalMs ?? TRIM_INTERVAL_MS
    this.walkInterval = init.walkIntervalMs ?? DISCOVERY_INTERVAL_MS
    this.walkMinGap = init.walkMinGapMs ?? WALK_MIN_GAP_MS
    this.walkDelay = this.walkInterval
    this.initialBackoffMs = init.bootstrapInitialBackoffMs ?? BOOTSTRAP_INITIAL_BACKOFF_MS
    this.maxBackoffMs = init.bootstrapMaxBackoffMs ?? BOOTSTRAP_MAX_BACKOFF_MS
    this.explainFailure = init.explainFailure
    this.closestPeers = init.closestPeers ?? peerRoutingClosest(node.peerRouting)
    for (const s of init.bootstrap ?? []) {
      const addr = multiaddr(s)
      const id = addr.getComponents().findLast(c => c.name === 'p2p')?.value
      if (id == null) continue // the config schema already requires /p2p/<id>
      this.bootstrap.push({ addr, peerId: peerIdFromString(id), backoffMs: this.initialBackoffMs, nextDialAt: 0, dialing: false, warned: false })
    }
  }

  start (): void {
    this.running = true
    this.node.addEventListener('peer:discovery', this.onDiscovery)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    this.node.addEventListener('peer:connect', this.onConnect)
    this.scheduleBootstrap(0)
    this.scheduleWalk(this.walkInterval)
    this.trimTimer = setInterval(() => { void this.trim() }, this.trimIntervalMs)
    this.trimTimer.unref()
  }

  stop (): void {
    this.running = false
    this.node.removeEventListener('peer:discovery', this.onDiscovery)
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
    this.node.removeEventListener('peer:connect', this.onConnect)
    this.pending.clear()
    clearTimeout(this.bootstrapTimer)
    clearTimeout(this.walkTimer)
    clearInterval(this.trimTimer)
  }

  /** The bootstrap peers' redial state (for tests and diagnostics). */
  bootstrapState (): Array<{ peerId: string, dialing: boolean, backoffMs: number, nextDialInMs: number }> {
    const now = Date.now()
    return this.bootstrap.map(b => ({ peerId: b.peerId.toString(), dialing: b.dialing, backoffMs: b.backoffMs, nextDialInMs: Math.max(0, b.nextDialAt - now) }))
  }

  private peerCount (): number {
    return this.node.getPeers().length
  }

  // ------------------------------------------------------------ trimming

  /** Disconnect the least valued idle peers while above maxPeers (trim.ts); returns how many. */
  async trim (): Promise<number> {
    if (!this.running || this.trimming) return 0
    this.trimming = true
    try {
      return await trimPeers(this.node, this.trimLimits, this.log)
    } catch (err) {
      this.log.debug({ err }, 'trimming peers failed')
      return 0
    } finally {
      this.trimming = false
    }
  }

  // ------------------------------------------------------------ bootstrap

  private scheduleBootstrap (delayMs: number): void {
    if (!this.running || this.bootstrap.length === 0) return
    clearTimeout(this.bootstrapTimer)
    this.bootstrapTimer = setTimeout(() => { this.dialBootstrap() }, Math.max(0, delayMs))
    this.bootstrapTimer.unref()
  }

  private dialBootstrap (): void {
    if (!this.running) return
    const now = Date.now()
    if (this.peerCount() < this.minPeers) {
      for (const b of this.bootstrap) {
        if (!this.mayDial(b) || b.nextDialAt > now) continue
        b.dialing = true
        this.node.dial(b.addr, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) }).then(() => {
          b.backoffMs = this.initialBackoffMs
          b.nextDialAt = 0
          this.log.debug({ peer: b.peerId.toString() }, 'bootstrap peer connected')
        }, (err: any) => {
          b.nextDialAt = Date.now() + jitter(b.backoffMs)
          this.log.debug({ peer: b.peerId.toString(), retryInMs: b.nextDialAt - Date.now(), err: err?.message }, 'bootstrap dial failed')
          b.backoffMs = Math.min(b.backoffMs * 2, this.maxBackoffMs)
          if (!b.warned && this.explainFailure != null && this.running) {
            b.warned = true
            const addr = b.addr.toString()
            void this.explainFailure(addr, err).then(reason => {
              if (this.running) this.log.warn({ bootstrap: addr, reason }, `cannot connect to bootstrap peer ${addr}: ${reason}`)
            }, () => {})
          }
        }).finally(() => {
          b.dialing = false
          this.scheduleBootstrap(this.nextBootstrapDelay())
        })
      }
    }
    this.scheduleBootstrap(this.nextBootstrapDelay())
  }

  /**
   * Time until the next bootstrap peer is due; while at or above minPeers, look again every now and
   * then. A connected bootstrap peer is not due: losing it schedules a redial at once
   * (onDisconnect). Counting it (its `nextDialAt` is 0 once dialled) woke every node of a mesh
   * smaller than minPeers 20 times a second for nothing.
   */
  private nextBootstrapDelay (): number {
    if (this.peerCount() >= this.minPeers) return this.maxBackoffMs
    const now = Date.now()
    let next = this.maxBackoffMs
    for (const b of this.bootstrap) if (this.mayDial(b)) next = Math.min(next, b.nextDialAt - now)
    return Math.max(next, 50)
  }

  /** A bootstrap peer that is not being dialled, not ourselves and not connected (whenever its backoff allows). */
  private mayDial (b: BootstrapPeer): boolean {
    return !b.dialing && !b.peerId.equals(this.node.peerId) && this.node.getConnections(b.peerId).length === 0
  }

  // ------------------------------------------------------------ discovered peers

  /** Dial (or queue) a discovered peer; false when it is ourselves, connected, dialled already, or failed lately. */
  private dialDiscovered (peer: PeerInfo): boolean {
    if (!this.running) return false
    const id = peer.id.toString()
    if (peer.id.equals(this.node.peerId) || this.dialing.has(id)) return false
    if (this.peerCount() >= this.targetPeers) return false
    if (this.node.getConnections(peer.id).length > 0) { this.pending.delete(id); return false }
    const failedAt = this.failed.get(id)
    if (failedAt != null && Date.now() - failedAt < FAILED_PEER_RETRY_MS) { this.pending.delete(id); return false }
    if (this.dialing.size >= MAX_DISCOVERY_DIALS) {
      this.pending.delete(id)
      this.pending.set(id, { id: peer.id, multiaddrs: peer.multiaddrs.slice(0, MAX_ADDRS_PER_PEER) })
      if (this.pending.size > MAX_PENDING_DISCOVERIES) this.pending.delete(this.pending.keys().next().value as string)
      return true
    }
    this.pending.delete(id)
    this.dialing.add(id)
    this.dialAddresses(peer).then(() => {
      this.failed.delete(id)
      this.log.debug({ peer: id }, 'dialled a discovered peer')
    }, (err: any) => {
      this.failed.delete(id)
      this.failed.set(id, Date.now())
      if (this.failed.size > MAX_FAILED_PEERS) this.failed.delete(this.failed.keys().next().value as string)
      this.log.debug({ peer: id, err: err?.message }, 'could not dial a discovered peer')
    }).finally(() => {
      this.dialing.delete(id)
      this.dialPending()
    })
    return true
  }

  /** Dial the oldest peers discovered while the dial slots were full, as slots free up. */
  private dialPending (): void {
    for (const [id, info] of this.pending) {
      if (!this.running || this.dialing.size >= MAX_DISCOVERY_DIALS || this.peerCount() >= this.targetPeers) return
      this.pending.delete(id)
      this.dialDiscovered(info)
    }
  }

  /**
   * Dial a discovered peer one address at a time, loopback last: mDNS answers carry 127.0.0.1 too,
   * which on another host (or network namespace) is ourselves or a stranger, and one failed address
   * must not fail the whole dial. Each address names the PeerId, so only that peer is accepted.
   */
  private async dialAddresses (peer: PeerInfo): Promise<void> {
    const signal = AbortSignal.timeout(DIAL_TIMEOUT_MS)
    const addrs = [...peer.multiaddrs].sort((a, b) => Number(isLoopback(a)) - Number(isLoopback(b))).slice(0, MAX_ADDRS_PER_PEER)
    if (addrs.length === 0) { await this.node.dial(peer.id, { signal }); return }
    let lastError: unknown
    for (const a of addrs) {
      const withId = a.getComponents().some(c => c.name === 'p2p') ? a : a.encapsulate(`/p2p/${peer.id.toString()}`)
      try {
        await this.node.dial(withId, { signal })
        return
      } catch (err) {
        lastError = err
        if (signal.aborted) break
      }
    }
    throw lastError
  }

  // ------------------------------------------------------------ DHT walks

  /**
   * Walk the DHT towards a random key to meet more peers while we have few.
   * A walk that meets nobody new doubles the wait before the next one (up to
   * DISCOVERY_MAX_INTERVAL_MS): in a small mesh where everyone is already
   * known, walking every few seconds only burns CPU on every node.
   */
  private scheduleWalk (delayMs: number, forConnect = false): void {
    clearTimeout(this.walkTimer)
    if (!this.running) return
    // a walk brought forward keeps the wait it came ahead of
    if (!forConnect) this.walkDelay = delayMs
    this.walkForConnect = forConnect
    this.walkDueAt = Date.now() + delayMs
    this.walkTimer = setTimeout(() => { void this.walk() }, delayMs)
    this.walkTimer.unref()
  }

  /**
   * Stop looking until a disconnect (onDisconnect) or a connection below minPeers (onConnect) wakes
   * the loop; a look every DISCOVERY_MAX_INTERVAL_MS anyway, should a drop ever come without
   * libp2p's peer:disconnect.
   */
  private park (): void {
    clearTimeout(this.walkTimer)
    this.quickWalks = 0
    this.walkDueAt = Number.POSITIVE_INFINITY
    this.walkDelay = this.walkInterval
    this.walkTimer = setTimeout(() => { void this.walk() }, DISCOVERY_MAX_INTERVAL_MS)
    this.walkTimer.unref()
  }

  private async walk (): Promise<void> {
    if (this.walking || !this.running) return
    const forConnect = this.walkForConnect
    const peers = this.peerCount()
    // no one to ask: the bootstrap loop works on that, and a connection brings the walk forward
    if (peers === 0) { this.scheduleWalk(this.walkInterval); return }
    if (peers >= this.minPeers) { this.park(); return }
    this.walking = true
    this.lastWalkAt = Date.now()
    let met = 0
    try {
      const key = new Uint8Array(32)
      globalThis.crypto.getRandomValues(key)
      const signal = AbortSignal.timeout(DISCOVERY_INTERVAL_MS)
      for await (const peer of this.closestPeers(key, { signal })) {
        if (!this.running) break
        // dialled beside the walk, as any discovered peer (bounded, a failed one not again soon)
        if (this.dialDiscovered(peer)) met++
      }
    } catch (err: any) {
      if (err?.name !== 'AbortError' && err?.name !== 'TimeoutError') this.log.debug({ err }, 'discovery walk failed')
    } finally {
      this.walking = false
      // soon again after a connection while still below minPeers (the wait it came ahead of is kept)
      if (this.quickWalks > 0 && this.peerCount() < this.minPeers) {
        this.quickWalks--
        this.scheduleWalk(this.walkMinGap, true)
      } else {
        this.quickWalks = 0
        this.scheduleWalk(met > 0 ? this.walkInterval : forConnect ? this.walkDelay : Math.min(this.walkDelay * 2, DISCOVERY_MAX_INTERVAL_MS))
      }
    }
  }
}
