/**
 * A {@link Network} in which this node is one of its own peers.
 *
 * libp2p does not dial itself, and gossipsub does not deliver a node's own
 * messages back to it. A Mercato node is often both requester and provider
 * (a single node runs its own jobs), and each role should reach the other
 * exactly as it reaches any peer: over the same protocols, through the same
 * codecs and checks. `withLoopback(network)` gives them that:
 *
 * - `request` and `openChannel` addressed to our own PeerId (or one of our
 *   multiaddrs) go to our own handlers, in memory, with the same size caps
 *   and error frames (`RemoteError`, `MessageTooLargeError`);
 * - `publish` also delivers to our own subscription, through its decoder,
 *   and `topicPeers` lists us when we are subscribed;
 * - `findProviders` lists us for keys we `provide`;
 * - `isConnected(self)` is true and `dial(self)` succeeds.
 *
 * Everything else is the wrapped network's.
 */
import { concat } from 'uint8arrays/concat'
import { MAX_MESSAGE_BYTES, REQUEST_TIMEOUT_MS } from './constants.js'
import { MessageTooLargeError, PeerUnreachableError, RemoteError, RequestTimeoutError } from './errors.js'
import type {
  ChannelHandler, ChannelOptions, HandleOptions, MessageChannel, Network, NetworkEvents, PeerSummary,
  RequestHandler, RequestOptions, TopicDecoder, TopicHandler
} from './network.js'

const rawDecoder: TopicDecoder<Uint8Array> = (msg) => ({ result: 'accept', value: msg.data })

export class LoopbackNetwork implements Network {
  readonly peerId: string
  private readonly inner: Network
  private readonly handlers = new Map<string, { handler: RequestHandler, opts: HandleOptions }>()
  private readonly channelHandlers = new Map<string, { handler: ChannelHandler, opts: ChannelOptions }>()
  private readonly topics = new Map<string, { decode: TopicDecoder<any>, handler: TopicHandler<any> }>()
  private readonly provided = new Set<string>()

  constructor (inner: Network) {
    this.inner = inner
    this.peerId = inner.peerId
  }

  /** Is `target` (a PeerId or a multiaddr ending in /p2p/<id>) this node? */
  isSelf (target: string): boolean {
    return target === this.peerId || (target.startsWith('/') && target.endsWith(`/p2p/${this.peerId}`))
  }

  addresses (): string[] { return this.inner.addresses() }
  peers (): PeerSummary[] { return this.inner.peers() }

  isConnected (peerId: string): boolean {
    return this.isSelf(peerId) || this.inner.isConnected(peerId)
  }

  async dial (target: string, opts?: { signal?: AbortSignal }): Promise<string> {
    if (this.isSelf(target)) return this.peerId
    return await this.inner.dial(target, opts)
  }

  async hangUp (peerId: string): Promise<void> {
    if (this.isSelf(peerId)) return
    await this.inner.hangUp(peerId)
  }

  // ---------------------------------------------------------------- topics

  subscribe (topic: string, handler: TopicHandler<Uint8Array>): void
  subscribe<T> (topic: string, decode: TopicDecoder<T>, handler: TopicHandler<T>): void
  subscribe (topic: string, a: TopicHandler<any> | TopicDecoder<any>, b?: TopicHandler<any>): void {
    const [decode, handler]: [TopicDecoder<any>, TopicHandler<any>] = b != null ? [a as TopicDecoder<any>, b] : [rawDecoder, a as TopicHandler<any>]
    this.topics.set(topic, { decode, handler })
    this.inner.subscribe(topic, decode, handler)
  }

  unsubscribe (topic: string): void {
    this.topics.delete(topic)
    this.inner.unsubscribe(topic)
  }

  async publish (topic: string, data: Uint8Array): Promise<number> {
    const sent = await this.inner.publish(topic, data)
    const sub = this.topics.get(topic)
    if (sub == null) return sent
    // like a delivery from the network: later, through the decoder, and a throwing handler harms nobody
    const msg = { topic, data: data.slice(), from: this.peerId }
    setImmediate(() => {
      void (async () => {
        const verdict = await sub.decode(msg)
        if (verdict.result === 'accept' && this.topics.get(topic) === sub) sub.handler({ ...msg, value: verdict.value })
      })().catch(() => {})
    })
    return sent + 1
  }

