/**
 * What the block store keeps, and the collector that removes the rest.
 *
 * A node holds three kinds of blobs:
 * - **pinned**, kept until unpinned or until their pin expires: what the node's user uploaded
 *   (`POST /v1/blobs`, job modules), the output files of the user's own jobs (fetched and verified
 *   before payment), and, on a provider, the output files of jobs it ran, for `outputRetentionMs`
 *   (the requester, its replicas' judges and the user fetch them from there);
 * - **held**, in memory only, while something uses them: a provider's blob input from the start of
 *   its fetch until it is copied into the job's folder;
 * - **cached**: everything else — modules and inputs fetched for jobs, blobs fetched on a user's
 *   `GET /v1/blobs/:cid?from=`. They make the next job with the same module or input cheaper, and
 *   they are what the collector removes, oldest first, once the store is larger than `maxBytes`.
 *
 * The collector runs every `intervalMs`, and soon after a provider's job ends. It never removes a
 * block written in the last `graceMs`: an upload's or a fetch's blocks land before the pin or hold
 * that keeps them is known, and a block being served to a peer stays readable. A block shared by a
 * pinned blob and a cached one stays (blocks are counted once, by their CID). Blobs of the first
 * release (one file per blob beside `packs/`) are never collected.
 *
 * Pins live in `pins.log` beside `packs/`, one JSON line per change appended (`["+", cid,
 * reason, untilMs?]`, `["-", cid]`), so a pin costs one short write however many there are; the
 * log is rewritten with only the live pins (a temporary file and a rename) at start-up and when it
 * holds more than twice as many lines as pins. A restart keeps them; a damaged line (a crash
 * mid-append) is skipped. Without a data dir they live in memory.
 */
