/**
 * Staged jobs: a job written to a directory, run there by another process
 * (a Slurm job on a compute node), its result written back beside it.
 *
 *   <dir>/job.cbor     the ExecJob without its module (canonical DAG-CBOR; stdin as bytes)
 *   <dir>/module.wasm  the module (engine wasm), checked against the job's CID before it runs
 *   <dir>/started      written when the sandbox starts (the submitter's fast "running" signal)
 *   <dir>/result.cbor  the ExecResult (canonical DAG-CBOR), or { refusal: { code, message } };
 *                      written to a temp name and renamed, so it is never seen half-written
 *   <dir>/outputs/     the job's output files as the sandbox wrote them (`o1`, `o2`, ...);
 *                      result.cbor names each by path, file name and size
 *
 * `mercato exec-staged <dir>` runs the job in the same sandbox as the local
 * pool and `mercato exec` (createExecutor, with the job's own limits as the
 * ceilings), so exit code, output and result hash are those of a local run.
 * The submitter treats the directory as untrusted (the cluster shares it):
 * sizes are capped, the result is schema-checked and its hash recomputed.
 */
import { lstat, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { Command } from 'commander'
import { z } from 'zod'
import { canonicalDecode, canonicalEncode } from '../crypto/index.js'
import { unixfsCidOfFile } from '../crypto/unixfs.js'
import { isMercatoError, MercatoError } from '../errors.js'
import { AbortedError, ExecutorStoppedError, InvalidModuleError, QueueFullError, UnsupportedEngineError } from './errors.js'
import { computeResultHash } from './hash.js'
import { outputListProblem } from './files.js'
import { MAX_OUTPUT_FILES, MAX_OUTPUT_TOTAL_BYTES } from './constants.js'
import type { ExecJob, ExecResult, Isolation, OutputFile } from './index.js'

export const STAGED_JOB_FILE = 'job.cbor'
export const STAGED_MODULE_FILE = 'module.wasm'
export const STAGED_STARTED_FILE = 'started'
export const STAGED_RESULT_FILE = 'result.cbor'
export const STAGED_OUTPUTS_DIR = 'outputs'
/** Largest job.cbor read (args, env, stdin, input, JS source: all bounded far below this by the offer's size cap). */
export const MAX_STAGED_JOB_BYTES = 16 * 1024 * 1024
/** Largest module read back from a stage dir (the market's blob cap is lower). */
export const MAX_STAGED_MODULE_BYTES = 64 * 1024 * 1024
/** Room in result.cbor beyond stdout + stderr + output: usage, hash, names, encoding overhead. */
export const STAGED_RESULT_SLACK_BYTES = 64 * 1024

/** What job.cbor holds. */
export interface StagedJob {
  v: 1
  id: string
  engine: 'wasm' | 'js'
  moduleCid?: string
  source?: string
  args?: string[]
  env?: Record<string, string>
  stdin?: Uint8Array
  /** JSON text of the input (engine js), so any JSON value survives the encoding */
  input?: string
  limits: { timeoutMs: number, memoryMb: number, outputBytes: number, fuel?: number }
  seed: string
  isolation: Isolation
}

const limitsSchema = z.strictObject({
  timeoutMs: z.number().int().min(1),
  memoryMb: z.number().int().min(1),
  outputBytes: z.number().int().min(0),
  fuel: z.number().int().min(0).optional()
})

const stagedJobSchema = z.strictObject({
  v: z.literal(1),
  id: z.string().min(1).max(256),
  engine: z.enum(['wasm', 'js']),
  moduleCid: z.string().max(128).optional(),
  source: z.string().optional(),
  args: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()).optional(),
  stdin: z.instanceof(Uint8Array).optional(),
  input: z.string().optional(),
  limits: limitsSchema,
  seed: z.string().max(256),
  isolation: z.enum(['none', 'unshare', 'bwrap'])
})

const failureNames = z.enum(['timeout', 'memory-limit', 'output-limit', 'trap', 'fuel-exhausted'])

const stagedResultSchema = z.union([
  z.strictObject({
    v: z.literal(1),
    exitCode: z.number().int(),
    stdout: z.instanceof(Uint8Array),
    stderr: z.instanceof(Uint8Array),
    output: z.unknown().optional(),
    /** the output's JSON text, when DAG-CBOR cannot carry it */
    outputJson: z.string().optional(),
    truncated: z.boolean(),
    resultHash: z.string().regex(/^[0-9a-f]{64}$/),
    usage: z.strictObject({ wallMs: z.number(), memoryBytes: z.number(), outputBytes: z.number(), fuel: z.number().optional() }),
    error: z.strictObject({ name: failureNames, message: z.string().max(4096) }).optional(),
    /** the output files, sorted by path, each a file in <dir>/outputs (their CIDs are recomputed here, and the hash checked over them) */
    files: z.array(z.strictObject({ path: z.string().max(1024), name: z.string().regex(/^o[0-9]{1,9}$/), size: z.number().int().min(0) })).max(MAX_OUTPUT_FILES).optional()
  }),
  z.strictObject({ v: z.literal(1), refusal: z.strictObject({ code: z.string().max(64), message: z.string().max(4096) }) })
])

