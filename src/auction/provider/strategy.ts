/**
 * The bid strategy chain. Each check answers "go on" or a reason not to bid;
 * the chain stops at the first "no". Cheap checks on the offer come before
 * checks on our resources, so a flood of unsuitable offers costs little.
 */
import { firstUnmet, formatConstraint, type Labels } from '../../labels.js'
import type { DeclineReason, Offer } from '../protocol/messages.js'

export type Decision = { bid: true } | { bid: false, reason: DeclineReason, detail?: string }

export interface StrategyContext {
  enabled: boolean
  engines: string[]
  /** our labels, matched against the offer's constraints */
  labels: Readonly<Labels>
  price: number
  maxTimeoutMs: number
  maxMemoryMb: number
  maxOutputBytes: number
  maxModuleBytes: number
  /** input files: most files, bytes per file, bytes in total (sizes a spec names; a URL input without a size is checked as it arrives) */
  /** can our backend run jobs with input files (the Slurm backend cannot) */
  inputsSupported: boolean
  maxInputFiles: number
  maxInputFileBytes: number
  maxInputTotalBytes: number
  freeSlots: number
  isFlagged: (peerId: string) => boolean
  /** why a requester gets no bid for the results it has not paid (UnpaidResults), or undefined */
  owes?: (requester: string) => string | undefined
}

type Check = (offer: Offer, ctx: StrategyContext) => Decision | undefined

const no = (reason: DeclineReason, detail?: string): Decision => ({ bid: false, reason, detail })

export const CHECKS: ReadonlyArray<[string, Check]> = [
  ['providing', (_o, c) => c.enabled ? undefined : no('not-providing')],
  ['engine', (o, c) => c.engines.includes(o.spec.engine) ? undefined : no('engine', `engine ${o.spec.engine} not offered (have ${c.engines.join(', ') || 'none'})`)],
  ['constraint', (o, c) => {
    const unmet = firstUnmet(c.labels, o.constraints)
    if (unmet == null) return undefined
    const detail = `constraint ${formatConstraint(unmet)} not met (${unmet.key}${Object.hasOwn(c.labels, unmet.key) ? `=${c.labels[unmet.key]}` : ' absent'})`
    // a decline's detail is capped at 512 characters on the wire (an `in` of 16 long values is longer)
    return no('constraint', detail.length > 500 ? detail.slice(0, 499) + '…' : detail)
  }],
  ['timeout', (o, c) => o.spec.limits.timeoutMs <= c.maxTimeoutMs ? undefined : no('timeout-over-cap', `timeout ${o.spec.limits.timeoutMs} ms over cap ${c.maxTimeoutMs} ms`)],
  ['memory', (o, c) => o.spec.limits.memoryMb <= c.maxMemoryMb ? undefined : no('memory-over-cap', `memory ${o.spec.limits.memoryMb} MB over cap ${c.maxMemoryMb} MB`)],
  ['output', (o, c) => o.spec.limits.outputBytes <= c.maxOutputBytes ? undefined : no('output-over-cap', `output ${o.spec.limits.outputBytes} B over cap ${c.maxOutputBytes} B`)],
  ['module', (o, c) => (o.spec.module?.size ?? 0) <= c.maxModuleBytes ? undefined : no('module-too-large', `module of ${o.spec.module?.size} B over ${c.maxModuleBytes} B`)],
  ['inputs', (o, c) => {
    const inputs = o.spec.inputs ?? []
    if (inputs.length === 0) return undefined
    if (!c.inputsSupported) return no('inputs-unsupported', 'this provider\'s backend does not run jobs with input files')
    if (inputs.length > c.maxInputFiles) return no('input-too-large', `${inputs.length} input files, over ${c.maxInputFiles}`)
    let total = 0
    for (const i of inputs) {
      const size = i.size ?? 0
      if (size > c.maxInputFileBytes) return no('input-too-large', `input ${i.path.slice(0, 64)} of ${size} B over ${c.maxInputFileBytes} B`)
      total += size
    }
    return total <= c.maxInputTotalBytes ? undefined : no('input-too-large', `inputs of ${total} B over ${c.maxInputTotalBytes} B in total`)
  }],
  ['price', (o, c) => c.price <= o.maxPrice ? undefined : no('price', `ask ${c.price} over maxPrice ${o.maxPrice}`)],
  ['requester', (o, c) => c.isFlagged(o.requester) ? no('requester-flagged', 'requester is flagged for equivocation') : undefined],
  ['unpaid', (o, c) => { const why = c.owes?.(o.requester); return why != null ? no('requester-flagged', why) : undefined }],
  ['capacity', (_o, c) => c.freeSlots > 0 ? undefined : no('no-slot', 'every slot is busy')]
]

/** Run the chain; the first "no" wins. */
export function decide (offer: Offer, ctx: StrategyContext): Decision {
  for (const [, check] of CHECKS) {
    const d = check(offer, ctx)
    if (d != null) return d
  }
  return { bid: true }
}
