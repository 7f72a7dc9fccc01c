/**
 * Configuration. Every key and its default lives in `config/default.json`.
 * Layers, each overriding the one before: defaults → `--config FILE` →
 * `MERCATO_*` environment variables → command-line flags.
 *
 * Environment names are the key path in UPPER_SNAKE: `dataDir` →
 * `MERCATO_DATA_DIR`, `gateway.port` → `MERCATO_GATEWAY_PORT`,
 * `p2p.bootstrap` → `MERCATO_P2P_BOOTSTRAP` (lists are comma-separated).
 *
 * The result is validated by one zod schema; a bad value is a
 * {@link ConfigError} naming the key and the expected form.
 */
import { labelsSchema } from './labels.js'
import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { resolve } from 'node:path'
import { z } from 'zod'
import { ConfigError } from './errors.js'
import { ENGINES } from './engines.js'
import { isMultiaddr } from './p2p/multiaddr.js'
import { MAX_QUEUE_TIMEOUT_MS } from './auction/constants.js'
import { MIN_MAX_PEERS } from './p2p/constants.js'
import { MAX_OUTPUT_FILE_BYTES, MAX_OUTPUT_FILES, MAX_OUTPUT_TOTAL_BYTES } from './executor/constants.js'
import { packageFile } from './paths.js'

const multiaddrString = z.string().refine(isMultiaddr, { message: 'a multiaddr such as /ip4/127.0.0.1/tcp/4010' })
const peerMultiaddr = z.string().refine(s => isMultiaddr(s) && s.includes('/p2p/'), { message: 'a multiaddr ending in /p2p/<PeerId>, such as /ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...' })
const port = z.number().int().min(0).max(65535)
const level = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])

