/**
 * Copies the files under src/ that tsc does not emit (dashboard.html,
 * verify-worker.js: anything read or loaded at run time relative to its
 * module) to the same place under dist/, so the compiled code finds them.
 * Run by `npm run build` after tsc.
 */
import { cpSync, readdirSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const src = join(root, 'src')
const dist = join(root, 'dist')

let copied = 0
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || entry.name.endsWith('.ts')) continue
  const from = join(entry.parentPath, entry.name)
  cpSync(from, join(dist, relative(src, from)))
  copied++
}
process.stdout.write(`copied ${copied} asset file(s) to dist/\n`)
