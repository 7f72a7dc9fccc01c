/**
 * Labels and placement constraints. PURE: no network, no clock, no state.
 *
 * A **label** is a `key=value` pair a provider says of itself (`region=eu`,
 * `licence=matlab`, `cores=16`) or a user puts on a job (`project=atlas`).
 * Keys and values follow the Kubernetes label syntax: a key is a name of at
 * most 63 characters (letters, digits, `-`, `_`, `.`, starting and ending
 * with a letter or digit) with an optional DNS-style prefix and `/`
 * (`example.com/gpu`); a value is empty or a name of at most 63 characters.
 * At most MAX_LABELS labels and MAX_LABEL_BYTES bytes of keys and values.
 *
 * A **constraint** selects providers by their labels. Structured form, as the
 * API and the wire carry it: `{ key, op, values }` with `op` one of
 *
 * | op        | matches when                                         | values   |
 * |-----------|------------------------------------------------------|----------|
 * | `=`       | the key is present with this value                   | 1        |
 * | `!=`      | the key is absent, or its value differs              | 1        |
 * | `in`      | the key is present with one of the values            | 1..16    |
 * | `notin`   | the key is absent, or its value is none of them      | 1..16    |
 * | `exists`  | the key is present                                   | none     |
 * | `!exists` | the key is absent                                    | none     |
 * | `gt`      | the value is an integer greater than the given one   | 1 (int)  |
 * | `lt`      | the value is an integer less than the given one      | 1 (int)  |
 *
 * (`!=` and `notin` match an absent key, as in Kubernetes.) A job's
 * constraints are ANDed. String form, for the command line:
 * `region=eu,gpu in (a100,h100),!spot,cores gt 8` — terms separated by commas
 * outside parentheses; `k=v` (or `k==v`), `k!=v`, `k in (a,b)`,
 * `k notin (a,b)`, `k` (exists), `!k` (not exists), `k gt N` / `k>N`,
 * `k lt N` / `k<N`. {@link parseSelector} turns it into the structured form
 * and {@link formatConstraint} turns one back.
 */
import { z } from 'zod'
import { InvalidInputError } from './errors.js'

/** Labels one provider or one job may carry: a handful, not a database (they go into every advert). */
export const MAX_LABELS = 16
/** Bytes of keys and values together, per label set: keeps an advert under MAX_ADVERT_BYTES with every address. */
export const MAX_LABEL_BYTES = 1024
/** Constraints per job, values per constraint, bytes of keys and values together: an offer stays small. */
export const MAX_CONSTRAINTS = 16
export const MAX_CONSTRAINT_VALUES = 16
export const MAX_CONSTRAINT_BYTES = 2048
/** A selector string is parsed only up to this length. */
export const MAX_SELECTOR_CHARS = 4096

export const CONSTRAINT_OPS = ['=', '!=', 'in', 'notin', 'exists', '!exists', 'gt', 'lt'] as const
export type ConstraintOp = typeof CONSTRAINT_OPS[number]

export interface Constraint {
  key: string
  op: ConstraintOp
  /** absent for `exists` / `!exists` */
  values?: string[]
}

export type Labels = Record<string, string>

const NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/
const PREFIX = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/
const INTEGER = /^-?[0-9]{1,15}$/

/** Why a key is not a label key, or undefined when it is one. */
export function keyProblem (key: string): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'a label key must not be empty'
  if (key.length > 253 + 1 + 63) return `label key of ${key.length} characters is too long`
  const slash = key.indexOf('/')
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined
  const name = slash >= 0 ? key.slice(slash + 1) : key
  if (prefix != null && (prefix.length > 253 || !PREFIX.test(prefix))) return `label key "${key}": the prefix before "/" must be a lower-case DNS name of at most 253 characters`
  if (!NAME.test(name)) return `label key "${key}": a name of 1-63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit`
  return undefined
}

/** Why a value is not a label value, or undefined when it is one. */
export function valueProblem (value: string): string | undefined {
  if (typeof value !== 'string') return 'a label value must be a string'
  if (value === '' || NAME.test(value)) return undefined
  return `label value "${value.length > 70 ? value.slice(0, 70) + '…' : value}": empty, or 1-63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit`
}

