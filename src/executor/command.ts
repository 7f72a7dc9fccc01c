/**
 * The command line that runs this package's `mercato` command in another
 * process (a Slurm job on a compute node): this Node (`process.execPath`) and
 * the `bin` that package.json names. Resolved in one place, so it follows the
 * package however it is built (TypeScript through tsx, or compiled).
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

let cached: string[] | undefined

/** The directory of the package this file belongs to (the nearest package.json named "mercato" above it). */
export function packageRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (true) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }
      if (pkg.name === 'mercato') return dir
    } catch {}
    const up = dirname(dir)
    if (up === dir) throw new Error('cannot find the mercato package root above ' + fileURLToPath(import.meta.url))
    dir = up
  }
}

/** `[node, <package>/bin/mercato.js]`: append the subcommand and its arguments. */
export function mercatoCommand (): string[] {
  if (cached != null) return [...cached]
  const root = packageRoot()
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin?: string | Record<string, string> }
  const bin = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin?.mercato
  if (bin == null) throw new Error('package.json names no "mercato" bin')
  cached = [process.execPath, join(root, bin)]
  return [...cached]
}
