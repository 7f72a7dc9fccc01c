/**
 * Background work that waits for the machine's CPUs to be free.
 *
 * A node warms up after it is ready (QuickJS compiled and run once in the warm sandbox worker,
 * the gateway's validators compiled): ≈ 0.35 s of CPU, most of it V8 optimising QuickJS on
 * its background threads. Right after start is when a node also connects to its peers, and
 * when several nodes start on one machine (`mercato devnet`, a laptop's login, a test suite)
 * every one of them warms up while all are still handshaking: measured, ten nodes on two cores
 * formed their mesh in 6.3–6.9 s with the warm-ups, 4.8 s with them out of the way. The first
 * job cannot come before the node has joined the market anyway, and one that does starts a
 * sandbox worker on demand. So the warm-up runs once the machine has been at least
 * CPU_IDLE_MIN_FRACTION idle over one sample, or CPU_IDLE_MAX_WAIT_MS after it was asked for at
 * the latest; on a machine at rest that is the first sample.
 *
 * Machine-wide, from `os.cpus()` (Linux, macOS and Windows alike): what the other processes do
 * is the point, so a node's own event loop is not the measure.
 */
import { cpus } from 'node:os'

/** How often the CPUs are sampled while waiting (ms). */
export const CPU_IDLE_SAMPLE_MS = 250
/** The share of the CPUs' time that must have been idle over one sample. */
export const CPU_IDLE_MIN_FRACTION = 0.5
/** The longest wait (ms): on a machine that is never idle, the work runs anyway. */
export const CPU_IDLE_MAX_WAIT_MS = 10_000

export interface CpuIdleOptions {
  sampleMs?: number
  minIdleFraction?: number
  maxWaitMs?: number
  /** the CPUs' cumulative busy and idle times (ms); default `os.cpus()` summed (tests) */
  times?: () => { busy: number, idle: number }
}

function cpuTimes (): { busy: number, idle: number } {
  let busy = 0
  let idle = 0
  for (const c of cpus()) {
    const t = c.times
    busy += t.user + t.nice + t.sys + t.irq
    idle += t.idle
  }
  return { busy, idle }
}

/**
 * Run `fn` once the CPUs are idle enough (see the module doc). Returns a cancel function: work
 * not started yet never starts (a node stopped before its warm-up). `onRun` is told how long it
 * waited and whether it waited for the machine or gave up waiting.
 */
export function whenCpusIdle (fn: () => void, opts: CpuIdleOptions & { onRun?: (waitedMs: number, idle: boolean) => void } = {}): () => void {
  const sampleMs = opts.sampleMs ?? CPU_IDLE_SAMPLE_MS
  const minIdle = opts.minIdleFraction ?? CPU_IDLE_MIN_FRACTION
  const maxWaitMs = opts.maxWaitMs ?? CPU_IDLE_MAX_WAIT_MS
  const times = opts.times ?? cpuTimes
  const t0 = Date.now()
  let last = times()
  let done = false
  const run = (idle: boolean): void => {
    if (done) return
    done = true
    clearInterval(timer)
    opts.onRun?.(Date.now() - t0, idle)
    fn()
  }
  const timer = setInterval(() => {
    const now = times()
    const busy = now.busy - last.busy
    const idle = now.idle - last.idle
    last = now
    if (busy + idle > 0 && idle / (busy + idle) >= minIdle) run(true)
    else if (Date.now() - t0 >= maxWaitMs) run(false)
  }, sampleMs)
  timer.unref()
  return () => { done = true; clearInterval(timer) }
}
