/**
 * An in-memory implementation of the {@link Network} interface for unit
 * tests: a hub connects fake nodes (full mesh by default) with topics
 * (validators run before handlers, as with gossipsub), request/response with
 * size caps and error frames, message channels, DHT-like providers and peer
 * events. No sockets, no libp2p.
 *
 * ```ts
 * const hub = new MemoryHub()
 * const a = hub.createNode(); const b = hub.createNode()
 * await a.handle('/echo/1.0.0', (req) => req)
 * await b.request(a.peerId, '/echo/1.0.0', bytes)
 * ```
 */
import { createHash } from 'node:crypto'
import { concat } from 'uint8arrays/concat'
import { randomSigner } from '../../src/crypto/index.js'
import { MessageTooLargeError, PeerUnreachableError, RemoteError, RequestTimeoutError } from '../../src/p2p/errors.js'
import type {
  ChannelHandler, ChannelOptions, HandleOptions, MessageChannel, Network, NetworkEvents, PeerSummary,
  RequestHandler, RequestOptions, TopicDecoder, TopicHandler
} from '../../src/p2p/network.js'

const DEFAULT_MAX_BYTES = 1024 * 1024
const DEFAULT_TIMEOUT_MS = 10_000

interface Sub { handler: TopicHandler<any>, decode: TopicDecoder<any> }

export interface GossipRecord { topic: string, from: string, to: string, result: 'accept' | 'ignore' | 'reject' }

export interface MemoryHubOptions {
  /**
   * Gossip as gossipsub does: a node that accepts a message forwards it to its other linked
   * subscribers, and each node takes a message (by content hash) once. Off by default: every
   * node is linked to every other and hears each publish directly.
   */
  relay?: boolean
  /** a dial (request, channel) to a peer whose link was cut links them again, as a TCP dial would */
  dialable?: boolean
  /** channels say they ride a relayed connection (`MessageChannel.relayed`) */
  relayedChannels?: boolean
}

export class MemoryHub {
  readonly opts: MemoryHubOptions
  readonly nodes = new Map<string, MemoryNetwork>()
  readonly providers = new Map<string, Set<string>>()
  /** every gossip delivery and its validation result (for assertions) */
  readonly gossipLog: GossipRecord[] = []
  /** drop links: `${a}|${b}` (both directions) */
  private readonly cut = new Set<string>()
  /** open channels between two nodes (either end), for {@link dropChannels} */
  readonly channels = new Set<{ a: string, b: string, end: MessageChannel }>()

  constructor (opts: MemoryHubOptions = {}) {
    this.opts = opts
  }

  /** link two nodes again (a dial across a cut) */
  connect (a: string, b: string): void {
    if (!this.cut.has(`${a}|${b}`)) return
    this.cut.delete(`${a}|${b}`)
    this.cut.delete(`${b}|${a}`)
    this.nodes.get(a)?.emit('peer:connect', b)
    this.nodes.get(b)?.emit('peer:connect', a)
  }

  createNode (peerId: string = randomSigner().peerId): MemoryNetwork {
    const node = new MemoryNetwork(this, peerId)
    this.nodes.set(peerId, node)
    for (const other of this.nodes.values()) {
      if (other !== node && this.linked(peerId, other.peerId)) {
        other.emit('peer:connect', peerId)
        node.emit('peer:connect', other.peerId)
      }
    }
    return node
  }

  remove (peerId: string): void {
    this.nodes.delete(peerId)
    for (const other of this.nodes.values()) other.emit('peer:disconnect', peerId)
  }

  disconnect (a: string, b: string): void {
    this.cut.add(`${a}|${b}`)
    this.cut.add(`${b}|${a}`)
    this.nodes.get(a)?.emit('peer:disconnect', b)
    this.nodes.get(b)?.emit('peer:disconnect', a)
  }