import { appendFile, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import { logger } from '../logger.js'
import { MAX_DAG_DEPTH } from './constants.js'
import type { BlockStore } from './blocks.js'

const log = logger('auction:blob-gc')

/** Why a blob is kept. */
export type PinReason = 'upload' | 'result' | 'output'

interface Pin { reason: PinReason, untilMs?: number }

export interface CollectorOptions {
  /** the store's size past which cached blocks are removed, oldest first */
  maxBytes: number
  /** how often the collector runs (0: only when asked) */
  intervalMs: number
  /** blocks younger than this are never removed */
  graceMs: number
  /** how long an `output` pin lasts (a provider's output files of jobs it ran) */
  outputRetentionMs: number
}

export interface CollectResult {
  /** blocks removed, and their bytes */
  removedBlocks: number
  freedBytes: number
  /** the store's bytes after the run, and how many of them pinned or held blobs need */
  storeBytes: number
  keptBytes: number
  /** pins that had expired and were dropped: in this run, or (the first run) when the log was read at start */
  expiredPins: number
}

/** What `GET /v1/node` shows of the store (`blobs`). */
export interface BlobStoreStatus {
  /** bytes held: the last collection's count plus what was written since (an estimate between runs) */
  storeBytes: number
  /** bytes of the pack files on disk: the live blocks and dead ones not yet compacted away (at most about twice the live bytes) */
  packBytes: number
  cacheMaxBytes: number
  /** blobs pinned, and held by running jobs */
  pins: number
  held: number
  /** the last collection: when (ms since the epoch), blocks and bytes removed; null before the first */
  lastCollection: { at: number, removedBlocks: number, freedBytes: number } | null
}

export const DEFAULT_COLLECTOR: CollectorOptions = { maxBytes: 4 * 1024 ** 3, intervalMs: 10 * 60_000, graceMs: 10 * 60_000, outputRetentionMs: 3600_000 }

export class BlobCollector {
  private readonly pins = new Map<string, Pin>()
  private readonly holds = new Map<string, number>()
  private readonly file?: string
  private opts: CollectorOptions = { ...DEFAULT_COLLECTOR }
  private timer?: ReturnType<typeof setInterval>
  private soon?: ReturnType<typeof setTimeout>
  private running?: Promise<CollectResult>
  private saving: Promise<void> = Promise.resolve()
  /** the store's bytes at the last run, and the store's `written` counter then */
  private lastStoreBytes = 0
  private writtenAtLast = 0
  private last: BlobStoreStatus['lastCollection'] = null
  /** lines in the pins log */
  private lines = 0
  /** bumped by every pin and hold: a run re-marks when it changed under it */
  private epoch = 0
  /** pins {@link load} found expired: reported by the next run */
  private expiredAtLoad = 0

  constructor (private readonly blocks: BlockStore, dir?: string) {
    if (dir != null) this.file = join(dir, 'pins.log')
  }

  /** Read the pins a previous run left (damaged lines are skipped), then rewrite the log compacted. */
  async load (): Promise<void> {
    if (this.file == null) return
    let text: string
    try { text = await readFile(this.file, 'utf8') } catch { return }
    let damaged = 0
    const now = Date.now()
    for (const line of text.split('\n')) {
      if (line === '') continue
      try {
        const [op, cid, reason, untilMs] = JSON.parse(line) as [string, string, PinReason?, number?]
        if (typeof cid !== 'string') throw new Error('no cid')
        if (op === '-') this.pins.delete(cid)
        else if (op === '+' && typeof reason === 'string' && (untilMs == null || typeof untilMs === 'number')) this.pins.set(cid, untilMs != null ? { reason, untilMs } : { reason })
        else throw new Error('not a pin line')
      } catch {
        damaged++
      }
    }
    if (damaged > 0) log.warn({ file: this.file, damaged }, 'skipped damaged lines in the pins log')
    // a pin that expired while the node was down is dropped here (after the whole log is read: a
    // later line may have renewed or removed it) and counted by the first run
    for (const [cid, pin] of this.pins) {
      if (pin.untilMs != null && pin.untilMs <= now) { this.pins.delete(cid); this.expiredAtLoad++ }
    }
    this.lines = this.pins.size
    this.write(async file => { await this.compact(file) })
    await this.saving
  }

  /** Start collecting every `intervalMs` (and once now). */
  start (opts: Partial<CollectorOptions> = {}): void {
    this.opts = { ...this.opts, ...opts }
    clearInterval(this.timer)
    if (this.opts.intervalMs > 0) {
      this.timer = setInterval(() => { this.collectSoon(0) }, this.opts.intervalMs)
      this.timer.unref()
    }
    this.collectSoon(0)
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    clearTimeout(this.soon)
    this.timer = undefined
    this.soon = undefined
    await this.running?.catch(() => {})
    await this.saving
  }

  /**
   * Keep `cid` (every block of its DAG) until {@link unpin}, or for `ttlMs` (an `output` pin: for
   * `outputRetentionMs` unless told). A longer pin wins over a shorter one; a pin without an end
   * over any.
   */
  pin (cid: string, reason: PinReason, ttlMs: number | undefined = reason === 'output' ? this.opts.outputRetentionMs : undefined): void {
    const untilMs = ttlMs != null ? Date.now() + ttlMs : undefined
    const old = this.pins.get(cid)
    if (old != null && (old.untilMs == null || (untilMs != null && old.untilMs >= untilMs))) return
    this.pins.set(cid, untilMs != null ? { reason, untilMs } : { reason })
    this.epoch++
    this.append(untilMs != null ? ['+', cid, reason, untilMs] : ['+', cid, reason])
  }

  unpin (cid: string): boolean {
    const had = this.pins.delete(cid)
    if (had) this.append(['-', cid])
    return had
  }

  pinned (cid: string): PinReason | undefined {
    const pin = this.pins.get(cid)
    if (pin == null || (pin.untilMs != null && pin.untilMs <= Date.now())) return undefined
    return pin.reason
  }

  status (): BlobStoreStatus {
    return {
      storeBytes: this.lastStoreBytes + (this.blocks.written - this.writtenAtLast),
      packBytes: this.blocks.packBytes(),
      cacheMaxBytes: this.opts.maxBytes,
      pins: this.pins.size,
      held: this.holds.size,
      lastCollection: this.last
    }
  }

  /** Keep `cid` while it is in use; call the returned function when done. */
  hold (cid: string): () => void {
    this.holds.set(cid, (this.holds.get(cid) ?? 0) + 1)
    this.epoch++
    let released = false
    return () => {
      if (released) return
      released = true
      const n = (this.holds.get(cid) ?? 1) - 1
      if (n <= 0) this.holds.delete(cid)
      else this.holds.set(cid, n)
    }
  }

  /**
   * Run the collector in `delayMs` (calls within the delay share one run) — when the store may be
   * past its size: the last run's size plus what was written since (no listing of the store after
   * every job while it has room).
   */
  collectSoon (delayMs = 1000): void {
    if (this.soon != null) return
    if (delayMs > 0 && this.lastStoreBytes + (this.blocks.written - this.writtenAtLast) <= this.opts.maxBytes) return
    this.soon = setTimeout(() => {
      this.soon = undefined
      this.collect().catch((err: any) => { log.warn({ err: err?.message }, 'blob collection failed') })
    }, delayMs)
    this.soon.unref()
  }

  /** One collection (runs one at a time; a call during a run waits for it and runs again). */
  async collect (): Promise<CollectResult> {
    while (this.running != null) await this.running.catch(() => {})
    const run = this.running = this.run()
    try { return await run } finally { this.running = undefined }
  }

  private async run (): Promise<CollectResult> {
    const { maxBytes, graceMs } = this.opts
    const now = Date.now()
    let expiredPins = this.expiredAtLoad
    this.expiredAtLoad = 0
    for (const [cid, pin] of this.pins) {
      if (pin.untilMs != null && pin.untilMs <= now) { this.pins.delete(cid); expiredPins++ }
    }
    // expired pins need no line: load() skips them; the log is compacted when it has grown
    if (this.lines > 2 * this.pins.size + 1000) this.write(async file => { await this.compact(file) })
    const live = new Set<string>()
    const markAll = async (): Promise<void> => {
      const epoch = this.epoch
      for (const root of [...this.pins.keys(), ...this.holds.keys()]) await this.mark(root, live)
      // a pin or hold taken while marking (a job starting on a cached input) is marked too
      if (epoch !== this.epoch) await markAll()
    }
    await markAll()
    let marked = this.epoch
    const written = this.blocks.written
    const all = await this.blocks.list()
    let storeBytes = 0
    let keptBytes = 0
    for (const b of all) {
      storeBytes += b.bytes
      if (live.has(b.key)) keptBytes += b.bytes
    }
    let removedBlocks = 0
    let freedBytes = 0
    if (storeBytes > maxBytes) {
      const candidates = all
        .filter(b => !live.has(b.key) && now - b.writtenMs >= graceMs)
        .sort((a, b) => a.writtenMs - b.writtenMs)
      for (const b of candidates) {
        if (storeBytes <= maxBytes) break
        if (marked !== this.epoch) { await markAll(); marked = this.epoch }
        if (live.has(b.key)) continue
        await this.blocks.delete(b.key)
        storeBytes -= b.bytes
        freedBytes += b.bytes
        removedBlocks++
      }
    }
    this.lastStoreBytes = storeBytes
    this.writtenAtLast = written
    this.last = { at: now, removedBlocks, freedBytes }
    const result = { removedBlocks, freedBytes, storeBytes, keptBytes, expiredPins }
    if (removedBlocks > 0 || expiredPins > 0) log.info(result, 'blob store collected')
    return result
  }

  /** Add the blocks of `root`'s DAG that are held to `live` (a missing block ends its branch). */
  private async mark (root: string, live: Set<string>): Promise<void> {
    let cid: CID
    try { cid = CID.parse(root) } catch { return }
    const visit = async (c: CID, depth: number): Promise<void> => {
      const key = c.toString()
      if (live.has(key) || depth > MAX_DAG_DEPTH) return
      live.add(key)
      if (c.code !== dagPb.code) return
      const bytes = await this.blocks.get(c)
      if (bytes == null) return
      let links: CID[]
      try { links = dagPb.decode(bytes).Links.map(l => l.Hash) } catch { return }
      for (const link of links) await visit(link, depth + 1)
    }
    await visit(cid, 0)
  }

  private append (entry: unknown[]): void {
    this.lines++
    this.write(async file => { await appendFile(file, JSON.stringify(entry) + '\n') })
  }

  /** Rewrite the log with the live pins only. */
  private async compact (file: string): Promise<void> {
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`
    await writeFile(tmp, [...this.pins].map(([cid, p]) => JSON.stringify(p.untilMs != null ? ['+', cid, p.reason, p.untilMs] : ['+', cid, p.reason]) + '\n').join(''))
    await rename(tmp, file)
    this.lines = this.pins.size
  }

  /** Writes to the log, one after another in the order asked (a failure is logged, not thrown). */
  private write (op: (file: string) => Promise<void>): void {
    const file = this.file
    if (file == null) return
    this.saving = this.saving.then(async () => { await op(file) }).catch((err: any) => { log.warn({ err: err?.message }, 'could not write the pins log') })
  }
}
