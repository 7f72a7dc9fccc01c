/** The gateway's default address (config/default.json: gateway.host and gateway.port). */
export const DEFAULT_URL = 'http://127.0.0.1:8420'

/**
 * Ordinary requests give up after this long: every gateway route but the
 * event stream answers from memory, so 30 s means the node is stuck, not busy.
 * The event stream has no timeout (a job may run for minutes); pass a signal.
 */
export const REQUEST_TIMEOUT_MS = 30_000

/**
 * An event stream on which nothing arrives for this long is taken for dead and reconnected
 * (`wait()`) or ended with StreamIdleError (`events()`): the gateway writes a keep-alive comment
 * every 15 s (gateway SSE_PING_MS), so 45 s is three missed ones, not a quiet job.
 */
export const STREAM_IDLE_MS = 45_000

/**
 * `wait()` without callbacks asks `GET /v1/jobs/:id?wait=` (a long poll) for this long at a time
 * (ms; the gateway holds one for up to 25 s), and at most half the client's request timeout.
 */
export const WAIT_POLL_MS = 15_000

/** Environment variables the client reads when no option is given. */
export const ENV_URL = 'MERCATO_API'
export const ENV_TOKEN = 'MERCATO_API_TOKEN'

/** `submitMany()`: jobs in flight at most unless told (`--parallel`): enough to keep a 10-provider mesh busy. */
export const MANY_PARALLEL = 64

/**
 * `submitMany()` pulls no more inputs while this many results per slot wait for an earlier one
 * (a slow first job): the memory held stays bounded by parallel × this, however long the input.
 */
export const MANY_WINDOW_PER_SLOT = 16

/** `submitMany()` remembers the ends of this many jobs it did not yet know (an end that came before its id). */
export const MANY_RECENT_ENDS = 4096

/** `submitMany()` tries a broken request (connection, 5xx) this many more times, backing off; the keys make it safe. */
export const MANY_RETRIES = 6
