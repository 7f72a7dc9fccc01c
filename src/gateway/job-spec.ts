/**
 * The job spec as `POST /v1/jobs` takes it (zod), its JSON Schema, and how a
 * zod issue is named to a user. Shared by the gateway's job routes and the
 * CLI's spec files (`mercato submit job.yaml`).
 *
 * Kept light on purpose: this file imports zod, a few constants and the path rules (executor/files.ts) only,
 * never the market, fastify or libp2p. The `mercato` client commands load
 * it; when they loaded it through routes/jobs.ts they also loaded the whole
 * node (≈ 2 s before `mercato logs -f` could even connect).
 */
import { z } from 'zod'
import { MAX_INPUT_URL_CHARS, MAX_JOB_NAME, MAX_QUEUE_TIMEOUT_MS } from '../auction/constants.js'
import { MAX_JOB_INPUTS } from '../executor/constants.js'
import { inputListProblem } from '../executor/files.js'
import { constraintsSchema, labelsSchema, MAX_SELECTOR_CHARS } from '../labels.js'
import { ENGINES } from '../engines.js'
import { IDEMPOTENCY_KEY_MAX } from './constants.js'

const limits = z.strictObject({
  timeoutMs: z.number().int().min(1).optional(),
  memoryMb: z.number().int().min(1).optional(),
  outputBytes: z.number().int().min(0).optional()
})

const inputPath = z.string().min(1).max(1024).describe('where the job finds the file: /inputs/<path> (wasm), readFile(path) (js); relative, no ..')
/** `[{ path, cid }]` (a blob uploaded with POST /v1/blobs) or `[{ path, url, sha256, size? }]` (fetched by the provider) */
const inputsField = z.array(z.union([
  z.strictObject({ path: inputPath, cid: z.string().min(8).max(128).describe('CID of a blob in this node\'s store (POST /v1/blobs)') }),
  z.strictObject({
    path: inputPath,
    url: z.string().max(MAX_INPUT_URL_CHARS).refine(u => { try { return ['http:', 'https:'].includes(new URL(u).protocol) } catch { return false } }, { message: 'an http:// or https:// URL' }),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, { message: 'a hex sha256 (64 lowercase hex digits)' }),
    size: z.number().int().min(0).optional().describe('bytes, when known: providers decline what is over their limit before fetching')
  })
])).min(1).max(MAX_JOB_INPUTS).superRefine((list, ctx) => {
  const problem = inputListProblem(list.map(i => i.path))
  if (problem != null) ctx.addIssue({ code: 'custom', message: problem })
})

export const jobBodySchema = z.strictObject({
  engine: z.enum(ENGINES),
  module: z.string().min(1).max(128).optional(),
  source: z.string().optional(),
  args: z.array(z.string()).max(256).optional(),
  env: z.record(z.string(), z.string()).optional(),
  stdin: z.string().max(200_000).regex(/^[A-Za-z0-9+/]*={0,2}$/, { message: 'base64' }).optional(),
  input: z.unknown().optional(),
  /** input files the job reads (read-only): blobs by CID, or URLs pinned by sha256 */
  inputs: inputsField.optional(),
  limits: limits.optional(),
  maxPrice: z.number().min(0).optional(),
  replicas: z.number().int().min(1).max(15).optional(),
  minBids: z.number().int().min(1).max(100).optional(),
  bidWindowMs: z.number().int().min(1).max(60_000).optional(),
  /** placement: structured `[{ key, op, values }]`, or one selector string `region=eu,gpu in (a100,h100),!spot` */
  constraints: z.union([z.string().max(MAX_SELECTOR_CHARS), constraintsSchema]).optional(),
  /** for listing and filtering: `GET /v1/jobs?label=k=v` */
  name: z.string().max(MAX_JOB_NAME).optional(),
  labels: labelsSchema.optional(),
  /** how long the job may wait queued for a provider (ms, from submission); 0: no-bids at once; default auction.queueTimeoutMs */
  queueTimeoutMs: z.number().int().min(0).max(MAX_QUEUE_TIMEOUT_MS).optional(),
  idempotencyKey: z.string().min(1).max(IDEMPOTENCY_KEY_MAX).optional()
    .describe('a client-chosen key: a second submission with the same key returns the first job instead of starting another')
})

/** The job spec as a JSON Schema (draft 2020-12), generated from {@link jobBodySchema}: what `/v1/schema/job.json` serves. */
export function jobSpecJsonSchema (): Record<string, unknown> {
  return z.toJSONSchema(jobBodySchema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' }) as Record<string, unknown>
}

/** The field a zod issue is about, and what is wrong with it: `limits.timeoutMs: Too small…`, `colour: unknown field`. */
export function describeIssue (issue: z.core.$ZodIssue): { path: PropertyKey[], field: string, message: string } {
  if (issue.code === 'unrecognized_keys') {
    const path = [...issue.path, issue.keys[0]]
    return { path, field: path.join('.'), message: issue.keys.length > 1 ? `unknown fields (${issue.keys.join(', ')})` : 'unknown field' }
  }
  return { path: issue.path, field: issue.path.join('.') || 'spec', message: issue.message }
}
