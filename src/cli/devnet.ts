/**
 * `mercato devnet --nodes N`: a local Mercato network in one command.
 *
 * Starts N nodes as separate processes (`node dist/cli.js start`; from the
 * TypeScript sources under tsx, `node --import tsx src/cli.ts start`),
 * each with its own data dir under one directory (a temp dir removed on exit
 * unless `--data-dir` is given), p2p on 127.0.0.1 with random ports and mDNS
 * off and loopback exempt from inbound connection limits (`p2p.allow`), gateways on 127.0.0.1 at base-port + i (`--base-port 0`: random).
 * Node 0 starts first and is every other node's bootstrap; the others start
 * together, and each, once up, is told to dial those up before it
 * (`POST /v1/peers`), so the mesh is whole soon after the last node is up
 * (the nodes' DHT walks would find each other too, seconds later). Every node
 * provides compute, node i asking i + 1 credits, so auctions have a visible
 * winner. When each node sees the other N - 1 the devnet prints
 * "devnet ready". A node that dies is reported (its last log lines too);
 * SIGINT or SIGTERM stops them all: SIGTERM, then SIGKILL after 5 s.
 *
 * Node logs (stderr, pino JSON) go to `<dir>/node-<i>.log`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { InvalidArgumentError, type Command } from 'commander'
import { MercatoClient } from '../client/index.js'
import { TARGET_PEERS } from '../p2p/constants.js'
import { FROM_SOURCES, moduleUrl, packageFile } from '../paths.js'

/** Default first gateway port: the one `mercato start` uses, so node 0 is "the local node". */
export const DEFAULT_BASE_PORT = 8420
/** How long a node may take to print "Ready" (≈ 0.3 s compiled, 1-2 s under tsx; a loaded machine is much slower). */
export const START_TIMEOUT_MS = 30_000
/** How long the mesh may take to form (DHT discovery between non-bootstrap nodes takes a few seconds). */
export const MESH_TIMEOUT_MS = 30_000
/** SIGTERM, then SIGKILL after this long (nodes stop in well under 2 s). */
export const KILL_AFTER_MS = 5000
/** At most this many nodes: each is a Node.js process of ~100 MiB. */
export const MAX_NODES = 64

/**
 * How a node process is started: the compiled CLI with plain node, or, when
 * the devnet itself runs from the TypeScript sources, the same sources under
 * tsx (`--import` by absolute URL, so it works from any directory).
 */
function nodeCommand (): string[] {
  // the devnet's own node flags (bin/mercato.js's --max-semi-space-size) apply to its nodes too
  const flags = process.execArgv.filter(a => !a.startsWith('--inspect') && !a.includes('tsx'))
  if (!FROM_SOURCES) return [...flags, packageFile('bin/mercato.js')]
  return ['--import', import.meta.resolve('tsx'), fileURLToPath(moduleUrl('cli'))]
}

function line (s: string): void { process.stdout.write(s + '\n') }
function warn (s: string): void { process.stderr.write(s + '\n') }

export interface DevnetNode {
  index: number
  price: number
  proc: ChildProcess
  pid: number
  dataDir: string
  peerId: string
  addresses: string[]
  gatewayUrl: string
  /** the last lines it wrote to stderr */
  tail: string[]
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  alive: boolean
}

export interface DevnetOptions {
  nodes: number
  basePort: number
  dataDir?: string
  logLevel: string
}

