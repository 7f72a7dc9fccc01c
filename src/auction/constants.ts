import { MAX_OUTPUT_FILE_BYTES, MAX_OUTPUT_FILES, MAX_OUTPUT_TOTAL_BYTES } from '../executor/constants.js'

/** Gossip topic for signed job offers. */
export const JOBS_TOPIC = 'mercato/jobs/1'
/** Gossip topic for signed receipts (the public price and performance record). */
export const RECEIPTS_TOPIC = 'mercato/receipts/1'
/** Gossip topic for providers' signed capacity adverts (the requesters' provider book). */
export const ADVERTS_TOPIC = 'mercato/adverts/1'
/** Sealed bids and declines, provider → requester (request/response). */
export const BID_PROTOCOL = '/mercato/bid/1.0.0'
/** Bids and declines as messages on one long-lived stream per provider → requester pair. */
export const BID_STREAM_PROTOCOL = '/mercato/bids/1.0.0'
/** Offers sent directly to providers found in the DHT beyond our gossip mesh. */
export const OFFER_PROTOCOL = '/mercato/offer/1.0.0'
/**
 * Invitations as messages on one long-lived stream per requester → provider pair: a new stream
 * costs a protocol negotiation round trip (libp2p 3 negotiates every stream fully), which was most
 * of a job's time before the first remote bid.
 */
export const OFFER_STREAM_PROTOCOL = '/mercato/offers/1.0.0'
/** Award → accept, heartbeats, result: one long-lived channel per award. */
export const AWARD_PROTOCOL = '/mercato/award/1.0.0'
/** Content-addressed module and input bytes. */
/** Blocks of blobs, one request per block (2.0.0: 1.0.0 sent a whole blob in one frame). */
export const BLOB_PROTOCOL = '/mercato/blob/2.0.0'
/**
 * Blocks of blobs, many per stream (2.1.0): batches of CIDs in, one frame per block out, one
 * stream per peer for a whole fetch. Nodes serve 2.0.0 too and fetch with it from peers that do
 * not speak 2.1.0.
 */
export const BLOB_STREAM_PROTOCOL = '/mercato/blob/2.1.0'
/** A provider pushing its output files' blocks to the requester while it imports them (see OUTPUT_PUSH_MIN_BYTES). */
export const OUTPUT_PUSH_PROTOCOL = '/mercato/output-push/1.0.0'
/** A restarted requester asks a provider about a job it awarded. */
export const STATUS_PROTOCOL = '/mercato/status/1.0.0'
/** DHT key prefix under which providers advertise an engine. */
export const ENGINE_KEY_PREFIX = 'mercato:engine:'
/** DHT key prefix under which nodes announce that they hold a blob. */
export const BLOB_KEY_PREFIX = 'mercato:blob:'

export const DOMAIN = {
  offer: 'mercato/v1/offer',
  bid: 'mercato/v1/bid',
  decline: 'mercato/v1/decline',
  award: 'mercato/v1/award',
  accept: 'mercato/v1/accept',
  refuse: 'mercato/v1/refuse',
  result: 'mercato/v1/result',
  receipt: 'mercato/v1/receipt',
  advert: 'mercato/v1/advert'
} as const

/** Largest signed offer: the spec without large bytes (modules travel as blobs). */
export const MAX_OFFER_BYTES = 128 * 1024
/** A bid or decline is a few hundred bytes. */
export const MAX_BID_BYTES = 8 * 1024
/** Largest message on an award channel: a result with capped stdout/stderr. */
export const MAX_CHANNEL_BYTES = 4 * 1024 * 1024
/**
 * Live logs (stdout/stderr of a running job, streamed over the award channel; never signed, never
 * in the ledger: the final stdout/stderr are in the signed result). The provider sends at most
 * LIVE_LOG_BYTES_PER_SEC (one second of burst) and LIVE_LOG_MAX_BYTES per job (config
 * `provider.liveLogBytesPerSec`, `provider.liveLogMaxBytes`): enough to watch a job's progress,
 * small next to a result; a job's whole output is in its result anyway.
 */