/** The stage dir holds no valid result (missing, too large, malformed, or a hash that does not match its contents). */
export class StagedResultError extends MercatoError {
  constructor (message: string, cause?: unknown) {
    super(message, { code: 'staged-result-invalid', status: 502, retryable: true, name: 'StagedResultError', cause })
  }
}

/** Write a job into `dir` (created, mode 0700). The limits are written as given: clamp them first. */
export async function stageJob (dir: string, job: ExecJob, isolation: Isolation): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const staged: StagedJob = {
    v: 1,
    id: job.id,
    engine: job.engine,
    moduleCid: job.moduleCid,
    source: job.source,
    args: job.args?.map(String),
    env: job.env != null ? { ...job.env } : undefined,
    stdin: job.stdin,
    input: undefined,
    limits: { ...job.limits },
    seed: job.seed ?? job.id,
    isolation
  }
  if (job.input !== undefined) {
    // the pool's own refusal for the same input
    try { staged.input = JSON.stringify(job.input) } catch (err) { throw new InvalidModuleError('job input is not JSON-serialisable', err) }
  }
  if (job.engine === 'wasm') {
    if (job.module == null) throw new InvalidModuleError('wasm job without module bytes')
    await writeFile(join(dir, STAGED_MODULE_FILE), job.module, { mode: 0o600 })
  }
  await writeFile(join(dir, STAGED_JOB_FILE), canonicalEncode(staged), { mode: 0o600 })
}

async function readCapped (file: string, maxBytes: number): Promise<Uint8Array> {
  const s = await stat(file)
  if (s.size > maxBytes) throw new Error(`${file} is ${s.size} bytes (cap ${maxBytes})`)
  return new Uint8Array(await readFile(file))
}

/** Read a staged job back (compute side). */
export async function readStagedJob (dir: string): Promise<{ job: ExecJob, isolation: Isolation }> {
  const raw = canonicalDecode(await readCapped(join(dir, STAGED_JOB_FILE), MAX_STAGED_JOB_BYTES))
  const s = stagedJobSchema.parse(raw)
  const job: ExecJob = { id: s.id, engine: s.engine, limits: s.limits, seed: s.seed }
  if (s.args != null) job.args = s.args
  if (s.env != null) job.env = s.env
  if (s.stdin != null) job.stdin = s.stdin
  if (s.input != null) job.input = JSON.parse(s.input)
  if (s.source != null) job.source = s.source
  if (s.engine === 'wasm') {
    job.module = await readCapped(join(dir, STAGED_MODULE_FILE), MAX_STAGED_MODULE_BYTES)
    if (s.moduleCid != null) job.moduleCid = s.moduleCid
  }
  return { job, isolation: s.isolation }
}

async function writeAtomically (dir: string, name: string, bytes: Uint8Array): Promise<void> {
  const tmp = join(dir, `.${name}.${process.pid}.tmp`)
  await writeFile(tmp, bytes, { mode: 0o600 })
  await rename(tmp, join(dir, name))
}

/** Encode a result (or a refusal) for result.cbor. */
export function encodeStagedResult (r: ExecResult | { refusal: { code: string, message: string } }): Uint8Array {
  if ('refusal' in r) return canonicalEncode({ v: 1, refusal: r.refusal })
  const body: Record<string, unknown> = {
    v: 1,
    exitCode: r.exitCode,
    stdout: r.stdout,
    stderr: r.stderr,
    truncated: r.truncated,
    resultHash: r.resultHash,
    usage: r.usage,
    error: r.error,
    ...(r.outputs != null && r.outputs.length > 0 ? { files: r.outputs.map(o => ({ path: o.path, name: basename(o.file), size: o.size })) } : {})
  }
  try {
    return canonicalEncode({ ...body, output: r.output })
  } catch {
    // the same fallback computeResultHash takes: values DAG-CBOR cannot carry travel as JSON text
    return canonicalEncode({ ...body, outputJson: JSON.stringify(r.output) })
  }
}

/** Rebuild a refusal thrown on the compute node as the same named error class. */
export function refusalError (code: string, message: string): Error {
  switch (code) {
    case 'invalid-module': return new InvalidModuleError(message)
    case 'unsupported-engine': return new UnsupportedEngineError(message)
    case 'queue-full': return new QueueFullError(message)
    case 'aborted': return new AbortedError(message)
    case 'executor-stopped': return new ExecutorStoppedError(message)
    // anything else went wrong on the compute node, not in the job: retryable, so the requester fails over
    default: return new MercatoError(message, { code, name: 'ExecutorError', retryable: true })
  }
}

/**
 * Read result.cbor (submitter side): undefined while there is none; the
 * result, checked (size, schema, hash over its contents); a refusal is thrown
 * as its named error.
 */
