/**
 * JSON schemas shared by the gateway's routes. They are registered on the
 * app with `addSchema` (referenced as `{ $ref: 'JobView#' }`) and become
 * `components.schemas` in the OpenAPI document.
 *
 * Responses are serialized with plain JSON.stringify (see index.ts), so
 * these schemas describe; they never strip or coerce a field. The route
 * tests validate real responses against them, so they stay true.
 */

export const ErrorSchema = {
  $id: 'Error',
  type: 'object',
  description: 'Every error: a stable code (see docs/GATEWAY.md) and a human message',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', examples: ['not-found'] },
        message: { type: 'string' }
      },
      additionalProperties: false
    }
  },
  additionalProperties: false
} as const

export const LabelsSchema = {
  $id: 'Labels',
  type: 'object',
  description: 'key → value labels (Kubernetes label syntax, at most 16; see README "Labels and constraints")',
  additionalProperties: { type: 'string' }
} as const

export const ConstraintSchema = {
  $id: 'Constraint',
  type: 'object',
  description: 'one placement constraint: the provider\'s label `key` must satisfy `op` with `values`',
  required: ['key', 'op'],
  properties: {
    key: { type: 'string' },
    op: { type: 'string', enum: ['=', '!=', 'in', 'notin', 'exists', '!exists', 'gt', 'lt'] },
    values: { type: 'array', items: { type: 'string' } }
  },
  additionalProperties: false
} as const

export const NodeInfoSchema = {
  $id: 'NodeInfo',
  type: 'object',
  required: ['peerId', 'addresses', 'version', 'provider'],
  properties: {
    peerId: { type: 'string' },
    addresses: { type: 'array', items: { type: 'string' } },
    version: { type: 'string' },
    provider: {
      type: 'object',
      required: ['enabled'],
      properties: {
        enabled: { type: 'boolean' },
        price: { type: 'number', description: 'ask in credits per job' },
        slots: { type: 'integer' },
        busy: { type: 'integer' },
        engines: { type: 'array', items: { type: 'string' } },
        labels: { $ref: 'Labels#' }
      },
      additionalProperties: true
    }
  },
  additionalProperties: true
} as const

export const PeerSchema = {
  $id: 'Peer',
  type: 'object',
  required: ['peerId', 'addresses'],
  properties: {
    peerId: { type: 'string' },
    addresses: { type: 'array', items: { type: 'string' } },
    flagged: { type: 'boolean' }
  },
  additionalProperties: true
} as const

const nullableString = { type: ['string', 'null'] } as const
const nullableNumber = { type: ['number', 'null'] } as const

import { JOB_STATUSES } from '../auction/types.js'
import { ENGINES } from '../engines.js'
export { JOB_STATUSES }

