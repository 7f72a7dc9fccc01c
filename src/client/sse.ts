/**
 * A small server-sent events reader over a fetch body stream
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html):
 * lines `event:`, `data:` (several are joined by "\n"), `id:`, comments
 * starting with ":", and a blank line ending each event. CR, LF and CRLF
 * line ends are accepted.
 *
 * With `idleMs`, a stream on which nothing at all arrives (no event, no
 * keep-alive comment) for that long is closed and the reader throws
 * {@link StreamIdleError}: a connection that died without a FIN (a proxy or
 * NAT dropping it, a frozen node) would otherwise be waited on forever.
 */
import { StreamIdleError } from './errors.js'

export interface SseMessage {
  event: string
  data: string
  id?: string
}

export async function * readSse (body: ReadableStream<Uint8Array>, signal?: AbortSignal, idleMs?: number): AsyncGenerator<SseMessage> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  let event = ''
  let data: string[] = []
  let id: string | undefined
  let finished = false
  const onAbort = (): void => { void reader.cancel().catch(() => {}) }
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    while (true) {
      signal?.throwIfAborted()
      let idle = false
      const timer = idleMs != null && idleMs > 0 ? setTimeout(() => { idle = true; void reader.cancel().catch(() => {}) }, idleMs) : undefined
      let chunk: ReadableStreamReadResult<Uint8Array>
      try { chunk = await reader.read() } finally { clearTimeout(timer) }
      if (idle) { finished = true; throw new StreamIdleError(idleMs as number) }
      const { value, done } = chunk
      if (done) { finished = true; break }
      buffer += decoder.decode(value, { stream: true })
      let m: RegExpExecArray | null
      const lineEnd = /\r\n|\r|\n/g
      let start = 0
      while ((m = lineEnd.exec(buffer)) != null) {
        // a lone CR at the very end may be the first half of a CRLF: wait for more
        if (m[0] === '\r' && m.index === buffer.length - 1) break
        const line = buffer.slice(start, m.index)
        start = m.index + m[0].length
        if (line === '') {
          if (data.length > 0 || event !== '') {
            signal?.throwIfAborted()
            yield { event: event === '' ? 'message' : event, data: data.join('\n'), id }
          }
          event = ''; data = []; id = undefined
          continue
        }
        if (line.startsWith(':')) continue
        const colon = line.indexOf(':')
        const field = colon === -1 ? line : line.slice(0, colon)
        let value = colon === -1 ? '' : line.slice(colon + 1)
        if (value.startsWith(' ')) value = value.slice(1)
        if (field === 'event') event = value
        else if (field === 'data') data.push(value)
        else if (field === 'id') id = value
      }
      buffer = buffer.slice(start)
    }
    signal?.throwIfAborted()
  } finally {
    signal?.removeEventListener('abort', onAbort)
    // the consumer stopped early (break, throw, abort): close the connection
    if (!finished) await reader.cancel().catch(() => {})
    reader.releaseLock()
  }
}