export async function readStagedResult (dir: string, jobId: string, outputBytes: number): Promise<ExecResult | undefined> {
  const file = join(dir, STAGED_RESULT_FILE)
  let bytes: Uint8Array
  try {
    bytes = await readCapped(file, outputBytes * 2 + STAGED_RESULT_SLACK_BYTES)
  } catch (err: any) {
    if (err?.code === 'ENOENT') return undefined
    throw new StagedResultError(`cannot read the staged result: ${err?.message ?? err}`, err)
  }
  let parsed: z.infer<typeof stagedResultSchema>
  try {
    parsed = stagedResultSchema.parse(canonicalDecode(bytes))
  } catch (err) {
    throw new StagedResultError('the staged result is malformed', err)
  }
  if ('refusal' in parsed) throw refusalError(parsed.refusal.code, parsed.refusal.message)
  const output = parsed.outputJson !== undefined ? JSON.parse(parsed.outputJson) as unknown : parsed.output
  const result: ExecResult = {
    exitCode: parsed.exitCode,
    stdout: parsed.stdout,
    stderr: parsed.stderr,
    output,
    truncated: parsed.truncated,
    resultHash: parsed.resultHash,
    usage: parsed.usage
  }
  if (parsed.error != null) result.error = parsed.error
  if (parsed.files != null && parsed.files.length > 0) {
    const problem = outputListProblem(parsed.files.map(f => f.path))
    if (problem != null) throw new StagedResultError(`the staged result's output files are malformed: ${problem}`)
    const total = parsed.files.reduce((n, f) => n + f.size, 0)
    if (total > MAX_OUTPUT_TOTAL_BYTES) throw new StagedResultError(`the staged result's output files hold ${total} bytes, over ${MAX_OUTPUT_TOTAL_BYTES}`)
    const outputs: OutputFile[] = []
    for (const f of parsed.files) {
      const path = join(dir, STAGED_OUTPUTS_DIR, f.name)
      // a plain file of the size named (never a link someone on the cluster put there), its CID from its bytes
      const st = await lstat(path).catch(() => undefined)
      if (st == null || !st.isFile() || st.size !== f.size) throw new StagedResultError(`the staged output ${f.path} is not a file of ${f.size} bytes at ${path}`)
      let cid: string
      try { cid = await unixfsCidOfFile(path) } catch (err) { throw new StagedResultError(`cannot read the staged output ${f.path}`, err) }
      outputs.push({ path: f.path, cid, size: f.size, file: path })
    }
    result.outputs = outputs
  }
  if (computeResultHash(jobId, result) !== result.resultHash) throw new StagedResultError('the staged result hash does not match its contents')
  return result
}

/** Run the job staged in `dir` in the local sandbox and write result.cbor. Returns the process exit code. */
export async function execStaged (dir: string, io: { stderr: { write: (s: string) => unknown } } = process): Promise<number> {
  let job: ExecJob
  let isolation: Isolation
  try {
    ({ job, isolation } = await readStagedJob(dir))
  } catch (err: any) {
    io.stderr.write(`mercato exec-staged: cannot read the job in ${dir}: ${err?.message ?? err}\n`)
    return 2
  }
  const l = job.limits
  // the job's own (already clamped) limits are the ceilings: the sandbox a provider's pool would give it
  // (loaded when the command runs: every other `mercato` command starts without the sandbox's modules)
  const { createExecutor } = await import('./index.js')
  const executor = createExecutor({
    poolSize: 1,
    queueSize: 1,
    maxTimeoutMs: l.timeoutMs,
    maxMemoryMb: l.memoryMb,
    maxOutputBytes: l.outputBytes,
    moduleCacheSize: 1,
    isolation,
    engines: [job.engine]
  })
  let encoded: Uint8Array
  try {
    await executor.start()
    await writeFile(join(dir, STAGED_STARTED_FILE), String(Date.now()))
    // the output files go to <dir>/outputs as the job writes them: result.cbor names them
    encoded = encodeStagedResult(await executor.run({ ...job, outputDir: join(dir, STAGED_OUTPUTS_DIR) }))
  } catch (err: any) {
    const code = isMercatoError(err) ? err.code : 'error'
    encoded = encodeStagedResult({ refusal: { code, message: String(err?.message ?? err).slice(0, 4096) } })
  }
  try {
    // the result first (the provider is waiting for it), then the sandbox is taken down
    await writeAtomically(dir, STAGED_RESULT_FILE, encoded)
  } catch (err: any) {
    io.stderr.write(`mercato exec-staged: cannot write the result in ${dir}: ${err?.message ?? err}\n`)
    return 1
  } finally {
    await executor.stop().catch(() => {})
  }
  return 0
}

/** Adds `exec-staged <dir>` to the mercato program. */
export function registerExecStagedCommand (program: Command): void {
  program
    .command('exec-staged')
    .description('run a job staged in a directory (by a provider\'s Slurm backend) in the local sandbox; writes <dir>/result.cbor')
    .argument('<dir>', 'the job\'s stage directory')
    .action(async (dir: string) => {
      process.exitCode = await execStaged(dir)
    })
}
