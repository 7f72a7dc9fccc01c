/**
 * `mercato get <id> [-o DIR]`: download every output file of a finished job
 * into DIR (default: the current directory), keeping their relative paths.
 *
 * Every path is checked before anything is written: a path that is not a
 * plain relative one, or that would land outside DIR (`..`, absolute, or
 * through a symbolic link already in DIR), is refused and nothing is
 * downloaded. Each file is streamed to `<name>.part` (never whole in memory),
 * checked against its CID (the UnixFS import `ipfs add --cid-version 1` does,
 * or the sha256 of an older release's raw-block output) and renamed into
 * place, so a file that is there is whole and right.
 * Progress goes to stderr (one line rewritten in place on a terminal, a line
 * per file elsewhere); stdout lists the files written, one path a line.
 */
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { dirname, relative, resolve } from 'node:path'
import { MercatoApiError, type MercatoClient, type OutputRef } from '../client/index.js'
import { isRawCid } from '../client/cid.js'
// files.js, not the executor's index: that loads the sandbox (pool, workers), which every `mercato`
// command would then load at start
import { isWithin, outputTarget } from '../executor/files.js'
import { UsageError } from '../errors.js'
import { formatBytes } from './progress.js'

export interface GetIo {
  out: (s: string) => void
  err: (s: string) => void
  tty: boolean
}

/** Largest output an older release could name by a raw CID (its blob cap). */
const LEGACY_OUTPUT_MAX_BYTES = 16 * 1024 * 1024

/**
 * A downloaded file is the one `cid` names: its UnixFS CID (read as a stream), or for an output of
 * an older release (one raw block, at most 16 MiB) the raw sha2-256 CID of its bytes.
 */
async function fileMatchesCid (file: string, cid: string): Promise<boolean> {
  // loaded when a download is checked: most commands never need the importer
  const { unixfsCidOfFile } = await import('../crypto/unixfs.js')
  if (await unixfsCidOfFile(file) === cid) return true
  if (!isRawCid(cid) || (await stat(file)).size > LEGACY_OUTPUT_MAX_BYTES) return false
  const { bytesMatchCid } = await import('../crypto/index.js')
  return bytesMatchCid(new Uint8Array(await readFile(file)), cid)
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
    const part = `${target}.part`
    try {
      // a fresh file, never through a link someone left at <name>.part (the rename replaces a link at <name> itself)
      await rm(part, { force: true })
      const { content } = await client.streamOutput(id, o)
      let got = 0
      const progress = new Transform({ transform (chunk: Buffer, _enc, cb) { got += chunk.length; draw(o.path, got); cb(null, chunk) } })
      await pipeline(Readable.from(content), progress, createWriteStream(part, { flags: 'wx' }))
      if (!await fileMatchesCid(part, o.cid)) throw new MercatoApiError(`output ${o.path} does not match its CID ${o.cid}`, 'output-mismatch', 502)
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