export const LIVE_LOG_BYTES_PER_SEC = 32 * 1024
export const LIVE_LOG_MAX_BYTES = 256 * 1024
/**
 * What a requester takes from one attempt (config `auction.liveLogBytesPerSec`,
 * `auction.liveLogMaxBytes`): twice the provider's defaults, so an honest provider is never cut,
 * and a provider that floods costs us at most this (the rest is dropped and counted).
 */
export const LIVE_LOG_ACCEPT_BYTES_PER_SEC = 64 * 1024
export const LIVE_LOG_ACCEPT_MAX_BYTES = 1024 * 1024
/** Log frames a requester takes per second from one attempt (a flood of tiny frames costs events, not bytes); the provider sends ≤ 10. */
export const LIVE_LOG_ACCEPT_FRAMES_PER_SEC = 30
/** Largest log frame's data: the provider splits larger chunks; a larger frame is refused. */
export const LIVE_LOG_FRAME_BYTES = 16 * 1024
/** The provider sends what a job wrote at most this often (batching lines into a few frames a second). */
export const LIVE_LOG_FLUSH_MS = 200
/** Largest blob (wasm module) served or fetched. */
export const MAX_BLOB_BYTES = 16 * 1024 * 1024
/**
 * Largest block fetched (besides a whole-blob raw root, see blobs.ts): the importer writes 256 KiB
 * leaves and nodes of a few KiB; 2 MiB is what IPFS' bitswap accepts, so DAGs built by other IPFS
 * tools (1 MiB chunks) fit too. Below libp2p's 4 MiB stream buffer.
 */
export const MAX_BLOCK_BYTES = 2 * 1024 * 1024
/** Default cap of an upload (`POST /v1/blobs`, config `blobs.maxUploadBytes`): a data set, not a disk. */
export const MAX_UPLOAD_BYTES = 256 * 1024 * 1024
/** Blocks a fetch asks for at once: enough to hide a round trip per 256 KiB block, few enough to bound memory (8 × 2 MiB). */
export const BLOB_FETCH_CONCURRENCY = 8
/**
 * Bytes a fetch asks one peer for ahead of what it has stored (`/mercato/blob/2.1.0`): 16 leaves
 * of 256 KiB, enough to keep a loopback or LAN stream full; the fetcher holds no more than this
 * (and one block) unread.
 */
export const BLOB_READ_AHEAD_BYTES = 4 * 1024 * 1024
/** A fetcher drops a peer that sends no block for this long while blocks are asked of it (a 2.0.0 request's own timeout). */
export const BLOB_STALL_MS = 10_000
/**
 * Blocks a blob stream's server reads from disk and writes at once (a stream holds this many at
 * most): one write, so one muxer frame (and one window update back) for several blocks.
 */
export const BLOB_SERVE_READ_AHEAD = 4
/** ... and at most this many bytes of them (blocks of 256 KiB: four). */
export const BLOB_SERVE_BATCH_BYTES = 1024 * 1024
/** A blob stream with no request to answer, or whose reader takes nothing, for this long is closed (the server's side). */
export const BLOB_STREAM_IDLE_MS = 30_000
/** Blob streams a node serves at once, all peers together (each holds one block in memory); more are refused `busy`. */
export const MAX_BLOB_STREAMS = 32
/** Blob streams one connection may have open to us at once (a fetch uses one). */
export const BLOB_STREAMS_PER_CONNECTION = 2
/**
 * `/mercato/blob/2.0.0` requests a node serves at once, all peers together: from the read of the
 * block to the reader taking it (a reader that takes nothing holds it until the request's timeout,
 * 10 s). More are refused `busy` before any block is read, and the fetcher asks again later.
 */
export const MAX_BLOB_REQUESTS = 32
/**
 * ... and at most this many bytes of blocks among them (32 leaves of 256 KiB are 8 MiB); a
 * whole-blob raw block of up to MAX_BLOB_BYTES is served when nothing else is.
 */