  topicPeers (topic: string): string[] {
    const peers = this.inner.topicPeers(topic)
    return this.topics.has(topic) ? [...peers, this.peerId] : peers
  }

  // ---------------------------------------------------------------- request / response

  async handle (protocol: string, handler: RequestHandler, opts: HandleOptions = {}): Promise<void> {
    this.handlers.set(protocol, { handler, opts })
    await this.inner.handle(protocol, handler, opts)
  }

  async unhandle (protocol: string): Promise<void> {
    this.handlers.delete(protocol)
    this.channelHandlers.delete(protocol)
    await this.inner.unhandle(protocol)
  }

  async request (peer: string, protocol: string, data: Uint8Array, opts: RequestOptions = {}): Promise<Uint8Array> {
    if (!this.isSelf(peer)) return await this.inner.request(peer, protocol, data, opts)
    const h = this.handlers.get(protocol)
    if (h == null) throw new RemoteError(`${protocol} to ourselves: protocol not supported`, 'unsupported-protocol')
    const maxRequestBytes = h.opts.maxRequestBytes ?? MAX_MESSAGE_BYTES
    if (data.length > maxRequestBytes) throw new MessageTooLargeError(`${protocol}: request exceeds ${maxRequestBytes} bytes`)
    const timeoutMs = opts.timeoutMs ?? h.opts.timeoutMs ?? REQUEST_TIMEOUT_MS
    const timeout = AbortSignal.timeout(timeoutMs)
    const signal = opts.signal != null ? AbortSignal.any([opts.signal, timeout]) : timeout
    let response: Uint8Array
    let end!: () => void
    const ended = new Promise<void>(resolve => { end = resolve })
    try {
      response = await new Promise<Uint8Array>((resolve, reject) => {
        const onAbort = (): void => { reject(timeout.aborted ? new RequestTimeoutError(`${protocol} to ourselves: no answer in ${timeoutMs} ms`) : signal.reason) }
        signal.addEventListener('abort', onAbort, { once: true })
        Promise.resolve()
          .then(async () => await h.handler(data.slice(), { from: this.peerId, protocol, signal, ended }))
          .then(resolve, (err: any) => { reject(new RemoteError(`${protocol} to ourselves: ${String(err?.message ?? err)}`, typeof err?.code === 'string' ? err.code : 'internal')) })
          .finally(() => { signal.removeEventListener('abort', onAbort) })
      })
    } catch (err) {
      if (err instanceof RemoteError || err instanceof RequestTimeoutError) throw err
      throw new PeerUnreachableError(`${protocol} to ourselves: ${String((err as Error)?.message ?? err)}`, err)
    } finally {
      // the response is copied below: nothing of the handler's is held past this
      end()
    }
    const maxResponseBytes = opts.maxResponseBytes ?? MAX_MESSAGE_BYTES
    if (response.length > maxResponseBytes) throw new MessageTooLargeError(`response from ourselves exceeds ${maxResponseBytes} bytes`)
    return response.slice()
  }

  // ---------------------------------------------------------------- channels

  async handleChannel (protocol: string, handler: ChannelHandler, opts: ChannelOptions = {}): Promise<void> {
    this.channelHandlers.set(protocol, { handler, opts })
    await this.inner.handleChannel(protocol, handler, opts)
  }

  async openChannel (peer: string, protocol: string, opts: ChannelOptions & { signal?: AbortSignal } = {}): Promise<MessageChannel> {
    if (!this.isSelf(peer)) return await this.inner.openChannel(peer, protocol, opts)
    const h = this.channelHandlers.get(protocol)
    if (h == null) throw new PeerUnreachableError(`${protocol} to ourselves: protocol not supported`)
    // each side reads what its own cap allows, as over a stream
    const [mine, theirs] = channelPair(this.peerId, protocol, opts.maxMessageBytes ?? MAX_MESSAGE_BYTES, h.opts.maxMessageBytes ?? MAX_MESSAGE_BYTES)
    queueMicrotask(() => { void Promise.resolve().then(async () => { await h.handler(theirs) }).catch((err) => { theirs.abort(err instanceof Error ? err : new Error(String(err))) }) })
    return mine
  }

