/** Where the gateway listens unless configured: loopback, so nothing outside the machine can reach it. */
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_PORT = 8420

/** Largest request body: a wasm module or input blob fits; a runaway upload does not fill memory. */
export const BODY_LIMIT_BYTES = 16 * 1024 * 1024

/** The dashboard's cookie carrying the token (browsers cannot set Authorization on page loads or EventSource). */
export const TOKEN_COOKIE = 'mercato_token'

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
 * Most job specs in one `POST /v1/jobs` batch: a CLI keeping 64 jobs in flight sends far fewer;
 * the cap bounds the work (announcements, log appends) one request can start.
 */
export const JOBS_BATCH_MAX = 256

/** Longest idempotency key: room for a UUID and a line number; it is hashed into the job id, never stored as is. */
export const IDEMPOTENCY_KEY_MAX = 128