export const MAX_BLOB_REQUEST_BYTES_SERVED = MAX_BLOB_BYTES
/** 2.0.0 requests one connection may have open to us at once: two fetches of BLOB_FETCH_CONCURRENCY each. */
export const BLOB_REQUESTS_PER_CONNECTION = 2 * BLOB_FETCH_CONCURRENCY
/** A fetcher refused `busy` by a 2.0.0 server asks again after this long, for up to BLOB_STALL_MS, before it drops the peer. */
export const BLOB_BUSY_RETRY_MS = 250
/** Blocks a read (`cat`, `get`, `GET /v1/blobs/:cid`) loads ahead of its reader: 1 MiB of 256 KiB leaves keeps the disk busy without buffering the file. */
export const BLOB_READ_AHEAD_BLOCKS = 4
/** Deepest DAG walked: 174-link balanced trees of 256 KiB leaves need depth 4 for 200 GiB. */
export const MAX_DAG_DEPTH = 8
/**
 * Output files a result may name, each file's bytes, and their bytes together: what a requester
 * will fetch for one result. The same as the executor's default caps (a provider's own caps may be
 * lower, never need to be higher). A file is a UnixFS blob, fetched block by block into the blob
 * store; results from before 0.2 name raw blocks of at most MAX_BLOB_BYTES, still readable.
 */
export const MAX_RESULT_OUTPUTS = MAX_OUTPUT_FILES
export const MAX_RESULT_OUTPUT_FILE_BYTES = MAX_OUTPUT_FILE_BYTES
export const MAX_RESULT_OUTPUT_BYTES = MAX_OUTPUT_TOTAL_BYTES
/**
 * How long a requester gives a provider to serve all of a result's output files: a base plus time
 * for the bytes at a slow link's pace. Past it they count as not served. This is what a provider
 * that serves slowly on purpose can hold a job for (at the caps: 10 s + 64 s).
 */
export const OUTPUT_FETCH_BASE_MS = 10_000
export const OUTPUT_FETCH_MIN_BYTES_PER_SEC = 1024 * 1024
/**
 * How long a provider gives one blob input to arrive (from the requester or any holder): a base
 * plus time for its bytes at a slow home uplink's pace; past it the job fails `input-unreachable`.
 * Without it a holder sending one block every few seconds held a job slot for hours (a 256 MiB
 * input at 28 KB/s: 2.6 h); now at most 10 s + 512 s for one of 256 MiB.
 */
export const INPUT_FETCH_BASE_MS = 10_000
export const INPUT_FETCH_MIN_BYTES_PER_SEC = 512 * 1024
/** How long a transfer of `bytes` may take: `baseMs` plus the bytes at `bytesPerSec` (the output and input budgets above). PURE. */
export function transferBudgetMs (bytes: number, baseMs: number, bytesPerSec: number): number {
  return baseMs + Math.ceil(bytes / bytesPerSec * 1000)
}
/**
 * `/mercato/output-push/1.0.0` (provider/push.ts, requester/push.ts): a provider sends the 256 KiB
 * leaves of its output files to the requester while it imports them, so the transfer overlaps the
 * import and the requester's fetch after the result finds the leaves held. Files under
 * OUTPUT_PUSH_MIN_BYTES are left to the fetch (a round trip or two; a stream of their own would
 * cost more than it saves).
 */
export const OUTPUT_PUSH_MIN_BYTES = 1024 * 1024
/** Bytes a pushing provider sends ahead of what the requester said it stored: the fetch's read-ahead, below the requester's buffer. */
export const OUTPUT_PUSH_WINDOW_BYTES = BLOB_READ_AHEAD_BYTES
/** The requester says what it stored after this many more bytes (a quarter of the window: ~16 small messages per 4 MiB). */
export const OUTPUT_PUSH_ACK_BYTES = 1024 * 1024
/** Either end drops a push that makes no progress for this long (no block, or no room in the window). */
export const OUTPUT_PUSH_STALL_MS = BLOB_STALL_MS
/**
 * Pushes a requester receives at once, all jobs together (each holds at most a window unread); more
 * are refused `busy`. A push takes one only once its hello names a job with an attempt in flight at
 * its sender: a stranger's stream never holds one.
 */
