/**
 * `mercato ledger verify|show|export|audit`.
 *
 * verify, show and export read the log in `<dataDir>/ledger` directly
 * (read-only: a damaged log can still be inspected). LevelDB allows one
 * process at a time, so while the node runs they ask its gateway instead.
 * audit always goes through the running node (it needs the mesh).
 *
 * Exit codes: 0 ok; 1 the log (or the audited log) fails verification, or
 * the command failed.
 */
import type { Command } from 'commander'
import { isMercatoError } from '../errors.js'
import type { Ledger } from './ledger.js'
import { recordToJson, type RecordJson } from './json.js'
import { isRecordType, RECORD_TYPES, type RecordType, type VerifyReport } from './record.js'
import { LedgerCorruptError } from './errors.js'

export interface LedgerCliDeps {
  /**
   * Open the node's ledger at `<dataDir>/ledger` with the node's identity.
   * `readOnly` should be passed through to openLedger (no tail repair, no
   * appends) so damage can be reported rather than refused.
   */
  openLocalLedger (dataDir: string, opts?: { readOnly?: boolean }): Promise<Ledger>
  /** base URL of the running node's gateway, e.g. `http://127.0.0.1:8420` */
  gatewayUrl (opts: { dataDir: string, gateway?: string }): string
  /** resolve the --data-dir flag (default: ~/.mercato or $MERCATO_DATA_DIR) */
  resolveDataDir (flag?: string): string
  /** extra headers for gateway requests (the bearer token when one is needed) */
  gatewayHeaders?: (opts: { dataDir: string }) => Record<string, string> | Promise<Record<string, string>>
}

interface CommonFlags { dataDir?: string, gateway?: string, json?: boolean }

function out (s: string): void {
  process.stdout.write(s)
}

async function write (s: string): Promise<void> {
  if (!process.stdout.write(s)) await new Promise<void>((resolve) => process.stdout.once('drain', () => { resolve() }))
}

function errLine (msg: string): void {
  process.stderr.write(`mercato: ${msg}\n`)
}

function isLocked (err: any): boolean {
  return err?.code === 'LEVEL_LOCKED' || err?.cause?.code === 'LEVEL_LOCKED' || /LOCK|locked/.test(String(err?.cause?.message ?? ''))
}

class GatewayClient {
  constructor (private readonly base: string, private readonly headers: Record<string, string>) {}

  async get<T> (path: string): Promise<T> {
    let res: Response
    try {
      res = await fetch(this.base + path, { headers: this.headers })
    } catch (err: any) {
      throw new Error(`cannot reach the node's gateway at ${this.base} (is the node running?): ${String(err?.cause?.code ?? err?.message ?? err)}`)
    }
    const body: any = await res.json().catch(() => ({}))
    if (!res.ok) throw new Error(`${body?.error?.message ?? res.statusText} (${body?.error?.code ?? res.status})`)
    return body as T
  }
}

/** Where records come from: the local LevelDB log, or the running node's gateway. */
interface Source {
  verify (): Promise<VerifyReport & { signer: string }>
  head (): Promise<{ seq: number, id: string | null, count: number }>
  /** records as JSON, oldest first */
  list (q: { from: number, limit: number, type?: RecordType, job?: string }): Promise<RecordJson[]>
  close (): Promise<void>
}

function localSource (ledger: Ledger): Source {
  return {
    verify: async () => ({ signer: ledger.signer, ...await ledger.verify() }),
    head: async () => ledger.head(),
    async list (q) {
      let recs
      if (q.job != null) recs = (await ledger.byJob(q.job)).filter((r) => r.seq >= q.from && (q.type == null || r.type === q.type))
      else if (q.type != null) recs = await ledger.byType(q.type, { from: q.from, limit: q.limit })
      else recs = await ledger.range(q.from, q.limit)
      return recs.slice(0, q.limit).map((r) => recordToJson(r))
    },
    close: async () => { await ledger.close() }
  }
}