  /** Reset every open channel between two nodes, as a dying relay does to the circuits it carries; the nodes stay reachable. */
  dropChannels (a: string, b: string): number {
    let n = 0
    for (const c of [...this.channels]) {
      if ((c.a === a && c.b === b) || (c.a === b && c.b === a)) { c.end.abort(new Error('relay gone')); this.channels.delete(c); n++ }
    }
    return n
  }

  linked (a: string, b: string): boolean {
    return a !== b && !this.cut.has(`${a}|${b}`) && this.nodes.has(a) && this.nodes.has(b)
  }
}

export class MemoryNetwork implements Network {
  readonly peerId: string
  private readonly hub: MemoryHub
  readonly subs = new Map<string, Sub>()
  readonly handlers = new Map<string, { handler: RequestHandler, opts: HandleOptions }>()
  readonly channelHandlers = new Map<string, { handler: ChannelHandler, opts: ChannelOptions }>()
  maxGossipBytes = 256 * 1024
  /** gossip taken (content hashes), with relay on */
  private readonly seenGossip = new Set<string>()

  private readonly events = new EventTarget()

  constructor (hub: MemoryHub, peerId: string) {
    this.hub = hub
    this.peerId = peerId
  }

  emit<K extends keyof NetworkEvents> (type: K, detail: NetworkEvents[K]): void {
    this.events.dispatchEvent(new CustomEvent(type, { detail }))
  }

  addresses (): string[] {
    return [`/memory/${this.peerId}/p2p/${this.peerId}`]
  }

  peers (): PeerSummary[] {
    const out: PeerSummary[] = []
    for (const n of this.hub.nodes.values()) if (this.hub.linked(this.peerId, n.peerId)) out.push({ peerId: n.peerId, addresses: n.addresses() })
    return out
  }

  isConnected (peerId: string): boolean {
    return this.hub.linked(this.peerId, peerId)
  }

  async dial (target: string): Promise<string> {
    const id = target.startsWith('/') ? target.split('/').pop() ?? '' : target
    if (this.hub.opts.dialable === true && id !== this.peerId && this.hub.nodes.has(id)) this.hub.connect(this.peerId, id)
    if (!this.hub.linked(this.peerId, id)) throw new PeerUnreachableError(`cannot reach ${target}`)
    return id
  }

  async hangUp (peerId: string): Promise<void> {
    this.hub.disconnect(this.peerId, peerId)
  }

  subscribe (topic: string, handler: TopicHandler<Uint8Array>): void
  subscribe<T> (topic: string, decode: TopicDecoder<T>, handler: TopicHandler<T>): void
  subscribe (topic: string, a: TopicHandler<any> | TopicDecoder<any>, b?: TopicHandler<any>): void {
    if (b != null) this.subs.set(topic, { decode: a as TopicDecoder<any>, handler: b })
    else this.subs.set(topic, { decode: (msg) => ({ result: 'accept', value: msg.data }), handler: a as TopicHandler<any> })
  }

  unsubscribe (topic: string): void {
    this.subs.delete(topic)
  }

  async publish (topic: string, data: Uint8Array): Promise<number> {
    if (data.length > this.maxGossipBytes) throw new MessageTooLargeError(`gossip message of ${data.length} bytes`)
    if (this.hub.opts.relay === true) this.seenGossip.add(gossipId(data))
    return this.forward(topic, data)
  }

  /** send to every linked subscriber (but `except`); with relay on, each forwards what it accepts */
  private forward (topic: string, data: Uint8Array, except?: string): number {
    let n = 0
    const relay = this.hub.opts.relay === true
    for (const node of this.hub.nodes.values()) {
      if (node.peerId === except || !this.hub.linked(this.peerId, node.peerId)) continue
      const sub = node.subs.get(topic)
      if (sub == null) continue
      n++
      const msg = { topic, data: data.slice(), from: this.peerId }
      // deliver asynchronously, like a network
      setImmediate(() => {
        void (async () => {
          if (relay) {
            const id = gossipId(data)
            if (node.seenGossip.has(id)) return
            node.seenGossip.add(id)
          }
          let verdict
          try { verdict = await sub.decode(msg) } catch { verdict = { result: 'reject' as const } }
          this.hub.gossipLog.push({ topic, from: this.peerId, to: node.peerId, result: verdict.result })
          if (verdict.result === 'accept' && node.subs.get(topic) === sub) {
            sub.handler({ ...msg, value: verdict.value })
            if (relay) node.forward(topic, data, this.peerId)
          }
        })()
      })
    }
    return n
  }

