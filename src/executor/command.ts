/**
 * The command line that runs this package's `mercato` command in another
 * process (a Slurm job on a compute node): this Node (`process.execPath`) and
 * the `bin` that package.json names. Resolved in one place, so it follows the
 * package however it is built (TypeScript through tsx, or compiled).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { packageRoot } from '../paths.js'

let cached: string[] | undefined

export { packageRoot }

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