export const labelKeySchema = z.string().max(317).superRefine((k, ctx) => { const p = keyProblem(k); if (p != null) ctx.addIssue({ code: 'custom', message: p }) })
export const labelValueSchema = z.string().max(63).superRefine((v, ctx) => { const p = valueProblem(v); if (p != null) ctx.addIssue({ code: 'custom', message: p }) })

/** A label set, as config, the API and the wire carry it. */
export const labelsSchema = z.record(z.string().max(317), labelValueSchema).superRefine((labels, ctx) => {
  const keys = Object.keys(labels)
  // keys checked here rather than by the record's key schema: the issue then names the key
  for (const k of keys) {
    const p = keyProblem(k)
    if (p != null) ctx.addIssue({ code: 'custom', message: p, path: [k] })
  }
  if (keys.length > MAX_LABELS) ctx.addIssue({ code: 'custom', message: `at most ${MAX_LABELS} labels (got ${keys.length})` })
  let bytes = 0
  for (const k of keys) bytes += k.length + labels[k].length
  if (bytes > MAX_LABEL_BYTES) ctx.addIssue({ code: 'custom', message: `labels hold ${bytes} bytes of keys and values; at most ${MAX_LABEL_BYTES}` })
})

export const constraintSchema = z.strictObject({
  key: labelKeySchema,
  op: z.enum(CONSTRAINT_OPS, { error: (issue) => `unknown operator ${JSON.stringify(issue.input)}; one of ${CONSTRAINT_OPS.join(', ')}` }),
  values: z.array(labelValueSchema).max(MAX_CONSTRAINT_VALUES).optional()
}).superRefine((c, ctx) => {
  const p = arityProblem(c)
  if (p != null) ctx.addIssue({ code: 'custom', message: p, path: ['values'] })
})

/** A job's constraints, as the API and the wire carry them. */
export const constraintsSchema = z.array(constraintSchema).max(MAX_CONSTRAINTS).superRefine((cs, ctx) => {
  let bytes = 0
  for (const c of cs) bytes += c.key.length + (c.values ?? []).reduce((n, v) => n + v.length + 1, 0)
  if (bytes > MAX_CONSTRAINT_BYTES) ctx.addIssue({ code: 'custom', message: `constraints hold ${bytes} bytes of keys and values; at most ${MAX_CONSTRAINT_BYTES}` })
})

function arityProblem (c: { key: string, op: ConstraintOp, values?: string[] }): string | undefined {
  const n = c.values?.length ?? 0
  switch (c.op) {
    case '=': case '!=':
      return n === 1 ? undefined : `"${c.key} ${c.op}" takes exactly one value (got ${n})`
    case 'in': case 'notin':
      return n >= 1 ? undefined : `"${c.key} ${c.op}" takes one or more values`
    case 'exists': case '!exists':
      return n === 0 ? undefined : `"${c.key} ${c.op}" takes no values (got ${n})`
    case 'gt': case 'lt':
      if (n !== 1) return `"${c.key} ${c.op}" takes exactly one value (got ${n})`
      return INTEGER.test((c.values as string[])[0]) ? undefined : `"${c.key} ${c.op}" compares integers; "${(c.values as string[])[0]}" is not one`
  }
}

/** A named error for a selector that is not one (HTTP 400, CLI exit 2). */
export class SelectorError extends InvalidInputError {
  constructor (message: string) {
    super(message, 'invalid-selector')
    this.name = 'SelectorError'
  }
}

/** Check structured constraints (from the API or a file); SelectorError naming the first bad one. */
export function checkConstraints (value: unknown): Constraint[] {
  const parsed = constraintsSchema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue.path.length > 0 ? `constraints.${issue.path.join('.')}: ` : 'constraints: '
    throw new SelectorError(where + issue.message)
  }
  return parsed.data.map(normalise)
}