export const configSchema = z.strictObject({
  dataDir: z.string().min(1),
  logLevel: level,
  p2p: z.strictObject({
    listen: z.array(multiaddrString).min(1),
    announce: z.array(multiaddrString),
    bootstrap: z.array(peerMultiaddr),
    mdns: z.boolean(),
    maxConnections: z.number().int().min(1),
    // above this many peers the least valued idle ones are disconnected (p2p/trim.ts)
    maxPeers: z.number().int().min(MIN_MAX_PEERS),
    // addresses exempt from every inbound connection limit (see NetworkInit.allow); empty by default
    allow: z.array(z.string().refine(s => isMultiaddr(s) && /^\/ip[46]\/[^/]+(\/ipcidr\/\d+)?$/.test(s), { message: 'an address prefix such as /ip4/127.0.0.1 or /ip4/10.0.0.0/ipcidr/8' })),
    dialTimeoutMs: z.number().int().min(100),
    upnp: z.boolean(),
    relayServer: z.preprocess(v => v === 'true' ? true : v === 'false' ? false : v, z.union([z.boolean(), z.literal('auto')])),
    relayReservations: z.number().int().min(0).max(8),
    networkKey: z.string().min(1).nullable()
  }),
  gateway: z.strictObject({
    enabled: z.boolean(),
    host: z.string().min(1),
    port,
    requireToken: z.boolean(),
    bodyLimitBytes: z.number().int().min(1024),
    /** largest upload to POST /v1/blobs (streamed to disk, never held whole); 413 past it */
    maxUploadBytes: z.number().int().min(1024),
    /** a connection on which nothing is read or written this long is closed (event streams and long polls are exempt) */
    idleTimeoutMs: z.number().int().min(100),
    /** most gateway connections open at once; one more is closed as it arrives */
    maxConnections: z.number().int().min(1)
  }),
  // the block store (auction/blob-gc.ts): blobs past cacheMaxBytes that nothing pins are removed,
  // oldest first; a provider keeps the output files of the jobs it ran for outputRetentionMs
  blobs: z.strictObject({
    cacheMaxBytes: z.number().int().min(0),
    outputRetentionMs: z.number().int().min(0),
    collectIntervalMs: z.number().int().min(0),
    collectGraceMs: z.number().int().min(0)
  }),
  ledger: z.strictObject({
    headIntervalMs: z.number().int().min(100),
    headDebounceMs: z.number().int().min(0)
  }),
  executor: z.strictObject({
    poolSize: z.number().int().min(0).max(256),
    warmWorkers: z.number().int().min(0).max(256),
    queueSize: z.number().int().min(0),
    maxTimeoutMs: z.number().int().min(1),
    maxMemoryMb: z.number().int().min(1),
    maxOutputBytes: z.number().int().min(0),
    /** caps on a job's output files (written to <dataDir>/outputs as the job runs, stored as UnixFS blobs): at most the market-wide defaults (executor/constants.ts), which replicas rely on */
    outputFiles: z.strictObject({
      files: z.number().int().min(0).max(MAX_OUTPUT_FILES),
      fileBytes: z.number().int().min(0).max(MAX_OUTPUT_FILE_BYTES),
      totalBytes: z.number().int().min(0).max(MAX_OUTPUT_TOTAL_BYTES)
    }),
    moduleCacheSize: z.number().int().min(0),
    isolation: z.enum(['none', 'unshare', 'bwrap']),
    backend: z.enum(['local', 'slurm']),
    slurm: z.strictObject({
      stageDir: z.string(),
      partition: z.string(),
      account: z.string(),
      conf: z.string(),
      maxJobs: z.number().int().min(0),
      pollMs: z.number().int().min(50),
      maxPendingMs: z.number().int().min(1000),
      memOverheadMb: z.number().int().min(0),
      startAllowanceMs: z.number().int().min(1000),
      sbatchArgs: z.array(z.string()),
      command: z.array(z.string()),
      keepStaged: z.boolean()
    })
  }),
  provider: z.strictObject({
    enabled: z.boolean(),
    price: z.number().min(0),
    slots: z.number().int().min(0),
    engines: z.array(z.enum(ENGINES)),
    // what this provider says of itself (`region: eu`): Kubernetes label syntax, capped (src/labels.ts)
    labels: labelsSchema,
    dialPrivateAddresses: z.boolean(),
    // live logs sent per job (see auction/constants.ts LIVE_LOG_*)
    liveLogBytesPerSec: z.number().int().min(0),
    liveLogMaxBytes: z.number().int().min(0),
    // input files of won jobs (see auction/constants.ts INPUT_*): how many, bytes per file and in total, time per URL
    inputs: z.strictObject({
      maxFiles: z.number().int().min(0).max(64),
      maxFileBytes: z.number().int().min(0),
      maxTotalBytes: z.number().int().min(0),
      urlTimeoutMs: z.number().int().min(1)
    })
  }),
  auction: z.strictObject({
    bidWindowMs: z.number().int().min(1),
    minBids: z.number().int().min(1),
    maxAttempts: z.number().int().min(1),
    heartbeatMs: z.number().int().min(10),
    suspectAfterMs: z.number().int().min(10),
    lostAfterMs: z.number().int().min(10),
    defaultMaxPrice: z.number().min(0),
    resultRetentionMs: z.number().int().min(0),
    minReputation: z.number(),
    forgiveHalfLifeMs: z.number().int().min(1),
    bidStreamIdleMs: z.number().int().min(100),
    invitations: z.boolean(),
    // finished jobs (and their approximate bytes) a requester holds in memory; older ones are read from the log
    finishedJobsInMemory: z.number().int().min(0),
    finishedJobBytesInMemory: z.number().int().min(0),
    // live logs taken from one attempt of our jobs; beyond them a provider's log frames are dropped
    liveLogBytesPerSec: z.number().int().min(0),
    liveLogMaxBytes: z.number().int().min(0),
    // how long a job with no acceptable bid waits for one by default (0: no-bids at once), and how
    // many jobs may wait at once (constants.ts QUEUE_TIMEOUT_MS, MAX_QUEUED_JOBS say why)
    queueTimeoutMs: z.number().int().min(0).max(MAX_QUEUE_TIMEOUT_MS),
    maxQueuedJobs: z.number().int().min(0)
  })
})

export type Config = z.infer<typeof configSchema>
type Json = Record<string, any>

export const DEFAULT_CONFIG_PATH = packageFile('config/default.json')

export function loadDefaults (): Json {
  return JSON.parse(readFileSync(DEFAULT_CONFIG_PATH, 'utf8'))
}

function isPlainObject (v: unknown): v is Json {
  return v != null && typeof v === 'object' && !Array.isArray(v)
}

/** Deep merge: objects merge, everything else (arrays included) replaces. */
export function merge (base: Json, over: Json): Json {
  const out: Json = { ...base }
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue
    out[k] = isPlainObject(v) && isPlainObject(base[k]) ? merge(base[k], v) : v
  }
  return out
}

function snake (key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()
}