/** Start one node process; resolves once it printed its gateway and "Ready". */
async function startNode (dir: string, index: number, opts: DevnetOptions, bootstrap: string | null, logs: WriteStream[], spawned: DevnetNode[], stopping: AbortSignal): Promise<DevnetNode> {
  const dataDir = join(dir, `node-${index}`)
  await mkdir(dataDir, { recursive: true })
  const price = index + 1
  const args = [
    ...nodeCommand(), 'start',
    '--data-dir', dataDir,
    '--listen', '/ip4/127.0.0.1/tcp/0',
    '--gateway', `127.0.0.1:${opts.basePort === 0 ? 0 : opts.basePort + index}`,
    '--no-mdns',
    '--provide',
    '--price', String(price),
    '--log-level', opts.logLevel
  ]
  if (bootstrap != null) args.push('--bootstrap', bootstrap)
  // its own process group: Ctrl-C reaches the devnet, which stops the nodes in order
  // every devnet node is on 127.0.0.1: loopback is exempt from inbound connection limits (p2p.allow),
  // and a provider may dial a requester's loopback address to answer
  const env = { ...process.env, MERCATO_P2P_ALLOW: '/ip4/127.0.0.1,/ip6/::1', MERCATO_PROVIDER_DIAL_PRIVATE_ADDRESSES: 'true' }
  // a devnet told to stop starts no more nodes
  if (stopping.aborted) throw new Error('devnet stopping')
  const proc = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const log = createWriteStream(join(dir, `node-${index}.log`), { flags: 'a' })
  logs.push(log)
  const tail: string[] = []
  let stdout = ''
  proc.stdout?.setEncoding('utf8')
  proc.stderr?.setEncoding('utf8')
  proc.stdout?.on('data', (d: string) => { stdout += d })
  proc.stderr?.on('data', (d: string) => {
    log.write(d)
    for (const l of d.split('\n')) if (l.trim() !== '') tail.push(l)
    if (tail.length > 20) tail.splice(0, tail.length - 20)
  })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => { node.alive = false; resolve({ code, signal }) })
  })
  const node: DevnetNode = { index, price, proc, pid: proc.pid ?? -1, dataDir, peerId: '', addresses: [], gatewayUrl: '', tail, exited, alive: true }
  spawned.push(node)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`node ${index} did not start in ${START_TIMEOUT_MS / 1000} s${lastWords(node, stdout)}`)) }, START_TIMEOUT_MS)
    const check = (): void => {
      if (/Gateway: \S+\n/.test(stdout) && /Ready in/.test(stdout)) { cleanup(); resolve() }
    }
    const onExit = ({ code, signal }: { code: number | null, signal: NodeJS.Signals | null }): void => {
      cleanup()
      reject(new Error(`node ${index} exited (${signal ?? `code ${code}`}) before it was ready${lastWords(node, stdout)}`))
    }
    const cleanup = (): void => { clearTimeout(timer); proc.stdout?.off('data', check) }
    proc.stdout?.on('data', check)
    void exited.then(onExit)
  })
  node.peerId = /PeerId:\s+(\S+)/.exec(stdout)?.[1] ?? ''
  node.addresses = [...stdout.matchAll(/Listen:\s+(\S+)/g)].map(m => m[1])
  node.gatewayUrl = /Gateway:\s+(\S+)/.exec(stdout)?.[1] ?? ''
  return node
}

function lastWords (node: DevnetNode, stdout: string): string {
  const lines = [...stdout.split('\n').filter(l => /^mercato:/.test(l)), ...node.tail.map(prettyLog)].slice(-8)
  return lines.length > 0 ? ':\n    ' + lines.join('\n    ') : ''
}

/** A pino JSON line as "level msg (err)"; anything else as is. */
function prettyLog (l: string): string {
  try {
    const o = JSON.parse(l)
    const level = ({ 60: 'fatal', 50: 'error', 40: 'warn', 30: 'info', 20: 'debug', 10: 'trace' } as Record<number, string>)[o.level] ?? String(o.level)
    return `${level} ${o.msg ?? ''}${o.err?.message != null ? ` (${o.err.message})` : ''}`
  } catch { return l }
}

async function sleep (ms: number): Promise<void> { await new Promise(resolve => setTimeout(resolve, ms)) }

/**
 * How many of the others each node must see for the devnet to be ready: all of them, up to the
 * peers a node dials on its own (TARGET_PEERS; beyond it, peers come to it, so a devnet of 20
 * would otherwise wait for links no node makes).
 */
export function meshTarget (nodes: number): number {
  return Math.min(nodes - 1, TARGET_PEERS)
}

/** The address other nodes dial `n` at. */
function dialAddress (n: DevnetNode): string {
  return n.addresses.find(a => a.includes('/p2p/')) ?? `${n.addresses[0]}/p2p/${n.peerId}`
}

/**
 * Have `n` dial each of `others` (`POST /v1/peers`), as `ipfs swarm connect`. Not awaited: a dial
 * that fails is left to the nodes' own discovery (DHT walks), which forms the mesh without it.
 */