/** Check a label set (from config, the API or the command line); InvalidInputError naming the bad one. */
export function checkLabels (value: unknown, what = 'labels'): Labels {
  const parsed = labelsSchema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new InvalidInputError(`${what}${issue.path.length > 0 ? '.' + issue.path.join('.') : ''}: ${issue.message}`, 'invalid-labels')
  }
  return parsed.data
}

/** `exists`/`!exists` carry no `values` key at all: one encoding for one meaning (it is signed). */
function normalise (c: Constraint): Constraint {
  return c.op === 'exists' || c.op === '!exists' ? { key: c.key, op: c.op } : { key: c.key, op: c.op, values: [...(c.values as string[])] }
}

/** `k=v` → [k, v]; InvalidInputError otherwise. */
export function parseLabel (text: string): [string, string] {
  const i = text.indexOf('=')
  if (i <= 0) throw new InvalidInputError(`label "${text}": expected key=value`, 'invalid-labels')
  const key = text.slice(0, i).trim()
  const value = text.slice(i + 1).trim()
  const p = keyProblem(key) ?? valueProblem(value)
  if (p != null) throw new InvalidInputError(p, 'invalid-labels')
  return [key, value]
}

/** Several `k=v` (a repeated flag) → a checked label set; a key given twice is an error. */
export function parseLabels (list: readonly string[], what = 'labels'): Labels {
  const out: Labels = {}
  for (const item of list) {
    const [k, v] = parseLabel(item)
    if (Object.hasOwn(out, k)) throw new InvalidInputError(`${what}: key "${k}" given twice`, 'invalid-labels')
    out[k] = v
  }
  return checkLabels(out, what)
}

/** Split at commas outside parentheses. */
function splitTerms (text: string): string[] {
  const terms: string[] = []
  let depth = 0
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]
    if (ch === '(') { if (++depth > 1) throw new SelectorError(`selector: nested "(" at character ${i + 1}`) } else if (ch === ')') {
      if (--depth < 0) throw new SelectorError(`selector: unbalanced ")" at character ${i + 1}`)
    } else if (ch === ',' && depth === 0) { terms.push(text.slice(start, i)); start = i + 1 }
  }
  if (depth !== 0) throw new SelectorError('selector: unclosed "("')
  terms.push(text.slice(start))
  return terms.map(t => t.trim())
}

const SET_TERM = /^(\S+)\s+(in|notin)\s*\(([^()]*)\)$/
const WORD_TERM = /^(\S+)\s+(gt|lt)\s+(\S+)$/
const UNKNOWN_WORD = /^(\S+)\s+(\S+)\s*(.*)$/

/** A term as an error message shows it: quoted, at most 80 characters. */
function quote (term: string): string {
  return JSON.stringify(term.length > 80 ? term.slice(0, 79) + '…' : term)
}

/** One term of the string form → a constraint (unchecked). */
function parseTerm (term: string): Constraint {
  if (term === '') throw new SelectorError('selector: empty term (two commas in a row, or a trailing comma)')
  let m = SET_TERM.exec(term)
  if (m != null) return { key: m[1], op: m[2] as ConstraintOp, values: m[3].trim() === '' ? [] : m[3].split(',').map(v => v.trim()) }
  m = WORD_TERM.exec(term)
  if (m != null) return { key: m[1], op: m[2] as ConstraintOp, values: [m[3]] }
  m = /^([^=!<>\s]+)\s*(==|=|!=|>|<)\s*([^=!<>\s]*)$/.exec(term)
  if (m != null) {
    const op = m[2] === '==' ? '=' : m[2] === '>' ? 'gt' : m[2] === '<' ? 'lt' : m[2] as ConstraintOp
    return { key: m[1], op, values: [m[3]] }
  }
  m = /^!\s*([^=!<>\s(),]+)$/.exec(term)
  if (m != null) return { key: m[1], op: '!exists' }
  if (/^[^=!<>\s(),]+$/.test(term)) return { key: term, op: 'exists' }
  m = UNKNOWN_WORD.exec(term)
  if (m != null && !(CONSTRAINT_OPS as readonly string[]).includes(m[2])) {
    throw new SelectorError(`selector term ${quote(term)}: unknown operator "${m[2]}"; use =, !=, in, notin, gt, lt, "key" (exists) or "!key" (not exists)`)
  }
  throw new SelectorError(`selector term ${quote(term)}: malformed; expected e.g. "region=eu", "gpu in (a100,h100)", "!spot" or "cores gt 8"`)
}

