/**
 * Worker thread entry: runs one job at a time, as the pool sends them.
 * The pool terminates this thread on a deadline it cannot interrupt (a wasm
 * guest in a loop) and replaces it; nothing in here needs to clean up.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { OutputSink, outputBufferSize } from './output.js'
import { runWasm } from './wasm-engine.js'
import { startIdleGc } from '../idle-gc.js'
import type { DoneMessage, RunMessage, WarmMessage, WorkerInit, WorkerMessage } from './protocol.js'

/**
 * QuickJS (emscripten) computes local time with this thread's Date, which
 * follows the host's TZ. Guests must see UTC on every provider, so the local
 * getters of this worker's Date become their UTC twins. (Only this worker's
 * realm is changed; the host's main thread is untouched.)
 */
function pinTimezoneToUtc (): void {
  const p = Date.prototype as unknown as Record<string, unknown>
  for (const name of ['FullYear', 'Month', 'Date', 'Day', 'Hours', 'Minutes', 'Seconds', 'Milliseconds']) {
    p[`get${name}`] = p[`getUTC${name}`]
  }
  p.getTimezoneOffset = () => 0
}

const init = workerData as WorkerInit
if (parentPort == null) throw new Error('executor worker must run in a worker thread')
const port = parentPort
pinTimezoneToUtc()
const sink = new OutputSink(init.output, init.maxOutputBytes)

// QuickJS (≈ 80 ms to import) loads after the worker reports ready, so a
// replacement worker serves wasm jobs at once; a JS job waits for it.
let jsEngine: Promise<typeof import('./js-engine.js')> | undefined
const loadJs = async (): Promise<typeof import('./js-engine.js')> => await (jsEngine ??= import('./js-engine.js').then(js => {
  // the pool's compiled QuickJS, shared with the other workers (src/executor/quickjs-wasm.ts)
  if (init.quickjs != null) js.useCompiledQuickJS(init.quickjs)
  return js
}))
/**
 * After loading QuickJS, the worker runs one trivial job into a scratch
 * buffer: V8 compiles QuickJS's wasm functions lazily, on first call, so
 * without this the first real JS job on a fresh worker pays for that (tens
 * to hundreds of ms). JS jobs wait for it; its output goes nowhere.
 */
let jsWarm: Promise<void> = Promise.resolve()
/** Warm QuickJS up, unless a warm-up or a JS job has already asked for it (`jsEngine` set). */
function warmJs (): void {
  if (jsEngine != null) return
  const scratch = new OutputSink(new SharedArrayBuffer(outputBufferSize(1024)), 1024)
  jsWarm = loadJs().then(async js => {
    await js.loadQuickJS(init.jsMemoryBytes)
    await js.runJs({ type: 'run', engine: 'js', source: 'function main (i) { return [i, Math.random(), Date.now()].length }', input: '1', timeoutMs: 5000, memoryBytes: init.jsMemoryBytes, outputBytes: 1024, seed: 'warm-up', files: { files: 0, fileBytes: 0, totalBytes: 0 } }, scratch)
    port.postMessage({ type: 'warmed' } satisfies WorkerMessage)
  })
  jsWarm.catch((err: unknown) => { throw err })
}

async function handle (msg: RunMessage): Promise<DoneMessage> {
  if (msg.engine === 'wasm') return runWasm(msg, sink)
  await jsWarm
  return await (await loadJs()).runJs(msg, sink)
}

port.on('message', (msg: RunMessage | WarmMessage) => {
  if (msg.type === 'warm') {
    // a worker that started before the pool compiled QuickJS gets it now (unless a JS job made it compile its own)
    if (msg.quickjs != null) init.quickjs ??= msg.quickjs
    warmJs()
    return
  }
  // output files are on disk: the message names them
  handle(msg).then(done => { port.postMessage(done satisfies WorkerMessage) }, (err: unknown) => {
    const done: DoneMessage = {
      type: 'done',
      exitCode: -1,
      truncated: sink.truncated,
      wallMs: 0,
      memoryBytes: 0,
      error: { name: 'trap', message: `executor worker fault: ${err instanceof Error ? err.message : String(err)}` },
      recycle: true
    }
    port.postMessage(done)
  })
})

port.postMessage({ type: 'ready' } satisfies WorkerMessage)
// a worker that ran a burst of jobs gives their garbage back once it waits for work (src/idle-gc.ts)
startIdleGc()
if (init.js) warmJs()
