/** The gateway's default address (config/default.json: gateway.host and gateway.port). */
export const DEFAULT_URL = 'http://127.0.0.1:8420'

/**
 * Ordinary requests give up after this long: every gateway route but the
 * event stream answers from memory, so 30 s means the node is stuck, not busy.
 * The event stream has no timeout (a job may run for minutes); pass a signal.
 */
export const REQUEST_TIMEOUT_MS = 30_000

/** Environment variables the client reads when no option is given. */
export const ENV_URL = 'MERCATO_API'
export const ENV_TOKEN = 'MERCATO_API_TOKEN'
