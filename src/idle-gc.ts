/**
 * Memory back to the system when a thread goes quiet.
 *
 * V8 runs a full collection when the heap grows, not when the program is
 * idle: after a burst of jobs a node keeps the burst's garbage (tens of MiB
 * across the main thread and the sandbox workers) until the next burst, and
 * its RSS at rest drifts with the size of the last one. Browsers have a
 * memory reducer for this; Node has none, since only the program knows when
 * it is idle. A node's threads do: each runs one full collection once its
 * heap has grown by `minGrowthBytes` since the last one (what it uses, or what
 * it holds committed: a busy spell can leave V8 holding many more pages than
 * it uses; a leak check saw 19 MiB more committed for 4 MiB more used) and its
 * event loop was nearly idle (under `maxUtilization`) for a whole
 * `intervalMs`: once per quiet period, never while the thread is busy (the
 * last-resort flavour below took ~100 ms on a 34 MiB heap).
 *
 * A node's main thread at rest in a mesh still allocates (gossip, pings,
 * heartbeats) and its heap creeps: by 4 MiB in 20–30 s, in an idle 8-node
 * mesh. Collecting each time cost every node one compacting collection of
 * 100–600 ms that often, a third of its idle CPU. So the node's main thread
 * passes `minSpacingMs` (IDLE_GC_MIN_SPACING_MS): growth under
 * `bigGrowthBytes` is then collected at most once per `minSpacingMs` after
 * this thread's last idle collection; larger growth, and the first after
 * start, at the first quiet look. A sandbox worker has no timers and no
 * traffic, nothing creeps there, and a burst leaves it 6–9 MiB of garbage: it
 * keeps the default, no spacing.
 *
 * The collector is reached without `--expose-gc` on the command line: the
 * flag is set just long enough to create one context that holds `gc` (≈ 1.6 ms,
 * done at the first collection, not at start-up). No
 * guest code runs in a V8 context here (QuickJS and wasm guests run in wasm
 * memory), so nothing else can reach it.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { performance, type EventLoopUtilization } from 'node:perf_hooks'

/** How often a thread looks at its event loop and heap (ms). */
export const IDLE_GC_INTERVAL_MS = 5_000
/** Heap growth since the last collection that makes a quiet thread collect (bytes). */
export const IDLE_GC_MIN_GROWTH_BYTES = 4 * 1024 * 1024
/** Event-loop utilization over the interval under which the thread counts as quiet. */
export const IDLE_GC_MAX_UTILIZATION = 0.05
/** Growth that is collected at the first quiet look, however recent the last collection (bytes). */
export const IDLE_GC_BIG_GROWTH_BYTES = 16 * 1024 * 1024
/** Least time between two collections of growth under IDLE_GC_BIG_GROWTH_BYTES, for a thread that asks for it (a node's main thread; ms). */
export const IDLE_GC_MIN_SPACING_MS = 5 * 60_000

let collector: (() => void) | null | undefined

/** V8's full collection, or undefined where it cannot be reached. */
export function fullGc (): (() => void) | undefined {
  if (collector === undefined) {
    let gc: unknown = (globalThis as { gc?: unknown }).gc
    if (typeof gc !== 'function') {
      try {
        setFlagsFromString('--expose-gc')
        gc = runInNewContext('gc')
      } catch {
        gc = undefined
      } finally {
        setFlagsFromString('--no-expose-gc')
      }
    }
    collector = typeof gc === 'function' ? reducing(gc as (opts?: object) => void) : null
  }
  return collector ?? undefined
}

/**
 * V8 12+ (Node 22+): the "last resort" flavour compacts every page and gives the emptied ones
 * back, as V8 does under memory pressure. A plain full collection keeps the pages it committed:
 * measured on a fragmented 100 MiB heap, RSS 137–143 MiB after a plain one, 76–80 MiB after this.
 * Node 20's V8 (11.3) does not know the option (and takes an options object for a partial
 * collection): its collection runs with `--compact-on-every-full-gc` set for just that one, which
 * evacuates every page as well (a fragmented 66 MiB heap: 85 MiB committed after a plain
 * collection, 39 MiB after this one; RSS 127 → 77 MiB once the emptied pages are unmapped).
 */
function reducing (gc: (opts?: object) => void): () => void {
  if (Number(process.versions.v8.split('.')[0]) >= 12) return () => { gc({ type: 'major', execution: 'sync', flavor: 'last-resort' }) }
  return () => {
    setFlagsFromString('--compact-on-every-full-gc')
    // twice: V8 picks the pages to compact when a marking starts, and one it had already started
    // (concurrently, before the flag was set) ends in the first collection without compacting
    try { gc(); gc() } finally { setFlagsFromString('--no-compact-on-every-full-gc') }
  }
}

export interface IdleGcOptions {
  intervalMs?: number
  minGrowthBytes?: number
  maxUtilization?: number
  /** growth collected however recent the last collection (bytes) */
  bigGrowthBytes?: number
  /** least time between two collections of growth under bigGrowthBytes (ms; default 0, none) */
  minSpacingMs?: number
  /** told after each collection: heap bytes freed, and how long it took (ms) */
  onCollect?: (freedBytes: number, ms: number) => void
  /** the collection to run (default fullGc()) and the heap readings (default V8's used and committed heap): tests */
  gc?: () => void
  heapUsed?: () => number
  heapCommitted?: () => number
}

export interface IdleGc {
  /** collections run so far */
  readonly collections: number
  stop: () => void
}

/** Watch this thread's event loop and heap; collect once when it goes quiet after growing. */
export function startIdleGc (opts: IdleGcOptions = {}): IdleGc {
  const intervalMs = opts.intervalMs ?? IDLE_GC_INTERVAL_MS
  const minGrowth = opts.minGrowthBytes ?? IDLE_GC_MIN_GROWTH_BYTES
  const maxUtilization = opts.maxUtilization ?? IDLE_GC_MAX_UTILIZATION
  const bigGrowth = opts.bigGrowthBytes ?? IDLE_GC_BIG_GROWTH_BYTES
  const minSpacing = opts.minSpacingMs ?? 0
  const heapUsed = opts.heapUsed ?? (() => getHeapStatistics().used_heap_size)
  const heapCommitted = opts.heapCommitted ?? (() => getHeapStatistics().total_heap_size)
  let collections = 0
  let collectedAt = -Infinity
  let floor = heapUsed()
  let committedFloor = heapCommitted()
  let last: EventLoopUtilization = performance.eventLoopUtilization()
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization()
    const quiet = performance.eventLoopUtilization(now, last).utilization < maxUtilization
    last = now
    const used = heapUsed()
    const committed = heapCommitted()
    // V8 collected (or gave pages back) on its own: the floors follow it down
    if (used < floor) floor = used
    if (committed < committedFloor) committedFloor = committed
    const growth = Math.max(used - floor, committed - committedFloor)
    if (!quiet || growth < minGrowth) return
    if (growth < bigGrowth && performance.now() - collectedAt < minSpacing) return
    const gc = opts.gc ?? fullGc()
    if (gc == null) { clearInterval(timer); return }
    const t = performance.now()
    gc()
    collections++
    collectedAt = performance.now()
    floor = heapUsed()
    committedFloor = heapCommitted()
    opts.onCollect?.(used - floor, collectedAt - t)
  }, intervalMs)
  timer.unref()
  return {
    get collections () { return collections },
    stop: () => { clearInterval(timer) }
  }
}