export const JobViewSchema = {
  $id: 'JobView',
  type: 'object',
  required: ['id', 'labels', 'constraints', 'status', 'engine', 'provider', 'providers', 'price', 'maxPrice', 'replicas', 'bids', 'attempts', 'declines', 'createdAt', 'completedAt', 'latencyMs'],
  properties: {
    id: { type: 'string' },
    name: { type: 'string', description: 'the name given at submit, if any' },
    labels: { $ref: 'Labels#' },
    constraints: { type: 'array', items: { $ref: 'Constraint#' } },
    status: { type: 'string', enum: JOB_STATUSES },
    engine: { type: 'string', enum: ENGINES },
    provider: { ...nullableString, description: 'the provider holding the job now' },
    providers: { type: 'array', items: { type: 'string' } },
    price: { ...nullableNumber, description: 'the settlement (second) price' },
    maxPrice: { type: 'number' },
    replicas: { type: 'integer' },
    bids: {
      type: 'array',
      items: {
        type: 'object',
        required: ['provider', 'price'],
        properties: { provider: { type: 'string' }, price: { type: 'number' }, estStartMs: { type: 'number' }, id: { type: 'string' } },
        additionalProperties: true
      }
    },
    attempts: {
      type: 'array',
      items: {
        type: 'object',
        required: ['provider', 'price', 'attempt', 'state'],
        properties: {
          provider: { type: 'string' },
          price: { type: 'number' },
          attempt: { type: 'integer' },
          state: { type: 'string' },
          awardedAt: { type: 'number' },
          endedAt: { type: 'number' },
          lastSeen: { type: 'number', description: 'when the provider was last heard from (heartbeats, logs, result)' },
          reason: { type: 'string' }
        },
        additionalProperties: true
      }
    },
    declines: {
      type: 'array',
      items: {
        type: 'object',
        required: ['provider', 'reason'],
        properties: { provider: { type: 'string' }, reason: { type: 'string' }, detail: { type: 'string' } },
        additionalProperties: true
      }
    },
    createdAt: { type: 'number', description: 'ms since the epoch' },
    completedAt: nullableNumber,
    latencyMs: nullableNumber,
    error: { type: 'string' },
    queueUntil: { type: 'number', description: 'when the job\'s queue time ends (createdAt + queueTimeoutMs), ms since the epoch; absent when it may not queue' }
  },
  additionalProperties: true
} as const

export const JobEventSchema = {
  $id: 'JobEvent',
  type: 'object',
  description: 'One step of a job; the SSE event name is its type. Other fields depend on the type (provider, price, reason, ...).',
  required: ['type', 'ts', 'jobId'],
  properties: {
    type: {
      type: 'string',
      enum: ['announced', 'queued', 'bid', 'decline', 'awarded', 'accepted', 'refused', 'running', 'suspect', 'rerouted', 'handover', 'collecting', 'result', 'superseded', 'mismatch', 'settled', 'failed', 'no-bids', 'cancelled']
    },
    ts: { type: 'number' },
    jobId: { type: 'string' }
  },
  additionalProperties: true
} as const

export const OutputRefSchema = {
  $id: 'OutputRef',
  type: 'object',
  description: 'An output file of a job: its path in the job\'s output directory, its CID (CIDv1 raw sha2-256) and size',
  required: ['path', 'cid', 'size'],
  properties: {
    path: { type: 'string' },
    cid: { type: 'string' },
    size: { type: 'integer' }
  },
  additionalProperties: false
} as const

export const ResultViewSchema = {
  $id: 'ResultView',
  type: 'object',
  required: ['jobId', 'exitCode', 'stdout', 'stderr', 'truncated', 'resultHash', 'provider', 'providers', 'price', 'usage'],
  properties: {
    jobId: { type: 'string' },
    exitCode: { type: 'integer' },
    stdout: { type: 'string' },
    stderr: { type: 'string' },
    output: { description: 'the JSON output of a js job' },
    outputs: {
      type: 'array',
      description: 'the files the job wrote (GET /v1/jobs/{id}/outputs/{path} downloads one)',
      items: { $ref: 'OutputRef#' }
    },
    truncated: { type: 'boolean' },
    error: { type: 'object', properties: { name: { type: 'string' }, message: { type: 'string' } }, additionalProperties: true },
    resultHash: { type: 'string' },
    provider: { type: 'string' },
    providers: { type: 'array', items: { type: 'string' } },
    price: { type: 'number' },
    usage: {
      type: 'object',
      properties: { wallMs: { type: 'number' }, memoryBytes: { type: 'number' }, outputBytes: { type: 'number' }, fuel: { type: 'number' } },
      additionalProperties: true
    }
  },
  additionalProperties: true
} as const

