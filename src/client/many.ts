/**
 * `submitMany()`: one job per input, at most `parallel` in flight, results
 * in input order.
 *
 * - Submissions go out as batches (`POST /v1/jobs` with an array): while
 *   one batch is on its way the slots that free up gather into the next.
 * - Every item carries an idempotency key, `<keyPrefix>:<index>`; the node
 *   derives the job's id from it, so a batch sent again (after a broken
 *   connection, or by a run resumed after a crash between submitting and
 *   recording the id) returns the jobs already started, never new ones.
 * - Jobs are followed on ONE event stream (`GET /v1/events`), opened before
 *   the first submission; a job whose end came before its id did is found
 *   among the recent ends, and after a reconnect every job in flight is
 *   looked at once.
 * - Memory stays flat: inputs are pulled only while fewer than `parallel`
 *   jobs are in flight and fewer than `window` results wait for an earlier
 *   one; every result is handed out as soon as the ones before it are.
 */
import { TERMINAL, type JobEvent, type JobStatus, type JobView, type ResultView } from '../auction/types.js'
import { MercatoApiError } from './errors.js'
import { MANY_PARALLEL, MANY_RECENT_ENDS, MANY_RETRIES, MANY_WINDOW_PER_SLOT } from './constants.js'
import type { JobSpec } from './index.js'
import { retrying, sleep } from './retry.js'

/** An input that is not one (a line of an NDJSON file that is not JSON): reported as a result of its own, never submitted. */
export class BadInput {
  constructor (readonly message: string) {}
}

/** What a batch answers per item. */
export type BatchAnswer = { id: string, status: JobStatus } | { error: { code: string, message: string } }

export interface ManyProgress {
  /** inputs read so far */
  read: number
  /** completed */
  done: number
  /** failed, no bids, cancelled, refused by the node, or not an input */
  failed: number
  /** awarded or running */
  running: number
  /** submitted, not yet awarded (bidding or queued) */
  queued: number
  /** credits paid for completed jobs */
  spent: number
  /** when the run started (ms since the epoch) */
  startedAt: number
}

export interface ManyResult {
  /** the input's index (`firstIndex` + its position) */
  index: number
  /** absent for an input never submitted */
  id?: string
  /** `invalid`: not an input (a BadInput); `rejected`: the node refused the spec */
  status: JobStatus | 'invalid' | 'rejected'
  exitCode?: number
  output?: unknown
  stdout?: string
  stderr?: string
  /** credits paid */
  price?: number
  /** from submission to the end, as the node measured it */
  latencyMs?: number
  error?: string
}

export interface ManyOptions {
  signal?: AbortSignal
  /** jobs in flight at most (default 64) */
  parallel?: number
  /** item i's idempotency key is `<keyPrefix>:<i>`; default a random UUID (pass a stored one to resume) */
  keyPrefix?: string
  /** index of the first input (default 0); a resumed run starts after the results it has */
  firstIndex?: number
  /** the id an earlier run recorded for this index: that job is followed, not submitted again */
  known?: (index: number) => string | undefined
  /** a job was submitted (awaited before it is followed: record the id here) */
  onSubmitted?: (index: number, id: string) => void | Promise<void>
  /** the counts changed */
  onProgress?: (progress: ManyProgress) => void
}

/** What submitMany needs of the client. */
export interface ManyTransport {
  submitBatch: (specs: JobSpec[], opts: { signal?: AbortSignal }) => Promise<BatchAnswer[]>
  allEvents: (opts: { signal?: AbortSignal, onOpen?: () => void }) => AsyncGenerator<JobEvent>
  job: (id: string, opts: { signal?: AbortSignal }) => Promise<JobView>
  result: (id: string, opts: { signal?: AbortSignal }) => Promise<ResultView>
}

/** Job event types after which a job is over (the job itself is read to be sure). */
const ENDING = new Set(['settled', 'failed', 'no-bids', 'cancelled'])
const RUNNING = new Set(['awarded', 'accepted', 'running'])
/** Most specs per batch request: the gateway's JOBS_BATCH_MAX. */
const BATCH_MAX = 256

interface Watched { index: number, running: boolean, ending: boolean, recheck: boolean }


