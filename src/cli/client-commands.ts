/**
 * The `mercato` commands that talk to a running node through its gateway:
 * `submit`, `jobs`, `job`, `logs`, `get`, `cancel`, `peers`, `providers`, `balance`.
 *
 * Every one takes `--api URL` (default `$MERCATO_API` or
 * http://127.0.0.1:8420) and `--token T` (default `$MERCATO_API_TOKEN`).
 * Results go to stdout; progress, explanations and errors go to stderr, so
 * `mercato submit job.js --wait > out.txt` keeps only the job's output.
 */
import { InvalidArgumentError, type Command } from 'commander'
import { readFile, stat } from 'node:fs/promises'
import { extname } from 'node:path'
import {
  MercatoClient, MercatoApiError, MercatoConnectionError, DEFAULT_URL, ENV_URL,
  type JobSpec, type JobStatus, type JobView, type ResultView
} from '../client/index.js'
import { JOB_STATUSES, TERMINAL } from '../auction/types.js'
import { UsageError } from '../errors.js'
import { checkConstraints, checkLabels, formatSelector, parseLabels, parseSelector, toConstraints } from '../labels.js'
import { inputListProblem } from '../executor/files.js'
import { uploadCidOfBytes, uploadCidOfFile } from './upload-cid.js'
import { loadSpecFile, parseVars, isSpecFile, type InputFile } from './spec-file.js'
import { runEach, countLines } from './each.js'
import { estimate, estimateText, type Estimate } from './estimate.js'
import { MANY_PARALLEL } from '../client/constants.js'
import { formatBytes, Progress, shortId } from './progress.js'
import { registerDevnetCommand } from './devnet.js'
import { LogPrinter } from './logs.js'
import { getOutputs } from './get.js'

const STATUSES: readonly JobStatus[] = JOB_STATUSES

interface ApiFlags { api?: string, token?: string }

function out (s: string): void { process.stdout.write(s) }
function err (s: string): void { process.stderr.write(s) }

