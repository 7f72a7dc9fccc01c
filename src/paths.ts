/**
 * Where this package's files are, whichever form of the code asks: the TypeScript sources (tsx),
 * the compiled modules in dist/, or the single-file bundle that `bin/mercato.js` runs
 * (dist/mercato.js, built by scripts/bundle.js). In the bundle every module's `import.meta.url`
 * is the bundle's own, so a path written relative to a module (`./worker.js`) would point at the
 * wrong folder: files that are loaded or read at run time are named here, from the package root.
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

/** True when this code runs from the TypeScript sources (tsx, mocha --import=tsx). */
export const FROM_SOURCES = import.meta.url.endsWith('.ts')

let root: string | undefined

/** The directory of this package (the nearest package.json named "mercato" above this code). */
export function packageRoot (): string {
  if (root != null) return root
  const here = fileURLToPath(import.meta.url)
  let dir = dirname(here)
  while (true) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }
      if (pkg.name === 'mercato') return (root = dir)
    } catch {}
    const up = dirname(dir)
    if (up === dir) throw new Error('cannot find the mercato package root above ' + here)
    dir = up
  }
}

/** A file of the package by its path from the package root (`config/default.json`). */
export function packageFile (path: string): string {
  return join(packageRoot(), path)
}

/**
 * A path under the code's own tree by its place under src/ (`gateway/static/`): src/… from the
 * sources, dist/… compiled (scripts/copy-assets.js copies what tsc does not emit).
 */
export function codePath (path: string): string {
  return join(packageRoot(), FROM_SOURCES ? 'src' : 'dist', path)
}

/**
 * A module of the package by its path under src/ without extension (`executor/worker`): the .ts
 * source from the sources, the compiled .js otherwise (never the bundle: workers and child
 * processes load their own modules).
 */
export function moduleUrl (name: string): URL {
  return pathToFileURL(codePath(name + (FROM_SOURCES ? '.ts' : '.js')))
}

/**
 * The flags for a worker thread whose entry is plain JavaScript (`new Worker`'s execArgv).
 * Compiled: undefined, the worker inherits the process's flags, as users run it. From the
 * sources: none. The process's flags there are tsx's loader (Node 20 hands a worker the parent's
 * flags but not its module hooks, so `--import tsx` would register tsx again in every worker:
 * ≈ 0.1 s of CPU per worker start, for code that needs none of it) and test flags such as
 * --expose-gc, which new Worker refuses when they are listed (ERR_WORKER_INVALID_EXEC_ARGV).
 */
export function plainWorkerExecArgv (): string[] | undefined {
  return FROM_SOURCES ? [] : undefined
}
