/**
 * A simulated internet in network namespaces, for NAT traversal tests.
 *
 * - `inet`: a namespace holding a bridge: "the internet", 11.0.0.0/8 (a
 *   routable-looking range; some libp2p code ignores RFC 1918 addresses).
 * - public hosts: a namespace each, one veth on the bridge, 11.0.0.N.
 * - NAT routers: a namespace each, WAN veth on the bridge (11.0.R.1), LAN veth
 *   to one private host (192.168.R.1 / .2); iptables MASQUERADE out of the WAN
 *   and no forwarding of new connections from WAN to LAN (a home router).
 *
 * Every address lives only inside namespaces this file creates, and
 * `destroy()` deletes them all (and kills what runs in them). Nothing is ever
 * sent outside them: no namespace has a route out.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, NODE_FLAGS, ROOT, type NodeProcess } from '../helpers/cli.js'

const run = promisify(execFile)

/**
 * Allowances for a shared, loaded machine (every node of a scenario shares two cores with the rest
 * of the suite; a node took 10-30 s to start here): a long dial timeout, one pooled executor worker,
 * and a provider counted lost after 6 s of silence instead of 1.5 s (a provider starting its first
 * job's worker under this load went silent for 1.5-1.8 s; what these tests check is the path, not
 * that timing).
 */
const HARNESS_ENV = {
  MERCATO_P2P_DIAL_TIMEOUT_MS: '30000',
  MERCATO_EXECUTOR_POOL_SIZE: '1',
  MERCATO_P2P_ALLOW: '',
  MERCATO_AUCTION_SUSPECT_AFTER_MS: '3000',
  MERCATO_AUCTION_LOST_AFTER_MS: '6000'
}

/** Why the harness cannot run here, or null when it can. */
export function harnessUnavailable (): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (process.getuid?.() !== 0) return 'network namespaces need root (run as root)'
  if (spawnSync('ip', ['-V']).status !== 0) return 'the `ip` command (iproute2) is missing'
  if (spawnSync('iptables', ['--version']).status !== 0) return 'iptables is missing (apt-get install -y iptables)'
  if (spawnSync('curl', ['--version']).status !== 0) return 'curl is missing (apt-get install -y curl)'
  const probe = `mnprobe${process.pid}`
  const made = spawnSync('ip', ['netns', 'add', probe])
  spawnSync('ip', ['netns', 'del', probe])
  if (made.status !== 0) return `cannot create a network namespace: ${String(made.stderr).trim().slice(0, 200)}`
  return null
}

async function sh (cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { timeout: 30_000 })
    return stdout
  } catch (err: any) {
    throw new Error(`${cmd} ${args.join(' ')}: ${String(err?.stderr ?? err?.message).trim()}`)
  }
}

export interface Host { ns: string, ip: string }
export interface Router { ns: string, wanIp: string, lanIp: string, host: Host }

/** A node process inside a namespace: the loopback helper's node (test/helpers/cli.ts) plus where and how it runs. */
export interface NodeProc extends Omit<NodeProcess, 'stop'> {
  ns: string
  /** ms from spawn to the "Ready" line */
  readyMs: number
  startedAt: number
  kill: (signal?: NodeJS.Signals) => Promise<void>
}

export class Netns {
  /** short unique prefix: interface names are at most 15 characters */
  readonly prefix: string
  private readonly namespaces: string[] = []
  private readonly procs = new Set<ChildProcess>()
  private readonly dirs: string[] = []
  private vethCount = 0
  private inet = ''

  constructor () {
    this.prefix = `mn${(process.pid % 10000).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`
  }

  private async addNs (name: string): Promise<string> {
    const ns = `${this.prefix}-${name}`
    await sh('ip', ['netns', 'add', ns])
    this.namespaces.push(ns)
    await this.exec(ns, 'ip', ['link', 'set', 'lo', 'up'])
    return ns
  }

  async exec (ns: string, cmd: string, args: string[]): Promise<string> {
    return await sh('ip', ['netns', 'exec', ns, cmd, ...args])
  }