function collect (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

function intFlag (min: number) {
  return (value: string): number => {
    const n = Number(value)
    if (value.trim() === '' || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer ≥ ${min}, got "${value}"`)
    return n
  }
}

function numberFlag () {
  return (value: string): number => {
    const n = Number(value)
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected a number ≥ 0, got "${value}"`)
    return n
  }
}

export function apiUrl (flags: ApiFlags): string {
  return flags.api ?? process.env[ENV_URL] ?? DEFAULT_URL
}

function clientFor (flags: ApiFlags): MercatoClient {
  return new MercatoClient({ url: apiUrl(flags), token: flags.token })
}

/** Run a command body; turn the client's errors into one line and an exit code. */
async function run (flags: ApiFlags, body: (client: MercatoClient) => Promise<number | undefined>): Promise<void> {
  let code: number | undefined
  try {
    code = await body(clientFor(flags))
  } catch (e: any) {
    if (e instanceof MercatoConnectionError) {
      const why = e.cause instanceof Error && /no answer in/.test(e.cause.message) ? ` (${e.cause.message})` : ' (start one with `npm start`)'
      err(`mercato: no Mercato node at ${e.url}${why}\n`)
      code = 1
    } else if (e instanceof MercatoApiError) {
      const hint = e.code === 'unauthorized' ? '; pass --token or set MERCATO_API_TOKEN (the token is in <dataDir>/gateway.token)' : ''
      err(`mercato: ${e.message} (${e.code})${hint}\n`)
      code = 1
    } else if (e instanceof UsageError) {
      err(`mercato: ${e.message}\n`)
      code = 2
    } else {
      err(`mercato: ${e?.message ?? String(e)}\n`)
      code = 1
    }
  }
  process.exitCode = code ?? 0
}

function withApi (cmd: Command): Command {
  return cmd
    .option('--api <url>', `gateway of the node to use (default $${ENV_URL} or ${DEFAULT_URL})`)
    .option('--token <token>', 'gateway bearer token (default $MERCATO_API_TOKEN)')
}

// ---------------------------------------------------------------- submit

export interface SubmitFlags extends ApiFlags {
  arg?: string[]
  stdin?: string
  input?: string
  maxPrice?: number
  replicas?: number
  timeout?: number
  memory?: number
  queueTimeout?: number
  wait?: boolean
  json?: boolean
  constraint?: string[]
  name?: string
  label?: string[]
  var?: string[]
  /** `--file name=./local` (repeatable): upload the local file and name it as input `name` */
  file?: string[]
  dryRun?: boolean
  each?: string
  parallel?: number
  out?: string
}

async function readInput (path: string): Promise<Buffer> {
  if (path === '-') {
    const chunks: Buffer[] = []
    for await (const c of process.stdin) chunks.push(c as Buffer)
    return Buffer.concat(chunks)
  }
  try { return await readFile(path) } catch (e: any) { throw new UsageError(`cannot read ${path}: ${e.code ?? e.message}`) }
}

/** A job spec built from the command line, before anything is sent: the module file to upload, if any. */
export interface ResolvedSpec {
  spec: JobSpec
  /** bytes to upload before submitting; `spec.module` already holds their CID */
  module?: { path: string, bytes: Uint8Array }
  /** `--file` inputs to upload (streamed) before submitting; `spec.inputs` already names them by their upload CID */
  files?: InputFile[]
}

/**
 * `--file name=./local.csv` (repeatable): each local file is named as input `name` by the CID its
 * upload will have (computed from a stream of the file; the file is uploaded on submit, streamed). A flag without `=`, a bad name, a duplicate or a file
 * that cannot be read is a usage error (exit 2) naming it.
 */
async function readInputFiles (flags: string[]): Promise<NonNullable<ResolvedSpec['files']>> {
  const files: NonNullable<ResolvedSpec['files']> = []
  for (const f of flags) {
    const eq = f.indexOf('=')
    if (eq <= 0 || eq === f.length - 1) throw new UsageError(`--file: expected NAME=PATH (the input's name in the job, then a local file), got "${f}"`)
    const name = f.slice(0, eq)
    const path = f.slice(eq + 1)
    let size: number
    try {
      const st = await stat(path)
      if (!st.isFile()) throw Object.assign(new Error(), { code: 'not a regular file' })
      size = st.size
    } catch (e: any) {
      throw new UsageError(`--file ${name}=${path}: cannot read ${path} (${e.code ?? e.message})`)
    }
    if (size === 0) throw new UsageError(`--file ${name}=${path}: the file is empty (an input blob must not be)`)
    files.push({ name, path, size, cid: await uploadCidOfFile(path) })
  }
  return files
}

/** Turn the file argument and flags into a job spec, reading (not yet uploading) the files it names. */
export async function resolveSpec (file: string, flags: SubmitFlags): Promise<ResolvedSpec> {
  const ext = extname(file).toLowerCase()
  let spec: JobSpec
  let module: ResolvedSpec['module']
  let files: ResolvedSpec['files']
  if (ext === '.wasm') {
    const bytes = new Uint8Array(await readInput(file))
    module = { path: file, bytes }
    spec = { engine: 'wasm', module: await uploadCidOfBytes(bytes) }
  } else if (ext === '.js' || ext === '.mjs') {
    spec = { engine: 'js', source: (await readInput(file)).toString('utf8') }
  } else if (isSpecFile(file)) {
    const loaded = await loadSpecFile(file, parseVars(flags.var))
    spec = loaded.spec as unknown as JobSpec
    module = loaded.module
    files = loaded.files
  } else {
    throw new UsageError(`${file}: expected a .wasm module, a .js file or a .yaml/.json job spec`)
  }
  if (flags.var != null && !isSpecFile(file)) throw new UsageError('--var: only a .yaml or .json spec file has ${VAR}s to fill')
  if (flags.arg != null) spec.args = flags.arg
  if (flags.stdin != null) spec.stdin = new Uint8Array(await readInput(flags.stdin))
  if (flags.input != null) {
    try { spec.input = JSON.parse(flags.input) } catch (e: any) { throw new UsageError(`--input: not valid JSON (${e.message})`) }
  }
  if (flags.file != null && flags.file.length > 0) {
    const flagged = await readInputFiles(flags.file)
    files = [...(files ?? []), ...flagged]
    const inputs = [...(spec.inputs ?? []), ...flagged.map(f => ({ path: f.name, cid: f.cid }))]
    const problem = inputListProblem(inputs.map(i => i.path))
    if (problem != null) throw new UsageError(`--file: ${problem}`)
    spec.inputs = inputs
  }
  if (flags.maxPrice != null) spec.maxPrice = flags.maxPrice
  if (flags.replicas != null) spec.replicas = flags.replicas
  applyPlacement(spec, flags)
  if (flags.queueTimeout != null) spec.queueTimeoutMs = flags.queueTimeout
  if (flags.timeout != null || flags.memory != null) {
    spec.limits = { ...spec.limits }
    if (flags.timeout != null) spec.limits.timeoutMs = flags.timeout
    if (flags.memory != null) spec.limits.memoryMb = flags.memory
  }
  return { spec, module, files }
}

/** Upload what a resolved spec names by CID (its module, its `--file` inputs); the node must answer the same CIDs. */
async function uploadFiles (client: MercatoClient, resolved: ResolvedSpec): Promise<JobSpec> {
  const { spec, module } = resolved
  if (module != null) spec.module = await client.uploadBlob(module.bytes)
  for (const f of resolved.files ?? []) {
    const { cid } = await client.uploadFile(f.path)
    if (cid !== f.cid) throw new Error(`the node stored ${f.path} as ${cid}, not ${f.cid} (did the file change while it was uploaded?)`)
  }
  return spec
}

/** Turn the file argument and flags into a job spec, uploading the module and input files it names. */
export async function buildSpec (client: MercatoClient, file: string, flags: SubmitFlags): Promise<JobSpec> {
  return await uploadFiles(client, await resolveSpec(file, flags))
}

/**
 * `--constraint` (repeatable, ANDed with any in a .json spec), `--name`, `--label k=v`; checked
 * here, so a bad selector or label is a usage error (exit 2) naming it, and nothing is submitted.
 */
function applyPlacement (spec: JobSpec, flags: SubmitFlags): void {
  try {
    const constraints = spec.constraints != null ? toConstraints(spec.constraints) : []
    for (const text of flags.constraint ?? []) constraints.push(...parseSelector(text))
    if (constraints.length > 0) spec.constraints = checkConstraints(constraints)
    if (flags.label != null) spec.labels = { ...(spec.labels != null ? checkLabels(spec.labels) : {}), ...parseLabels(flags.label, '--label') }
    else if (spec.labels != null) spec.labels = checkLabels(spec.labels)
  } catch (e: any) {
    throw new UsageError(e.message)
  }
  if (flags.name != null) spec.name = flags.name
}

function printDeclines (job: JobView): void {
  if (job.declines.length === 0) {
    err(`no provider bid on job ${job.id}, and none said why (no provider was reachable, or none answered in time)\n`)
    return
  }
  err(`no provider bid on job ${job.id}; ${job.declines.length} declined:\n`)
  for (const d of job.declines) err(`  ${d.provider}  ${d.reason}${d.detail != null && d.detail !== '' ? `  ${d.detail}` : ''}\n`)
}

function printResult (job: JobView, result: ResultView): void {
  if (result.stdout !== '') out(result.stdout.endsWith('\n') ? result.stdout : result.stdout + '\n')
  if (result.stderr !== '') err(result.stderr.endsWith('\n') ? result.stderr : result.stderr + '\n')
  if (job.engine === 'js' && result.output !== undefined) out(JSON.stringify(result.output, null, 2) + '\n')
  if (result.truncated) err('(output truncated at the job\'s outputBytes limit)\n')
  if (result.error != null) err(`${result.error.name}: ${result.error.message}\n`)
  // output files stay on the node until fetched: say how (stderr, so stdout keeps the job's output)
  const files = result.outputs ?? []
  if (files.length > 0) err(`${files.length} output file${files.length === 1 ? '' : 's'} (${files.map(o => o.path).slice(0, 5).join(', ')}${files.length > 5 ? ', …' : ''}): mercato get ${job.id} -o DIR\n`)
}

/** The exit code of `submit --wait` and `logs`: the job's own for a completed job, else 1. */
function exitCodeOf (job: JobView, result: ResultView | null): number {
  if (job.status !== 'completed' || result == null) return 1
  if (result.error != null && result.exitCode === 0) return 1
  return result.exitCode >= 0 && result.exitCode <= 255 ? result.exitCode : 1
}

/** `--dry-run`: the resolved spec (stdout) and its cost at the current asks; nothing is uploaded or submitted. */
async function dryRun (client: MercatoClient, resolved: ResolvedSpec, flags: SubmitFlags): Promise<number> {
  const spec: Record<string, unknown> = { ...resolved.spec }
  if (spec.stdin instanceof Uint8Array) spec.stdin = Buffer.from(spec.stdin).toString('base64')
  const jobs = flags.each != null ? await countLines(flags.each).catch(() => { throw new UsageError(`--each: cannot read ${flags.each ?? ''}`) }) : undefined
  let est: Estimate | null = null
  let why = ''
  try {
    est = estimate(resolved.spec, await client.providers(), jobs)
  } catch (e) {
    if (!(e instanceof MercatoConnectionError)) throw e
    why = `cost: unknown (no Mercato node at ${e.url} to ask for the current asks)\n`
  }
  const module = resolved.module != null ? { path: resolved.module.path, size: resolved.module.bytes.length, cid: String(spec.module) } : undefined
  if (flags.json === true) {
    out(JSON.stringify({ spec, module, estimate: est }) + '\n')
    return 0
  }
  out(JSON.stringify(spec, null, 2) + '\n')
  if (module != null) err(`module: ${module.path} (${module.size} bytes), uploaded as ${module.cid} on submit\n`)
  for (const f of resolved.files ?? []) err(`input ${f.name}: ${f.path} (${f.size} bytes), uploaded as ${f.cid} on submit\n`)
  err(est != null ? estimateText(est) : why)
  err('dry run: nothing submitted\n')
  return 0
}

async function submit (client: MercatoClient, file: string, flags: SubmitFlags): Promise<number> {
  if (flags.each == null && (flags.parallel != null || flags.out != null)) throw new UsageError('--parallel and --out go with --each')
  if (flags.each != null && flags.input != null) throw new UsageError('--input and --each: every line of --each is an input')
  const resolved = await resolveSpec(file, flags)
  if (flags.dryRun === true) return await dryRun(client, resolved, flags)
  const spec = await uploadFiles(client, resolved)
  if (flags.each != null) {
    const ac = new AbortController()
    const onSigint = (): void => { ac.abort() }
    process.once('SIGINT', onSigint)
    try {
      return await runEach(client, spec, {
        each: flags.each,
        parallel: flags.parallel,
        out: flags.out,
        err,
        out$: async (s) => { if (!process.stdout.write(s)) await new Promise(resolve => process.stdout.once('drain', resolve)) },
        tty: process.stderr.isTTY === true,
        columns: process.stderr.columns > 0 ? process.stderr.columns : undefined,
        signal: ac.signal
      })
    } finally {
      process.off('SIGINT', onSigint)
    }
  }
  const { id, status } = await client.submit(spec)
  if (flags.wait !== true) {
    out(flags.json === true ? JSON.stringify({ id, status }) + '\n' : id + '\n')
    return 0
  }
  const ac = new AbortController()
  const onSigint = (): void => { ac.abort() }
  process.once('SIGINT', onSigint)
  const showProgress = flags.json !== true
  const progress = new Progress({ write: err, tty: process.stderr.isTTY === true, columns: process.stderr.columns > 0 ? process.stderr.columns : undefined })
  // live logs go to stderr as they come (stdout keeps the job's final output), in whole lines so
  // they do not tear the progress line
  const lines = new LineBuffer((line) => { if (showProgress) progress.interject(line) })
  const logs = new LogPrinter({ stdout: lines.write, stderr: lines.write, notice: lines.write })
  let job: JobView
  try {
    job = await client.wait(id, {
      signal: ac.signal,
      onEvent: showProgress ? (e) => { logs.onEvent(e); progress.onEvent(e) } : undefined,
      onLog: showProgress ? (e) => { logs.onLog(e) } : undefined
    })
  } catch (e) {
    if (ac.signal.aborted) {
      if (showProgress) progress.finish()
      err(`stopped following job ${id}; it goes on (see it with \`mercato job ${id}\`, stop it with \`mercato cancel ${id}\`)\n`)
      return 130
    }
    throw e
  } finally {
    process.off('SIGINT', onSigint)
  }
  lines.end()
  if (showProgress) progress.finish()
  const result = job.status === 'completed' ? await client.result(id) : null
  if (flags.json === true) {
    out(JSON.stringify({ job, result }) + '\n')
  } else if (result != null) {
    printResult(job, result)
  } else if (job.status === 'no-bids') {
    printDeclines(job)
  } else if (job.status === 'failed') {
    err(`job ${id} failed${job.error != null ? `: ${job.error}` : ''}\n`)
    for (const a of job.attempts) err(`  attempt ${a.attempt}: ${a.provider} at ${a.price}: ${a.state}${a.reason != null ? ` (${a.reason})` : ''}\n`)
  } else {
    err(`job ${id} ${job.status}\n`)
  }
  return exitCodeOf(job, result)
}

/** Text cut into whole lines (the rest is held until its newline, or `end`). */
class LineBuffer {
  private rest = ''
  constructor (private readonly emit: (line: string) => void) {}
  readonly write = (s: string): void => {
    const text = this.rest + s
    const cut = text.lastIndexOf('\n')
    this.rest = text.slice(cut + 1)
    if (cut >= 0) this.emit(text.slice(0, cut + 1))
  }

  end (): void {
    if (this.rest !== '') this.emit(this.rest + '\n')
    this.rest = ''
  }
}

/**
 * `mercato logs <id>`: the job's stdout/stderr from its result; with `-f`, its live output while
 * it runs (stdout to stdout, stderr to stderr), completed from the result at the end. Exit code as
 * `submit --wait`: the job's own for a completed job (1 when the sandbox stopped it), else 1.
 */
async function logs (client: MercatoClient, id: string, follow: boolean): Promise<number> {
  const printer = new LogPrinter({ stdout: out, stderr: err, notice: err })
  let job = await client.job(id)
  if (!TERMINAL.has(job.status)) {
    if (!follow) {
      err(`job ${id} is ${job.status}: its output comes with its result (follow it live with \`mercato logs ${id} -f\`)\n`)
      return 1
    }
    const ac = new AbortController()
    const onSigint = (): void => { ac.abort() }
    process.once('SIGINT', onSigint)
    try {
      job = await client.wait(id, { signal: ac.signal, onEvent: (e) => { printer.onEvent(e) }, onLog: (e) => { printer.onLog(e) } })
    } catch (e) {
      if (ac.signal.aborted) return 130
      throw e
    } finally {
      process.off('SIGINT', onSigint)
    }
  }
  if (job.status !== 'completed') {
    err(`job ${id} ${job.status}${job.error != null ? `: ${job.error}` : ''}: no output\n`)
    return 1
  }
  const result = await client.result(id)
  printer.finish(result)
  // what `submit --wait` says of a job that ran but did not succeed (a timeout, the output cap)
  if (result.truncated) err('(output truncated at the job\'s outputBytes limit)\n')
  if (result.error != null) err(`${result.error.name}: ${result.error.message}\n`)
  return exitCodeOf(job, result)
}

// ---------------------------------------------------------------- tables

/** Columns padded to their widest cell; the last one is not padded. */
export function table (rows: string[][]): string {
  if (rows.length === 0) return ''
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
  return rows.map(r => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n'
}

function ms (n: number | null | undefined): string {
  if (n == null) return '-'
  return n < 10_000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(1)} s`
}

function credits (n: number): string {
  return `${n} credit${n === 1 ? '' : 's'}`
}

function when (ts: number | null | undefined): string {
  if (ts == null) return '-'
  return new Date(ts).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')
}

function jobsTable (jobs: JobView[]): string {
  const rows = [['ID', 'NAME', 'STATUS', 'ENGINE', 'PRICE', 'PROVIDER', 'LATENCY', 'CREATED', 'LABELS']]
  for (const j of jobs) rows.push([j.id, j.name ?? '-', j.status, j.engine, j.price == null ? '-' : String(j.price), j.provider == null ? '-' : shortId(j.provider), ms(j.latencyMs), when(j.createdAt), labelText(j.labels)])
  return table(rows)
}

function labelText (labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {})
  return entries.length === 0 ? '-' : entries.map(([k, v]) => `${k}=${v}`).join(',')
}

function jobText (job: JobView, result: ResultView | null): string {
  const lines: Array<[string, string]> = [
    ['Job', job.id],
    ...(job.name != null ? [['Name', job.name] as [string, string]] : []),
    ...(Object.keys(job.labels ?? {}).length > 0 ? [['Labels', labelText(job.labels)] as [string, string]] : []),
    ...((job.constraints ?? []).length > 0 ? [['Runs on', formatSelector(job.constraints)] as [string, string]] : []),
    ['Status', job.status + (job.error != null ? ` (${job.error})` : '') + (job.status === 'queued' && job.queueUntil != null ? ` (waiting for a provider until ${when(job.queueUntil)})` : '')],
    ['Engine', job.engine],
    ['Price', `${job.price == null ? '-' : credits(job.price)} (max ${job.maxPrice})`],
    ['Provider', job.providers.length > 0 ? job.providers.join(', ') : '-'],
    ['Replicas', String(job.replicas)],
    ['Created', when(job.createdAt)],
    ['Completed', when(job.completedAt)],
    ['Latency', ms(job.latencyMs)]
  ]
  let s = lines.map(([k, v]) => `${k.padEnd(10)}${v}`).join('\n') + '\n'
  if (job.bids.length > 0) {
    s += `\nBids (${job.bids.length})\n`
    s += table(job.bids.map(b => ['  ' + b.provider, credits(b.price), `start ~${b.estStartMs} ms`]))
  }
  if (job.attempts.length > 0) {
    s += `\nAttempts (${job.attempts.length})\n`
    s += table(job.attempts.map(a => [`  #${a.attempt}`, a.provider, credits(a.price), a.state + (a.reason != null ? ` (${a.reason})` : '')]))
  }
  if (job.declines.length > 0) {
    s += `\nDeclines (${job.declines.length})\n`
    s += table(job.declines.map(d => ['  ' + d.provider, d.reason, d.detail ?? '']))
  }
  if (result != null) {
    s += `\nResult    exit ${result.exitCode}, ${ms(result.usage.wallMs)} wall, ${result.usage.outputBytes} bytes out, hash ${result.resultHash}\n`
    if (result.error != null) s += `Error     ${result.error.name}: ${result.error.message}\n`
    if (result.stdout !== '') s += 'Stdout\n' + result.stdout.replace(/^/gm, '  ').replace(/\s*$/, '') + '\n'
    if (result.output !== undefined) s += `Output    ${JSON.stringify(result.output)}\n`
    const files = result.outputs ?? []
    if (files.length > 0) {
      s += `\nOutput files (${files.length}; mercato get ${job.id} -o DIR)\n`
      s += table(files.map(o => ['  ' + o.path, formatBytes(o.size), o.cid]))
    }
  }
  return s
}

