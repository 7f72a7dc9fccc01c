/**
 * `mercato submit job.js --each inputs.ndjson [--parallel 64] [--out results.ndjson]`:
 * one job per line of the NDJSON file (the line is the job's input), at most
 * `--parallel` in flight (client `submitMany()`), results as NDJSON in input
 * order, one record per line:
 *
 *   {"line":1,"id":"bafy…","status":"completed","exitCode":0,"price":3,"output":…}
 *   {"line":2,"status":"invalid","error":"not JSON (…)"}
 *
 * The file is streamed and results are written as soon as the ones before
 * them are in, so memory does not grow with the file.
 *
 * Resuming. With `--out`, a state file `<out>.state` (NDJSON, append-only)
 * records the run's key, each line's job id once submitted and, after each
 * result written, how far the results go (`{"w":line,"b":bytes of out}`).
 * Run the same command again after Ctrl-C or a crash: the results file is
 * cut back to the last recorded line, lines with a recorded id are followed
 * (not submitted again), the rest submitted. A crash between submitting and
 * recording an id cannot start a job twice: every job carries the idempotency
 * key `<run key>:<line>`, and the node answers a repeated key with the job it
 * already has. The state file is removed when the run is complete.
 */
import { createReadStream, openSync, closeSync, writeSync, ftruncateSync, fstatSync, unlinkSync, existsSync, readSync } from 'node:fs'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { randomUUID } from 'node:crypto'
import { BadInput, type JobSpec, type ManyProgress, type ManyResult, type MercatoClient } from '../client/index.js'
import { cidOfValue } from '../crypto/index.js'
import { UsageError } from '../errors.js'
import { ArrayProgress } from './progress.js'

export interface EachOptions {
  /** the NDJSON file of inputs */
  each: string
  parallel?: number
  /** results file; without one, results go to stdout and the run cannot be resumed */
  out?: string
  /** stderr */
  err: (s: string) => void
  /** stdout (results without --out) */
  out$: (s: string) => Promise<void>
  tty: boolean
  columns?: number
  signal?: AbortSignal
}

interface State {
  run: string
  /** results written up to this line (0: none), and the size of the results file then */
  written: number
  bytes: number
  /** ids of lines after `written` submitted by an earlier run */
  ids: Map<number, string>
}

const STATE_VERSION = 1

/** Lines in a file (a last line without a newline counts), read in chunks: for the progress bar's total. */
export async function countLines (path: string): Promise<number> {
  let n = 0
  let last = 10
  for await (const chunk of createReadStream(path)) {
    const b = chunk as Buffer
    for (let i = 0; i < b.length; i++) if (b[i] === 10) n++
    if (b.length > 0) last = b[b.length - 1]
  }
  return last === 10 ? n : n + 1
}

/** Read an existing state file: the run key, how far results were written, ids of lines after that. */
async function readState (path: string, identity: { each: string, spec: string }): Promise<State> {
  const state: State = { run: '', written: 0, bytes: 0, ids: new Map() }
  let first = true
  for await (const line of createInterface({ input: createReadStream(path), crlfDelay: Infinity })) {
    let rec: any
    try { rec = JSON.parse(line) } catch { continue } // a record torn by a crash
    if (first) {
      first = false
      if (rec?.v !== STATE_VERSION || typeof rec.run !== 'string') throw new UsageError(`${path}: not a mercato --each state file; remove it to start over`)
      if (rec.each !== identity.each || rec.spec !== identity.spec) throw new UsageError(`${path}: belongs to a run of another job spec or inputs file; remove it to start over`)
      state.run = rec.run
      continue
    }
    if (typeof rec?.l === 'number' && typeof rec.id === 'string') {
      if (rec.l > state.written) state.ids.set(rec.l, rec.id)
    } else if (typeof rec?.w === 'number' && typeof rec.b === 'number' && rec.w > state.written) {
      for (let l = state.written + 1; l <= rec.w; l++) state.ids.delete(l)
      state.written = rec.w
      state.bytes = rec.b
    }
  }
  if (first) throw new UsageError(`${path}: empty state file; remove it to start over`)
  return state
}

/** One result as a line of the results file. */
function record (r: ManyResult): string {
  const { index, ...rest } = r
  return JSON.stringify({ line: index, ...rest }) + '\n'
}