export const StandingSchema = {
  $id: 'Standing',
  type: 'object',
  description: "A peer's standing from receipts, losses and mismatches seen",
  required: ['peerId', 'score'],
  properties: {
    peerId: { type: 'string' },
    completed: { type: 'integer' },
    failed: { type: 'integer' },
    lost: { type: 'integer' },
    mismatched: { type: 'integer' },
    earned: { type: 'number' },
    spent: { type: 'number' },
    heardPaid: { type: 'integer', description: 'paid receipts about this peer heard on gossip (not in the score)' },
    heardFailed: { type: 'integer', description: 'failed receipts about this peer heard on gossip (not in the score)' },
    penalty: { type: 'number', description: 'weight of the bad marks still remembered (failed + lost + 3 × mismatched), halving every auction.forgiveHalfLifeMs' },
    score: { type: 'number', description: 'completed − penalty, from firsthand receipts and observations only' }
  },
  additionalProperties: true
} as const

export const ProviderSchema = {
  $id: 'Provider',
  type: 'object',
  required: ['peerId', 'engines', 'lastAsk', 'self', 'standing'],
  properties: {
    peerId: { type: 'string' },
    engines: { type: 'array', items: { type: 'string' } },
    labels: { $ref: 'Labels#', description: 'what its advert says of it (absent: no advert held)' },
    lastAsk: { ...nullableNumber, description: 'its last bid price seen on one of our jobs, if any (the last 5,000 bidders are remembered)' },
    self: { type: 'boolean' },
    standing: { anyOf: [{ $ref: 'Standing#' }, { type: 'null' }] },
    advert: {
      description: 'its capacity advert as held in the book (null: none heard): what invitations are chosen from',
      anyOf: [{
        type: 'object',
        properties: {
          ask: { type: 'number' },
          slots: { type: 'integer' },
          caps: { type: 'object', properties: { timeoutMs: { type: 'integer' }, memoryMb: { type: 'integer' }, outputBytes: { type: 'integer' } } },
          inputs: { type: 'object', description: 'its input file limits (absent from older providers): files, bytes per file, bytes in total', properties: { files: { type: 'integer' }, fileBytes: { type: 'integer' }, totalBytes: { type: 'integer' } } },
          labels: { $ref: 'Labels#' },
          expires: { type: 'integer' },
          strikes: { type: 'integer', description: 'invitations left unanswered in a row' },
          benchedUntil: { ...nullableNumber, description: 'not invited before this time (silent or never accepted)' }
        }
      }, { type: 'null' }]
    }
  },
  additionalProperties: true
} as const

export const BalanceSchema = {
  $id: 'Balance',
  type: 'object',
  required: ['peerId', 'earned', 'spent', 'balance'],
  properties: {
    peerId: { type: 'string' },
    earned: { type: 'number' },
    spent: { type: 'number' },
    balance: { type: 'number' }
  },
  additionalProperties: false
} as const

export const SHARED_SCHEMAS = [
  ErrorSchema, LabelsSchema, ConstraintSchema, NodeInfoSchema, PeerSchema, JobViewSchema, JobEventSchema, OutputRefSchema, ResultViewSchema, StandingSchema, ProviderSchema, BalanceSchema
]

/** `{ status: { $ref: 'Error#' } }` for each status, for a route's `response`. */
export function errorResponses (...statuses: number[]): Record<number, unknown> {
  const out: Record<number, unknown> = {}
  for (const s of statuses) out[s] = { $ref: 'Error#' }
  return out
}

/** The schema of an SSE stream response, for the document. */
export const EVENT_STREAM = {
  description: 'text/event-stream: `event: <type>` + `data: <JobEvent JSON>` per event, `event: end` when the job is over; `: ping` comments keep it open',
  content: { 'text/event-stream': { schema: { type: 'string' } } }
} as const

/**
 * Route options for a route whose input zod checks (it names the bad field
 * and the code): the schema documents the input, fastify does not validate
 * or coerce it first.
 */
export const zodValidated = {
  validatorCompiler: () => (): boolean => true
}

/** A zod-derived JSON schema, ready for a route (no `$schema` key). */
export function documented (schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _drop, ...rest } = schema
  return rest
}
