/**
 * "Nodes federate automatically" on a LAN with no bootstrap list: three real
 * `mercato start` processes, each in its own network namespace, joined by a
 * bridge (itself in a namespace of its own, so nothing touches the host's
 * network), mDNS on (the default), no bootstrap peers. They must connect.
 *
 * Addresses 10.251.0.1-3/24 exist only inside the namespaces created here;
 * every namespace and process is removed in after(). Needs root and `ip`:
 * otherwise skipped with the reason, or failed with it under CI=true.
 */
import '../../src/polyfill.js'
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { CLI, NODE_FLAGS } from '../helpers/cli.js'


const N = 3
const TAG = `ml${process.pid % 100000}`
const SWITCH = `${TAG}-sw`
const ns = (i: number): string => `${TAG}-n${i}`
// a private LAN range: libp2p announces private addresses of a 0.0.0.0 listener at once, but holds back
// public-looking ones (11.0.0.x) until AutoNAT confirms them, so mDNS would carry only 127.0.0.1
const addr = (i: number): string => `10.251.0.${i + 1}`

function sh (...args: string[]): void { execFileSync(args[0], args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] }) }

function whyNot (): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)'
  if (spawnSync('ip', ['-V']).error != null) return 'needs the `ip` command (iproute2)'
  return null
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('p2p: nodes on one LAN find each other by mDNS with no bootstrap list (network namespaces)', function () {
  this.timeout(300_000)
  const procs: ChildProcess[] = []
  const dirs: string[] = []
  let made = false

  before(function () {
    const reason = whyNot()
    if (reason != null) {
      if (process.env.CI === 'true') throw new Error(`LAN test cannot run: ${reason}`)
      console.log(`      skipped: ${reason}`)
      this.skip()
    }
    made = true
    sh('ip', 'netns', 'add', SWITCH)
    sh('ip', '-n', SWITCH, 'link', 'add', 'br0', 'type', 'bridge')
    sh('ip', '-n', SWITCH, 'link', 'set', 'br0', 'up')
    for (let i = 0; i < N; i++) {
      sh('ip', 'netns', 'add', ns(i))
      sh('ip', '-n', ns(i), 'link', 'set', 'lo', 'up')
      // one veth pair per node: eth0 in the node's namespace, p<i> on the bridge
      sh('ip', 'link', 'add', `${TAG}v${i}`, 'netns', ns(i), 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', SWITCH)
      sh('ip', '-n', ns(i), 'link', 'set', `${TAG}v${i}`, 'name', 'eth0')
      sh('ip', '-n', ns(i), 'addr', 'add', `${addr(i)}/24`, 'dev', 'eth0')
      sh('ip', '-n', ns(i), 'link', 'set', 'eth0', 'up')
      // mDNS sends to 224.0.0.251: give multicast a route out of eth0
      sh('ip', '-n', ns(i), 'route', 'add', '224.0.0.0/4', 'dev', 'eth0')
      sh('ip', '-n', SWITCH, 'link', 'set', `p${i}`, 'master', 'br0')
      sh('ip', '-n', SWITCH, 'link', 'set', `p${i}`, 'up')
    }
  })

  after(async () => {
    for (const p of procs) p.kill('SIGKILL')
    await Promise.all(procs.map(async p => { if (p.exitCode == null && p.signalCode == null) await new Promise(resolve => p.once('exit', resolve)) }))
    if (made) {
      for (const name of [...Array.from({ length: N }, (_, i) => ns(i)), SWITCH]) spawnSync('ip', ['netns', 'del', name])
    }
    await Promise.all(dirs.map(async d => rm(d, { recursive: true, force: true })))
  })

  async function startIn (i: number): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'mercato-lan-'))
    dirs.push(dir)
    // defaults: mDNS on, no bootstrap list, no loopback exemption
    const proc = spawn('ip', ['netns', 'exec', ns(i), process.execPath, ...NODE_FLAGS, CLI, 'start',
      '--data-dir', dir, '--listen', '/ip4/0.0.0.0/tcp/4010', '--gateway', '127.0.0.1:8420', '--no-provide', '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MERCATO_P2P_ALLOW: '', MERCATO_EXECUTOR_POOL_SIZE: '1' } })
    procs.push(proc)
    let stdout = ''
    let stderr = ''
    proc.stdout?.on('data', (d) => { stdout += d })
    proc.stderr?.on('data', (d) => { stderr += d })
    const end = Date.now() + 120_000 // a cold tsx start on a loaded 2-core machine can take a minute
    while (!/Ready in/.test(stdout)) {
      if (proc.exitCode != null || Date.now() > end) throw new Error(`node in ${ns(i)} did not start\n${stdout}\n${stderr}`)
      await sleep(100)
    }
    return /PeerId:\s+(\S+)/.exec(stdout)?.[1] ?? ''
  }

  /** The LAN addresses node i holds an established TCP connection with (the mesh runs on TCP 4010). */
  function connectedTo (i: number): string[] {
    const res = spawnSync('ip', ['netns', 'exec', ns(i), 'ss', '-tnH', 'state', 'established'], { encoding: 'utf8', timeout: 30_000 })
    const out = new Set<string>()
    for (const line of (res.stdout ?? '').split('\n')) {
      const m = /(10\.251\.0\.\d+):(\d+)\s+(10\.251\.0\.\d+):(\d+)/.exec(line)
      if (m != null && (m[2] === '4010' || m[4] === '4010')) out.add(m[3])
    }
    return [...out]
  }

  it('three nodes with mDNS on and no bootstrap list all connect', async () => {
    // one after another: three cold starts at once on a loaded 2-core machine time out
    const ids: string[] = []
    for (let i = 0; i < N; i++) ids.push(await startIn(i))
    const t0 = Date.now()
    let seen: string[][] = []
    while (Date.now() - t0 < 90_000) {
      seen = Array.from({ length: N }, (_, i) => connectedTo(i))
      if (seen.every((peers, i) => Array.from({ length: N }, (_, j) => j).every(j => j === i || peers.includes(addr(j))))) break
      await sleep(1000)
    }
    console.log(`      after ${Date.now() - t0} ms: ${seen.map((p, i) => `node ${i} ↔ ${p.join(',') || 'nobody'}`).join('; ')} (PeerIds ${ids.map(id => id.slice(-6)).join(', ')})`)
    seen.forEach((peers, i) => {
      for (let j = 0; j < N; j++) if (j !== i) expect(peers, `node ${i} connected to node ${j}`).to.include(addr(j))
    })
  })
})
