/**
 * The gateway's idle timeout (`gateway.idleTimeoutMs`, IDLE_TIMEOUT_MS) is its sockets' own: a
 * connection on which nothing is read or written for that long is closed, whatever stage its
 * request is in (a body that stalls, a client that stops reading its answer, an idle keep-alive).
 * A response that is quiet on purpose lifts it for its own time: an event stream (its pings keep
 * proxies awake, not us), a long poll (bounded by its `wait`), a ledger audit (bounded by its own
 * timeout).
 */
import type { FastifyRequest } from 'fastify'

/** Lift the idle timeout of the request's connection; the function returned puts the server's back. */
export function liftIdleTimeout (req: FastifyRequest): () => void {
  const socket = req.raw.socket
  // an injected request (tests) has no real socket
  if (typeof socket?.setTimeout !== 'function') return () => {}
  socket.setTimeout(0)
  return () => { if (!socket.destroyed) socket.setTimeout(req.server.server.timeout ?? 0) }
}