export const MAX_OUTPUT_PUSHES = 8
/** A push stream whose first message (the hello, sent with the stream) has not come in this long is reset. */
export const OUTPUT_PUSH_HELLO_MS = 2_000
/**
 * Input files (job spec `inputs`): at most MAX_JOB_INPUTS of them (the executor's figure), each URL
 * at most MAX_INPUT_URL_CHARS, and the paths and URLs together at most MAX_INPUTS_SPEC_CHARS, so
 * that a job's inputs, its inline source and the rest of its offer fit in MAX_OFFER_BYTES.
 */
export const MAX_INPUT_URL_CHARS = 2048
/** Largest input file a job spec may name by CID (providers' own limits, `provider.inputs`, are lower: 256 MiB by default). */
export const MAX_INPUT_BLOB_BYTES = 2 ** 32
export const MAX_INPUTS_SPEC_CHARS = 32 * 1024
/** Provider defaults for input files (config `provider.inputs`): per file, all of a job's together, how many. */
export const INPUT_MAX_FILE_BYTES = 256 * 1024 * 1024
export const INPUT_MAX_TOTAL_BYTES = 1024 * 1024 * 1024
/** How long a provider gives one URL input to arrive in full (config `provider.inputs.urlTimeoutMs`). */
export const INPUT_URL_TIMEOUT_MS = 120_000
/** Redirects a provider follows for one URL input (each to http or https only). */
export const INPUT_URL_MAX_REDIRECTS = 5
/** Largest inline JS source or stdin carried in an offer. */
export const MAX_INLINE_BYTES = 64 * 1024
/** Clock skew we tolerate on signed timestamps. */
export const MAX_CLOCK_SKEW_MS = 30_000
/** A bid stays valid this long past the job's deadline window, so the runner-up can still be awarded. */
export const BID_TTL_MS = 10 * 60_000
/** Offers older than this are refused as replays. */
export const OFFER_TTL_MS = 10 * 60_000
/** Cap on extra runs when replicas disagree. */
export const MAX_EXTRA_RUNS = 2
/** Backoff between failover attempts (ms), doubled per attempt. */
export const FAILOVER_BACKOFF_MS = 25
/** Default job limits when the spec gives none. */
export const DEFAULT_LIMITS = { timeoutMs: 10_000, memoryMb: 64, outputBytes: 64 * 1024 }
/**
 * Finished jobs a requester keeps in memory, with their events and results (config
 * `auction.finishedJobsInMemory`); unfinished jobs are always kept. The log keeps every job: an
 * older one is read back from it by id. A thousand covers the job list and the dashboard's recent
 * jobs; 10,000 (0.1.0) held hundreds of MiB on a long-running node.
 */
export const FINISHED_JOBS_IN_MEMORY = 1000
/**
 * Approximate bytes the finished jobs in memory may hold (config `auction.finishedJobBytesInMemory`):
 * results can be large (a record holds up to 768 KiB), so a count alone does not bound memory.
 * 32 MiB is about a quarter of a node's resident size at rest.
 */
export const FINISHED_JOB_BYTES_IN_MEMORY = 32 * 1024 * 1024
/**
 * What a finished job is counted as holding besides its results, its offer and its items (see
 * requester/memory.ts): the job object, its maps and strings. Measured: a trivial finished job
 * (one bid, one attempt, ten events) holds 7–8 KiB of heap (a requester with 1,000 such jobs held
 * vs none, heap after GC); with these figures it is counted as 8.5 KiB.
 */
export const JOB_BASE_BYTES = 4096
/** Counted per event, bid, decline and attempt a finished job holds (a few hundred bytes each in the heap). */
export const JOB_ITEM_BYTES = 384
/** After the bid window, how long we still wait for a first bid before declaring no-bids (cold providers can take longer than a tight window). */
export const NO_BID_GRACE_MS = 1000
/** After a requester restart, how long a provider may stay unreachable (while the mesh re-forms) before its award fails over. */
export const RECOVERY_GRACE_MS = 10_000
/** Most messages coalesced into one gossip message or bid frame. */
export const MAX_BATCH_ITEMS = 64
/** Largest coalesced gossip message (the gossip layer caps messages at 256 KiB). */
export const MAX_BATCH_BYTES = 192 * 1024
/**
 * How long receipts are gathered before they are gossiped together. A receipt reaches every node
 * (it is the public price record), so each gossip message costs the whole mesh: one a second
 * carries every job of that second. The provider gets its own receipt on the award channel at once;
 * only third parties' view of standings waits.
 */
