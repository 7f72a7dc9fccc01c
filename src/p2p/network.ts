/**
 * The `Network` interface: everything the rest of Mercato may know about the
 * peer-to-peer layer. Only `src/p2p` imports libp2p; the ledger, the auction
 * and the gateway talk to this interface (import it with `import type`).
 *
 * Peers are named by PeerId strings; addresses are multiaddr strings.
 * Every message that arrives here has already been size-capped by the layer;
 * schema and signature checks are the caller's job: a topic's decoder, a
 * request or channel handler.
 */

/** Gossip validation outcome: `reject` also lowers the sender's peer score. */
export type ValidationResult = 'accept' | 'ignore' | 'reject'

/** A gossip message as it arrives, before its topic's decoder has looked at it. */
export interface RawTopicMessage {
  topic: string
  data: Uint8Array
  /** the peer that forwarded the message to us (not necessarily its author) */
  from: string
}

/** A gossip message its topic's decoder accepted: `value` is what the decoder produced. */
export interface TopicMessage<T = Uint8Array> extends RawTopicMessage {
  value: T
}

/** What a decoder says about a message: accepted with its decoded value, or ignored / rejected. */
export type TopicVerdict<T> = { result: 'accept', value: T } | { result: 'ignore' | 'reject' }

/**
 * Decodes and checks a gossip message (size, schema, signature) before it is delivered or
 * forwarded. Only an accepted message reaches the handler, with the decoded value: a handler
 * never sees bytes its decoder refused, and never decodes twice. A decoder that throws rejects.
 */
export type TopicDecoder<T> = (msg: RawTopicMessage) => TopicVerdict<T> | Promise<TopicVerdict<T>>
export type TopicHandler<T = Uint8Array> = (msg: TopicMessage<T>) => void

export interface PeerSummary {
  peerId: string
  addresses: string[]
}

export interface RequestContext {
  /** the authenticated (Noise) remote PeerId */
  from: string
  protocol: string
  signal: AbortSignal
  /**
   * Settles (never rejects) once the exchange is over: the response written and the stream
   * closed, or the stream failed or timed out. A handler whose response holds something scarce
   * (a block's bytes, counted against a limit) releases it then: until the reader has taken the
   * response, its bytes are held by the stream.
   */
  ended: Promise<void>
}

/** Answers a request; return the response bytes. Throwing sends an error frame, never crashes the node. */
export type RequestHandler = (request: Uint8Array, ctx: RequestContext) => Uint8Array | Promise<Uint8Array>

export interface HandleOptions {
  /** largest accepted request, bytes (default MAX_MESSAGE_BYTES) */
  maxRequestBytes?: number
  /** time allowed for the whole exchange (default REQUEST_TIMEOUT_MS) */
  timeoutMs?: number
  /** concurrent inbound streams allowed for this protocol */
  maxInboundStreams?: number
}

export interface RequestOptions {
  signal?: AbortSignal
  /** default REQUEST_TIMEOUT_MS */
  timeoutMs?: number
  /** largest accepted response, bytes (default MAX_MESSAGE_BYTES) */
  maxResponseBytes?: number
}

/**
 * A long-lived, length-prefixed, size-capped message channel over one stream
 * (used for awards with heartbeats). Iterate to read; iteration ends when the
 * remote closes; it throws if the stream is reset or the connection drops.
 */
export interface MessageChannel extends AsyncIterable<Uint8Array> {
  readonly remotePeer: string
  readonly protocol: string
  /**
   * The channel rides a relayed connection: it can die with the relay while the peer lives on
   * (reachable through another relay). A direct channel that dies usually means the peer did.
   */
  readonly relayed?: boolean
  send (data: Uint8Array): Promise<void>
  /**
   * Several messages in one write: the muxer sends them as one frame where the window allows,
   * instead of a frame (and a window update back) per message. Same caps as `send`. A message
   * given as an array is one message made of those parts, sent without joining them first (a
   * frame's header before a block's bytes, without copying the block).
   */
  sendMany (messages: Array<Uint8Array | Uint8Array[]>): Promise<void>
  /**
   * The messages as the pieces they arrived in (a large message spans several transport frames),
   * not joined into one array: for a reader that hashes, writes or forwards them piece by piece.
   * A message in more than MAX_MESSAGE_PARTS pieces (a sender that cut it into tiny frames) comes
   * joined. Read the channel either this way or as an AsyncIterable of whole messages, not both.
   */
  parts (): AsyncIterable<Uint8Array[]>
  /** graceful close (flushes) */
  close (): Promise<void>
  /** immediate reset */
  abort (err?: Error): void
}

