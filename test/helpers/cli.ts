/**
 * Start real `mercato` processes for end-to-end tests. Every process and temp
 * dir made here is removed by `stopAll()` (call it in an after() hook).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const ROOT = new URL('../../', import.meta.url).pathname
/**
 * The `mercato` command as users run it: bin/mercato.js on the compiled
 * dist/ with plain node (`npm test` builds dist/ first).
 */
export const CLI = join(ROOT, 'bin/mercato.js')
/** The node flags on bin/mercato.js's `#!/usr/bin/env -S node ...` line, as a shell would pass them. */
export const NODE_FLAGS = readFileSync(CLI, 'utf8').split('\n')[0].replace(/^#!\S*env -S node\s*|^#!\S*\s*/, '').split(/\s+/).filter(f => f.startsWith('--'))

export interface NodeProcess {
  proc: ChildProcess
  dataDir: string
  peerId: string
  addresses: string[]
  gatewayUrl: string
  stdout: () => string
  stderr: () => string
  /** SIGTERM and wait; resolves with exit code and ms taken */
  stop: (signal?: NodeJS.Signals) => Promise<{ code: number | null, signal: NodeJS.Signals | null, ms: number }>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

const procs = new Set<ChildProcess>()
const dirs = new Set<string>()

export async function tempDir (prefix = 'mercato-test-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix))
  dirs.add(d)
  return d
}

export interface RunResult { code: number | null, stdout: string, stderr: string }

/** Run the CLI to completion. */
export async function runCli (args: string[], opts: { env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...NODE_FLAGS, CLI, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    procs.add(proc)
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (d) => { stdout += d })
    proc.stderr.on('data', (d) => { stderr += d })
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`mercato ${args.join(' ')} timed out\n${stderr}`)) }, opts.timeoutMs ?? 30_000)
    proc.on('exit', (code) => { clearTimeout(timer); procs.delete(proc); resolve({ code, stdout, stderr }) })
  })
}

/** Start `mercato start` with loopback defaults and wait until it prints its gateway. */
export async function startNodeProcess (args: string[] = [], opts: { env?: NodeJS.ProcessEnv, dataDir?: string, timeoutMs?: number, nodeArgs?: string[] } = {}): Promise<NodeProcess> {
  const dataDir = opts.dataDir ?? await tempDir()
  const fullArgs = ['start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--gateway', '127.0.0.1:0', '--no-mdns', '--log-level', 'warn', ...args]
  // every test node is on 127.0.0.1: loopback is exempt from inbound connection limits and answers may
  // dial loopback addresses, unless the caller's env says otherwise
  const env = { MERCATO_P2P_ALLOW: '/ip4/127.0.0.1,/ip6/::1', ...process.env, MERCATO_PROVIDER_DIAL_PRIVATE_ADDRESSES: 'true', ...opts.env }
  const proc = spawn(process.execPath, [...NODE_FLAGS, ...(opts.nodeArgs ?? []), CLI, ...fullArgs], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  procs.add(proc)
  let stdout = ''
  let stderr = ''
  proc.stdout.on('data', (d) => { stdout += d })
  proc.stderr.on('data', (d) => { stderr += d })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => { procs.delete(proc); resolve({ code, signal }) })
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`node did not start in time\nstdout: ${stdout}\nstderr: ${stderr}`)) }, opts.timeoutMs ?? 30_000)
    const check = (): void => {
      if (/Gateway: \S+\n/.test(stdout) && /Ready in/.test(stdout)) { clearTimeout(timer); resolve() }
    }
    proc.stdout.on('data', check)
    void exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`node exited with ${code} before ready\nstdout: ${stdout}\nstderr: ${stderr}`)) })
  })
  const peerId = /PeerId:\s+(\S+)/.exec(stdout)?.[1] ?? ''
  const addresses = [...stdout.matchAll(/Listen:\s+(\S+)/g)].map(m => m[1])
  const gatewayUrl = /Gateway:\s+(\S+)/.exec(stdout)?.[1] ?? ''
  return {
    proc,
    dataDir,
    peerId,
    addresses,
    gatewayUrl,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    stop: async (signal = 'SIGTERM') => {
      const t0 = Date.now()
      if (proc.exitCode == null && proc.signalCode == null) proc.kill(signal)
      const res = await exited
      return { ...res, ms: Date.now() - t0 }
    }
  }
}

export async function getJson<T = any> (url: string, init?: RequestInit): Promise<{ status: number, body: T }> {
  const res = await fetch(url, init)
  const text = await res.text()
  let body: any = text
  try { body = JSON.parse(text) } catch {}
  return { status: res.status, body }
}

export async function waitFor (cond: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 100): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`condition not met in ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, stepMs))
  }
}

/** Kill every process and remove every temp dir started by these helpers. */
export async function stopAll (): Promise<void> {
  for (const p of procs) { try { p.kill('SIGKILL') } catch {} }
  procs.clear()
  await Promise.all([...dirs].map(async d => rm(d, { recursive: true, force: true })))
  dirs.clear()
}