function gatewaySource (gw: GatewayClient): Source {
  return {
    verify: async () => await gw.get('/v1/ledger/verify'),
    head: async () => await gw.get('/v1/ledger/head'),
    async list (q) {
      const p = new URLSearchParams({ from: String(q.from), limit: String(q.limit) })
      if (q.type != null) p.set('type', q.type)
      if (q.job != null) p.set('job', q.job)
      return (await gw.get<{ records: RecordJson[] }>(`/v1/ledger?${p.toString()}`)).records
    },
    close: async () => {}
  }
}

async function gatewayFor (deps: LedgerCliDeps, flags: CommonFlags): Promise<GatewayClient> {
  const dataDir = deps.resolveDataDir(flags.dataDir)
  const base = deps.gatewayUrl({ dataDir, gateway: flags.gateway }).replace(/\/$/, '')
  return new GatewayClient(base, await deps.gatewayHeaders?.({ dataDir }) ?? {})
}

async function openSource (deps: LedgerCliDeps, flags: CommonFlags): Promise<Source> {
  const dataDir = deps.resolveDataDir(flags.dataDir)
  try {
    return localSource(await deps.openLocalLedger(dataDir, { readOnly: true }))
  } catch (err) {
    if (!isLocked(err)) throw err
    // the node is running and holds the LevelDB lock: ask it
    return gatewaySource(await gatewayFor(deps, flags))
  }
}

