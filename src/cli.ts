#!/usr/bin/env node
/**
 * The `mercato` command. Output meant for people or scripts goes to stdout;
 * logs (pino JSON) go to stderr.
 */
import { Command, Option } from 'commander'
import { loadConfig, expandHome, loadDefaults, type Config } from './config.js'
import { ConfigError, isMercatoError } from './errors.js'
import { configureLogger } from './logger.js'
import { VERSION } from './version.js'
import { registerLedgerCommands } from './ledger/cli.js'
import { registerExecCommand } from './executor/cli.js'
import { registerExecStagedCommand } from './executor/staged.js'
import { TOKEN_FILE } from './gateway/token.js'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { registerClientCommands } from './cli/client-commands.js'
import { parseLabels } from './labels.js'

function collect (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

function out (line: string): void {
  process.stdout.write(line + '\n')
}

/** Print a one-line error and exit: 2 for configuration, 1 otherwise. */
function fail (err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`mercato: ${err.message}\n`)
    process.exit(2)
  }
  const msg = isMercatoError(err) ? `${err.message} (${err.code})` : (err as any)?.message ?? String(err)
  process.stderr.write(`mercato: ${msg}\n`)
  process.exit(1)
}

function parseGateway (value: string): { host: string, port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(value)
  if (m == null) throw new ConfigError('gateway', `--gateway: expected HOST:PORT such as 127.0.0.1:8420, got "${value}"`)
  const port = Number(m[2])
  if (port > 65535) throw new ConfigError('gateway.port', `--gateway: port must be 0-65535, got ${port}`)
  return { host: m[1].replace(/^\[|\]$/g, ''), port }
}

function parseNumber (name: string) {
  return (value: string): number => {
    const n = Number(value)
    if (value.trim() === '' || !Number.isFinite(n)) throw new ConfigError(name, `--${name}: expected a number, got "${value}"`)
    return n
  }
}

interface StartFlags {
  dataDir?: string
  listen?: string[]
  bootstrap?: string[]
  gateway?: string
  mdns?: boolean
  config?: string
  logLevel?: string
  provide?: boolean
  price?: number
  slots?: number
  executor?: string
  label?: string[]
  announce?: string[]
  relayServer?: boolean
  upnp?: boolean
  networkKey?: string
}

/** Flags → config overrides (only what was given). */
export function flagsToOverrides (flags: StartFlags): Record<string, any> {
  const o: Record<string, any> = { p2p: {}, gateway: {}, provider: {} }
  if (flags.dataDir != null) o.dataDir = flags.dataDir
  if (flags.logLevel != null) o.logLevel = flags.logLevel
  if (flags.listen != null) o.p2p.listen = flags.listen
  if (flags.bootstrap != null) o.p2p.bootstrap = flags.bootstrap
  if (flags.announce != null) o.p2p.announce = flags.announce
  if (flags.relayServer === true) o.p2p.relayServer = true
  if (flags.upnp === false) o.p2p.upnp = false
  if (flags.networkKey != null) o.p2p.networkKey = flags.networkKey
  if (flags.mdns === false) o.p2p.mdns = false
  if (flags.gateway != null) Object.assign(o.gateway, parseGateway(flags.gateway))
  if (flags.provide != null) o.provider.enabled = flags.provide
  if (flags.price != null) o.provider.price = flags.price
  if (flags.slots != null) o.provider.slots = flags.slots
  if (flags.executor != null) o.executor = { backend: flags.executor }
  if (flags.label != null) {
    // merged over provider.labels from the config file (a key given here wins)
    try {
      o.provider.labels = parseLabels(flags.label, '--label')
    } catch (err: any) { throw new ConfigError('provider.labels', `--label: ${err.message}`) }
  }
  return o
}

/** The local gateway's URL from config (defaults → env). */
export function localGatewayUrl (): string {
  try {
    const cfg = loadConfig({})
    const host = cfg.gateway.host === '0.0.0.0' ? '127.0.0.1' : cfg.gateway.host
    return `http://${host.includes(':') ? `[${host}]` : host}:${cfg.gateway.port}`
  } catch {
    return 'http://127.0.0.1:8420'
  }
}