/** The inputs from `startLine` on: parsed lines, or a BadInput naming the line. */
async function * inputs (path: string, startLine: number, onBad: (line: number, why: string) => void): AsyncGenerator<unknown> {
  let n = 0
  for await (const text of createInterface({ input: createReadStream(path), crlfDelay: Infinity })) {
    n++
    if (n < startLine) continue
    if (text.trim() === '') {
      onBad(n, 'empty line')
      yield new BadInput('empty line')
      continue
    }
    try {
      yield JSON.parse(text)
    } catch (e: any) {
      const why = `not JSON (${String(e?.message ?? e)})`
      onBad(n, why)
      yield new BadInput(why)
    }
  }
}

/** Run the array; returns the exit code (0: every line completed). */
export async function runEach (client: MercatoClient, spec: JobSpec, opts: EachOptions): Promise<number> {
  const eachPath = resolve(opts.each)
  if (!existsSync(eachPath)) throw new UsageError(`--each: cannot read ${opts.each}`)
  const total = await countLines(eachPath)
  const identity = { each: eachPath, spec: cidOfValue(spec) }

  let state: State = { run: randomUUID(), written: 0, bytes: 0, ids: new Map() }
  let outFd: number | undefined
  let stateFd: number | undefined
  const statePath = opts.out != null ? resolve(opts.out) + '.state' : undefined
  if (opts.out != null && statePath != null) {
    if (existsSync(statePath)) {
      state = await readState(statePath, identity)
      outFd = openSync(opts.out, existsSync(opts.out) ? 'r+' : 'w+')
      ftruncateSync(outFd, Math.min(state.bytes, fstatSync(outFd).size))
      closeSync(outFd)
      outFd = openSync(opts.out, 'a')
      stateFd = openSync(statePath, 'a+')
      // a record torn by a crash must not run into the next one
      const size = fstatSync(stateFd).size
      const lastByte = Buffer.alloc(1)
      if (size > 0 && readSync(stateFd, lastByte, 0, 1, size - 1) === 1 && lastByte[0] !== 10) writeSync(stateFd, '\n')
      opts.err(`resuming: ${state.written === 0 ? 'no results written yet' : `results of lines 1-${state.written} are in ${opts.out}`}; ${state.ids.size} job${state.ids.size === 1 ? '' : 's'} submitted earlier followed, not submitted again\n`)
    } else {
      outFd = openSync(opts.out, 'w')
      stateFd = openSync(statePath, 'w')
      writeSync(stateFd, JSON.stringify({ v: STATE_VERSION, run: state.run, each: identity.each, spec: identity.spec }) + '\n')
    }
  }

  const progress = new ArrayProgress({ write: opts.err, tty: opts.tty, columns: opts.columns, total, already: state.written })
  let last: ManyProgress | undefined
  let bytes = state.bytes
  let allCompleted = true
  const sfd = stateFd
  try {
    const results = client.submitMany(spec, inputs(eachPath, state.written + 1, (line, why) => { progress.note(`${opts.each}:${line}: ${why}\n`) }), {
      parallel: opts.parallel,
      keyPrefix: state.run,
      firstIndex: state.written + 1,
      known: (line) => state.ids.get(line),
      signal: opts.signal,
      onSubmitted: sfd == null ? undefined : (line, id) => { writeSync(sfd, `{"l":${line},"id":${JSON.stringify(id)}}\n`) },
      onProgress: (p) => { last = p; progress.update(p) }
    })
    for await (const r of results) {
      if (r.status !== 'completed') allCompleted = false
      const line = record(r)
      if (outFd != null && sfd != null) {
        bytes += writeSync(outFd, line)
        writeSync(sfd, `{"w":${r.index},"b":${bytes}}\n`)
        state.ids.delete(r.index)
      } else {
        await opts.out$(line)
      }
    }
  } catch (err) {
    progress.finish(last)
    if (opts.signal?.aborted === true) {
      opts.err(opts.out != null
        ? `stopped; the jobs in flight go on. Run the same command again to resume (state in ${statePath ?? ''})\n`
        : 'stopped; the jobs in flight go on (without --out a run cannot be resumed)\n')
      return 130
    }
    throw err
  } finally {
    if (outFd != null) closeSync(outFd)
    if (stateFd != null) closeSync(stateFd)
  }
  progress.finish(last)
  if (statePath != null) unlinkSync(statePath)
  return allCompleted ? 0 : 1
}
