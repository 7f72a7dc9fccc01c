/**
 * Crash safety: a child process appends as fast as it can and is killed with
 * SIGKILL at random moments (sometimes while it is still opening the log).
 * After every kill the log must open, verify, be contiguous, and hold at
 * least every record the child saw committed.
 */
import { expect } from 'chai'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { signerFromSeed } from '../../src/crypto/index.js'
import { openLedger } from '../../src/ledger/index.js'

const CHILD = fileURLToPath(new URL('./fixtures/crash-child.mjs', import.meta.url))
/** 15 in the suite (one kill in five while the child opens the log); MERCATO_CRASH_KILLS=100 for a soak */
const KILLS = Number(process.env.MERCATO_CRASH_KILLS ?? 15)

interface Run { child: ChildProcess, opened: Promise<void>, committed: Promise<void>, lastCommitted: () => number, exited: Promise<void> }

function startChild (path: string, seedHex: string): Run {
  const child = spawn(process.execPath, [CHILD, path, seedHex], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MERCATO_LOG_LEVEL: 'error' }
  })
  let last = -1
  let buf = ''
  let onOpen!: () => void
  const opened = new Promise<void>((resolve) => { onOpen = resolve })
  let onCommit!: () => void
  const committed = new Promise<void>((resolve) => { onCommit = resolve })
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString()
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      if (line.startsWith('open ')) onOpen()
      else if (line.startsWith('c ')) { last = Math.max(last, Number(line.slice(2))); onCommit() }
    }
  })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<void>((resolve) => child.on('exit', () => {
    if (stderr.length > 0 && !stderr.includes('SIGKILL')) process.stderr.write(stderr)
    resolve()
  }))
  return { child, opened, committed, lastCommitted: () => last, exited }
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

describe('ledger crash safety @slow', function () {
  this.timeout(300_000) // 15 child processes (compiled code): ~15 s on a quiet machine, minutes at load 30
  const dirs: string[] = []
  const children: ChildProcess[] = []

  after(async () => {
    for (const c of children) if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL')
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  it(`survives ${KILLS} SIGKILLs at random moments with a log that verifies and is contiguous`, async () => {
    const seed = randomBytes(32)
    const signer = signerFromSeed(seed)
    let dir = ''
    let expectedAtLeast = -1
    let advanced = 0 // kills after which the log had grown
    for (let k = 0; k < KILLS; k++) {
      if (k % 3 === 0) {
        // a fresh log now and then keeps each full verify short
        dir = await mkdtemp(join(tmpdir(), 'mercato-crash-'))
        dirs.push(dir)
        expectedAtLeast = -1
      }
      const path = join(dir, 'ledger')
      const run = startChild(path, seed.toString('hex'))
      children.push(run.child)
      if (k % 5 === 4) {
        // kill while it is starting or opening (tail check included)
        await sleep(Math.random() * 400)
      } else {
        // from its first commit on (on a loaded machine opening alone can take longer than the
        // sleep), a random moment in its appending
        await Promise.race([run.committed, run.exited])
        await sleep(20 + Math.random() * 250)
      }
      run.child.kill('SIGKILL')
      await run.exited
      const expectedAtLeastBefore = expectedAtLeast
      expectedAtLeast = Math.max(expectedAtLeast, run.lastCommitted())

      const ledger = await openLedger({ signer, path })
      try {
        const head = ledger.head()
        const report = await ledger.verify()
        expect(report.ok, `kill ${k}: ${JSON.stringify(report)}`).to.equal(true)
        expect(report.count).to.equal(head.count)
        expect(report.headId).to.equal(head.id)
        expect(head.seq, `kill ${k}: committed records lost`).to.be.at.least(expectedAtLeast)
        // contiguous: every seq from 0 to head is there, in order
        let next = 0
        while (next <= head.seq) {
          const page = await ledger.range(next, 5000)
          expect(page.length).to.be.greaterThan(0)
          for (const r of page) expect(r.seq).to.equal(next++)
        }
        if (head.seq > expectedAtLeastBefore) advanced++
        expectedAtLeast = head.seq
      } finally {
        await ledger.close()
      }
    }
    // most runs got far enough to append (the rest were killed while starting)
    expect(advanced).to.be.greaterThan(KILLS / 3)
  })
})