export function resolveDataDir (flag?: string): string {
  if (flag != null) return expandHome(flag)
  if (process.env.MERCATO_DATA_DIR != null) return expandHome(process.env.MERCATO_DATA_DIR)
  return expandHome(loadDefaults().dataDir)
}

/** How often `mercato start` looks at its reachability besides when its addresses change (it prints a line when it changed). */
const REACHABILITY_POLL_MS = 10_000

/** One line: reachability, the relays in use, observed and verified public addresses. */
function describeReachability (s: { reachability: string, relays: string[], observed: Array<{ address: string, verified: boolean }> }): string {
  const parts = [s.reachability]
  if (s.relays.length > 0) parts.push(`via relay ${s.relays.join(', ')}`)
  const seen = s.observed.map(o => `${o.address}${o.verified ? ' (verified)' : ''}`)
  if (seen.length > 0) parts.push(`observed ${seen.join(', ')}`)
  return parts.join('; ')
}

async function runStart (flags: StartFlags): Promise<void> {
  let config: Config
  try {
    config = loadConfig({ file: flags.config, overrides: flagsToOverrides(flags) })
  } catch (err) { fail(err) }
  const startedAt = performance.now()
  configureLogger({ level: config.logLevel })
  const { MercatoNode, checkDataDir } = await import('./node.js')
  const { loadOrCreateIdentity } = await import('./p2p/index.js')
  // every log line carries the node's PeerId: learn it before anything starts
  try {
    await checkDataDir(config.dataDir)
    configureLogger({ level: config.logLevel, peerId: (await loadOrCreateIdentity(config.dataDir)).peerId })
  } catch (err) { fail(err) }
  const node = new MercatoNode(config)
  try {
    await node.start()
  } catch (err) { fail(err) }
  const readyMs = Math.round(performance.now() - startedAt)
  out(`Mercato ${VERSION} node started`)
  out(`PeerId:  ${node.peerId}`)
  for (const a of node.network.addresses()) out(`Listen:  ${a}`)
  if (node.gateway != null) out(`Gateway: ${node.gateway.url}`)
  out(`Data:    ${config.dataDir}`)
  const net = node.network.natStatus()
  out(`Network: ${net.privateNetwork != null ? `private market (key ${net.privateNetwork})` : 'open market'}; relay server ${net.relayServer ? 'on' : 'off'}; UPnP ${net.upnp ? 'on' : 'off'}`)
  out(`Reachability: ${describeReachability(net)}`)
  out(`Ready in ${readyMs} ms (process up ${Math.round(process.uptime() * 1000)} ms, rss ${Math.round(process.memoryUsage().rss / 1048576)} MiB)`)
  // reachability is learnt after start (relay slots, AutoNAT, UPnP): print each change, when our
  // addresses change and, for what changes without that (an address a peer observed), every
  // REACHABILITY_POLL_MS. A look every second, before, was 11 % of an idle node's CPU (19 peers).
  let lastReach = describeReachability(net)
  const lookAgain = (): void => {
    const now = describeReachability(node.network.natStatus())
    if (now !== lastReach) { lastReach = now; out(`Reachability: ${now}`) }
  }
  const stopWatching = node.network.onAddressChange(lookAgain)
  const reachTimer = setInterval(lookAgain, REACHABILITY_POLL_MS)
  reachTimer.unref()

  let stopping = false
  const shutdown = (signal: string): void => {
    if (stopping) return
    stopping = true
    out(`\n${signal}: stopping`)
    stopWatching()
    clearInterval(reachTimer)
    const force = setTimeout(() => {
      process.stderr.write('mercato: stop took longer than 5 s; exiting\n')
      process.exit(1)
    }, 5000)
    force.unref()
    node.stop().then(() => {
      out('stopped')
      process.exit(0)
    }, (err) => fail(err))
  }
  process.on('SIGINT', () => { shutdown('SIGINT') })
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
}