/** The string form → checked constraints; SelectorError naming the bad term. */
export function parseSelector (text: string): Constraint[] {
  if (text.length > MAX_SELECTOR_CHARS) throw new SelectorError(`selector of ${text.length} characters; at most ${MAX_SELECTOR_CHARS}`)
  if (text.trim() === '') return []
  const out: Constraint[] = []
  for (const term of splitTerms(text)) {
    const c = parseTerm(term)
    const p = keyProblem(c.key) ?? arityProblem(c) ?? (c.values ?? []).map(valueProblem).find(x => x != null)
    if (p != null) throw new SelectorError(`selector term ${quote(term)}: ${p}`)
    out.push(c)
  }
  return checkConstraints(out)
}

/** Constraints given as the structured form or as one string (the API takes both). */
export function toConstraints (value: unknown): Constraint[] {
  if (typeof value === 'string') return parseSelector(value)
  return checkConstraints(value)
}

/** Does one constraint hold for these labels? */
export function matchesOne (labels: Readonly<Labels>, c: Constraint): boolean {
  const has = Object.hasOwn(labels, c.key)
  const v = has ? labels[c.key] : undefined
  const values = c.values ?? []
  switch (c.op) {
    case '=': return has && v === values[0]
    case '!=': return !has || v !== values[0]
    case 'in': return has && values.includes(v as string)
    case 'notin': return !has || !values.includes(v as string)
    case 'exists': return has
    case '!exists': return !has
    case 'gt': case 'lt': {
      if (!has || !INTEGER.test(v as string) || !INTEGER.test(values[0] ?? '')) return false
      const a = Number(v)
      const b = Number(values[0])
      return c.op === 'gt' ? a > b : a < b
    }
  }
  return false // an unknown operator never matches
}

/** The first constraint these labels fail, or undefined when all hold (no constraints: all hold). */
export function firstUnmet (labels: Readonly<Labels> | undefined, constraints: readonly Constraint[] | undefined): Constraint | undefined {
  if (constraints == null) return undefined
  const l = labels ?? {}
  for (const c of constraints) if (!matchesOne(l, c)) return c
  return undefined
}

export function matches (labels: Readonly<Labels> | undefined, constraints: readonly Constraint[] | undefined): boolean {
  return firstUnmet(labels, constraints) == null
}

/** One constraint in the string form. */
export function formatConstraint (c: Constraint): string {
  const values = c.values ?? []
  switch (c.op) {
    case '=': case '!=': return `${c.key}${c.op}${values[0]}`
    case 'in': case 'notin': return `${c.key} ${c.op} (${values.join(',')})`
    case 'exists': return c.key
    case '!exists': return `!${c.key}`
    case 'gt': case 'lt': return `${c.key} ${c.op} ${values[0]}`
  }
  return `${c.key} ${String(c.op)}`
}

export function formatSelector (cs: readonly Constraint[]): string {
  return cs.map(formatConstraint).join(',')
}

/**
 * The labels a set of constraints looks at: what a provider signs into its bid for a constrained
 * job (every constraint is decided by these alone, absent keys included).
 */
export function labelsFor (labels: Readonly<Labels>, constraints: readonly Constraint[]): Labels {
  const out: Labels = {}
  for (const c of constraints) if (Object.hasOwn(labels, c.key)) out[c.key] = labels[c.key]
  return out
}

/** Do two label sets say the same of every key the constraints look at? */
export function agreeOn (a: Readonly<Labels>, b: Readonly<Labels>, constraints: readonly Constraint[]): boolean {
  for (const c of constraints) {
    if (Object.hasOwn(a, c.key) !== Object.hasOwn(b, c.key)) return false
    if (Object.hasOwn(a, c.key) && a[c.key] !== b[c.key]) return false
  }
  return true
}
