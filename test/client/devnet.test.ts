/**
 * The CLI end to end: `mercato devnet --nodes 3` as a real process tree, then
 * `mercato submit --wait` and the read commands against it, then SIGTERM.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CLI, NODE_FLAGS, runCli, stopAll, tempDir, waitFor } from '../helpers/cli.js'

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

describe('mercato devnet and the client commands, as real processes', function () {
  this.timeout(60_000)
  let devnet: ChildProcess | undefined
  let stdout = ''
  let stderr = ''
  let exited: Promise<number | null>
  const pids: number[] = []
  const gateways: string[] = []
  let dataDir = ''

  before(async () => {
    devnet = spawn(process.execPath, [...NODE_FLAGS, CLI, 'devnet', '--nodes', '3', '--base-port', '0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] })
    devnet.stdout!.on('data', (d) => { stdout += d })
    devnet.stderr!.on('data', (d) => { stderr += d })
    exited = new Promise(resolve => { devnet!.on('exit', (code) => { resolve(code) }) })
    await waitFor(() => /devnet ready/.test(stdout) || devnet!.exitCode != null, 45_000)
    expect(stdout, stderr).to.match(/devnet ready in [\d.]+ s: every node sees the other 2/)
    for (const m of stdout.matchAll(/pid (\d+)/g)) pids.push(Number(m[1]))
    for (const m of stdout.matchAll(/Gateway:\s+(\S+)/g)) gateways.push(m[1])
    dataDir = /data in (\S+)/.exec(stdout)?.[1] ?? ''
  })

  after(async () => {
    if (devnet != null && devnet.exitCode == null) devnet.kill('SIGKILL')
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
    await stopAll()
  })

  it('prints each node\'s pid, PeerId, gateway and dashboard', () => {
    expect(pids).to.have.length(3)
    expect(gateways).to.have.length(3)
    expect(stdout.match(/PeerId:\s+12D3KooW\w+/g)).to.have.length(3)
    for (const g of gateways) expect(stdout).to.include(`Dashboard: ${g}/`)
    expect(stdout).to.match(/node 0 {2}pid \d+ {2}ask 1 credit\n/)
    expect(stdout).to.match(/node 2 {2}pid \d+ {2}ask 3 credits\n/)
    expect(existsSync(dataDir)).to.equal(true)
  })

  it('mercato submit --wait prints the job\'s output', async () => {
    const dir = await tempDir()
    const file = join(dir, 'greet.js')
    await writeFile(file, 'function main (input) { console.log("hello from the devnet,", input.name); return { twice: input.n * 2 } }\n')
    const res = await runCli(['submit', file, '--wait', '--input', '{"name":"mercato","n":21}', '--api', gateways[1]])
    expect(res.code, res.stderr).to.equal(0)
    expect(res.stdout).to.equal('hello from the devnet, mercato\n{\n  "twice": 42\n}\n')
    // progress (not a TTY: one step a line) goes to stderr, and the job's live output with it, as it ran;
    // on a loaded machine (the suite runs files side by side) a late heartbeat or a slow accept adds
    // steps of its own (silent, refused, handing over, a new award): those may come between
    const load = String.raw`(?:12D3…\w\w (?:silent \d+ ms|refused(?: \(.*\))?|lost(?: \(.*\))?, handing over|relay lost, asking through another path)\n|awarded to 12D3…\w\w at \d+ credits?\n|announced again \(round \d+\)\n|\d+ bids?\n)*`
    const steps = new RegExp(String.raw`^announced\n\d+ bids?\nawarded to 12D3…\w\w at \d+ credits?\n${load}running\n${load}hello from the devnet, mercato\n${load}done in \d+ ms\n$`)
    expect(res.stderr, res.stderr).to.match(steps)

    // --json for scripts; a wasm module is uploaded first
    const wasm = new URL('../fixtures/wasm/hello.wasm', import.meta.url).pathname
    const json = await runCli(['submit', wasm, '--arg', 'one', '--wait', '--json', '--api', gateways[0]])
    expect(json.code, json.stderr).to.equal(0)
    const { job, result } = JSON.parse(json.stdout)
    expect(job.status).to.equal('completed')
    expect(result.stdout).to.equal('hello, world\narg 1: one\n')

    // the read commands see it
    const jobs = await runCli(['jobs', '--api', gateways[0]])
    expect(jobs.stdout).to.include(job.id).and.to.match(/completed\s+wasm/)
    const one = await runCli(['job', job.id, '--api', gateways[0]])
    expect(one.stdout).to.match(/Status\s+completed/).and.to.include('arg 1: one')
  })

  it('a job nobody bids on prints every decline reason and exits 1 (--queue-timeout 0: at once)', async () => {
    const wasm = new URL('../fixtures/wasm/hello.wasm', import.meta.url).pathname
    const res = await runCli(['submit', wasm, '--max-price', '0', '--queue-timeout', '0', '--wait', '--api', gateways[0]])
    expect(res.code).to.equal(1)
    expect(res.stderr).to.match(/no provider bid on job \S+; 3 declined/)
    expect(res.stderr.match(/ {2}12D3KooW\w+ {2}price {2}ask \d over maxPrice 0/g)).to.have.length(3)
  })

  it('a job nobody bids on waits queued (mercato jobs --status queued lists it) until its queue timeout, then prints the reasons', async () => {
    const wasm = new URL('../fixtures/wasm/hello.wasm', import.meta.url).pathname
    const t0 = Date.now()
    const waiting = runCli(['submit', wasm, '--max-price', '0', '--queue-timeout', '4000', '--wait', '--api', gateways[0]])
    let listed = ''
    const end = Date.now() + 4000
    while (Date.now() < end && !/queued/.test(listed)) {
      listed = (await runCli(['jobs', '--status', 'queued', '--api', gateways[0]])).stdout
    }
    expect(listed).to.match(/\S+\s+queued\s+wasm/)
    const res = await waiting
    expect(res.code).to.equal(1)
    expect(Date.now() - t0).to.be.at.least(4000)
    expect(res.stderr).to.match(/no provider bid on job \S+; 3 declined/)
    expect(res.stderr.match(/ {2}12D3KooW\w+ {2}price {2}ask \d over maxPrice 0/g)).to.have.length(3)
  })

  it('says clearly when no node answers', async () => {
    const res = await runCli(['peers', '--api', 'http://127.0.0.1:1'])
    expect(res.code).to.equal(1)
    expect(res.stderr).to.equal('mercato: no Mercato node at http://127.0.0.1:1 (start one with `npm start`)\n')
  })

  it('stops every node on SIGTERM and removes its temp dir', async () => {
    expect(pids.every(alive)).to.equal(true)
    const t0 = Date.now()
    devnet!.kill('SIGTERM')
    expect(await exited).to.equal(0)
    expect(Date.now() - t0).to.be.lessThan(6000)
    expect(pids.filter(alive)).to.deep.equal([])
    expect(existsSync(dataDir)).to.equal(false)
    expect(stdout).to.match(/stopping 3 nodes\ndevnet stopped\n$/)
  })
})

describe('mercato devnet stopped while its nodes start', function () {
  this.timeout(60_000)
  after(async () => { await stopAll() })

  /** A devnet of 4, interrupted once `count` of its node processes are up (none has printed "devnet ready"). */
  async function interruptWhen (count: number): Promise<void> {
    const dir = await tempDir('mercato-devnet-early-')
    const nodesOf = (): number[] => {
      const out: number[] = []
      for (const pid of readdirSync('/proc').filter(p => /^\d+$/.test(p))) {
        try {
          const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
          if (cmd.includes('start') && cmd.some(a => a.startsWith(join(dir, 'node-')))) out.push(Number(pid))
        } catch {}
      }
      return out
    }
    const devnet = spawn(process.execPath, [...NODE_FLAGS, CLI, 'devnet', '--nodes', '4', '--base-port', '0', '--data-dir', dir, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    devnet.stdout.on('data', (d) => { stdout += d })
    const exited = new Promise<number | null>(resolve => { devnet.on('exit', (code) => { resolve(code) }) })
    try {
      await waitFor(() => nodesOf().length >= count, 20_000)
      devnet.kill('SIGINT')
      const timeout = new Promise<string>(resolve => { setTimeout(() => { resolve('still running 20 s after SIGINT') }, 20_000).unref() })
      expect(await Promise.race([exited, timeout])).to.equal(0)
      expect(stdout).to.not.match(/devnet ready/)
      // every node process the devnet started is gone once it has exited
      await new Promise(resolve => setTimeout(resolve, 500))
      expect(nodesOf()).to.deep.equal([])
    } finally {
      for (const pid of nodesOf()) { try { process.kill(pid, 'SIGKILL') } catch {} }
      if (devnet.exitCode == null) devnet.kill('SIGKILL')
    }
  }

  it('Ctrl-C while the first node starts stops it, and starts no other', async () => {
    await interruptWhen(1)
  })

  it('Ctrl-C while the other nodes start stops every one started, ready or not', async () => {
    await interruptWhen(4)
  })
})
