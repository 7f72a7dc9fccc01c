/**
 * Runs one WASI command module (worker side). The module arrives compiled
 * and already capped/instrumented by the pool (see wasm-module.ts).
 */
import { FUEL_EXPORT, FUEL_UNMETERED, GROW_FAILED_EXPORT, RECYCLE_MEMORY_BYTES, WASI_MODULE } from './constants.js'
import { OutputLimitReached, Wasi, WasiExit } from './wasi.js'
import type { OutputSink } from './output.js'
import { OutputDiskError, OutputFiles } from './files.js'
import { InputFiles } from './inputs.js'
import type { DoneMessage, RunWasm } from './protocol.js'

export function runWasm (job: RunWasm, sink: OutputSink): DoneMessage {
  const started = performance.now()
  sink.reset(job.outputBytes)
  const outputs = new OutputFiles(job.files, job.outputDir, job.fdTable != null ? new Int32Array(job.fdTable) : undefined)
  const inputs = job.inputs != null ? new InputFiles(job.inputs) : undefined
  const wasi = new Wasi({ args: job.args, env: job.env, stdin: job.stdin, sink, seed: job.seed, outputs, inputs })
  const wasiNames: string[] = []
  for (const imp of WebAssembly.Module.imports(job.module)) {
    if (imp.module === WASI_MODULE && imp.kind === 'function') wasiNames.push(imp.name)
  }
  const imports: WebAssembly.Imports = { [WASI_MODULE]: wasi.imports(wasiNames) }
  let memory: WebAssembly.Memory | undefined
  if (job.memory?.imported === true) {
    memory = new WebAssembly.Memory({ initial: job.memory.initialPages, maximum: job.memory.maximumPages })
    imports[job.memory.module as string] = { ...(imports[job.memory.module as string] ?? {}), [job.memory.name as string]: memory }
  }

  let exitCode = -1
  let error: DoneMessage['error']
  let hostError: string | undefined
  let instance: WebAssembly.Instance | undefined
  try {
    instance = new WebAssembly.Instance(job.module, imports)
    const exported = instance.exports.memory
    if (memory == null && exported instanceof WebAssembly.Memory) memory = exported
    if (memory != null) wasi.bind(memory)
    const fuelGlobal = instance.exports[FUEL_EXPORT] as WebAssembly.Global | undefined
    if (fuelGlobal != null) fuelGlobal.value = job.fuel != null ? BigInt(job.fuel) : FUEL_UNMETERED
    const start = instance.exports._start
    if (typeof start !== 'function') throw new WebAssembly.RuntimeError('module has no _start')
    start()
    exitCode = 0
  } catch (err) {
    if (err instanceof WasiExit) {
      exitCode = err.code
    } else if (err instanceof OutputDiskError) {
      hostError = err.message
      error = { name: 'trap', message: err.message }
    } else if (err instanceof OutputLimitReached) {
      error = { name: 'output-limit', message: outputs.limitHit ?? `output exceeded ${job.outputBytes} bytes` }
    } else {
      error = { name: 'trap', message: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }
    }
  }

  const memoryBytes = memory?.buffer.byteLength ?? 0
  let fuel: number | undefined
  if (instance != null) {
    const fuelGlobal = instance.exports[FUEL_EXPORT] as WebAssembly.Global | undefined
    if (fuelGlobal != null && job.fuel != null) {
      const left = fuelGlobal.value as bigint
      fuel = left < 0n ? job.fuel : job.fuel - Number(left)
      if (left < 0n && error?.name === 'trap') error = { name: 'fuel-exhausted', message: `fuel budget of ${job.fuel} exhausted` }
    }
    const growFailed = (instance.exports[GROW_FAILED_EXPORT] as WebAssembly.Global | undefined)?.value === 1
    if (growFailed && (error?.name === 'trap' || (error == null && exitCode !== 0))) {
      error = { name: 'memory-limit', message: `memory.grow failed at the cap of ${job.memoryBytes} bytes${error != null ? ` (${error.message})` : ` (exit code ${exitCode})`}` }
    }
  }
  if (error == null && sink.truncated) error = { name: 'output-limit', message: `output exceeded ${job.outputBytes} bytes` }

  // a failed job has no output files (like a JS job's output value): nothing half-written is kept
  const files = error == null ? outputs.take() : undefined
  if (files == null) outputs.discard()
  return {
    type: 'done',
    hostError,
    exitCode: error != null && error.name !== 'memory-limit' ? -1 : exitCode,
    files: files != null && files.length > 0 ? files : undefined,
    truncated: sink.truncated,
    wallMs: performance.now() - started,
    memoryBytes,
    fuel,
    error,
    recycle: memoryBytes > RECYCLE_MEMORY_BYTES || error?.name === 'memory-limit'
  }
}