export const RECEIPT_GOSSIP_DELAY_MS = 1000
/**
 * Up to this many nodes (the providers in the requester's book, and itself), receipts are
 * gathered for RECEIPT_GOSSIP_DELAY_MS; past it, for proportionally longer, up to
 * RECEIPT_GOSSIP_BOOK_MAX_DELAY_MS: each batch reaches every node, so with requesters a share of the
 * mesh, what receipts cost each node stays flat as the mesh grows instead of growing with it.
 */
export const RECEIPT_MESH_FREE = 15
export const RECEIPT_GOSSIP_BOOK_MAX_DELAY_MS = 10_000
/**
 * And at least (the other requesters heard publishing receipts lately) / this seconds: the
 * requesters of a mesh then send about this many receipt batches a second together, twice it at
 * most (two requesters), however many share the topic, up to RECEIPT_GOSSIP_MAX_DELAY_MS × this
 * of them. The count is measured, not guessed from the book: the share of requesters in a mesh is
 * anyone's choice.
 */
export const RECEIPT_BATCHES_PER_SEC = 0.5
/** Longest a receipt waits for its batch; its provider has it on the award channel at once. */
export const RECEIPT_GOSSIP_MAX_DELAY_MS = 60_000
/** A requester heard publishing receipts counts as sharing the topic this long after (and at most so many are remembered). */
export const RECEIPT_PUBLISHERS_WINDOW_MS = 5 * 60_000
export const MAX_RECEIPT_PUBLISHERS = 1024
/** While other auctions are open, how long a new offer waits for company before it is gossiped. */
export const OFFER_BATCH_DELAY_MS = 4
/** Margin on top of a proven provider's estimated start and the job's timeout: fetching the module, queueing, sending the result. */
export const PROVEN_MARGIN_MS = 15_000
/**
 * Margin on top of the job's timeout for a provider that has not proven itself to this requester
 * (its estimated start is not believed either): a hostile newcomer that accepts and never answers
 * holds a job at most timeout + this, once per job (see trust.ts).
 */
export const UNPROVEN_MARGIN_MS = 3_000
/** Penalty (bad marks, decaying) from which a provider without standing gets no probation while others can run the job: one failure, until one half-life has passed. */
export const PROBATION_MAX_PENALTY = 0.5
/**
 * Half-life of a bad mark in the reputation (config `auction.forgiveHalfLifeMs`). Long enough that
 * a provider that fails is passed over for the next jobs (a failure costs the requester up to a job
 * timeout), short enough that a provider that crashed and came back is heard again within the hour.
 */
export const FORGIVE_HALF_LIFE_MS = 10 * 60_000
/**
 * Item ids remembered per batched topic for replay checks. An offer lives at most 10 min; at
 * 100 items/s this remembers a minute of traffic, after which a replayed item is verified once
 * more and then dropped by the provider's own answered-offer check.
 */
export const MAX_SEEN_ITEMS = 8192
/**
 * Offers per second a node forwards and answers per requester key (and the burst). An honest
 * requester here peaks near 90 jobs/s (the benchmark); past this a key's offers are ignored
 * (not forwarded, not answered), so one key cannot make the mesh verify, sign and store
 * without bound.
 */
export const OFFER_RATE_PER_KEY = 250
export const OFFER_BURST_PER_KEY = 1000
/** Receipts per second per requester key (one per settled job, so the same bound as offers). */
export const RECEIPT_RATE_PER_KEY = 250
export const RECEIPT_BURST_PER_KEY = 1000
/** Keys with a rate bucket (the least recently seen are forgotten first). */
export const MAX_RATE_KEYS = 4096
/**
 * New gossip items (offers, receipts, adverts, all topics together) a node verifies per second
 * for each peer that forwards them, and the burst; charged before the signature check, so a
 * stranger signing with any number of fresh keys costs at most this many signature checks a
 * second per connection. A message past it is ignored, and gossipsub does not take the same
 * message again from another peer, so it is set well above what the mesh carries: four
 * requesters at their full offer rate (OFFER_RATE_PER_KEY) through one neighbour.
 */
