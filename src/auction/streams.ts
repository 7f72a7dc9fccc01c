/**
 * Reading long-lived message streams (bid streams, offer streams): the next frame, or `'idle'`
 * when none came for `idleMs` (the reader then closes the stream; an idle stream would otherwise
 * hold a stream slot for ever).
 */
export async function nextWithin<T> (it: AsyncIterator<T>, idleMs: number): Promise<IteratorResult<T> | 'idle'> {
  let timer: NodeJS.Timeout | undefined
  const idle = new Promise<'idle'>((resolve) => { timer = setTimeout(() => { resolve('idle') }, idleMs) })
  try {
    const reading = it.next()
    reading.catch(() => {}) // still pending when the stream is closed for idling
    return await Promise.race([reading, idle])
  } finally {
    clearTimeout(timer)
  }
}
