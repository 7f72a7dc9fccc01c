/**
 * The one-line progress of `mercato submit --wait`:
 *
 *   announced → 4 bids → awarded to 12D3…x9 at 3 credits → running → done in 14 ms
 *
 * On a terminal the line is rewritten in place (`\r`, clear to end of line,
 * cut from the left to the terminal's width); elsewhere each step is a plain
 * line of its own, written once it is final.
 */
import type { JobEvent, ManyProgress } from '../client/index.js'

/** `12D3KooW…x9`: enough of a PeerId to tell devnet nodes apart on one line. */
export function shortId (peerId: unknown): string {
  const s = String(peerId ?? '?')
  return s.length <= 10 ? s : `${s.slice(0, 4)}…${s.slice(-2)}`
}

export function formatBytes (n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}

function plural (n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

export interface ProgressInit {
  write: (s: string) => void
  /** rewrite one line in place */
  tty: boolean
  /** terminal width, for cutting the line on a TTY */
  columns?: number
}

export class Progress {
  private readonly steps: string[] = []
  /** index of the step still changing (the bid count), or -1 */
  private open = -1
  private bids = 0
  private declines = 0
  private printed = 0
  private running = false
  /** between an announcement and the award: bids and declines are shown */
  private bidding = false

  constructor (private readonly init: ProgressInit) {}

  /** Feed one job event; returns the line as it stands. */
  onEvent (e: JobEvent): string {
    switch (e.type) {
      case 'announced':
        if (e.queued === true) {
          // a queued job's rounds: the 'queued' step stands for them all (their answers are not counted)
          this.bidding = false
          break
        }
        if (e.recovered === true) this.push('recovered after restart')
        else if (typeof e.round === 'number' && e.round > 1) {
          this.push(`announced again (round ${e.round})`)
          this.bids = 0
          this.declines = 0
        } else if (!this.steps.includes('announced')) this.push('announced')
        this.bidding = true
        break
      case 'queued':
        this.close()
        this.bidding = false
        if (!(this.steps.at(-1) ?? '').startsWith('queued')) {
          const secs = typeof e.until === 'number' ? Math.max(0, Math.round((e.until - e.ts) / 1000)) : undefined
          this.push(`queued: no provider yet${secs != null ? ` (waits up to ${secs} s)` : ''}`)
        }
        break
      case 'bid':
        this.bids = typeof e.bids === 'number' ? e.bids : this.bids + 1
        if (this.bidding) this.setOpen()
        break
      case 'decline':
        this.declines++
        if (this.bidding) this.setOpen()
        break
      case 'awarded':
        this.close()
        this.bidding = false
        this.running = false
        this.push(`awarded to ${shortId(e.provider)} at ${plural(Number(e.price), 'credit')}`)
        break
      case 'refused':
        this.push(`${shortId(e.provider)} refused${e.reason != null ? ` (${String(e.reason)})` : ''}`)
        break
      case 'running':
        if (!this.running) this.push('running')
        this.running = true
        break
      case 'suspect':
        this.push(`${shortId(e.provider)} silent${typeof e.silentMs === 'number' ? ` ${e.silentMs} ms` : ''}`)
        break
      case 'rerouted':
        this.push(`${shortId(e.provider)} relay lost, asking through another path`)
        break
      case 'handover':
        this.running = false
        this.push(`${shortId(e.from)} lost${e.reason != null ? ` (${String(e.reason)})` : ''}, handing over`)
        break
      case 'collecting':
        this.push(`fetching ${plural(Number(e.files), 'output file')} (${formatBytes(Number(e.bytes))}) from ${shortId(e.provider)}`)
        break
      case 'mismatch':
        this.push(`${shortId(e.provider)} result mismatch`)
        break
      case 'settled':
        this.push(typeof e.latencyMs === 'number' ? `done in ${e.latencyMs} ms` : 'done')
        break
      case 'failed':
        this.bidding = false
        this.push(`failed${e.reason != null ? `: ${String(e.reason)}` : ''}`)
        break
      case 'no-bids':
        this.bidding = false
        this.push('no bids')
        break
      case 'cancelled':
        this.push('cancelled')
        break
      default:
        break // accepted, result, superseded: not worth a step
    }
    this.render()
    return this.line()
  }

  /** Print whole lines (live logs) above the progress: on a terminal the line is cleared, then redrawn. */
  interject (text: string): void {
    if (this.init.tty) {
      this.init.write('\r\x1b[K' + text)
      this.render()
    } else {
      this.init.write(text)
    }
  }

  line (): string {
    return this.steps.join(' → ')
  }

  /** Write what is left and end the line. */
  finish (): void {
    this.close()
    if (this.init.tty) {
      if (this.steps.length > 0) this.init.write('\n')
    } else {
      this.flushLines(this.steps.length)
    }
  }

  private push (step: string): void {
    this.close()
    this.steps.push(step)
  }

  private setOpen (): void {
    const parts: string[] = []
    if (this.bids > 0) parts.push(plural(this.bids, 'bid'))
    if (this.declines > 0) parts.push(plural(this.declines, 'decline'))
    const text = parts.join(', ')
    if (this.open === -1) {
      this.steps.push(text)
      this.open = this.steps.length - 1
    } else {
      this.steps[this.open] = text
    }
  }

  private close (): void {
    this.open = -1
  }

  private render (): void {
    if (this.init.tty) {
      let text = this.line()
      const width = Math.max(20, (this.init.columns != null && this.init.columns > 0 ? this.init.columns : 80) - 1)
      if (text.length > width) text = '…' + text.slice(text.length - width + 1)
      this.init.write(`\r${text}\x1b[K`)
    } else {
      // every step but a still-open bid count is final
      this.flushLines(this.open === -1 ? this.steps.length : this.open)
    }
  }

  private flushLines (upTo: number): void {
    for (; this.printed < upTo; this.printed++) this.init.write(this.steps[this.printed] + '\n')
  }
}

/**
 * The one progress line of `mercato submit --each`:
 *
 *   [██████░░░░░░] 5234/10000 · 5200 done · 40 running · 24 queued · 10 failed · 812 jobs/s · 5234 credits
 *
 * On a terminal it is redrawn in place at most every 100 ms; elsewhere a
 * line is written every 5 s and once at the end.
 */
export class ArrayProgress {
  private lastDraw = 0
  private drawn = false

  constructor (private readonly init: ProgressInit & { total?: number, already?: number }) {}

  update (p: ManyProgress): void {
    const now = Date.now()
    if (now - this.lastDraw < (this.init.tty ? 100 : 5_000)) return
    this.lastDraw = now
    this.draw(p)
  }

  /** A message of its own (a bad line): clears the bar first on a terminal. */
  note (s: string): void {
    if (this.init.tty && this.drawn) this.init.write('\r\x1b[K')
    this.init.write(s)
    this.drawn = false
  }

  /** Draw the final counts and end the line. */
  finish (p: ManyProgress | undefined): void {
    if (p != null) this.draw(p)
    if (this.init.tty && this.drawn) this.init.write('\n')
    this.drawn = false
  }

  line (p: ManyProgress): string {
    const already = this.init.already ?? 0
    const finished = already + p.done + p.failed
    const secs = Math.max(0.001, (Date.now() - p.startedAt) / 1000)
    const rate = (p.done + p.failed) / secs
    const parts = [
      this.init.total != null ? `${finished}/${this.init.total}` : String(finished),
      `${p.done + already} done`,
      `${p.running} running`,
      `${p.queued} queued`,
      `${p.failed} failed`,
      `${rate < 10 ? rate.toFixed(1) : Math.round(rate)} jobs/s`,
      plural(Math.round(p.spent * 100) / 100, 'credit')
    ]
    let s = parts.join(' · ')
    if (this.init.tty && this.init.total != null && this.init.total > 0) {
      const width = 12
      const full = Math.min(width, Math.round(width * finished / this.init.total))
      s = `[${'█'.repeat(full)}${'░'.repeat(width - full)}] ${s}`
    }
    return s
  }

  private draw (p: ManyProgress): void {
    let text = this.line(p)
    if (this.init.tty) {
      const width = Math.max(20, (this.init.columns ?? 80) - 1)
      if (text.length > width) text = text.slice(0, width - 1) + '…'
      this.init.write(`\r${text}\x1b[K`)
      this.drawn = true
    } else {
      this.init.write(text + '\n')
    }
  }
}
