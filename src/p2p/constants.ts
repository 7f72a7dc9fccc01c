/** Default size cap of one request/response message: big enough for a page of ledger records or a job offer, small enough that a hostile peer cannot make us buffer much. */
export const MAX_MESSAGE_BYTES = 1024 * 1024
/**
 * Most pieces a channel message is handed over in by MessageChannel.parts(): a 2 MiB block in noise
 * frames of up to 64 KiB is 33 or 34; a message a sender cut into more, smaller frames is joined.
 */
export const MAX_MESSAGE_PARTS = 64
/** Default time for one request/response exchange: loopback round trips take ≈ 1 ms; a WAN one tens of ms. */
export const REQUEST_TIMEOUT_MS = 10_000
/** Default cap of one gossip message: offers, heads and receipts are a few KiB. */
export const MAX_GOSSIP_BYTES = 256 * 1024
/** Kademlia protocol id: Mercato runs its own DHT, apart from the IPFS one. */
export const DHT_PROTOCOL = '/mercato/kad/1.0.0'
/** Concurrent inbound streams per protocol per connection. */
export const MAX_INBOUND_STREAMS = 256
/**
 * A channel we close is reset if the other end has not closed its side this long after. Closing
 * ends only our writing; a stranger that never closed its side kept the stream, and with it its
 * connection (busy streams are never trimmed), for as long as it liked (300 of 300 slots, 129 s).
 * As long as a stalled transfer is given (BLOB_STALL_MS): an honest peer may still be storing what
 * we sent last.
 */
export const CHANNEL_CLOSE_GRACE_MS = 10_000
/**
 * Inbound connections one IP address may hold at once (addresses in `p2p.allow` excepted): with
 * only the total cap, one host with 300 throwaway identities took every slot and honest newcomers
 * were refused. Enough for a household or an office of nodes behind one NAT.
 */
export const MAX_INBOUND_CONNECTIONS_PER_IP = 16
export const MAX_OUTBOUND_STREAMS = 256
/** First DHT self-query soon after start so a new node learns the mesh quickly. */
export const INITIAL_QUERY_SELF_MS = 500
/** Redial bootstrap peers and walk the DHT while we have fewer peers than this. */
export const MIN_PEERS = 8
/**
 * Dial peers that discovery (mDNS, identify, the DHT) reports while we have fewer than this, and what
 * a trim leaves (at the default maxPeers; trimTarget for others): room for gossipsub's mesh (D = 6,
 * up to 12) and spares; beyond it, peers come to us.
 */
export const TARGET_PEERS = 16
/**
 * Above this many peers (`p2p.maxPeers`) a node closes its least valued idle connections until
 * TARGET_PEERS remain (trim.ts): what an idle node pays grows with its peers, and without a bound
 * every node of a mesh ends up connected to nearly every other.
 */
export const MAX_PEERS = 24
/**
 * The least `p2p.maxPeers` may be: a node trims down to halfway between MIN_PEERS and maxPeers
 * (trimTarget), so at 16 there are 4 peers of room on either side of the target (a test holds
 * this). Before, the target was TARGET_PEERS or maxPeers, whichever was fewer: at 16 or below it
 * met the bound, and every connection past it was closed at the next trim.
 */
export const MIN_MAX_PEERS = 16
/** A connection younger than this is not trimmed: a newcomer has time to identify, subscribe and be grafted. */
export const TRIM_GRACE_MS = 30_000
/** How often a node checks whether it holds more than MAX_PEERS peers. */
export const TRIM_INTERVAL_MS = 10_000
/** Discovery dials in flight at once: a LAN neighbour announcing many (bogus) peers cannot make us open many sockets. */
export const MAX_DISCOVERY_DIALS = 4
/** Peers discovered while those dials are in flight, kept to be dialled next (the newest kept). */
export const MAX_PENDING_DISCOVERIES = 64
/** A discovered peer whose dial failed is not dialled again before this (mDNS re-announces every 10 s). */
export const FAILED_PEER_RETRY_MS = 60_000
/** Addresses tried per discovered peer, one after another (a peer announcing hundreds costs us a few dials). */
export const MAX_ADDRS_PER_PEER = 8
/** Failed discovered peers remembered (oldest forgotten first): bounds the memory a flood of announcements costs. */
export const MAX_FAILED_PEERS = 1024
/** First wait before redialling a bootstrap peer that did not answer (it may be starting a second later than us). */
export const BOOTSTRAP_INITIAL_BACKOFF_MS = 1_000
/** Time allowed for one keeper dial (bootstrap or discovered peer): a loopback dial takes ms, a WAN one well under a second; a hung dial must not block the next redial for long. */
export const DIAL_TIMEOUT_MS = 10_000
/** Longest wait between redials of a bootstrap peer while we are below MIN_PEERS: an absent bootstrap costs one dial a minute. */
export const BOOTSTRAP_MAX_BACKOFF_MS = 60_000
/** A new connection while below MIN_PEERS brings the next DHT walk forward to this soon (identify has run by then)... */
export const WALK_AFTER_CONNECT_MS = 200
/** ...but walks begin at least this far apart: a node gaining peers one by one does not walk for each. */
export const WALK_MIN_GAP_MS = 1_000
/**
 * Walks after a new connection while below MIN_PEERS, WALK_MIN_GAP_MS apart, whatever they meet: the
 * peer we just reached may learn of the rest of the mesh a moment later (nodes that start together
 * reach their bootstrap peer together, before its routing table holds the others). Without them, a
 * walk that came too early waited DISCOVERY_INTERVAL_MS for the next: in a 10-node devnet the nodes
 * sat with one peer for about 2 s after reaching node 0.
 */
