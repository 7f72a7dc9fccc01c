/**
 * `mercato exec <file.wasm|file.js>`: run a job in the local sandbox, with the
 * same limits and determinism a provider applies, before paying for it on
 * the network.
 *
 *   mercato exec prog.wasm --arg a --arg b --stdin in.txt --timeout 5000 --memory 64
 *   mercato exec job.js --input '{"n": 10}' --json
 *
 * Prints the job's stdout (and stderr to stderr; for a JS job, its output as
 * JSON), or with --json one object { exitCode, stdout, stderr, output,
 * resultHash, usage, truncated, error? }; stdout then holds exactly that one
 * JSON document (logs go to stderr). Exit code: the job's exit code when it
 * is 0–125; 3 when the sandbox stopped or refused the job (timeout,
 * memory-limit, output-limit, trap, fuel-exhausted, sandbox-crash,
 * invalid-module, ...) or when the job's exit code cannot be passed on (above
 * 125: a shell reads 126–255 as "cannot execute", "not found" or a signal, and
 * 256 would read as 0; wasmtime traps on them); 2 for bad usage (unreadable
 * file, --input that is not JSON).
 */
import { copyFile, mkdir, readFile, rm, stat } from 'node:fs/promises'
import { dirname, extname } from 'node:path'
import type { Command } from 'commander'
import { cidOfBytes } from '../crypto/index.js'
import { isMercatoError, UsageError } from '../errors.js'
import { inputListProblem, outputTarget } from './files.js'
import type { ExecJob, ExecResult } from './index.js'

export const EXIT_SANDBOX_FAILURE = 3
export const EXIT_USAGE = 2
/** The highest job exit code passed on as the process's own (see the module doc). */
export const EXIT_CODE_MAX = 125
/** CLI defaults: generous for trying a job locally, within the provider ceilings. */
export const EXEC_DEFAULT_TIMEOUT_MS = 10_000
export const EXEC_DEFAULT_MEMORY_MB = 128
export const EXEC_OUTPUT_BYTES = 1024 * 1024

export interface ExecOptions {
  arg?: string[]
  stdin?: string
  input?: string
  timeout?: string | number
  memory?: string | number
  json?: boolean
  /** write the job's output files under this directory */
  outputs?: string
  /** `name=path` (repeatable): a local file the job reads as input `name` (read in place, never copied) */
  file?: string[]
}

export interface ExecIo {
  stdout: { write: (chunk: string | Uint8Array) => unknown }
  stderr: { write: (chunk: string | Uint8Array) => unknown }
}

const defaultIo: ExecIo = { stdout: process.stdout, stderr: process.stderr }

function collect (value: string, previous: string[]): string[] {
  return [...previous, value]
}

/** Adds `exec` to the mercato program. The action sets process.exitCode (see module doc). */
export function registerExecCommand (program: Command, io: ExecIo = defaultIo): void {
  program
    .command('exec')
    .description('run a WASI module or a JavaScript job in the local sandbox')
    .argument('<file>', 'a WASI module (.wasm) or a JavaScript job (.js) defining main(input)')
    .option('--arg <value>', 'argument for the job (repeatable)', collect, [])
    .option('--stdin <file>', 'file whose bytes are the job\'s stdin')
    .option('--input <json>', 'JSON input for a JavaScript job')
    .option('--timeout <ms>', 'wall-clock limit in milliseconds', String(EXEC_DEFAULT_TIMEOUT_MS))
    .option('--memory <mb>', 'memory cap in MiB', String(EXEC_DEFAULT_MEMORY_MB))
    .option('--json', 'print one JSON object with the whole result')
    .option('--outputs <dir>', 'write the files the job writes (wasm: /outputs; js: writeFile) under this directory')
    .option('--file <name=path>', 'a local file the job reads as input <name> (wasm: /inputs/<name>; js: readFile(name)) (repeatable)', collect, [])
    .action(async (file: string, opts: ExecOptions) => {
      process.exitCode = await execCommand(file, opts, io)
    })
}

