/**
 * Server-sent events on a hijacked fastify reply: headers, `event:`/`data:`
 * frames, a keep-alive comment, and cleanup when the client goes away.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { SSE_PING_MS } from './constants.js'
import { liftIdleTimeout } from './idle.js'

export interface EventStream {
  send (event: string, data: unknown): void
  /** send `event: end` and close */
  end (): void
  readonly closed: boolean
}

export function openEventStream (req: FastifyRequest, reply: FastifyReply, onClose: () => void): EventStream {
  reply.hijack()
  // quiet between events and pings on purpose: not cut by the gateway's idle timeout
  const restoreIdle = liftIdleTimeout(req)
  const res = reply.raw
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' })
  res.write(': mercato\n\n')
  let closed = false
  const ping = setInterval(() => { if (!closed) res.write(': ping\n\n') }, SSE_PING_MS)
  ping.unref()
  const close = (): void => {
    if (closed) return
    closed = true
    clearInterval(ping)
    restoreIdle()
    onClose()
  }
  req.raw.on('close', close)
  res.on('close', close)
  return {
    send (event, data) {
      if (!closed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    },
    end () {
      if (closed) return
      res.write('event: end\ndata: {}\n\n')
      close()
      res.end()
    },
    get closed () { return closed }
  }
}