export const QUICK_WALKS_AFTER_CONNECT = 3
/** How often the discovery loop looks for more peers when below MIN_PEERS. */
export const DISCOVERY_INTERVAL_MS = 2_000
/** The longest wait between walks that keep meeting nobody new. */
export const DISCOVERY_MAX_INTERVAL_MS = 60_000
/**
 * How often each connection is pinged (a yamux PING frame each way, yamux.ts). What the pings are
 * for, finding a connection that died without a FIN (a partition), takes up to this plus
 * CONNECTION_PING_TIMEOUT_MS; a job in flight does not wait for it (the award channel has its own
 * heartbeats). libp2p's connection monitor, a new ping stream per connection every 10 s by default,
 * is off: at 30 s its streams were still about a third of an idle node's CPU with 39 peers.
 */
export const CONNECTION_PING_INTERVAL_MS = 30_000
/** A ping not answered this long after it was sent drops its connection. */
export const CONNECTION_PING_TIMEOUT_MS = 10_000
/** Response frame status bytes */
export const FRAME_OK = 0
export const FRAME_ERROR = 1
/**
 * Relay slots a node that is not publicly reachable holds: two, so that losing
 * one relay leaves the node reachable through the other while it finds another.
 */
export const RELAY_RESERVATIONS = 2
/** Reservations a relay server accepts (libp2p's default is 15; a market relay serves more home nodes, each costs one idle connection). */
export const RELAY_MAX_RESERVATIONS = 128
/**
 * Longest life of one relayed connection. libp2p's default (2 min) is shorter
 * than a job may run (executor.maxTimeoutMs 60 s, plus queueing and the result),
 * and a relayed connection that ends mid-job makes the requester fail over.
 * 30 min lets one connection carry a run of jobs; after that the next
 * request dials a new circuit.
 */
export const RELAY_DURATION_LIMIT_MS = 30 * 60_000
/**
 * Bytes one relayed connection may carry in each direction. libp2p's default
 * (128 KiB) is less than one module: modules are up to 16 MiB (a blob), a
 * result up to 1 MiB, so 64 MiB carries a few jobs with large modules.
 * This is the relay operator's cost per connection; it is bounded.
 */
export const RELAY_DATA_LIMIT_BYTES = 64n * 1024n * 1024n
/** AutoNAT waits this long after start before asking peers to dial us back (libp2p's default is 5 s). */
export const AUTONAT_STARTUP_DELAY_MS = 2_000
/** Pause after a random-walk turn that found nobody (see nat.ts pacedRandomWalk); doubles up to the max. */
export const RANDOM_WALK_PAUSE_MS = 1_000
export const RANDOM_WALK_MAX_PAUSE_MS = 60_000
/** Peers one random walk remembers having met, to tell a turn that met someone new from one that did not. */
export const RANDOM_WALK_MAX_MET = 4096
/**
 * A peer's addresses are asked of the DHT afresh (bypassing the peer store) at most this often, when
 * dialling what the peer store holds failed: a node behind NAT is first known by its private
 * addresses and only later by its relay address. One DHT query per peer per 10 s bounds the cost.
 */
export const ADDRESS_REFRESH_MS = 10_000
/** Peers whose last refresh time is remembered (oldest forgotten first). */
export const MAX_ADDRESS_REFRESHES = 1024
/** After our addresses change (a UPnP mapping, a new observed address), wait this long for more changes before asking AutoNAT peers to check them. */
export const REVERIFY_DELAY_MS = 1_000
/**
 * How often a node with UPnP on looks at its unverified public addresses. libp2p adds a UPnP
 * mapping to the address manager without a self:peer:update event, so AutoNAT was asked about it
 * only when some peer next connected (75 s later in the NAT test); a change found here is checked
 * at once. A look is a walk over a handful of addresses.
 */
export const ADDRESS_WATCH_MS = 2_000
/** Peers asked to dial an unverified address back after an address change: AutoNAT v2 needs one success for a mapped address, a few for an observed one. */
export const REVERIFY_PEERS = 4
/**
 * Resolution of the event-loop lag histogram (`nodejs_eventloop_lag_*` in /metrics). prom-client's
 * default, 10 ms, is a timer that wakes an idle node 100 times a second: measured on a lone idle
 * node, 218 wakeups and 7–8 ms of CPU a second, against 44 and 3 ms at 100 ms. A stall shorter
 * than this is seen only when it overlaps a sample, so short stalls are undercounted; the figure is
 * for operators, not control.
 */
export const EVENT_LOOP_LAG_RESOLUTION_MS = 100
/**
 * A peer whose gossip score falls below the graylist threshold (scoring.ts: ten or so rejected
 * messages in a short while) is disconnected and refused, dialling or dialled, for this long.
 * Graylisting alone drops what it gossips only after each message has been decrypted and parsed:
 * a peer resending captured stale offers at 17 MB/s kept a provider at 311 ms of CPU a second
 * after its score had cut it off.
 */
export const GRAYLIST_BAN_MS = 10 * 60_000
/** How long after a rejected message its forwarder's score is looked at: gossipsub caches scores between its heartbeats (1 s). */
export const BAN_CHECK_DELAY_MS = 1_500
/** Peers refused at once (the oldest ban is forgotten first). */
export const MAX_BANNED_PEERS = 4096