  // ---------------------------------------------------------------- DHT

  async provide (key: string, opts?: { signal?: AbortSignal }): Promise<void> {
    this.provided.add(key)
    await this.inner.provide(key, opts)
  }

  async findProviders (key: string, opts: { signal?: AbortSignal, limit?: number } = {}): Promise<string[]> {
    const found = await this.inner.findProviders(key, opts)
    if (!this.provided.has(key) || found.includes(this.peerId)) return found
    return [this.peerId, ...found].slice(0, opts.limit ?? Infinity)
  }

  addEventListener<K extends keyof NetworkEvents> (type: K, listener: (evt: CustomEvent<NetworkEvents[K]>) => void): void {
    this.inner.addEventListener(type, listener)
  }

  removeEventListener<K extends keyof NetworkEvents> (type: K, listener: (evt: CustomEvent<NetworkEvents[K]>) => void): void {
    this.inner.removeEventListener(type, listener)
  }
}

/** A network in which this node reaches itself like any peer. */
export function withLoopback (network: Network): LoopbackNetwork {
  return network instanceof LoopbackNetwork ? network : new LoopbackNetwork(network)
}

// ---------------------------------------------------------------- an in-memory channel

interface Inbox {
  queue: Uint8Array[]
  waiter?: { resolve: (v: IteratorResult<Uint8Array>) => void, reject: (err: Error) => void }
  ended: boolean
  error?: Error
}

function deliver (box: Inbox, data: Uint8Array): void {
  const w = box.waiter
  if (w != null) { box.waiter = undefined; w.resolve({ value: data, done: false }) } else box.queue.push(data)
}

function end (box: Inbox, error?: Error): void {
  if (box.ended) return
  box.ended = true
  box.error = error
  const w = box.waiter
  box.waiter = undefined
  if (w == null) return
  if (error != null) w.reject(error); else w.resolve({ value: undefined, done: true })
}

/**
 * Two connected ends of a message channel in memory. Like a stream: `send` copies, a message over
 * the reading end's cap fails, `close` ends the other side's reading after what was sent, `abort` resets both.
 */
function channelPair (peerId: string, protocol: string, maxToA: number, maxToB: number): [MessageChannel, MessageChannel] {
  const a: Inbox = { queue: [], ended: false }
  const b: Inbox = { queue: [], ended: false }
  const side = (inbox: Inbox, outbox: Inbox, maxBytes: number): MessageChannel => {
    let closed = false
    const send = async (data: Uint8Array): Promise<void> => {
      if (closed || outbox.ended) throw new Error('channel closed')
      if (data.length > maxBytes) throw new MessageTooLargeError(`channel message of ${data.length} bytes exceeds ${maxBytes}`)
      const copy = data.slice()
      queueMicrotask(() => { if (!outbox.ended) deliver(outbox, copy) })
    }
    const next = async (): Promise<IteratorResult<Uint8Array>> => {
      const v = inbox.queue.shift()
      if (v != null) return { value: v, done: false }
      if (inbox.ended) {
        if (inbox.error != null) throw inbox.error
        return { value: undefined, done: true }
      }
      return await new Promise((resolve, reject) => { inbox.waiter = { resolve, reject } })
    }
    return {
      remotePeer: peerId,
      protocol,
      send,
      sendMany: async (messages) => { for (const m of messages) await send(Array.isArray(m) ? concat(m) : m) },
      close: async () => {
        closed = true
        queueMicrotask(() => { end(outbox) })
      },
      abort: (err) => {
        const e = err ?? new Error('channel aborted')
        closed = true
        end(outbox, e)
        end(inbox, e)
      },
      [Symbol.asyncIterator]: () => ({ next }),
      // a message sent to ourselves is one piece
      parts: async function * () {
        for (let r = await next(); r.done !== true; r = await next()) yield [r.value]
      }
    }
  }
  return [side(a, b, maxToB), side(b, a, maxToA)]
}
