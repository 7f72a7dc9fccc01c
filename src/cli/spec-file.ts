/**
 * Job spec files: `mercato submit job.yaml` (or `.yml`, `.json`).
 *
 *   engine: wasm
 *   module: ./hello.wasm          # a file, relative to this spec: uploaded, replaced by its CID
 *   args: [world, "${NAME}"]      # ${VAR} from --var NAME=value ($${VAR} is a literal ${VAR})
 *   stdin: ./input.txt            # a file's bytes as stdin
 *   limits: { timeoutMs: ${T} }   # a plain scalar that is only ${VAR} takes the value's type (a number here)
 *   maxPrice: 20
 *
 * Every field is a field of the API's job spec (`jobBodySchema`, served as
 * `/v1/schema/job.json`); the file is checked against that one zod schema
 * after its files are read, and an error names the field and its line. File
 * references (a value starting with `./` or `../`): `module` (any engine;
 * a bare name of an existing file too), `source` (a .js file's text; a bare
 * name of an existing .js/.mjs file too), `stdin` (the bytes), `input`
 * (a .json file, parsed) and an input file's `cid` (`inputs: [{ path:
 * data.csv, cid: ./local.csv }]`: uploaded, replaced by its CID). JSON files are read by the same YAML parser (JSON
 * is YAML), so their errors carry lines too.
 */
