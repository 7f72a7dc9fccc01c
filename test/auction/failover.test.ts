import '../../src/polyfill.js'
import { expect } from 'chai'
import { join } from 'node:path'
import { openLedger } from '../../src/ledger/index.js'
import { startNodeProcess, stopAll, getJson, waitFor, type NodeProcess } from '../helpers/cli.js'

/**
 * QuickJS work, the same answer on every provider: `n` spins take ≈ 0.14 s per million on Node 20
 * and ≈ 0.08 s on Node 24 (this 2-core machine, alone). A trial stops its provider within a few
 * polls of seeing it run (its first heartbeat, 250 ms in), so 12 M (≈ 1–1.7 s) leaves room on a
 * loaded machine; the runner-up then runs the whole job, which is what a trial costs.
 */
const longJob = (n: number): Record<string, unknown> => ({
  engine: 'js',
  source: 'function main (i) { let s = 0; for (let k = 0; k < i.n; k++) s = (s + k) % 1000003; return s }',
  input: { n },
  limits: { timeoutMs: 20_000 },
  maxPrice: 50
})
const LONG_JOB = longJob(12_000_000)
/** longer: it still runs while its requester restarts (≈ 0.5–1 s to be ready again); if it ended first, the result waits for the requester */
const LONGER_JOB = longJob(20_000_000)

