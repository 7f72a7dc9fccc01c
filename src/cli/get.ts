/**
 * `mercato get <id> [-o DIR]`: download every output file of a finished job
 * into DIR (default: the current directory), keeping their relative paths.
 *
 * Every path is checked before anything is written: a path that is not a
 * plain relative one, or that would land outside DIR (`..`, absolute, or
 * through a symbolic link already in DIR), is refused and nothing is
 * downloaded. Each file is checked against its CID by the client, written
 * to `<name>.part` and renamed into place, so a file that is there is whole.
 * Progress goes to stderr (one line rewritten in place on a terminal, a line
 * per file elsewhere); stdout lists the files written, one path a line.
 */
import { mkdir, realpath, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, relative, resolve } from 'node:path'
import type { MercatoClient, OutputRef } from '../client/index.js'
// files.js, not the executor's index: that loads the sandbox (pool, workers), which every `mercato`
// command would then load at start
import { isWithin, outputTarget } from '../executor/files.js'
import { UsageError } from '../errors.js'

export interface GetIo {
  out: (s: string) => void
  err: (s: string) => void
  tty: boolean
}

export function formatBytes (n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}

/** Download all outputs of job `id` into `dir`; returns the exit code. */
export async function getOutputs (client: MercatoClient, id: string, dir: string, io: GetIo): Promise<number> {
  const outputs: OutputRef[] = await client.outputs(id)
  if (outputs.length === 0) { io.err(`job ${id} wrote no output files\n`); return 0 }
  const root = resolve(dir)
  // every path first: one bad path and nothing is written
  for (const o of outputs) {
    if (outputTarget(root, o.path) == null) {
      throw new UsageError(`refusing output path ${JSON.stringify(o.path.slice(0, 200))}: it would land outside ${root}`)
    }
  }
  await mkdir(root, { recursive: true })
  const realRoot = await realpath(root)
  const total = outputs.reduce((n, o) => n + o.size, 0)
  let done = 0
  let lastDraw = 0
  const draw = (name: string, got: number, force = false): void => {
    if (!io.tty) return
    const now = Date.now()
    if (!force && now - lastDraw < 100) return
    lastDraw = now
    const pct = total === 0 ? 100 : Math.floor((done + got) * 100 / total)
    const bar = '#'.repeat(Math.floor(pct / 5)).padEnd(20, '-')
    io.err(`\r\x1b[K[${bar}] ${String(pct).padStart(3)}% ${formatBytes(done + got)} / ${formatBytes(total)}  ${name.slice(-40)}`)
  }
  for (const [i, o] of outputs.entries()) {
    const target = resolve(root, o.path)
    await mkdir(dirname(target), { recursive: true })
    // a directory on the way that is a symbolic link out of DIR is refused too
    const parent = await realpath(dirname(target))
    if (!isWithin(realRoot, parent)) throw new UsageError(`refusing output path ${JSON.stringify(o.path)}: ${dirname(target)} leads outside ${root}`)
    const bytes = await client.downloadOutput(id, o, { onProgress: (got) => { draw(o.path, got) } })
    const part = `${target}.part`
    try {
      // a fresh file, never through a link someone left at <name>.part (the rename replaces a link at <name> itself)
      await rm(part, { force: true })
      await writeFile(part, bytes, { flag: 'wx' })
      await rename(part, target)
    } catch (e) {
      await rm(part, { force: true })
      throw e
    }
    done += o.size
    if (io.tty) draw(o.path, 0, true)
    else io.err(`${i + 1}/${outputs.length} ${o.path} ${formatBytes(o.size)}\n`)
    io.out(`${relative(process.cwd(), target) || target}\n`)
  }
  if (io.tty) io.err('\n')
  io.err(`${outputs.length} file${outputs.length === 1 ? '' : 's'}, ${formatBytes(total)} in ${root}\n`)
  return 0
}
