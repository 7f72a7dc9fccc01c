/**
 * Ledger defaults, each with the reason for its value. Applied once, where
 * the option is read (`init.x ?? X`).
 */

/** Record format version; a record with any other `v` is bad-encoding. */
export const RECORD_VERSION = 1

/** Signature domain of a record (the record's `type` is inside the signed bytes, so one type cannot pass for another). */
export const RECORD_DOMAIN = 'mercato/v1/record'
/** Signature domain of a gossiped log head. */
export const HEAD_DOMAIN = 'mercato/v1/head'

/** Gossip topic of signed heads. */
export const HEADS_TOPIC = 'mercato/heads/1'
/** Gossip topic of equivocation proofs. */
export const EQUIVOCATIONS_TOPIC = 'mercato/equivocations/1'
/** Request/response protocol serving pages of a node's log. */
export const LOG_PROTOCOL = '/mercato/log/1.0.0'

/**
 * Largest encoded record. A Result with capped stdout/stderr (1 MiB by
 * default) must fit, and one record must always fit in one log page.
 */
export const MAX_RECORD_BYTES = 768 * 1024
/** Longest indexed body.jobId: job ids are CIDs (≈ 60 chars); anything far longer is a mistake. */
export const MAX_JOB_ID_LENGTH = 256

/**
 * Records per LevelDB batch at most. Signing a batch holds the event loop
 * ≈ 40 µs per record (Ed25519 sign ≈ 23 µs plus encoding), so 512 records
 * ≈ 20 ms; LevelDB gains little from larger batches (≈ 125k puts/s at 1000).
 */
export const MAX_BATCH_RECORDS = 512

/** Records checked (signatures and links) at the tail on open. */
export const TAIL_CHECK_RECORDS = 64

/** Below this many records `verify()` runs inline: starting workers (≈ 30 ms each) would cost more than it saves. */
export const INLINE_VERIFY_MAX = 4096
/** Records handed to a verify worker at once: large enough to amortise messaging, small enough to keep both workers busy. */
export const VERIFY_CHUNK_RECORDS = 512

/** Largest `range()`/page limit in records. */
export const MAX_RANGE_LIMIT = 10_000

/** Soft cap of one log page in bytes (the page always holds at least one record); the p2p layer's default message cap is 1 MiB. */
export const LOG_PAGE_BYTES = 256 * 1024
/** Hard cap of a log page response we accept: one oversized record plus framing. */
export const MAX_LOG_RESPONSE_BYTES = LOG_PAGE_BYTES + MAX_RECORD_BYTES + 4096
/** Largest log request (a tiny CBOR map). */
export const MAX_LOG_REQUEST_BYTES = 512
/** Default records asked for per page by `audit()`. */
export const AUDIT_PAGE_LIMIT = 1000

/** Largest signed head on the wire (seq, CID, ts, PeerId, signature ≈ 200 bytes). */
export const MAX_HEAD_BYTES = 1024
/**
 * Largest equivocation proof on the gossip topic: two heads (≈ 400 bytes) or a head and a record.
 * A proof is stored in every receiver's log, so one of 256 KiB let a stranger with throwaway keys
 * fill each node's disk at 18 MB/s; a larger proof found by our own audit is kept in our log only.
 */
export const MAX_PROOF_BYTES = 32 * 1024
/**
 * Equivocation records a node writes: a bucket of EQUIVOCATION_RECORD_BURST, refilled one per
 * EQUIVOCATION_RECORD_REFILL_MS, whoever the signers are (keys are free: two heads of a throwaway
 * key are a valid proof). Past it a signer we catch is still flagged, in memory, and its proof is
 * neither stored nor forwarded; a proof heard on the topic is then ignored before its signatures
 * are checked.
 */
export const EQUIVOCATION_RECORD_BURST = 16
export const EQUIVOCATION_RECORD_REFILL_MS = 15 * 60_000
/** Signers flagged in memory at most; past it the flag heard least recently without a record of ours goes first. */
export const MAX_FLAGGED_SIGNERS = 4096
/** Heads stamped further than this in the future are ignored (clock skew allowance). */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000
/**
 * Signed heads remembered per signer (by seq) to detect equivocation: a signer's two histories meet
 * at its recent heads. With MAX_TRACKED_SIGNERS, at most 64 Ki heads (≈ 100 MiB), where 128 a
 * signer let a flood of throwaway keys hold 0.5 M.
 */
export const HEADS_PER_SIGNER = 16
/** Signers whose heads we remember at most (oldest forgotten first). */
export const MAX_TRACKED_SIGNERS = 4096

/** Defaults mirrored from config/default.json "ledger". */
export const HEAD_INTERVAL_MS = 30_000
export const HEAD_DEBOUNCE_MS = 30_000
/**
 * A head that reached nobody (sent before the node's first connection) goes out this long after a
 * peer connects, whatever the spacing: long enough for gossipsub to learn the new peer's topics.
 */
export const HEAD_CONNECT_DELAY_MS = 1_000
/** an unchanged head is gossiped again this often (for peers that joined since) */
export const HEAD_REFRESH_MS = 10 * 60_000
/**
 * Up to this many nodes heard on the heads topic, a moved head goes out every headDebounceMs /
 * headIntervalMs; past it, both stretch in proportion (capped at HEAD_REFRESH_MS), so what the
 * topic costs each node stays about HEAD_MESH_FREE heads per interval (0.5 a second at the
 * defaults) whatever the size of the mesh, instead of one head per node per interval.
 */
export const HEAD_MESH_FREE = 15
/** While signers we had not heard keep appearing, the head stretch is counted again at most this often (a count is a pass over up to 4,096 signers). */
export const HEAD_STRETCH_RECOUNT_MS = 1000