import { readFile, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { LineCounter, parseDocument, visit, Scalar, type Document } from 'yaml'
import { jobBodySchema, describeIssue } from '../gateway/job-spec.js'
import { uploadCidOfBytes, uploadCidOfFile } from './upload-cid.js'
import { UsageError } from '../errors.js'

/** A local file named as a job input: uploaded (streamed) on submit, named in the spec by its upload CID. */
export interface InputFile { name: string, path: string, size: number, cid: string }

/** A spec file read and checked: the spec as it will be posted, and the module bytes to upload first. */
export interface LoadedSpec {
  /** the spec, `module` set to the CID its file will have once uploaded */
  spec: Record<string, unknown>
  /** the module file to upload (its CID is already in `spec.module`) */
  module?: { path: string, bytes: Uint8Array }
  /** input files to upload, streamed (their upload CIDs are already in `spec.inputs`) */
  files?: InputFile[]
}

const VAR = /\$\$\{|\$\{([^}]*)\}/g
const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** `--var k=v` (repeatable) into a map; a flag without `=` or with a bad name is a usage error. */
export function parseVars (flags: string[] = []): Map<string, string> {
  const vars = new Map<string, string>()
  for (const f of flags) {
    const eq = f.indexOf('=')
    const name = eq < 0 ? f : f.slice(0, eq)
    if (eq < 0 || !VAR_NAME.test(name)) throw new UsageError(`--var: expected NAME=value (NAME: letters, digits, _), got "${f}"`)
    vars.set(name, f.slice(eq + 1))
  }
  return vars
}

function isPathRef (s: string): boolean {
  return (s.startsWith('./') || s.startsWith('../')) && !s.includes('\n')
}

async function isFile (path: string): Promise<boolean> {
  try { return (await stat(path)).isFile() } catch { return false }
}

export async function loadSpecFile (file: string, vars: Map<string, string>): Promise<LoadedSpec> {
  let text: string
  try { text = await readFile(file, 'utf8') } catch (e: any) { throw new UsageError(`cannot read ${file}: ${e.code ?? e.message}`) }
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false })
  const at = (offset: number | undefined): string => offset == null ? file : `${file}:${lines.linePos(offset).line}`
  if (doc.errors.length > 0) {
    const e = doc.errors[0]
    throw new UsageError(`${at(e.pos[0])}: not a valid spec file (${e.message.split('\n')[0]})`)
  }

  // ${VAR}: every string scalar; an undefined variable is named with its line
  visit(doc, {
    Scalar (_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('$')) return
      const raw = node.value
      const whole = /^\$\{([^}]*)\}$/.exec(raw)
      const value = raw.replace(VAR, (m, name: string | undefined) => {
        if (m === '$${') return '${'
        const v = vars.get(String(name).trim())
        if (v === undefined) throw new UsageError(`${at(node.range?.[0])}: undefined variable \${${String(name)}} (pass --var ${String(name).trim()}=value)`)
        return v
      })
      if (whole != null && node.type === Scalar.PLAIN) {
        // a plain scalar that is only a variable reads like YAML: 5 is a number, true a boolean
        const typed = parseDocument(value).toJS()
        node.value = typeof typed === 'number' || typeof typed === 'boolean' ? typed : value
      } else {
        node.value = value
      }
    }
  })

  const raw: unknown = doc.toJS()
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw new UsageError(`${file}: expected a job spec (a map of fields such as engine: wasm)`)
  const spec: Record<string, unknown> = { ...(raw as Record<string, unknown>) }
  const base = dirname(resolve(file))
  const lineOf = (path: PropertyKey[]): string => at(nodeAt(doc, path)?.range?.[0])
  const readRef = async (field: string, ref: string): Promise<Buffer> => {
    try { return await readFile(resolve(base, ref)) } catch (e: any) { throw new UsageError(`${lineOf([field])}: ${field}: cannot read ${ref} (${e.code ?? e.message})`) }
  }

  let module: LoadedSpec['module']
  if (typeof spec.module === 'string' && (isPathRef(spec.module) || await isFile(resolve(base, spec.module)))) {
    const bytes = new Uint8Array(await readRef('module', spec.module))
    module = { path: resolve(base, spec.module), bytes }
    spec.module = await uploadCidOfBytes(bytes)
  }
  if (typeof spec.source === 'string' && (isPathRef(spec.source) || (/\.m?js$/.test(spec.source) && !spec.source.includes('\n') && await isFile(resolve(base, spec.source))))) {
    spec.source = (await readRef('source', spec.source)).toString('utf8')
  }
  if (typeof spec.stdin === 'string' && isPathRef(spec.stdin)) spec.stdin = (await readRef('stdin', spec.stdin)).toString('base64')
  if (typeof spec.input === 'string' && isPathRef(spec.input) && spec.input.endsWith('.json')) {
    const bytes = await readRef('input', spec.input)
    try { spec.input = JSON.parse(bytes.toString('utf8')) } catch (e: any) { throw new UsageError(`${lineOf(['input'])}: input: ${spec.input} is not valid JSON (${e.message})`) }
  }

  const files: NonNullable<LoadedSpec['files']> = []
  if (Array.isArray(spec.inputs)) {
    spec.inputs = await Promise.all(spec.inputs.map(async (i: unknown, k: number) => {
      if (i == null || typeof i !== 'object' || typeof (i as any).cid !== 'string' || !isPathRef((i as any).cid)) return i
      const ref = (i as { cid: string }).cid
      const path = resolve(base, ref)
      let size: number
      let cid: string
      try {
        const st = await stat(path)
        if (!st.isFile()) throw Object.assign(new Error(), { code: 'not a regular file' })
        size = st.size
        cid = await uploadCidOfFile(path)
      } catch (e: any) { throw new UsageError(`${lineOf(['inputs', k, 'cid'])}: inputs.${k}.cid: cannot read ${ref} (${e.code ?? e.message})`) }
      if (size === 0) throw new UsageError(`${lineOf(['inputs', k, 'cid'])}: inputs.${k}.cid: ${ref} is empty (an input blob must not be)`)
      files.push({ name: String((i as any).path), path, size, cid })
      return { ...i, cid }
    }))
  }

  const parsed = jobBodySchema.safeParse(spec)
  if (!parsed.success) {
    const { path, field, message } = describeIssue(parsed.error.issues[0])
    throw new UsageError(`${lineOf(path)}: ${field}: ${message}`)
  }
  return { spec, module, ...(files.length > 0 ? { files } : {}) }
}

/** The node at `path`, or the nearest ancestor that exists (for a line to point at). */
function nodeAt (doc: Document, path: PropertyKey[]): { range?: [number, number, number] | null } | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as Array<string | number>, true)
    if (node != null && typeof node === 'object' && 'range' in node) return node as { range?: [number, number, number] | null }
    if (n === 0) return doc.contents as { range?: [number, number, number] | null } | undefined
  }
  return undefined
}

/** Is this file a spec file (by its extension)? */
export function isSpecFile (file: string): boolean {
  return /\.(ya?ml|json)$/i.test(file)
}