  /** a veth pair: one end in `a` named `aName`, the other in `b` named `bName` */
  private async veth (a: string, aName: string, b: string, bName: string): Promise<void> {
    const tmpA = `${this.prefix}v${this.vethCount}a`
    const tmpB = `${this.prefix}v${this.vethCount++}b`
    await sh('ip', ['link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB])
    await sh('ip', ['link', 'set', tmpA, 'netns', a])
    await sh('ip', ['link', 'set', tmpB, 'netns', b])
    await this.exec(a, 'ip', ['link', 'set', tmpA, 'name', aName])
    await this.exec(b, 'ip', ['link', 'set', tmpB, 'name', bName])
    await this.exec(a, 'ip', ['link', 'set', aName, 'up'])
    await this.exec(b, 'ip', ['link', 'set', bName, 'up'])
  }

  /** create the internet: a bridge in its own namespace */
  async createInternet (): Promise<void> {
    this.inet = await this.addNs('inet')
    await this.exec(this.inet, 'ip', ['link', 'add', 'br0', 'type', 'bridge'])
    await this.exec(this.inet, 'ip', ['link', 'set', 'br0', 'up'])
  }

  private async plugIntoInternet (ns: string, ifName: string, ip: string, port: string): Promise<void> {
    await this.veth(ns, ifName, this.inet, port)
    await this.exec(this.inet, 'ip', ['link', 'set', port, 'master', 'br0'])
    await this.exec(ns, 'ip', ['addr', 'add', `${ip}/8`, 'dev', ifName])
  }

  /** a host with a public address on the internet */
  async publicHost (name: string, octet: number): Promise<Host> {
    const ns = await this.addNs(name)
    const ip = `11.0.0.${octet}`
    await this.plugIntoInternet(ns, 'eth0', ip, `p${name}`.slice(0, 15))
    return { ns, ip }
  }

  /** a home router (NAT) at 11.0.R.1 with one private host 192.168.R.2 behind it */
  async natRouter (name: string, r: number): Promise<Router> {
    const ns = await this.addNs(`r${name}`)
    const wanIp = `11.0.${r}.1`
    const lanIp = `192.168.${r}.1`
    await this.plugIntoInternet(ns, 'wan', wanIp, `r${name}`.slice(0, 15))
    const hostNs = await this.addNs(`h${name}`)
    await this.veth(ns, 'lan', hostNs, 'eth0')
    await this.exec(ns, 'ip', ['addr', 'add', `${lanIp}/24`, 'dev', 'lan'])
    await this.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
    await this.exec(ns, 'iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE'])
    // a home router: replies come in, new connections from outside do not
    await this.exec(ns, 'iptables', ['-A', 'FORWARD', '-i', 'wan', '-o', 'lan', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'])
    // ... except those to a port the router forwards (a UPnP / NAT-PMP mapping is a DNAT rule)
    await this.exec(ns, 'iptables', ['-A', 'FORWARD', '-i', 'wan', '-o', 'lan', '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'ACCEPT'])
    await this.exec(ns, 'iptables', ['-A', 'FORWARD', '-i', 'wan', '-o', 'lan', '-j', 'DROP'])
    const hostIp = `192.168.${r}.2`
    await this.exec(hostNs, 'ip', ['addr', 'add', `${hostIp}/24`, 'dev', 'eth0'])
    await this.exec(hostNs, 'ip', ['route', 'add', 'default', 'via', lanIp])
    return { ns, wanIp, lanIp, host: { ns: hostNs, ip: hostIp } }
  }

  /**
   * Run miniupnpd (UPnP IGD + NAT-PMP) on a router, as a home router does: it answers SSDP and
   * NAT-PMP on the LAN side and maps ports with nftables rules in the router's namespace (chains it
   * is told the names of, created here, since Debian's nft_init.sh would install a drop policy).
   * Returns the daemon's output so far (for failure notes).
   */
  async miniupnpd (router: Router): Promise<() => string> {
    const dir = await this.tempDir()
    const nft = join(dir, 'miniupnpd.nft')
    await writeFile(nft, [
      'table inet miniupnpd {',
      '  chain forward {', '    type filter hook forward priority 0; policy accept;', '    jump forward_upnp', '  }',
      '  chain forward_upnp {', '  }',
      '  chain prerouting {', '    type nat hook prerouting priority -100; policy accept;', '    jump prerouting_upnp', '  }',
      '  chain prerouting_upnp {', '  }',
      '  chain postrouting {', '    type nat hook postrouting priority 100; policy accept;', '    jump postrouting_upnp', '  }',
      '  chain postrouting_upnp {', '  }',
      '}', ''
    ].join('\n'))
    await this.exec(router.ns, 'nft', ['-f', nft])
    const conf = join(dir, 'miniupnpd.conf')
    await writeFile(conf, [
      'ext_ifname=wan', 'listening_ip=lan', 'enable_natpmp=yes', 'enable_upnp=yes', 'secure_mode=yes', 'system_uptime=yes',
      'uuid=3a7c1c0e-7d1f-4a8e-9a59-6d0c5c1f2b11',
      'upnp_table_name=miniupnpd', 'upnp_nat_table_name=miniupnpd', 'upnp_forward_chain=forward_upnp',
      'upnp_nat_chain=prerouting_upnp', 'upnp_nat_postrouting_chain=postrouting_upnp',
      `allow 1024-65535 ${router.lanIp.replace(/\.1$/, '.0')}/24 1024-65535`, 'deny 0-65535 0.0.0.0/0 0-65535', ''
    ].join('\n'))
    // SSDP (239.255.255.250) from the host goes out of its default route, to this router's LAN side
    const proc = this.spawnIn(router.ns, 'miniupnpd', ['-f', conf, '-d', '-P', join(dir, 'miniupnpd.pid')])
    let out = ''
    proc.stdout?.on('data', (d) => { out += d })
    proc.stderr?.on('data', (d) => { out += d })
    await waitFor(() => /Listening for NAT-PMP/.test(out) || proc.exitCode != null, 10_000, 'miniupnpd to start', 50)
    if (proc.exitCode != null) throw new Error(`miniupnpd exited: ${out.slice(-1000)}`)
    return () => out
  }

  /** The port mappings miniupnpd holds now (the DNAT rules in the router's namespace). */
  async mappings (router: Router): Promise<string> {
    return await this.exec(router.ns, 'nft', ['list', 'chain', 'inet', 'miniupnpd', 'prerouting_upnp'])
  }

  async tempDir (): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'mercato-nat-'))
    this.dirs.push(d)
    return d
  }

  /** start a long-running program inside a namespace; killed by destroy() */
  spawnIn (ns: string, cmd: string, args: string[]): ChildProcess {
    const proc = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.procs.add(proc)
    proc.on('exit', () => { this.procs.delete(proc) })
    return proc
  }

  /** `mercato start` inside a namespace; resolves once it printed "Ready" */
  async startNode (ns: string, args: string[], opts: { timeoutMs?: number, env?: NodeJS.ProcessEnv } = {}): Promise<NodeProc> {
    const dataDir = await this.tempDir()
    // the compiled CLI, as users run it (`npm test` builds dist/ first)
    const full = [...NODE_FLAGS, CLI, 'start', '--data-dir', dataDir, '--gateway', '127.0.0.1:0', '--no-mdns', '--log-level', 'warn', ...args]
    const startedAt = Date.now()
    const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, ...full], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT, env: { ...process.env, ...HARNESS_ENV, ...opts.env } })
    this.procs.add(proc)
    let stdout = ''
    let stderr = ''
    proc.stdout?.on('data', (d) => { stdout += d })
    proc.stderr?.on('data', (d) => { stderr += d })
    const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
      proc.on('exit', (code, signal) => { this.procs.delete(proc); resolve({ code, signal }) })
    })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`node in ${ns} did not start in time\nstdout: ${stdout}\nstderr: ${stderr.slice(-2000)}`)) }, opts.timeoutMs ?? 120_000)
      const check = (): void => { if (/Ready in/.test(stdout)) { clearTimeout(timer); resolve() } }
      proc.stdout?.on('data', check)
      void exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`node in ${ns} exited with ${code} before ready\nstdout: ${stdout}\nstderr: ${stderr.slice(-2000)}`)) })
    })
    return {
      ns,
      proc,
      dataDir,
      peerId: /PeerId:\s+(\S+)/.exec(stdout)?.[1] ?? '',
      addresses: [...stdout.matchAll(/Listen:\s+(\S+)/g)].map(m => m[1]),
      gatewayUrl: /Gateway:\s+(\S+)/.exec(stdout)?.[1] ?? '',
      stdout: () => stdout,
      stderr: () => stderr,
      exited,
      readyMs: Date.now() - startedAt,
      startedAt,
      kill: async (signal = 'SIGKILL') => {
        if (proc.exitCode == null && proc.signalCode == null) proc.kill(signal)
        await exited
      }
    }
  }

  /** HTTP to a node's gateway (it listens on 127.0.0.1 inside its namespace), through curl run there */
  async http<T = any> (node: NodeProc, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number, body: T }> {
    const args = ['netns', 'exec', node.ns, 'curl', '-s', '-m', '60', '-o', '-', '-w', '\n%{http_code}', '-X', method]
    if (body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', JSON.stringify(body))
    args.push(`${node.gatewayUrl}${path}`)
    let out: string
    try {
      out = await sh('ip', args)
    } catch (err: any) {
      // a busy node (or one just killed): status 0, the caller decides
      return { status: 0, body: String(err?.message ?? err) as any }
    }
    const i = out.lastIndexOf('\n')
    const text = out.slice(0, i)
    let parsed: any = text
    try { parsed = JSON.parse(text) } catch {}
    return { status: Number(out.slice(i + 1)), body: parsed }
  }

  /** kill every process, delete every namespace and temp dir (safe to call twice) */
  async destroy (): Promise<void> {
    for (const p of this.procs) { try { p.kill('SIGKILL') } catch {} }
    // wait briefly for them to go, so their namespaces can be deleted
    const deadline = Date.now() + 5000
    while (this.procs.size > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
    for (const ns of this.namespaces.reverse()) {
      // anything else still running in it (e.g. miniupnpd daemonised) goes too
      const pids = spawnSync('ip', ['netns', 'pids', ns]).stdout?.toString().split(/\s+/).filter(Boolean) ?? []
      for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL') } catch {} }
      spawnSync('ip', ['netns', 'del', ns])
    }
    this.namespaces.length = 0
    await Promise.all(this.dirs.map(async d => rm(d, { recursive: true, force: true })))
    this.dirs.length = 0
  }
}

export async function waitFor (cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, stepMs = 250): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, stepMs))
  }
}