function introduce (n: DevnetNode, others: DevnetNode[], signal: AbortSignal): void {
  if (others.length === 0) return
  const client = new MercatoClient({ url: n.gatewayUrl, timeoutMs: MESH_TIMEOUT_MS })
  for (const o of others) void client.connect(dialAddress(o), { signal }).catch(() => {})
}

/** Wait until every node is connected to every other one, or to {@link meshTarget} of them. */
async function waitForMesh (nodes: DevnetNode[], signal: AbortSignal): Promise<{ ok: boolean, missing: string[] }> {
  const end = Date.now() + MESH_TIMEOUT_MS
  const want = meshTarget(nodes.length)
  let missing: string[] = []
  while (!signal.aborted) {
    missing = []
    await Promise.all(nodes.map(async (n) => {
      let seen = new Set<string>()
      try {
        seen = new Set((await new MercatoClient({ url: n.gatewayUrl, timeoutMs: 2000 }).peers({ signal })).map(p => p.peerId))
      } catch {}
      const sees = nodes.filter(o => o !== n && seen.has(o.peerId)).length
      if (sees < want) missing.push(`node ${n.index} sees ${sees} of ${nodes.length - 1}`)
    }))
    if (missing.length === 0) return { ok: true, missing }
    if (Date.now() > end) return { ok: false, missing }
    await sleep(200)
  }
  return { ok: false, missing }
}

export async function runDevnet (opts: DevnetOptions): Promise<number> {
  const keep = opts.dataDir != null
  const dir = keep ? resolve(opts.dataDir as string) : await mkdtemp(join(tmpdir(), 'mercato-devnet-'))
  if (keep) await mkdir(dir, { recursive: true })
  const nodes: DevnetNode[] = []
  /** every process started, ready or not: what a stop must end (a Ctrl-C while they start included) */
  const spawned: DevnetNode[] = []
  const logs: WriteStream[] = []
  const ac = new AbortController()
  let stopping = false
  let finish!: (code: number) => void
  const done = new Promise<number>((resolve) => { finish = resolve })

  const stop = async (code: number): Promise<void> => {
    if (stopping) return
    stopping = true
    ac.abort()
    const alive = spawned.filter(n => n.alive)
    if (alive.length > 0) line(`stopping ${alive.length} node${alive.length === 1 ? '' : 's'}`)
    for (const n of alive) { try { n.proc.kill('SIGTERM') } catch {} }
    const timer = setTimeout(() => {
      for (const n of spawned) {
        if (n.alive) { warn(`devnet: node ${n.index} (pid ${n.pid}) did not stop in ${KILL_AFTER_MS / 1000} s; killing it`); try { n.proc.kill('SIGKILL') } catch {} }
      }
    }, KILL_AFTER_MS)
    await Promise.all(spawned.map(async n => await n.exited))
    clearTimeout(timer)
    await Promise.all(logs.map(async l => { await new Promise<void>(resolve => { l.end(resolve) }) }))
    if (!keep) await rm(dir, { recursive: true, force: true }).catch(() => {})
    line(keep ? `devnet stopped (data kept in ${dir})` : 'devnet stopped')
    finish(code)
  }

  let signals = 0
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++
    if (signals > 1) {
      // a second Ctrl-C: do not wait
      for (const n of spawned) if (n.alive) { try { n.proc.kill('SIGKILL') } catch {} }
      return
    }
    line(`\n${sig}`)
    void stop(0)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  const watch = (n: DevnetNode): void => {
    void n.exited.then(({ code, signal }) => {
      if (stopping) return
      warn(`devnet: node ${n.index} (pid ${n.pid}, ${n.peerId}) died: ${signal != null ? `killed by ${signal}` : `exit code ${code}`}`)
      if (code != null && code !== 0) for (const l of n.tail.slice(-5)) warn(`    ${prettyLog(l)}`)
      const left = nodes.filter(x => x.alive).length
      if (left === 0) { warn('devnet: every node is gone'); void stop(1) } else warn(`devnet: ${left} node${left === 1 ? '' : 's'} still running`)
    })
  }

  line(`Mercato devnet: ${opts.nodes} node${opts.nodes === 1 ? '' : 's'}, data in ${dir}${keep ? '' : ' (removed on exit)'}`)
  const t0 = performance.now()
  try {
    const first = await startNode(dir, 0, opts, null, logs, spawned, ac.signal)
    nodes.push(first)
    const boot = dialAddress(first)
    // each node, once up, is introduced to those up before it (it dials them): the mesh is whole
    // when the last node is up, where DHT walks took seconds more on a loaded machine
    const up: DevnetNode[] = []
    const starts = Array.from({ length: opts.nodes - 1 }, async (_, i) => {
      const n = await startNode(dir, i + 1, opts, boot, logs, spawned, ac.signal)
      introduce(n, up.slice(), ac.signal)
      up.push(n)
      return n
    })
    const results = await Promise.allSettled(starts)
    for (const r of results) if (r.status === 'fulfilled') nodes.push(r.value)
    nodes.sort((a, b) => a.index - b.index)
    const failed = results.find(r => r.status === 'rejected')
    if (failed != null) throw (failed as PromiseRejectedResult).reason
  } catch (err: any) {
    if (!stopping) {
      warn(`devnet: ${err?.message ?? String(err)}`)
      await stop(1)
    }
    return await finishUp()
  }
  if (stopping) return await finishUp()
  const upSecs = ((performance.now() - t0) / 1000).toFixed(1)
  for (const n of nodes) watch(n)

  for (const n of nodes) {
    line(`node ${n.index}  pid ${n.pid}  ask ${n.price} credit${n.price === 1 ? '' : 's'}`)
    line(`  PeerId:    ${n.peerId}`)
    line(`  Gateway:   ${n.gatewayUrl}`)
    line(`  Dashboard: ${n.gatewayUrl}/`)
  }
  const mesh = await waitForMesh(nodes, ac.signal)
  if (!stopping) {
    const secs = ((performance.now() - t0) / 1000).toFixed(1)
    if (mesh.ok) {
      const want = meshTarget(opts.nodes)
      const sees = want === opts.nodes - 1 ? 'the other' : `at least ${want} of the other`
      line(opts.nodes > 1
        ? `devnet ready in ${secs} s: every node sees ${sees} ${opts.nodes - 1} (processes up in ${upSecs} s)`
        : `devnet ready in ${secs} s`)
    } else {
      warn(`devnet: the mesh is not complete after ${MESH_TIMEOUT_MS / 1000} s (${mesh.missing.join('; ')}); running anyway`)
      line(`devnet ready in ${secs} s (mesh incomplete)`)
    }
    line(`try:  mercato submit job.js --wait --api ${nodes[0].gatewayUrl}`)
    line('Ctrl-C stops every node')
  }
  return await finishUp()

  async function finishUp (): Promise<number> {
    const code = await done
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    return code
  }
}