// ---------------------------------------------------------------- register

export function registerClientCommands (program: Command): void {
  withApi(program.command('submit')
    .description('submit a job: a .wasm module, a .js file (main(input) returns the output) or a .yaml/.json job spec; --each for one job per input line')
    .argument('<file>', 'file.wasm, file.js, job.yaml or job.json')
    .option('--arg <arg>', 'argument passed to the program (repeatable)', collect)
    .option('--stdin <file>', 'file given to the program as stdin ("-" for this stdin)')
    .option('--input <json>', 'JSON input (js: the argument of main)')
    .option('--file <name=path>', 'upload a local file and give it to the job as input file <name> (wasm: /inputs/<name>; js: readFile(name)) (repeatable)', collect)
    .option('--max-price <credits>', 'most you pay, in credits', numberFlag())
    .option('--replicas <k>', 'run on k providers and compare results', intFlag(1))
    .option('--timeout <ms>', 'wall-clock limit of the run', intFlag(1))
    .option('--memory <mb>', 'memory limit of the run', intFlag(1))
    .option('--constraint <selector>', 'run only on providers whose labels match, e.g. "region=eu,gpu in (a100,h100),!spot" (repeatable; all must hold)', collect)
    .option('--name <name>', 'a name for the job (shown in `mercato jobs`)')
    .option('--label <key=value>', 'a label on the job, to list and filter by (repeatable)', collect)
    .option('--queue-timeout <ms>', 'how long the job may wait queued for a provider (0: fail at once with no-bids; default: the node\'s auction.queueTimeoutMs, 5 min)', intFlag(0))
    .option('--var <name=value>', 'fill ${name} in a .yaml/.json spec file (repeatable)', collect)
    .option('--dry-run', 'print the resolved spec and what it would cost at the current asks; submit nothing')
    .option('--each <inputs.ndjson>', 'one job per line of this file (the line is the input); results as NDJSON in input order')
    .option('--parallel <n>', `with --each: jobs in flight at most (default ${MANY_PARALLEL})`, intFlag(1))
    .option('--out <results.ndjson>', 'with --each: write results here (resumable: run the same command again after Ctrl-C)')
    .option('--wait', 'follow the job to its end, then print its output')
    .option('--json', 'print JSON for scripts ({id,status}; with --wait {job,result})'))
    .action(async (file: string, flags: SubmitFlags) => { await run(flags, async (c) => await submit(c, file, flags)) })

  withApi(program.command('jobs')
    .description('list this node\'s jobs, newest first')
    .option('--status <status>', `only jobs in this state (${STATUSES.join(', ')})`)
    .option('--limit <n>', 'at most n jobs', intFlag(1))
    .option('--label <key=value>', 'only jobs carrying this label (repeatable: all of them)', collect)
    .option('--json', 'print JSON'))
    .action(async (flags: ApiFlags & { status?: string, limit?: number, label?: string[], json?: boolean }) => {
      await run(flags, async (c) => {
        if (flags.status != null && !STATUSES.includes(flags.status as JobStatus)) throw new UsageError(`--status: expected one of ${STATUSES.join(', ')}, got "${flags.status}"`)
        let labels: Record<string, string> | undefined
        try { labels = flags.label != null ? parseLabels(flags.label, '--label') : undefined } catch (e: any) { throw new UsageError(e.message) }
        const jobs = await c.jobs({ status: flags.status as JobStatus | undefined, limit: flags.limit, labels })
        if (flags.json === true) out(JSON.stringify(jobs) + '\n')
        else if (jobs.length === 0) err('no jobs\n')
        else out(jobsTable(jobs))
        return 0
      })
    })

  withApi(program.command('job')
    .description('show one job: state, bids, attempts, declines and result')
    .argument('<id>', 'job id')
    .option('--json', 'print JSON ({job,result})'))
    .action(async (id: string, flags: ApiFlags & { json?: boolean }) => {
      await run(flags, async (c) => {
        const job = await c.job(id)
        const result = job.status === 'completed' ? await c.result(id) : null
        out(flags.json === true ? JSON.stringify({ job, result }) + '\n' : jobText(job, result))
        return 0
      })
    })

  withApi(program.command('logs')
    .description("print a job's stdout and stderr; with -f, follow its live output while it runs")
    .argument('<id>', 'job id')
    .option('-f, --follow', 'follow the live output until the job ends'))
    .action(async (id: string, flags: ApiFlags & { follow?: boolean }) => {
      await run(flags, async (c) => await logs(c, id, flags.follow === true))
    })

  withApi(program.command('get')
    .description("download a finished job's output files into a directory (checked against their CIDs; progress on stderr)")
    .argument('<id>', 'job id')
    .option('-o, --output <dir>', 'where to write them (their paths are kept)', '.'))
    .action(async (id: string, flags: ApiFlags & { output: string }) => {
      await run(flags, async (c) => await getOutputs(c, id, flags.output, { out, err, tty: process.stderr.isTTY === true }))
    })

  withApi(program.command('cancel')
    .description('cancel a job that has not finished')
    .argument('<id>', 'job id'))
    .action(async (id: string, flags: ApiFlags) => {
      await run(flags, async (c) => {
        const job = await c.cancel(id)
        out(`${job.id} ${job.status}\n`)
        return 0
      })
    })

  withApi(program.command('peers')
    .description('the peers the node is connected to')
    .option('--json', 'print JSON'))
    .action(async (flags: ApiFlags & { json?: boolean }) => {
      await run(flags, async (c) => {
        const peers = await c.peers()
        if (flags.json === true) out(JSON.stringify(peers) + '\n')
        else if (peers.length === 0) err('no peers\n')
        else out(table([['PEER ID', 'ADDRESSES'], ...peers.map(p => [p.peerId + (p.flagged === true ? ' (flagged)' : ''), p.addresses.join(' ')])]))
        return 0
      })
    })

  withApi(program.command('connect')
    .description('connect the node to a peer (as `ipfs swarm connect`); nodes find each other on their own, this is for a peer they cannot find')
    .argument('<address>', 'a multiaddr ending in /p2p/<PeerId>, e.g. /ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...'))
    .action(async (address: string, flags: ApiFlags) => {
      await run(flags, async (c) => {
        const { peerId } = await c.connect(address)
        out(`connected to ${peerId}\n`)
        return 0
      })
    })

  withApi(program.command('providers')
    .description('providers the node knows: engines, last ask, reputation')
    .option('--json', 'print JSON'))
    .action(async (flags: ApiFlags & { json?: boolean }) => {
      await run(flags, async (c) => {
        const providers = await c.providers()
        if (flags.json === true) { out(JSON.stringify(providers) + '\n'); return 0 }
        if (providers.length === 0) { err('no providers known yet\n'); return 0 }
        const rows = [['PEER ID', 'ENGINES', 'LABELS', 'LAST ASK', 'SCORE', 'DONE', 'FAILED', 'LOST', 'MISMATCH']]
        for (const p of providers) {
          const s = p.standing
          rows.push([p.peerId + (p.self ? ' (self)' : ''), p.engines.join(',') || '-', labelText(p.labels), p.lastAsk == null ? '-' : String(p.lastAsk), s == null ? '-' : String(s.score), String(s?.completed ?? 0), String(s?.failed ?? 0), String(s?.lost ?? 0), String(s?.mismatched ?? 0)])
        }
        out(table(rows))
        return 0
      })
    })

  withApi(program.command('balance')
    .description('credits this node earned as a provider and spent as a requester')
    .option('--json', 'print JSON'))
    .action(async (flags: ApiFlags & { json?: boolean }) => {
      await run(flags, async (c) => {
        const b = await c.balance()
        out(flags.json === true
          ? JSON.stringify(b) + '\n'
          : `PeerId   ${b.peerId}\nEarned   ${b.earned}\nSpent    ${b.spent}\nBalance  ${b.balance}\n`)
        return 0
      })
    })

  registerDevnetCommand(program)
}