export const GOSSIP_VERIFY_PER_SOURCE_PER_SEC = 1000
export const GOSSIP_VERIFY_PER_SOURCE_BURST = 4000
/** Forwarding peers with a verification budget (more than a node's connections: maxConnections 300). */
export const GOSSIP_VERIFY_SOURCES = 1024
/**
 * A gossip batch of nothing but items that expired longer ago than this is rejected (the
 * forwarder's gossip score pays), not ignored: a peer forwards only what it accepted, and this
 * covers twice the clock skew allowed (MAX_CLOCK_SKEW_MS) and late gossip.
 */
export const GOSSIP_STALE_GRACE_MS = 60_000
/** Offers a provider keeps to check awards against (its bids), all requesters together. */
export const MAX_BID_OFFERS = 1000
/**
 * Standalone `bid` records a provider writes for requesters that never paid it: a burst and a
 * refill per second. Its bid is always logged inside the `award` record when it wins; a
 * requester that paid it has every answer logged. Anyone can sign offers, so unproven offers
 * must not cost a log record each.
 */
export const UNPROVEN_BID_RECORDS_BURST = 32
export const UNPROVEN_BID_RECORDS_PER_SEC = 0.1
/**
 * Results a provider sent that no receipt answered, remembered this long (provider/state.ts
 * UnpaidResults). A requester that never paid us and owes MAX_UNPAID_RESULTS_PER_REQUESTER of them
 * gets no bid (declined `requester-flagged`), nor does any requester that never paid while those
 * that never paid owe MAX_UNPAID_RESULTS_UNPROVEN together, nor one that paid before and owes
 * MAX_UNPAID_RESULTS_PAYING: an award costs a provider a run and three log records (award, accept,
 * result), and anyone can sign offers and awards and never pay. An honest requester's receipt
 * follows its result once it has checked it (and fetched its output files), on the award channel
 * or in gossip; one with many jobs in flight owes a few at a time.
 */
export const UNPAID_RESULTS_MEMORY_MS = 10 * 60_000
export const MAX_UNPAID_RESULTS_PER_REQUESTER = 8
export const MAX_UNPAID_RESULTS_UNPROVEN = 16
export const MAX_UNPAID_RESULTS_PAYING = 64
/** Requesters whose unpaid results are remembered (the least recent forgotten first). */
export const MAX_UNPAID_REQUESTERS = 1024
/**
 * Dials a provider makes to reach requesters it is not connected to, to deliver answers:
 * at most this many at once (all requesters), one at a time per requester, and after a
 * failed dial no new one to that requester for ANSWER_DIAL_BACKOFF_MS.
 */
export const MAX_ANSWER_DIALS = 4
export const ANSWER_DIAL_BACKOFF_MS = 30_000
/** How long one answer dial may take. */
export const ANSWER_DIAL_TIMEOUT_MS = 3000
/**
 * Relay circuits of an offer kept as hints for the answer's dial (see provider/bidding.ts reach),
 * per requester, and for how many requesters (the latest): at most 4 × 512 B × 256 ≈ 512 KiB.
 */
export const MAX_ANSWER_HINTS = 4
export const MAX_HINTED_REQUESTERS = 256
/**
 * A bid stream with no frame for this long is closed by the requester (the provider opens a
 * new one with its next answer); an idle stream otherwise holds a stream slot forever.
 */
export const BID_STREAM_IDLE_MS = 30_000
/**
 * Answers refused from one peer (late, unknown job, repeated, …; its bid streams and requests
 * together) a requester takes per second, and the burst; past it the peer's streams are closed
 * unread and its requests refused (an honest provider opens a new stream with its next answer).
 * An honest provider's late answers come at most one per job it was invited to (a few hundred a
 * second at the most a requester runs); a stranger repeating one signed decline for no job of ours
 * in 64-item frames made a requester process 22,000–28,000 answers a second, more than a core,
 * from 107 ms/s of its own.
 */