export function buildProgram (): Command {
  const program = new Command()
  program
    .name('mercato')
    .description('Mercato: a peer-to-peer marketplace for compute')
    .version(VERSION)
    .showHelpAfterError()

  program.command('start')
    .description('run a node: join the mesh, offer and consume compute, serve the local gateway')
    .option('--data-dir <dir>', 'data directory (identity, ledger, config); default ~/.mercato or $MERCATO_DATA_DIR')
    .option('--listen <multiaddr>', 'listen address (repeatable)', collect)
    .option('--bootstrap <multiaddr>', 'bootstrap peer /ip4/.../tcp/.../p2p/<id> (repeatable)', collect)
    .option('--gateway <host:port>', 'gateway address (default 127.0.0.1:8420)')
    .option('--no-mdns', 'do not discover peers on the LAN by multicast DNS')
    .option('--config <file>', 'JSON config file (overrides config/default.json)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .option('--provide', 'offer compute to the network (default from config)')
    .option('--no-provide', 'do not offer compute')
    .option('--price <credits>', 'ask in credits per job', parseNumber('price'))
    .option('--slots <n>', 'jobs run at once (default: number of cores; on Slurm: the cluster\'s free CPUs)', parseNumber('slots'))
    .addOption(new Option('--executor <backend>', 'where won jobs run: this machine, or a Slurm cluster (see README)').choices(['local', 'slurm']))
    .option('--label <key=value>', 'a label this provider carries, matched against job constraints (repeatable): --label region=eu --label licence=matlab', collect)
    .option('--announce <multiaddr>', 'also advertise this address, e.g. /ip4/PUBLIC-IP/tcp/4010 behind a forwarded port (repeatable)', collect)
    .option('--relay-server', 'relay connections for peers behind NAT (default: only when this node has a public address)')
    .option('--no-upnp', 'do not ask the router to forward a port (UPnP / NAT-PMP)')
    .option('--network-key <file>', 'join only the private market that holds this key (make one with `mercato network-key FILE`)')
    .action(async (flags: StartFlags) => {
      if (!process.argv.includes('--no-upnp')) delete flags.upnp
      // commander sets mdns=true by default for --no-mdns; only an explicit --no-mdns overrides config
      if (!process.argv.includes('--no-mdns')) delete flags.mdns
      if (!process.argv.includes('--provide') && !process.argv.includes('--no-provide')) delete flags.provide
      await runStart(flags)
    })

  program.command('id')
    .description('print this node\'s PeerId (creating its key if there is none)')
    .option('--data-dir <dir>', 'data directory')
    .action(async (flags: { dataDir?: string }) => {
      const { loadOrCreateIdentity } = await import('./p2p/index.js')
      try {
        const id = await loadOrCreateIdentity(resolveDataDir(flags.dataDir))
        out(id.peerId)
      } catch (err) { fail(err) }
    })

  program.command('network-key')
    .description('write a new private-market key to FILE (mode 0600); give the same file to every node of that market with --network-key')
    .argument('<file>', 'where to write the key (must not exist)')
    .action(async (file: string) => {
      const { writeNetworkKey } = await import('./p2p/index.js')
      try {
        const key = await writeNetworkKey(file)
        out(`Wrote private-market key ${file} (fingerprint ${key.fingerprint})`)
        out(`Start every node of this market with: mercato start --network-key ${file}`)
      } catch (err) { fail(err) }
    })

  registerClientCommands(program)
  registerLedgerCommands(program, {
    openLocalLedger: async (dataDir, opts) => {
      const { loadOrCreateIdentity } = await import('./p2p/index.js')
      const { openLedger } = await import('./ledger/index.js')
      const id = await loadOrCreateIdentity(dataDir)
      return await openLedger({ signer: id.signer, path: join(dataDir, 'ledger'), readOnly: opts?.readOnly })
    },
    gatewayUrl: ({ gateway }) => gateway ?? process.env.MERCATO_API ?? localGatewayUrl(),
    resolveDataDir,
    gatewayHeaders: async ({ dataDir }) => {
      try {
        const token = (await readFile(join(dataDir, TOKEN_FILE), 'utf8')).trim()
        const headers: Record<string, string> = {}
        if (token !== '') headers.authorization = `Bearer ${token}`
        return headers
      } catch {
        return {}
      }
    }
  })
  registerExecCommand(program)
  registerExecStagedCommand(program)
  return program
}

// Node 20 lacks Promise.withResolvers (libp2p calls it); newer lines never load the polyfill
if (typeof Promise.withResolvers !== 'function') await import('./polyfill.js')

const isMain = process.argv[1] != null && /cli\.(ts|js)$|bin\/mercato(\.js)?$/.test(process.argv[1])
if (isMain) {
  buildProgram().parseAsync(process.argv).catch(fail)
}