  topicPeers (topic: string): string[] {
    const out: string[] = []
    for (const n of this.hub.nodes.values()) if (this.hub.linked(this.peerId, n.peerId) && n.subs.has(topic)) out.push(n.peerId)
    return out
  }

  async handle (protocol: string, handler: RequestHandler, opts: HandleOptions = {}): Promise<void> {
    this.handlers.set(protocol, { handler, opts })
  }

  async unhandle (protocol: string): Promise<void> {
    this.handlers.delete(protocol)
  }

  async request (peer: string, protocol: string, data: Uint8Array, opts: RequestOptions = {}): Promise<Uint8Array> {
    const target = this.hub.nodes.get(await this.dial(peer))
    if (target == null) throw new PeerUnreachableError(`cannot reach ${peer}`)
    const h = target.handlers.get(protocol)
    if (h == null) throw new RemoteError(`protocol ${protocol} not supported`, 'unsupported-protocol')
    if (data.length > (h.opts.maxRequestBytes ?? DEFAULT_MAX_BYTES)) throw new RemoteError('request too large', 'message-too-large')
    const timeoutMs = opts.timeoutMs ?? h.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
    const signals = [AbortSignal.timeout(timeoutMs)]
    if (opts.signal != null) signals.push(opts.signal)
    const signal = AbortSignal.any(signals)
    let res: Uint8Array
    let end!: () => void
    const ended = new Promise<void>(resolve => { end = resolve })
    try {
      res = await Promise.race([
        Promise.resolve().then(async () => await h.handler(data.slice(), { from: this.peerId, protocol, signal, ended })),
        new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => { reject(new RequestTimeoutError()) }, { once: true }))
      ])
    } catch (err: any) {
      if (err instanceof RequestTimeoutError) throw err
      throw new RemoteError(String(err?.message ?? err), String(err?.code ?? 'error'))
    } finally {
      end()
    }
    if (res.length > (opts.maxResponseBytes ?? DEFAULT_MAX_BYTES)) throw new MessageTooLargeError(`response of ${res.length} bytes`)
    return res.slice()
  }

  async handleChannel (protocol: string, handler: ChannelHandler, opts: ChannelOptions = {}): Promise<void> {
    this.channelHandlers.set(protocol, { handler, opts })
  }

  async openChannel (peer: string, protocol: string, opts: ChannelOptions & { signal?: AbortSignal } = {}): Promise<MessageChannel> {
    const target = this.hub.nodes.get(await this.dial(peer))
    const h = target?.channelHandlers.get(protocol)
    if (target == null || h == null) throw new RemoteError(`protocol ${protocol} not supported`, 'unsupported-protocol')
    // each end reads what its own cap allows, as over a stream
    const [local, remote] = channelPair(this.peerId, target.peerId, protocol, opts.maxMessageBytes ?? DEFAULT_MAX_BYTES, h.opts.maxMessageBytes ?? DEFAULT_MAX_BYTES, this.hub.opts.relayedChannels === true)
    this.hub.channels.add({ a: this.peerId, b: target.peerId, end: local })
    queueMicrotask(() => { void Promise.resolve(h.handler(remote)).catch(() => { remote.abort() }) })
    return local
  }

  async provide (key: string): Promise<void> {
    let set = this.hub.providers.get(key)
    if (set == null) { set = new Set(); this.hub.providers.set(key, set) }
    set.add(this.peerId)
  }

  async findProviders (key: string, opts: { limit?: number } = {}): Promise<string[]> {
    return [...(this.hub.providers.get(key) ?? [])].filter((p) => p !== this.peerId).slice(0, opts.limit ?? 20)
  }

  addEventListener<K extends keyof NetworkEvents> (type: K, listener: (evt: CustomEvent<NetworkEvents[K]>) => void): void {
    this.events.addEventListener(type, listener as EventListener)
  }

  removeEventListener<K extends keyof NetworkEvents> (type: K, listener: (evt: CustomEvent<NetworkEvents[K]>) => void): void {
    this.events.removeEventListener(type, listener as EventListener)
  }
}