/** Overrides read from MERCATO_* variables, typed after the defaults. */
export function fromEnv (env: NodeJS.ProcessEnv, defaults: Json, prefix = 'MERCATO'): Json {
  const out: Json = {}
  for (const [k, def] of Object.entries(defaults)) {
    const name = `${prefix}_${snake(k)}`
    if (isPlainObject(def) && Object.keys(def).length === 0 && env[name] !== undefined) {
      // a map with no default keys (provider.labels): MERCATO_PROVIDER_LABELS=region=eu,licence=matlab
      const map: Record<string, string> = {}
      for (const pair of (env[name] as string).split(',').map(s => s.trim()).filter(s => s !== '')) {
        const i = pair.indexOf('=')
        if (i <= 0) throw new ConfigError(name, `${name}: expected key=value[,key=value...], got "${pair}"`)
        map[pair.slice(0, i).trim()] = pair.slice(i + 1).trim()
      }
      out[k] = map
      continue
    }
    if (isPlainObject(def)) {
      const sub = fromEnv(env, def, name)
      if (Object.keys(sub).length > 0) out[k] = sub
      continue
    }
    const raw = env[name]
    if (raw === undefined) continue
    const path = name
    if (Array.isArray(def)) out[k] = raw.trim() === '' ? [] : raw.split(',').map(s => s.trim())
    else if (typeof def === 'number') {
      const n = Number(raw)
      if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigError(path, `${path}: expected a number, got "${raw}"`)
      out[k] = n
    } else if (typeof def === 'boolean') {
      if (!/^(true|false|1|0)$/i.test(raw)) throw new ConfigError(path, `${path}: expected true or false, got "${raw}"`)
      out[k] = /^(true|1)$/i.test(raw)
    } else out[k] = raw
  }
  return out
}

function describeIssue (issue: z.core.$ZodIssue, input: Json): string {
  const key = issue.path.join('.')
  if (issue.code === 'unrecognized_keys') {
    const where = key === '' ? '' : `${key}.`
    return `unknown config key ${issue.keys.map(k => `"${where}${k}"`).join(', ')}`
  }
  let value: unknown = input
  for (const p of issue.path) value = (value as any)?.[p as any]
  const got = value === undefined ? 'nothing' : JSON.stringify(value)
  return `config key "${key}": expected ${issue.message.replace(/^Invalid input: expected /, '').replace(/, received \w+$/, '')}, got ${got}`
}

/** Validate a merged config object; throws ConfigError naming the first bad key. */
export function validateConfig (input: Json): Config {
  const parsed = configSchema.safeParse(input)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new ConfigError(issue.path.join('.') || issue.code, describeIssue(issue, input))
  }
  const cfg = parsed.data
  cfg.dataDir = expandHome(cfg.dataDir)
  if (cfg.executor.slurm.stageDir !== '') cfg.executor.slurm.stageDir = expandHome(cfg.executor.slurm.stageDir)
  if (cfg.p2p.networkKey != null) cfg.p2p.networkKey = expandHome(cfg.p2p.networkKey)
  return cfg
}

export function expandHome (p: string): string {
  if (p === '~') return homedir()
  if (p.startsWith('~/')) return resolve(homedir(), p.slice(2))
  return resolve(p)
}

export interface LoadConfigOptions {
  file?: string
  env?: NodeJS.ProcessEnv
  /** overrides from flags, same shape as the config */
  overrides?: Json
}

/** defaults → file → env → flags, validated. */
export function loadConfig (opts: LoadConfigOptions = {}): Config {
  const defaults = loadDefaults()
  let merged = defaults
  if (opts.file != null) {
    let text: string
    try {
      text = readFileSync(opts.file, 'utf8')
    } catch (err: any) {
      throw new ConfigError('config', `cannot read config file ${opts.file}: ${err.code ?? err.message}`)
    }
    let fileJson: unknown
    try {
      fileJson = JSON.parse(text)
    } catch (err: any) {
      throw new ConfigError('config', `config file ${opts.file} is not valid JSON: ${err.message}`)
    }
    if (!isPlainObject(fileJson)) throw new ConfigError('config', `config file ${opts.file} must hold a JSON object`)
    merged = merge(merged, fileJson)
  }
  merged = merge(merged, fromEnv(opts.env ?? process.env, defaults))
  if (opts.overrides != null) merged = merge(merged, opts.overrides)
  return validateConfig(merged)
}
