/**
 * QuickJS's wasm (the emscripten build quickjs-emscripten runs), compiled once
 * per process and shared by every sandbox worker.
 *
 * A WebAssembly.Module posted to a worker thread shares its compiled code:
 * V8 keeps one native module per process, and the optimised code its tier-up
 * makes while one worker runs jobs serves every worker. The pool's reference
 * keeps it alive while no worker holds it: compiled in each worker, the
 * replacement of a worker killed at a wasm job's deadline compiled and tiered
 * QuickJS up again, ≈ 200 ms of background CPU per kill (docs/EXECUTOR.md).
 */
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'

let compiled: Promise<WebAssembly.Module | undefined> | undefined

/** The compiled module, or undefined where the wasm file cannot be found (emscripten then loads its own per instance). */
export async function compileQuickJS (): Promise<WebAssembly.Module | undefined> {
  compiled ??= (async () => {
    try {
      const req = createRequire(import.meta.resolve('quickjs-emscripten'))
      return await WebAssembly.compile(await readFile(req.resolve('@jitl/quickjs-wasmfile-release-sync/wasm')))
    } catch {
      return undefined
    }
  })()
  return await compiled
}

/** Use a module compiled elsewhere (the pool's, posted to this worker) instead of compiling one. */
export function useCompiledQuickJS (module: WebAssembly.Module): void {
  compiled = Promise.resolve(module)
}
