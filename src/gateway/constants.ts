/** Where the gateway listens unless configured: loopback, so nothing outside the machine can reach it. */
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_PORT = 8420

/** Largest request body: a wasm module or input blob fits; a runaway upload does not fill memory. */
export const BODY_LIMIT_BYTES = 16 * 1024 * 1024

/**
 * After an upload is refused (413), the rest of its body is read and discarded for at most this
 * long so that a client still sending sees the answer (curl, fetch); then the connection is dropped.
 */
export const UPLOAD_DRAIN_MS = 30_000

/**
 * A gateway connection on which nothing moves (no byte read or written) for this long is closed
 * (`gateway.idleTimeoutMs`): a request body that stalls, a client that stops reading, a keep-alive
 * connection left open. Not a limit on a whole request: an upload of 256 MiB from a slow client
 * takes as long as it needs while its bytes keep coming. Event streams and long polls
 * (`GET /v1/jobs/:id?wait=`, at most JOB_WAIT_MAX_MS) are quiet on purpose and are not cut.
 */
export const IDLE_TIMEOUT_MS = 60_000

/**
 * Most connections the gateway holds open at once (`gateway.maxConnections`); one more is closed as
 * it arrives. Room for the dashboard, a CLI with its 64 jobs in flight and their event streams,
 * well under a 1024 open-files limit, so that stalled clients cannot take the descriptors the
 * node needs for its peers (`p2p.maxConnections`) and its files.
 */
export const MAX_CONNECTIONS = 256

/** The dashboard's cookie carrying the token (browsers cannot set Authorization on page loads or EventSource). */
export const TOKEN_COOKIE = 'mercato_token'

/**
 * Longest `GET /v1/jobs/:id?wait=` holds its answer for an unfinished job (ms): under common proxy
 * idle timeouts and the client's own request timeout (30 s), which asks again.
 */
export const JOB_WAIT_MAX_MS = 25_000

/** SSE keep-alive comment interval: below common proxy idle timeouts (30–60 s). */
export const SSE_PING_MS = 15_000

/** How often the dashboard refreshes peers and providers without an event. */
export const DASHBOARD_POLL_MS = 3_000

/** `GET /v1/events/recent` reads the events of this many newest jobs: enough to fill the dashboard's event log, bounded work per call. */
export const RECENT_EVENTS_JOBS = 50

/** Most events `GET /v1/events/recent` returns (the dashboard keeps 80). */
export const RECENT_EVENTS_MAX = 500

/** Most records `GET /v1/ledger?check=true` checks per call (a signature check each, ≈ 60 µs). */
export const LEDGER_CHECK_MAX = 200

/**
 * Live logs the gateway keeps per running job, for a subscriber that comes late (`/v1/jobs/:id/events`
 * replays them): the last LOG_TAIL_BYTES of text, for at most LOG_TAIL_JOBS jobs (an ended job's tail
 * goes first, then the oldest). A job's tail is dropped LOG_TAIL_LINGER_MS after it ends (its full
 * output is in its result): long enough for a client that subscribes as a short job finishes.
 */
export const LOG_TAIL_BYTES = 16 * 1024
export const LOG_TAIL_JOBS = 64
export const LOG_TAIL_LINGER_MS = 10_000

/**
 * The market's recent history, kept by the gateway so the dashboard's charts have the last
 * 15 minutes even on a page opened a moment ago: providers' asks sampled every
 * MARKET_HISTORY_SAMPLE_MS (and whenever a job ends), at most MARKET_HISTORY_PROVIDERS of them per
 * sample, and each finished job's price, latency and bid count (at most MARKET_HISTORY_JOBS).
 * Bounded: ≈ 90 samples × 16 asks + 10 000 small entries, well under 2 MiB.
 */
export const MARKET_HISTORY_WINDOW_MS = 15 * 60_000
export const MARKET_HISTORY_SAMPLE_MS = 10_000
export const MARKET_HISTORY_PROVIDERS = 16
export const MARKET_HISTORY_JOBS = 10_000

/**
 * Most job specs in one `POST /v1/jobs` batch: a CLI keeping 64 jobs in flight sends far fewer;
 * the cap bounds the work (announcements, log appends) one request can start.
 */
export const JOBS_BATCH_MAX = 256

/** Longest idempotency key: room for a UUID and a line number; it is hashed into the job id, never stored as is. */
export const IDEMPOTENCY_KEY_MAX = 128

/** Longest multiaddr `POST /v1/peers` takes (a relay circuit with two PeerIds is about 200 characters). */
export const MAX_PEER_ADDRESS_CHARS = 1024