function positiveInt (name: string) {
  return (v: string): number => {
    const n = Number(v)
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name}: expected a whole number, got "${v}"`)
    return n
  }
}

function fmtTs (ts: number): string {
  try { return new Date(ts).toISOString() } catch { return String(ts) }
}

async function run (fn: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await fn()
  } catch (err: any) {
    if (err instanceof LedgerCorruptError) {
      errLine(`ledger fails verification at seq ${err.seq}: ${err.reason}`)
    } else {
      errLine(isMercatoError(err) ? `${err.message} (${err.code})` : String(err?.message ?? err))
    }
    process.exitCode = 1
  }
}

/**
 * Register `ledger verify|show|export|audit` on the `mercato` program.
 * Actions set `process.exitCode` (0 or 1) and return; they never call exit.
 */
export function registerLedgerCommands (program: Command, deps: LedgerCliDeps): Command {
  const ledger = program.command('ledger').description('inspect, verify and audit signed ledgers')

  ledger.command('verify')
    .description('verify every record of the local log (signatures, links, sequence); exit 0 when it verifies, 1 otherwise')
    .option('--data-dir <dir>', 'data directory (default ~/.mercato or $MERCATO_DATA_DIR)')
    .option('--gateway <url>', 'gateway to ask while the node runs (default from config)')
    .option('--json', 'print the report as JSON')
    .action(async (flags: CommonFlags) => {
      await run(async () => {
        const src = await openSource(deps, flags)
        try {
          const r = await src.verify()
          if (flags.json === true) {
            out(JSON.stringify(r) + '\n')
          } else {
            out(`signer:  ${r.signer}\n`)
            out(`records: ${r.count}${r.ok ? '' : ' verified before the first bad one'}\n`)
            out(`head:    ${r.headId ?? '(empty)'}\n`)
            if (r.ok) out('status:  ok\n')
            else out(`status:  FAILED at seq ${r.firstBad?.seq}: ${r.firstBad?.reason}\n`)
          }
          return r.ok ? 0 : 1
        } finally {
          await src.close()
        }
      })
    })

  ledger.command('show')
    .description('list records (the last --limit, or from --from)')
    .option('--data-dir <dir>', 'data directory')
    .option('--gateway <url>', 'gateway to ask while the node runs')
    .option('--type <type>', `only this type (${RECORD_TYPES.join(', ')})`)
    .option('--job <id>', 'only records of this job')
    .option('--from <seq>', 'start at this sequence number', positiveInt('from'))
    .option('--limit <n>', 'at most this many records (default 20)', positiveInt('limit'))
    .option('--json', 'print a JSON array of records')
    .action(async (flags: CommonFlags & { type?: string, job?: string, from?: number, limit?: number }) => {
      await run(async () => {
        if (flags.type != null && !isRecordType(flags.type)) throw new Error(`--type: expected one of ${RECORD_TYPES.join(', ')}, got "${flags.type}"`)
        const type = flags.type as RecordType | undefined
        const limit = Math.min(flags.limit ?? 20, 10_000)
        const src = await openSource(deps, flags)
        try {
          let records: RecordJson[]
          if (flags.from != null) {
            records = await src.list({ from: flags.from, limit, type, job: flags.job })
          } else if (type == null && flags.job == null) {
            const head = await src.head()
            records = await src.list({ from: Math.max(0, head.count - limit), limit })
          } else {
            const all = await src.list({ from: 0, limit: 10_000, type, job: flags.job })
            records = all.slice(-limit)
          }
          if (flags.json === true) {
            out(JSON.stringify(records, null, 2) + '\n')
          } else if (records.length === 0) {
            out('no records\n')
          } else {
            for (const r of records) {
              const job = typeof r.body.jobId === 'string' ? r.body.jobId : '-'
              out(`${String(r.seq).padStart(7)}  ${fmtTs(r.ts)}  ${r.type.padEnd(12)}  ${job}  ${r.id}\n`)
            }
          }
          return 0
        } finally {
          await src.close()
        }
      })
    })

  ledger.command('export')
    .description('print every record as NDJSON (one JSON record per line) on stdout')
    .option('--data-dir <dir>', 'data directory')
    .option('--gateway <url>', 'gateway to ask while the node runs')
    .option('--from <seq>', 'start at this sequence number', positiveInt('from'))
    .action(async (flags: CommonFlags & { from?: number }) => {
      await run(async () => {
        const src = await openSource(deps, flags)
        try {
          let from = flags.from ?? 0
          const head = await src.head()
          while (from <= head.seq) {
            const page = await src.list({ from, limit: 1000 })
            if (page.length === 0) break
            for (const r of page) await write(JSON.stringify(r) + '\n')
            from = page[page.length - 1].seq + 1
          }
          return 0
        } finally {
          await src.close()
        }
      })
    })

  ledger.command('audit <peer>')
    .description('fetch and verify a remote node\'s log through the running node (peer: PeerId or multiaddr); exit 0 when it verifies')
    .option('--data-dir <dir>', 'data directory (to find the gateway)')
    .option('--gateway <url>', 'gateway of the running node')
    .option('--json', 'print the report as JSON')
    .action(async (peer: string, flags: CommonFlags) => {
      await run(async () => {
        const gw = await gatewayFor(deps, flags)
        const r = await gw.get<{
          peer: string, ok: boolean, count: number, headId: string | null, head: { seq: number, id: string } | null,
          firstBad?: { seq: number, reason: string }, flagged: boolean, pages: number, ms: number
        }>(`/v1/ledger/audit/${encodeURIComponent(peer)}`)
        if (flags.json === true) {
          out(JSON.stringify(r) + '\n')
        } else {
          out(`peer:    ${r.peer}\n`)
          out(`records: ${r.count} verified (${r.pages} page(s), ${r.ms} ms)\n`)
          out(`head:    ${r.headId ?? '(empty)'}\n`)
          out(`signed:  ${r.head != null ? `seq ${r.head.seq} ${r.head.id}` : '(no signed head seen)'}\n`)
          out(r.ok ? 'verdict: ok\n' : `verdict: FAILED at seq ${r.firstBad?.seq}: ${r.firstBad?.reason}\n`)
          if (r.flagged) out('flagged: yes — this peer signed two histories (equivocation)\n')
        }
        return r.ok ? 0 : 1
      })
    })

  return ledger
}
