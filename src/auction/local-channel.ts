import type { MessageChannel } from '../p2p/index.js'

interface Inbox {
  queue: Uint8Array[]
  waiters: Array<{ resolve: (v: IteratorResult<Uint8Array>) => void, reject: (err: Error) => void }>
  closed: boolean
  error?: Error
}

function deliver (box: Inbox, data: Uint8Array): void {
  if (box.closed) throw new Error('channel closed')
  const w = box.waiters.shift()
  if (w != null) w.resolve({ value: data, done: false }); else box.queue.push(data)
}

function end (box: Inbox, error?: Error): void {
  if (box.closed) return
  box.closed = true
  box.error = error
  for (const w of box.waiters.splice(0)) {
    if (error != null) w.reject(error); else w.resolve({ value: undefined, done: true })
  }
}

/**
 * Two connected in-memory {@link MessageChannel}s: how a node that is both
 * requester and provider awards a job to itself without a socket.
 */
export function localChannelPair (peerId: string, protocol: string): [MessageChannel, MessageChannel] {
  const aIn: Inbox = { queue: [], waiters: [], closed: false }
  const bIn: Inbox = { queue: [], waiters: [], closed: false }
  const side = (inbox: Inbox, outbox: Inbox): MessageChannel => ({
    remotePeer: peerId,
    protocol,
    send: async (data) => { deliver(outbox, data) },
    close: async () => { end(outbox) },
    abort: (err) => { const e = err ?? new Error('channel aborted'); end(outbox, e); end(inbox, e) },
    [Symbol.asyncIterator]: () => ({
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        const v = inbox.queue.shift()
        if (v != null) return { value: v, done: false }
        if (inbox.closed) {
          if (inbox.error != null) throw inbox.error
          return { value: undefined, done: true }
        }
        return await new Promise((resolve, reject) => { inbox.waiters.push({ resolve, reject }) })
      }
    })
  })
  return [side(aIn, bIn), side(bIn, aIn)]
}