export const BID_STREAM_REFUSALS_PER_SEC = 256
export const BID_STREAM_REFUSALS_BURST = 1024
/** Peers whose refused answers are counted (the least recently refused forgotten first). */
export const MAX_REFUSING_PEERS = 1024
/** The provider closes an offer stream with no frame for this long (the requester opens a new one). */
export const OFFER_STREAM_IDLE_MS = 30_000
/** Offer streams a requester keeps open at most (the oldest closed first). */
export const MAX_OFFER_STREAMS = 1024
/** A provider that does not take offer streams gets its invitations by request/response this long before we try again. */
export const OFFER_STREAM_RETRY_MS = 10 * 60_000

// ---------------------------------------------------------------- the provider book (adverts, invitations)

/**
 * A provider re-sends its advert this often; an advert expires after ADVERT_TTL_MS, so a provider
 * that left drops out of every book within three refreshes. The cost is one small gossip message
 * per provider per minute, whatever the job rate.
 */
export const ADVERT_REFRESH_MS = 60_000
/**
 * Each refresh waits ADVERT_REFRESH_MS × (1 ± this), drawn anew: providers started together (a mesh
 * started at once, a fleet restarted by its operator) drift apart instead of refreshing in the same
 * second forever, each refresh a burst of every provider's advert to every node. Two late refreshes
 * (2 × 72 s) still fall inside ADVERT_TTL_MS.
 */
export const ADVERT_REFRESH_JITTER = 0.2
export const ADVERT_TTL_MS = 3 * ADVERT_REFRESH_MS
/** Right after start, when the mesh is still forming, the advert is sent again at these delays. */
export const ADVERT_START_DELAYS_MS = [1_000, 3_000, 10_000, 30_000]
/**
 * A provider that hears an open call (an offer gossiped to everyone: some requester's book is
 * thin) re-sends its advert, at most this often.
 */
export const ADVERT_ECHO_MS = 10_000
/** Addresses carried in an advert. */
export const MAX_ADVERT_ADDRS = 8
/** Largest advert (or batch of them) accepted from the topic. */
export const MAX_ADVERT_BYTES = 4 * 1024
/** Adverts per second per provider key that a node forwards (and the burst): a few per refresh. */
export const ADVERT_RATE_PER_KEY = 0.2
export const ADVERT_BURST_PER_KEY = 5
/** Providers a book holds; past it the entry heard from least recently is dropped. ≈ 1 KiB each. */
export const MAX_BOOK_ENTRIES = 5_000
/**
 * Providers whose bids a requester remembers (last ask, engines) for its provider list, the most
 * recent kept: a finished job's bids no longer have to be scanned to list them.
 */
export const MAX_KNOWN_BIDDERS = 5_000
/**
 * Invitations per job, on top of the bids the job needs (max(minBids, replicas)): the cheapest
 * proven providers of the book. A couple more than needed keeps the auction competitive when one
 * is busy or gone.
 */
export const INVITE_EXTRA = 2
/**
 * Providers without standing with us invited per job: the cheapest of them. A newcomer that asks
 * less than everyone is invited to its first job at once; a swarm of fresh keys gets at most
 * this many seats, never the proven providers' seats.
 */
export const INVITE_UNPROVEN = 2
/** Random capable providers invited per job besides the cheapest (exploration: a stale book heals). */
export const INVITE_EXPLORE = 1
/**
 * An invited round whose window ended while an invitee that advertised less than the best bid so
 * far is still silent keeps waiting for it, a window at a time, up to this long after the offer
 * went out (price discovery: the cheapest of the handful invited, not the fastest). A dead or
 * overloaded invitee costs each job at most this, and three silences in a row bench it.
 * Measured: on a 2-core machine running 10 nodes, an invitee's answer takes up to ~300 ms.
 */