async function submit (node: NodeProcess, spec: unknown): Promise<string> {
  const res = await getJson(`${node.gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) })
  expect(res.status, JSON.stringify(res.body)).to.equal(202)
  return res.body.id
}

async function job (node: NodeProcess, id: string): Promise<any> {
  return (await getJson(`${node.gatewayUrl}/v1/jobs/${id}`)).body
}

async function providersSeen (node: NodeProcess): Promise<number> {
  const peers = (await getJson(`${node.gatewayUrl}/v1/providers`)).body as Array<{ peerId: string }>
  const connected = new Set(((await getJson(`${node.gatewayUrl}/v1/peers`)).body as Array<{ peerId: string }>).map(p => p.peerId))
  return peers.filter(p => connected.has(p.peerId)).length
}

/** kill → failover trials in the suite (3: each takes ~13 s on the 2-core machine); MERCATO_FAILOVER_TRIALS=100 for a soak */
const TRIALS = Number(process.env.MERCATO_FAILOVER_TRIALS ?? 3)

describe('failover across processes (@slow)', function () {
  this.timeout(240_000)
  after(stopAll)

  it(`the provider running a job is SIGKILLed: the job completes elsewhere, one handover, one paid receipt — ${TRIALS} trials`, async () => {
    const requester = await startNodeProcess(['--no-provide'])
    const boot = requester.addresses[0]
    const providers = await Promise.all([1, 2, 3].map(async (p) => await startNodeProcess(['--bootstrap', boot, '--price', String(p), '--slots', '1'])))
    await waitFor(async () => await providersSeen(requester) >= 3, 20_000)
    const ids: string[] = []
    const failoverMs: number[] = []
    for (let trial = 0; trial < TRIALS; trial++) {
      const id = await submit(requester, LONG_JOB)
      ids.push(id)
      let running: any
      await waitFor(async () => { running = await job(requester, id); return running.status === 'running' }, 15_000, 20)
      const victimIndex = providers.findIndex(p => p.peerId === running.provider)
      expect(victimIndex, 'running on one of ours').to.be.greaterThan(-1)
      const victim = providers[victimIndex]
      const killedAt = Date.now()
      victim.proc.kill('SIGKILL')
      await victim.exited
      // the runner-up accepts quickly
      await waitFor(async () => {
        const j = await job(requester, id)
        return j.provider != null && j.provider !== victim.peerId && j.attempts.some((a: any) => a.provider === j.provider && (a.state === 'accepted' || a.state === 'running' || a.state === 'completed'))
      }, 5_000, 10)
      failoverMs.push(Date.now() - killedAt)
      let done: any
      await waitFor(async () => { done = await job(requester, id); return ['completed', 'failed', 'no-bids'].includes(done.status) }, 30_000, 50)
      expect(done.status, JSON.stringify(done)).to.equal('completed')
      expect(done.provider).to.not.equal(victim.peerId)
      expect(done.attempts.find((a: any) => a.provider === victim.peerId).state).to.equal('lost')
      const result = (await getJson(`${requester.gatewayUrl}/v1/jobs/${id}/result`)).body
      expect(result.output, JSON.stringify(result)).to.be.a('number')
      // the provider comes back (same identity) for the next trial
      providers[victimIndex] = await startNodeProcess(['--bootstrap', boot, '--price', String(victimIndex + 1), '--slots', '1'], { dataDir: victim.dataDir })
      await waitFor(async () => await providersSeen(requester) >= 3, 20_000)
    }
    // the requester's log: one handover (at least) and exactly one paid receipt per job
    const stopped = await requester.stop('SIGTERM')
    expect(stopped.code).to.equal(0)
    const ledger = await openLedger({ signer: { peerId: requester.peerId }, path: join(requester.dataDir, 'ledger'), readOnly: true })
    const reasons: string[] = []
    try {
      for (const id of ids) {
        const recs = await ledger.byJob(id)
        const handovers = recs.filter(r => r.type === 'handover')
        reasons.push(...handovers.map(r => String((r.body as any).reason)))
        expect(handovers.length, id).to.be.greaterThanOrEqual(1)
        const paid = recs.filter(r => r.type === 'receipt' && (r.body as any).receipt.payload.status === 'paid')
        expect(paid, id).to.have.length(1)
      }
      expect((await ledger.verify()).ok).to.equal(true)
    } finally {
      await ledger.close()
    }
    process.stderr.write(`      failover ms (kill → runner-up accepted): ${failoverMs.join(', ')}; handovers: ${reasons.join(' | ')}\n`)
    // what is checked: a killed provider is caught by its closed channel at once, not by 1.5 s of
    // silence, and the runner-up takes over; the time is a safety bound only (fresh-clone CI read
    // 2457 and 2638 ms in a first trial, once each, on a line where four lanes share two cores,
    // every handover 'provider closed the award channel'; most trials read 76-965)
    for (const r of reasons) expect(r, 'handover reason').to.match(/closed|reset|connection lost/i)
    expect(Math.max(...failoverMs)).to.be.lessThan(5000)
  })

  it('a paused requester does not blame its provider for its own deafness; a paused provider is still handed over', async () => {
    const requester = await startNodeProcess(['--no-provide'])
    const boot = requester.addresses[0]
    const providers = await Promise.all([1, 2].map(async (p) => await startNodeProcess(['--bootstrap', boot, '--price', String(p), '--slots', '1'])))
    await waitFor(async () => await providersSeen(requester) >= 2, 20_000)
    const pause = async (p: NodeProcess, ms: number): Promise<void> => {
      p.proc.kill('SIGSTOP')
      try { await new Promise(resolve => setTimeout(resolve, ms)) } finally { p.proc.kill('SIGCONT') }
    }
    const handovers = async (id: string): Promise<string[]> => ((await getJson(`${requester.gatewayUrl}/v1/ledger?job=${id}`)).body.records as any[]).filter(r => r.type === 'handover').map(r => r.body.reason)
    const runUntilDone = async (freeze: (running: any) => Promise<void>): Promise<{ id: string, done: any }> => {
      const id = await submit(requester, LONG_JOB)
      let running: any
      await waitFor(async () => { running = await job(requester, id); return running.status === 'running' }, 15_000, 20)
      await freeze(running)
      let done: any
      await waitFor(async () => { done = await job(requester, id); return ['completed', 'failed', 'no-bids'].includes(done.status) }, 30_000, 50)
      expect(done.status, JSON.stringify(done)).to.equal('completed')
      return { id, done }
    }

    // the requester stopped for 3 s (twice lostAfterMs): the provider's heartbeats wait in the socket,
    // and on waking its watchdog runs before they are read
    const first = await runUntilDone(async () => { await pause(requester, 3000) })
    expect(await handovers(first.id), 'handovers after the requester paused').to.deep.equal([])
    expect(first.done.attempts, JSON.stringify(first.done.attempts)).to.have.length(1)

    // the provider stopped for as long: it is silent, and the job moves on
    const second = await runUntilDone(async (running) => { await pause(providers.find(p => p.peerId === running.provider)!, 3000) })
    const reasons = await handovers(second.id)
    if (reasons.length > 0) {
      expect(reasons[0]).to.match(/^silent for \d+ ms$/)
    } else {
      // the paused provider had no standing yet (the other won the first job): its run was a probation
      // beside the other's check, which settled the job; it is caught all the same, lost for its silence
      let attempts: any[] = second.done.attempts
      await waitFor(async () => { attempts = (await job(requester, second.id)).attempts; return attempts.some(a => a.state === 'lost') }, 10_000, 50)
      const lost = attempts.find(a => a.state === 'lost')
      expect(lost.reason, JSON.stringify(attempts)).to.match(/^silent for \d+ ms$/)
      expect(attempts.filter(a => a.state === 'completed')).to.have.length(1)
    }
  })

  it('the requester restarts mid-job: the job completes, with no second award', async () => {
    const requester = await startNodeProcess(['--no-provide'])
    const boot = requester.addresses[0]
    const providers = await Promise.all([1, 2].map(async (p) => await startNodeProcess(['--bootstrap', boot, '--price', String(p), '--slots', '1'])))
    await waitFor(async () => await providersSeen(requester) >= 2, 20_000)
    const id = await submit(requester, LONGER_JOB)
    let running: any
    await waitFor(async () => { running = await job(requester, id); return running.status === 'running' }, 15_000, 20)
    requester.proc.kill('SIGKILL')
    await requester.exited
    // back on a new port; its bootstrap list names the providers (a restarted node that knows only one
    // peer may not find the provider holding its job within the recovery grace: see ARCHITECTURE, Restart)
    const again = await startNodeProcess(['--no-provide', ...providers.flatMap(p => ['--bootstrap', p.addresses[0]])], { dataDir: requester.dataDir })
    expect(again.peerId).to.equal(requester.peerId)
    let done: any
    await waitFor(async () => {
      const res = await getJson(`${again.gatewayUrl}/v1/jobs/${id}`)
      done = res.body
      return res.status === 200 && ['completed', 'failed', 'no-bids'].includes(done.status)
    }, 30_000, 100)
    expect(done.status, JSON.stringify(done)).to.equal('completed')
    expect(done.provider, JSON.stringify(done)).to.equal(running.provider)
    await again.stop('SIGTERM')
    const ledger = await openLedger({ signer: { peerId: requester.peerId }, path: join(requester.dataDir, 'ledger'), readOnly: true })
    try {
      const recs = await ledger.byJob(id)
      expect(recs.filter(r => r.type === 'award')).to.have.length(1)
      expect(recs.filter(r => r.type === 'receipt' && (r.body as any).receipt.payload.status === 'paid')).to.have.length(1)
    } finally {
      await ledger.close()
    }
  })
})