export async function * submitMany (
  client: ManyTransport,
  spec: JobSpec,
  inputs: Iterable<unknown> | AsyncIterable<unknown>,
  opts: ManyOptions = {}
): AsyncGenerator<ManyResult> {
  const parallel = Math.max(1, opts.parallel ?? MANY_PARALLEL)
  const window = parallel * MANY_WINDOW_PER_SLOT
  const keyPrefix = opts.keyPrefix ?? globalThis.crypto.randomUUID()
  const first = opts.firstIndex ?? 0
  const outer = opts.signal
  const ac = new AbortController()
  const onOuterAbort = (): void => { ac.abort(outer?.reason) }
  outer?.addEventListener('abort', onOuterAbort, { once: true })
  const signal = ac.signal

  const progress: ManyProgress = { read: 0, done: 0, failed: 0, running: 0, queued: 0, spent: 0, startedAt: Date.now() }
  const watched = new Map<string, Watched>()
  /** ends of jobs not (yet) watched, newest last, bounded */
  const recentEnds = new Set<string>()
  const ready = new Map<number, ManyResult>()
  let nextOut = first
  let nextIn = first
  let exhausted = false
  let submitting = 0
  let failure: unknown
  let wake: (() => void) | undefined
  /** something changed since the loop last looked */
  let dirty = false
  const poke = (): void => { dirty = true; const w = wake; wake = undefined; w?.() }
  const report = (): void => { opts.onProgress?.({ ...progress }) }
  let opened: () => void = () => {}
  /** the event stream is open (or the run failed or was aborted) */
  const open = new Promise<void>((resolve) => { opened = resolve })
  const fail = (err: unknown): void => { failure ??= err; opened(); poke() }
  signal.addEventListener('abort', () => { opened(); poke() }, { once: true })

  const finish = (r: ManyResult): void => {
    if (r.status === 'completed') { progress.done++; progress.spent += r.price ?? 0 } else progress.failed++
    ready.set(r.index, r)
    report()
    poke()
  }

  /** Read a job that says it ended; hand out its result. */
  const settle = async (id: string, w: Watched, settled?: JobEvent): Promise<void> => {
    // a `settled` event says the result is there: read it alone (one request per job, not two)
    let res: ResultView | undefined
    if (settled != null) {
      try {
        res = await retrying(async () => await client.result(id, { signal }), signal)
      } catch (err) {
        if (!(err instanceof MercatoApiError && err.status === 409)) throw err
      }
    }
    const job = res == null ? await retrying(async () => await client.job(id, { signal }), signal) : undefined
    if (job != null && !TERMINAL.has(job.status)) {
      // not over after all: its end will come (or came while we looked: look again)
      w.ending = false
      if (w.recheck) { w.recheck = false; ending(id) }
      return
    }
    if (job?.status === 'completed') res = await retrying(async () => await client.result(id, { signal }), signal)
    if (!watched.delete(id)) return
    if (w.running) progress.running--; else progress.queued--
    if (res != null) {
      const r: ManyResult = { index: w.index, id, status: 'completed', exitCode: res.exitCode, price: res.price }
      const latencyMs = job?.latencyMs ?? settled?.latencyMs
      if (typeof latencyMs === 'number') r.latencyMs = latencyMs
      if (res.output !== undefined) r.output = res.output
      if (res.stdout !== '') r.stdout = res.stdout
      if (res.stderr !== '') r.stderr = res.stderr
      if (res.error != null) r.error = `${res.error.name}: ${res.error.message}`
      finish(r)
    } else if (job != null) {
      const reasons = job.status === 'no-bids' && job.declines.length > 0 ? `declined: ${[...new Set(job.declines.map(d => d.reason))].join(', ')}` : undefined
      finish({ index: w.index, id, status: job.status, error: job.error ?? reasons })
    }
  }
  const ending = (id: string, settled?: JobEvent): void => {
    const w = watched.get(id)
    if (w == null) return
    if (w.ending) { w.recheck = true; return }
    w.ending = true
    settle(id, w, settled).catch(fail)
  }

  const watch = (index: number, id: string, checkNow: boolean): void => {
    if (watched.has(id)) return // the same job for two indexes cannot happen: keys differ
    const w: Watched = { index, running: false, ending: false, recheck: false }
    watched.set(id, w)
    progress.queued++
    if (recentEnds.delete(id) || checkNow) ending(id)
  }

  // ONE stream for every job; (re)opened before anything is submitted or looked at
  const follow = async (): Promise<void> => {
    for (let tries = 0; !signal.aborted; tries++) {
      try {
        for await (const e of client.allEvents({
          signal,
          onOpen: () => {
            tries = 0
            opened()
            // events may have been missed while the stream was down: look at every job in flight
            for (const id of watched.keys()) ending(id)
          }
        })) {
          const w = watched.get(e.jobId)
          if (w == null) {
            if (ENDING.has(e.type)) {
              recentEnds.add(e.jobId)
              if (recentEnds.size > MANY_RECENT_ENDS) recentEnds.delete(recentEnds.values().next().value as string)
            }
            continue
          }
          if (ENDING.has(e.type)) ending(e.jobId, e.type === 'settled' ? e : undefined)
          else if (RUNNING.has(e.type) && !w.running) { w.running = true; progress.queued--; progress.running++; report() } else if ((e.type === 'announced' || e.type === 'handover' || (e.type as string) === 'queued') && w.running) { w.running = false; progress.running--; progress.queued++; report() }
        }
      } catch (err) {
        if (signal.aborted) return
        if (tries >= MANY_RETRIES) { fail(err); return }
      }
      await sleep(Math.min(200 * 2 ** tries, 5_000), signal)
    }
  }
  const following = follow()

  const sendBatch = async (items: Array<{ index: number, spec: JobSpec }>): Promise<void> => {
    submitting += items.length
    try {
      const answers = await retrying(async () => await client.submitBatch(items.map(i => i.spec), { signal }), signal)
      for (let k = 0; k < items.length; k++) {
        const a = answers[k]
        const index = items[k].index
        if (a == null || 'error' in a) {
          finish({ index, status: 'rejected', error: a == null ? 'no answer for this item' : `${a.error.message} (${a.error.code})` })
          continue
        }
        await opts.onSubmitted?.(index, a.id)
        // a repeated key answers with the job it already has: maybe over long ago, with no event to come
        watch(index, a.id, TERMINAL.has(a.status))
      }
    } finally {
      submitting -= items.length
      report()
      poke()
    }
  }

  const iterator = Symbol.asyncIterator in inputs ? (inputs as AsyncIterable<unknown>)[Symbol.asyncIterator]() : (inputs as Iterable<unknown>)[Symbol.iterator]()
  try {
    await open
    let sending: Promise<void> | undefined
    for (;;) {
      dirty = false
      if (failure != null) throw failure
      if (signal.aborted) throw signal.reason ?? new Error('aborted')
      // admit inputs while slots are free and the results waiting stay within the window
      const batch: Array<{ index: number, spec: JobSpec }> = []
      while (!exhausted && sending == null && watched.size + submitting + batch.length < parallel && nextIn - nextOut < window && batch.length < BATCH_MAX) {
        const next = await iterator.next()
        if (next.done === true) { exhausted = true; break }
        const index = nextIn++
        progress.read++
        if (next.value instanceof BadInput) { finish({ index, status: 'invalid', error: next.value.message }); continue }
        const id = opts.known?.(index)
        if (id != null) { watch(index, id, true); continue }
        batch.push({ index, spec: { ...spec, input: next.value, idempotencyKey: `${keyPrefix}:${index}` } })
      }
      if (batch.length > 0) {
        report()
        sending = sendBatch(batch).catch(fail).finally(() => { sending = undefined; poke() })
      }
      while (ready.has(nextOut)) {
        const r = ready.get(nextOut) as ManyResult
        ready.delete(nextOut)
        nextOut++
        yield r
      }
      if (exhausted && nextOut === nextIn) return
      if (dirty || failure != null || signal.aborted) continue
      await new Promise<void>((resolve) => { wake = resolve })
    }
  } finally {
    outer?.removeEventListener('abort', onOuterAbort)
    ac.abort()
    await following.catch(() => {})
    if (!exhausted) await (iterator as AsyncIterator<unknown>).return?.()
  }
}