export const INVITE_CHEAPER_WAIT_MS = 1_000
/**
 * Rounds a requester extends for a cheaper invitee it never heard bid and does not trust (a
 * newcomer slower than the window, or a silent throwaway key: an advert is free), over all its
 * jobs: a bucket of INVITE_UNHEARD_WAIT_BURST, refilled this many a second. Silent keys advertising
 * 0 held every job for INVITE_CHEAPER_WAIT_MS; now at most one round in ten seconds once the burst
 * is spent. A newcomer's late bid ranks it, and it is waited for like any bidder from then on.
 */
export const INVITE_UNHEARD_WAITS_PER_SEC = 0.1
export const INVITE_UNHEARD_WAIT_BURST = 5
/** An invitee's answer may arrive this long after its round closed and still count as an answer (slow is not silent). */
export const INVITE_ANSWER_GRACE_MS = 5_000
/** An invited provider that stays silent this many times in a row is benched for BOOK_BENCH_MS. */
export const BOOK_STRIKES_OUT = 3
export const BOOK_BENCH_MS = 10 * 60_000
/**
 * A provider's latest bid ranks it in the book instead of its advertised ask for this long; then the
 * advert counts again (a surge is over, a liar gets one more seat: one wasted seat per 10 minutes).
 */
export const BOOK_OBSERVED_MS = 10 * 60_000
/**
 * A provider that declined with every slot busy is, for this long (about two short jobs), still
 * invited but takes no seat: the next cheapest is asked too (under load the cheapest are full).
 */
export const BOOK_FULL_MS = 2_000

// ---------------------------------------------------------------- the queue (jobs waiting for a provider)

/**
 * How long a job with no acceptable bid waits for one (config `auction.queueTimeoutMs`, and
 * `queueTimeoutMs` per job), counted from submission. Five minutes covers a provider restarting or
 * a busy mesh draining a burst; a user who wants the old fail-fast `no-bids` says 0. A market built
 * without the key (a bare `RequesterConfig`) does not queue.
 */
export const QUEUE_TIMEOUT_MS = 5 * 60_000
/** The longest queue timeout a job may ask for: a queued job is held in memory and re-announced until then. */
export const MAX_QUEUE_TIMEOUT_MS = 24 * 3600_000
/**
 * Jobs a requester holds queued at most (config `auction.maxQueuedJobs`). Each is held in memory
 * (its offer, up to MAX_OFFER_BYTES) and re-announced: past the cap a submission that may queue is
 * refused with `queue-full` (HTTP 429), and a job whose round finds the queue full ends `no-bids`.
 */
export const MAX_QUEUED_JOBS = 1000
/**
 * Re-announcement backoff of a queued job: the first after QUEUE_BACKOFF_MS, doubling up to
 * QUEUE_BACKOFF_MAX_MS, each wait ±QUEUE_JITTER (so jobs queued together spread out). A provider
 * that frees a slot or joins wakes matching jobs at once (its advert), so the backoff only bounds
 * how stale a queued job can get when no advert says anything.
 */
export const QUEUE_BACKOFF_MS = 1_000
export const QUEUE_BACKOFF_MAX_MS = 30_000
export const QUEUE_JITTER = 0.25
/** A queued job is announced at most once per this long, wakes included: a storm of adverts cannot make it spam the mesh. */
export const QUEUE_MIN_INTERVAL_MS = 1_000
/**
 * Announcements from the queue a requester makes per second, all queued jobs together (and the
 * burst): a full queue (1,000 jobs) costs the mesh at most this many offers a second, well under
 * the per-key offer rate providers allow (OFFER_RATE_PER_KEY), which fresh jobs keep. A queued job
 * that finds no token waits a little longer.
 */
export const QUEUE_ANNOUNCE_RATE = 50
export const QUEUE_ANNOUNCE_BURST = 100
/** Queued jobs one advert wakes at most (the oldest first), whatever number of free slots it claims. */
export const QUEUE_WAKE_PER_ADVERT = 16
/** Decline reasons remembered per queued job across its rounds (the latest per provider). */
export const QUEUE_MAX_DECLINES = 256

/** A job's name is for people: a line, not a document. */
export const MAX_JOB_NAME = 128