function positive (value: string | number | undefined, fallback: number, name: string): number {
  if (value == null) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} must be a positive number`)
  return n
}

/** Runs the command; returns the process exit code. */
export async function execCommand (file: string, opts: ExecOptions, io: ExecIo = defaultIo): Promise<number> {
  let job: ExecJob
  try {
    job = await buildJob(file, opts)
  } catch (err) {
    io.stderr.write(`mercato exec: ${err instanceof Error ? err.message : String(err)}\n`)
    return EXIT_USAGE
  }
  // loaded when the command runs: every other `mercato` command starts without the sandbox's modules
  const { createExecutor } = await import('./index.js')
  const executor = createExecutor({ poolSize: 1, queueSize: 1, maxOutputBytes: EXEC_OUTPUT_BYTES, maxTimeoutMs: Math.max(job.limits.timeoutMs, 1), maxMemoryMb: Math.max(job.limits.memoryMb, 1) })
  let result: ExecResult
  try {
    await executor.start()
    result = await executor.run(job)
  } catch (err) {
    const name = isMercatoError(err) ? err.code : 'error'
    const message = err instanceof Error ? err.message : String(err)
    if (opts.json === true) io.stdout.write(JSON.stringify({ error: { name, message } }) + '\n')
    else io.stderr.write(`mercato exec: ${name}: ${message}\n`)
    return EXIT_SANDBOX_FAILURE
  } finally {
    await executor.stop()
  }
  const decoder = new TextDecoder()
  if (opts.json === true) {
    io.stdout.write(JSON.stringify({
      exitCode: result.exitCode,
      stdout: decoder.decode(result.stdout),
      stderr: decoder.decode(result.stderr),
      output: result.output,
      resultHash: result.resultHash,
      usage: result.usage,
      truncated: result.truncated,
      error: result.error,
      outputs: (result.outputs ?? []).map(o => ({ path: o.path, cid: o.cid, size: o.size }))
    }) + '\n')
  } else {
    if (result.stdout.length > 0) io.stdout.write(result.stdout)
    if (result.stderr.length > 0) io.stderr.write(result.stderr)
    if (result.output !== undefined) io.stdout.write(JSON.stringify(result.output) + '\n')
    if (result.truncated) io.stderr.write('mercato exec: output truncated\n')
    if (result.error != null) io.stderr.write(`mercato exec: ${result.error.name}: ${result.error.message}\n`)
  }
  try {
    for (const o of result.outputs ?? []) {
      if (opts.outputs != null) {
        // the executor only hands back plain relative paths; checked again before touching the disk
        const target = outputTarget(opts.outputs, o.path)
        if (target == null) { io.stderr.write(`mercato exec: refusing output path ${JSON.stringify(o.path)}\n`); return EXIT_SANDBOX_FAILURE }
        await mkdir(dirname(target), { recursive: true })
        await copyFile(o.file, target)
      }
      if (opts.json !== true) io.stderr.write(`mercato exec: output file ${o.path} (${o.size} bytes, ${o.cid})${opts.outputs != null ? ` written under ${opts.outputs}` : ''}\n`)
    }
  } finally {
    // the executor's own staging folder for this job (it named no outputDir)
    if (result.outputs != null && result.outputs.length > 0) await rm(dirname(result.outputs[0].file), { recursive: true, force: true })
  }
  if (result.error != null) return EXIT_SANDBOX_FAILURE
  if (result.exitCode < 0 || result.exitCode > EXIT_CODE_MAX) {
    io.stderr.write(`mercato exec: the job exited with code ${result.exitCode}, outside 0-${EXIT_CODE_MAX}: exiting ${EXIT_SANDBOX_FAILURE}\n`)
    return EXIT_SANDBOX_FAILURE
  }
  return result.exitCode
}

async function buildJob (file: string, opts: ExecOptions): Promise<ExecJob> {
  let bytes: Uint8Array
  try {
    bytes = new Uint8Array(await readFile(file))
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
  }
  const timeoutMs = positive(opts.timeout, EXEC_DEFAULT_TIMEOUT_MS, 'timeout')
  const memoryMb = positive(opts.memory, EXEC_DEFAULT_MEMORY_MB, 'memory')
  let stdin: Uint8Array | undefined
  if (opts.stdin != null) {
    try {
      stdin = new Uint8Array(await readFile(opts.stdin))
    } catch (err) {
      throw new UsageError(`cannot read --stdin ${opts.stdin}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
    }
  }
  let input: unknown
  if (opts.input != null) {
    try { input = JSON.parse(opts.input) } catch { throw new UsageError('--input is not valid JSON') }
  }
  const isWasm = extname(file).toLowerCase() === '.wasm' || (bytes[0] === 0x00 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d)
  const cid = cidOfBytes(bytes)
  const limits = { timeoutMs, memoryMb, outputBytes: EXEC_OUTPUT_BYTES }
  // a stable id: the same file gives the same result hash on every run
  const id = `local:${cid}`
  const inputs = await inputFiles(opts.file ?? [])
  if (isWasm) return { id, engine: 'wasm', module: bytes, moduleCid: cid, args: opts.arg ?? [], stdin, limits, inputs }
  return { id, engine: 'js', source: new TextDecoder().decode(bytes), input, args: opts.arg ?? [], stdin, limits, inputs }
}

/** `--file name=path` flags into the job's inputs (checked: syntax, names, each a readable file); undefined when none. */
async function inputFiles (flags: string[]): Promise<ExecJob['inputs']> {
  if (flags.length === 0) return undefined
  const inputs: NonNullable<ExecJob['inputs']> = []
  for (const f of flags) {
    const eq = f.indexOf('=')
    if (eq <= 0 || eq === f.length - 1) throw new UsageError(`--file: expected NAME=PATH (the input's name in the job, then a local file), got "${f}"`)
    const file = f.slice(eq + 1)
    try {
      if (!(await stat(file)).isFile()) throw Object.assign(new Error(), { code: 'not a regular file' })
    } catch (err) {
      throw new UsageError(`--file ${f}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
    }
    inputs.push({ path: f.slice(0, eq), file })
  }
  const problem = inputListProblem(inputs.map(i => i.path))
  if (problem != null) throw new UsageError(`--file: ${problem}`)
  return inputs
}
