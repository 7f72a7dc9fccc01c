#!/usr/bin/env node
/**
 * `npm test`'s runner: the suite in two lanes at once, each a plain mocha run
 * (.mocharc.json), on the Node that runs this script.
 *
 * - lane "net": the tests that spend their time waiting on things outside
 *   Node — network namespaces with NAT routers and miniupnpd (test/nat), the
 *   mDNS LAN (test/p2p/lan), a Slurm cluster (test/slurm/slurm) — and use
 *   little CPU while they wait;
 * - lane "main": everything else, one file after another as before.
 *
 * Run one after the other they took ~3 of the suite's ~11 minutes on the
 * 2-core machine; side by side the suite takes about as long as lane "main".
 * The main lane's output streams as it comes; the net lane's is printed
 * whole when both are done. The exit code is non-zero if either lane failed.
 *
 *   node test/run.mjs [mocha args...]   (e.g. --grep pattern)
 */
import { spawn } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join, relative } from 'node:path'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const MOCHA = join(ROOT, 'node_modules/mocha/bin/mocha.js')
const NET_LANE = ['test/nat/', 'test/p2p/lan.test.ts', 'test/slurm/slurm.test.ts']

function testFiles (dir) {
  const out = []
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name)
    if (statSync(full).isDirectory()) out.push(...testFiles(full))
    else if (name.endsWith('.test.ts')) out.push(relative(ROOT, full))
  }
  return out
}

const files = testFiles(join(ROOT, 'test'))
const isNet = (f) => NET_LANE.some(p => f === p || f.startsWith(p))
const lanes = [
  { name: 'main', files: files.filter(f => !isNet(f)), live: true },
  { name: 'net', files: files.filter(isNet), live: false }
]
const extra = process.argv.slice(2)

function run (lane) {
  return new Promise((resolve) => {
    const t0 = Date.now()
    let buffered = ''
    const child = spawn(process.execPath, [MOCHA, ...extra, ...lane.files], { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    const take = (stream) => (chunk) => { if (lane.live) stream.write(chunk); else buffered += chunk }
    child.stdout.on('data', take(process.stdout))
    child.stderr.on('data', take(process.stderr))
    // a signal to the runner (CI's time limit, ^C) reaches both lanes
    const forward = (sig) => { child.kill(sig) }
    process.on('SIGINT', forward)
    process.on('SIGTERM', forward)
    child.on('close', (code, signal) => {
      resolve({ lane, code: code ?? 1, signal, seconds: Math.round((Date.now() - t0) / 1000), output: buffered })
    })
  })
}

const results = await Promise.all(lanes.map(run))
for (const r of results) {
  if (r.lane.live) continue
  process.stdout.write(`\n======== lane "${r.lane.name}" (${r.lane.files.join(', ')}) ========\n${r.output}`)
}
process.stdout.write('\n')
for (const r of results) process.stdout.write(`lane ${r.lane.name}: ${r.lane.files.length} files, ${r.code === 0 ? 'passed' : `FAILED (exit ${r.code}${r.signal != null ? `, ${r.signal}` : ''})`} in ${r.seconds} s\n`)
process.exitCode = results.some(r => r.code !== 0) ? 1 : 0