function intArg (name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name}: expected an integer from ${min} to ${max}, got "${value}"`)
    return n
  }
}

/** Registers `mercato devnet` (once: calling it again is harmless). */
export function registerDevnetCommand (program: Command): void {
  if (program.commands.some(c => c.name() === 'devnet')) return
  program.command('devnet')
    .description('run a local network of N nodes as separate processes (Ctrl-C stops them all)')
    .option('--nodes <n>', 'how many nodes', intArg('--nodes', 1, MAX_NODES), 3)
    .option('--base-port <port>', `gateway of node i on 127.0.0.1:<port + i> (0: random ports; default ${DEFAULT_BASE_PORT})`, intArg('--base-port', 0, 65535), DEFAULT_BASE_PORT)
    .option('--data-dir <dir>', 'keep the nodes\' data here (default: a temp dir, removed on exit)')
    .option('--log-level <level>', 'log level of the nodes (their logs go to <dir>/node-<i>.log)', 'info')
    .action(async (flags: { nodes: number, basePort: number, dataDir?: string, logLevel: string }) => {
      if (flags.basePort !== 0 && flags.basePort + flags.nodes - 1 > 65535) {
        process.stderr.write(`mercato: --base-port ${flags.basePort} leaves no room for ${flags.nodes} gateways\n`)
        process.exitCode = 2
        return
      }
      const code = await runDevnet({ nodes: flags.nodes, basePort: flags.basePort, dataDir: flags.dataDir, logLevel: flags.logLevel })
      process.exitCode = code
    })
}