export type ChannelHandler = (channel: MessageChannel) => void | Promise<void>

export interface ChannelOptions {
  /** largest message this end reads, bytes (default MAX_MESSAGE_BYTES) */
  maxMessageBytes?: number
  /**
   * most bytes received and not read yet that this end holds before it resets the channel
   * (default max(4 MiB, maxMessageBytes)): what a remote sending faster than we read can cost us
   */
  maxBufferBytes?: number
  maxInboundStreams?: number
}

export interface DialOptions {
  signal?: AbortSignal
  /** dial only public IP addresses (default false) */
  publicOnly?: boolean
  /**
   * addresses a stranger named for the target (an offer's `addrs`): only relay circuits to the
   * target through a relay we are connected to now are dialled, rebuilt on our connection to that
   * relay, never the host and port the hint names (multiaddr.ts circuitsVia); with `publicOnly`
   * beside the public addresses we know, without it when those fail
   */
  hints?: readonly string[]
}

export interface NetworkEvents {
  'peer:connect': string
  'peer:disconnect': string
}

/**
 * Messages received from other peers: gossip messages handed to a topic's decoder (before it
 * judges them; duplicates gossipsub drops by id are not counted), requests read, channel
 * messages read. Summed over every node of a mesh, each transmission is counted once.
 */
export interface NetworkTraffic {
  gossip: number
  requests: number
  frames: number
  /** gossip messages by topic (only topics this node subscribes to are ever counted) */
  gossipByTopic?: Record<string, number>
}

export interface Network {
  readonly peerId: string
  /** our listen addresses, each ending in /p2p/<peerId> */
  addresses (): string[]
  /** connected peers */
  peers (): PeerSummary[]
  isConnected (peerId: string): boolean
  /**
   * Dial a multiaddr string or a PeerId (addresses from the peer store: what the peer said of
   * itself over identify, or the DHT). `publicOnly`: dial only public IP addresses (no
   * loopback, private, link-local, unique-local or DNS names), for dials a stranger asked for.
   */
  dial (target: string, opts?: DialOptions): Promise<string>
  hangUp (peerId: string): Promise<void>

  /** subscribe to a topic and take every message as it is (`value` is the bytes) */
  subscribe (topic: string, handler: TopicHandler<Uint8Array>): void
  /** subscribe to a topic; the decoder runs before the handler and before forwarding, and only what it accepts is handled */
  subscribe<T> (topic: string, decode: TopicDecoder<T>, handler: TopicHandler<T>): void
  unsubscribe (topic: string): void
  /** publish; resolves with the number of peers it was sent to (0 is not an error) */
  publish (topic: string, data: Uint8Array): Promise<number>
  /** peers we know to be subscribed to a topic */
  topicPeers (topic: string): string[]

  handle (protocol: string, handler: RequestHandler, opts?: HandleOptions): Promise<void>
  unhandle (protocol: string): Promise<void>
  request (peer: string, protocol: string, data: Uint8Array, opts?: RequestOptions): Promise<Uint8Array>

  handleChannel (protocol: string, handler: ChannelHandler, opts?: ChannelOptions): Promise<void>
  openChannel (peer: string, protocol: string, opts?: ChannelOptions & { signal?: AbortSignal }): Promise<MessageChannel>

  /** announce in the DHT that we provide `key` (e.g. `mercato:engine:wasm`) */
  provide (key: string, opts?: { signal?: AbortSignal }): Promise<void>
  /** PeerIds the DHT names as providers of `key` */
  findProviders (key: string, opts?: { signal?: AbortSignal, limit?: number }): Promise<string[]>

  /** messages received from peers since start, by kind (what the mesh's work is counted in) */
  traffic? (): NetworkTraffic

  addEventListener<K extends keyof NetworkEvents> (type: K, listener: (evt: CustomEvent<NetworkEvents[K]>) => void): void
  removeEventListener<K extends keyof NetworkEvents> (type: K, listener: (evt: CustomEvent<NetworkEvents[K]>) => void): void
}