/** Two connected ends of an in-memory message channel. */
function channelPair (a: string, b: string, protocol: string, maxToA: number, maxToB: number, relayed = false): [MessageChannel, MessageChannel] {
  class End implements MessageChannel {
    readonly remotePeer: string
    readonly protocol = protocol
    readonly relayed = relayed
    peer!: End
    private readonly queue: Uint8Array[] = []
    private waiting: { resolve: (v: IteratorResult<Uint8Array>) => void, reject: (e: unknown) => void } | undefined
    private ended = false
    private error: Error | undefined

    /** what this end reads at most */
    readonly maxIn: number
    constructor (remote: string, maxIn: number) { this.remotePeer = remote; this.maxIn = maxIn }

    deliver (data: Uint8Array): void {
      if (this.waiting != null) { const w = this.waiting; this.waiting = undefined; w.resolve({ value: data, done: false }) } else this.queue.push(data)
    }

    finish (err?: Error): void {
      if (this.ended) return
      this.ended = true
      this.error = err
      if (this.waiting != null) {
        const w = this.waiting
        this.waiting = undefined
        if (err != null) w.reject(err)
        else w.resolve({ value: undefined, done: true })
      }
    }

    async send (data: Uint8Array): Promise<void> {
      if (this.ended) throw new Error('channel closed')
      if (data.length > this.peer.maxIn) throw new MessageTooLargeError(`channel message of ${data.length} bytes`)
      const copy = data.slice()
      queueMicrotask(() => { this.peer.deliver(copy) })
    }

    async sendMany (messages: Array<Uint8Array | Uint8Array[]>): Promise<void> {
      for (const m of messages) await this.send(Array.isArray(m) ? concat(m) : m)
    }

    async close (): Promise<void> {
      queueMicrotask(() => { this.peer.finish() })
    }

    abort (err: Error = new Error('stream reset')): void {
      this.finish(err)
      this.peer.finish(err)
    }

    [Symbol.asyncIterator] (): AsyncIterator<Uint8Array> {
      return {
        next: async () => {
          const v = this.queue.shift()
          if (v != null) return { value: v, done: false }
          if (this.ended) {
            if (this.error != null) throw this.error
            return { value: undefined, done: true }
          }
          return await new Promise((resolve, reject) => { this.waiting = { resolve, reject } })
        }
      }
    }

    /**
     * Each message in pieces, as a transport would deliver a large one: its first byte alone,
     * then at most 64 KiB at a time (so a reader that handles pieces is tested across them).
     */
    async * parts (): AsyncGenerator<Uint8Array[]> {
      const it = this[Symbol.asyncIterator]()
      for (let r = await it.next(); r.done !== true; r = await it.next()) {
        const m = r.value
        const pieces = m.length > 1 ? [m.subarray(0, 1)] : [m]
        for (let at = 1; at < m.length; at += 64 * 1024) pieces.push(m.subarray(at, Math.min(m.length, at + 64 * 1024)))
        yield pieces
      }
    }
  }
  const x = new End(b, maxToA)
  const y = new End(a, maxToB)
  x.peer = y
  y.peer = x
  return [x, y]
}

function gossipId (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}
