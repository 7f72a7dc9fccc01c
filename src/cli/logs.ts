/**
 * Printing a job's live logs (`mercato logs <id> -f`, `mercato submit --wait`).
 *
 * One attempt's output is printed at a time: the first attempt that sends
 * logs, until it is handed over; then the next attempt's logs start over,
 * after a notice naming it. (With replicas, the other replicas' logs are not
 * printed.) At the end, what the live logs left out (caps, a lost last
 * chunk) is completed from the result when the printed text is the start of
 * the result's output.
 */
import type { JobEvent, LogEvent, ResultView } from '../client/index.js'
import { shortId } from './progress.js'

export interface LogSinks {
  stdout: (s: string) => void
  stderr: (s: string) => void
  /** notices (attempt changes, cuts): always stderr */
  notice: (s: string) => void
}

export class LogPrinter {
  private readonly sinks: LogSinks
  private attempt?: number
  private provider?: string
  /** text printed for the followed attempt, per stream (to complete it from the result) */
  private printed = { stdout: '', stderr: '' }
  private cut = false
  /** the printed text is kept only up to this (beyond it, completion is not tried) */
  private static readonly KEEP = 4 * 1024 * 1024

  constructor (sinks: LogSinks) {
    this.sinks = sinks
  }

  onEvent (e: JobEvent): void {
    if (e.type === 'handover' && e.attempt === this.attempt) {
      this.sinks.notice(`(attempt ${String(e.attempt)} on ${shortId(String(e.from))} was lost: ${String(e.reason)}; its logs stop here)\n`)
      this.attempt = undefined
    }
  }

  onLog (e: LogEvent): void {
    if (this.attempt == null) {
      if (this.provider != null) this.sinks.notice(`(logs start over: attempt ${e.attempt} on ${shortId(e.provider)})\n`)
      this.attempt = e.attempt
      this.provider = e.provider
      this.printed = { stdout: '', stderr: '' }
      this.cut = false
    }
    if (e.attempt !== this.attempt) return
    if (e.dropped != null && e.dropped > 0) {
      this.cut = true
      this.sinks.notice(`(${e.dropped} bytes of live output left out)\n`)
    }
    if (e.text !== '') {
      this.sinks[e.stream](e.text)
      if (this.printed[e.stream].length < LogPrinter.KEEP) this.printed[e.stream] += e.text
      else this.cut = true
    }
    if (e.capped === true) {
      this.cut = true
      this.sinks.notice('(live output reached its cap; the rest is in the result)\n')
    }
  }

  /** The job is over: print what the live logs did not show, when they showed the start of the result. */
  finish (result: ResultView | null): void {
    if (result == null) return
    if (this.provider == null) {
      // nothing came live (a finished job, a backend without live output): the result's output
      this.sinks.stdout(result.stdout)
      this.sinks.stderr(result.stderr)
      return
    }
    if (this.provider !== result.provider) return
    for (const stream of ['stdout', 'stderr'] as const) {
      const full = result[stream]
      const shown = this.printed[stream]
      if (full.startsWith(shown)) this.sinks[stream](full.slice(shown.length))
      else if (!this.cut) this.sinks.notice(`(the live ${stream} differs from the result's; \`mercato logs ${result.jobId}\` prints the result's)\n`)
    }
  }
}
