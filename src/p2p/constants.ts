/** Default size cap of one request/response message: big enough for a page of ledger records or a job offer, small enough that a hostile peer cannot make us buffer much. */
export const MAX_MESSAGE_BYTES = 1024 * 1024
/** Default time for one request/response exchange: loopback round trips take ≈ 1 ms; a WAN one tens of ms. */
export const REQUEST_TIMEOUT_MS = 10_000
/** Default cap of one gossip message: offers, heads and receipts are a few KiB. */
export const MAX_GOSSIP_BYTES = 256 * 1024
/** Kademlia protocol id: Mercato runs its own DHT, apart from the IPFS one. */
export const DHT_PROTOCOL = '/mercato/kad/1.0.0'
/** Concurrent inbound streams per protocol per connection. */
export const MAX_INBOUND_STREAMS = 256
export const MAX_OUTBOUND_STREAMS = 256
/** First DHT self-query soon after start so a new node learns the mesh quickly. */
export const INITIAL_QUERY_SELF_MS = 500
/** Dial new peers found by the DHT while we have fewer connections than this. */
export const MIN_PEERS = 8
/** How often the discovery loop looks for more peers when below MIN_PEERS. */
export const DISCOVERY_INTERVAL_MS = 2_000
/** The longest wait between walks that keep meeting nobody new. */
export const DISCOVERY_MAX_INTERVAL_MS = 60_000
/** Response frame status bytes */
export const FRAME_OK = 0
export const FRAME_ERROR = 1
