/**
 * Trying a gateway call again: what `submitMany()` and `wait()` share.
 */
import { MercatoApiError, MercatoConnectionError } from './errors.js'
import { MANY_RETRIES } from './constants.js'

/** A broken connection or a 5xx: worth another try. */
export function isRetryable (err: unknown): boolean {
  return err instanceof MercatoConnectionError || (err instanceof MercatoApiError && err.status >= 500)
}

/** Resolves after `ms`, or at once when `signal` aborts (the caller looks at the signal). */
export async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
  })
}

/** Try `fn` again on a broken connection or a 5xx, with backoff (MANY_RETRIES more times at most); other errors at once. */
export async function retrying<T> (fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn()
    } catch (err) {
      if (signal?.aborted === true || !isRetryable(err) || attempt >= MANY_RETRIES) throw err
      await sleep(Math.min(200 * 2 ** attempt, 5_000), signal)
    }
  }
}
