/**
 * Invitations on a real mesh of `mercato` processes: providers advertise,
 * the requester's book fills, and a job is offered to the handful of
 * providers that can win it instead of to everyone. The cheapest provider
 * wins; a newcomer cheaper than all of them, never heard of before, wins
 * within its first jobs; providers that were not invited do no work.
 */
import { expect } from 'chai'
import { getJson, startNodeProcess, stopAll, waitFor, type NodeProcess } from '../helpers/cli.js'
import { INVITE_EXPLORE, INVITE_EXTRA, INVITE_UNPROVEN } from '../../src/auction/constants.js'

const JOB = { engine: 'js', source: 'function main (i) { return i.x * 2 }', input: { x: 21 }, maxPrice: 50 }

async function submitAndWait (node: NodeProcess): Promise<{ id: string, view: any }> {
  const res = await fetch(`${node.gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(JOB) })
  expect(res.status).to.equal(202)
  const { id } = await res.json() as { id: string }
  let view: any
  await waitFor(async () => { view = (await getJson(`${node.gatewayUrl}/v1/jobs/${id}`)).body; return ['completed', 'failed', 'no-bids', 'cancelled'].includes(view.status) }, 30_000, 50)
  return { id, view }
}

describe('market: invitations from the provider book (10 processes) @slow', function () {
  this.timeout(240_000)
  after(async () => { await stopAll() })

  it('jobs go to the few providers the book names, the cheapest wins, and a cheaper newcomer wins within its first 20 jobs', async () => {
    // what is checked is who is invited and who wins, not how fast silence is judged: ten processes
    // share two cores with the rest of the suite, and a provider just started (the newcomer) went
    // silent for 1.6 s on its first job once, was handed over and, marked lost, never won again
    const requester = await startNodeProcess(['--no-provide'], { timeoutMs: 120_000, env: { MERCATO_AUCTION_SUSPECT_AFTER_MS: '3000', MERCATO_AUCTION_LOST_AFTER_MS: '6000' } })
    const boot = requester.addresses[0]
    const asks = [3, 4, 5, 6, 7, 8, 9, 10]
    const providers = await Promise.all(asks.map(async (ask) => await startNodeProcess(['--bootstrap', boot, '--price', String(ask)], { timeoutMs: 120_000 })))
    const askOf = new Map(providers.map((p, i) => [p.peerId, asks[i]]))
    const advertised = async (): Promise<any[]> => ((await getJson(`${requester.gatewayUrl}/v1/providers`)).body as any[]).filter(p => p.advert != null)
    await waitFor(async () => (await advertised()).length >= asks.length, 90_000, 250)
    const seen = await advertised()
    for (const p of seen) expect(p.advert.ask, p.peerId).to.equal(askOf.get(p.peerId))

    // invited, not called: the offer record names the invitees, and only they answered
    const seats = 3 + INVITE_EXTRA
    let invitedRounds = 0
    let cheapestWon = 0
    for (let i = 0; i < 6; i++) {
      const { id, view } = await submitAndWait(requester)
      expect(view.status, JSON.stringify(view)).to.equal('completed')
      // each round's answers are logged when the round closes, before the next round's offer:
      // attribute every bid/decline record to the offer logged last before it
      const records = (await getJson(`${requester.gatewayUrl}/v1/ledger?job=${id}`)).body.records as any[]
      const rounds: Array<{ offer: any, answered: string[] }> = []
      for (const r of [...records].sort((a, b) => a.seq - b.seq)) {
        if (r.type === 'offer') rounds.push({ offer: r, answered: [] })
        else if ((r.type === 'bid' || r.type === 'decline') && rounds.length > 0) rounds[rounds.length - 1].answered.push(...(r.body.bids ?? r.body.declines).map((m: any) => m.signer))
      }
      expect(rounds.length, 'offer records').to.be.at.least(1)
      for (const { offer, answered } of rounds) {
        if (offer.body.invited == null) continue // an open call (the book had just been changed by a strike): allowed
        const invited = new Set<string>(offer.body.invited)
        expect(invited.size).to.be.at.least(seats).and.at.most(seats + INVITE_UNPROVEN + INVITE_EXPLORE)
        for (const p of answered) expect(invited.has(p), `${p} answered without an invitation`).to.equal(true)
      }
      // the first round is the one counted: invited, with the cheapest provider among the invitees
      const first = rounds[0].offer
      if (first.body.invited == null) continue
      invitedRounds++
      expect(new Set(first.body.invited).has(providers[0].peerId)).to.equal(true)
      // it wins: the round waits for a cheaper invitee (up to INVITE_CHEAPER_WAIT_MS) unless this loaded
      // machine held its answer longer still. Won = awarded first: while it has no standing its run
      // goes beside a proven provider's check, and the job settles on whichever of them agrees first
      if (view.attempts[0]?.provider === providers[0].peerId) cheapestWon++
    }
    expect(invitedRounds, 'rounds sent as invitations').to.be.at.least(5)
    expect(cheapestWon, 'rounds won by the cheapest provider').to.be.at.least(4)

    // a newcomer asking less than everyone, never heard of by the requester
    const newcomer = await startNodeProcess(['--bootstrap', boot, '--price', '1'], { timeoutMs: 120_000 })
    const readyAt = Date.now()
    // its first jobs are counted from when the requester has heard of it (its advert crossed the mesh)
    await waitFor(async () => (await advertised()).some(p => p.peerId === newcomer.peerId), 60_000, 100)
    const heardMs = Date.now() - readyAt
    let wonAt = -1
    let last: any
    for (let i = 0; i < 20 && wonAt < 0; i++) {
      const { id, view } = await submitAndWait(requester)
      expect(view.status).to.equal('completed')
      last = { id, view }
      if (view.attempts[0]?.provider === newcomer.peerId) wonAt = i + 1
    }
    process.stdout.write(`      the newcomer (ask 1) was in the requester's book ${heardMs} ms after it was ready and won job ${wonAt} after that\n`)
    if (wonAt < 0) {
      const entry = ((await getJson(`${requester.gatewayUrl}/v1/providers`)).body as any[]).find(p => p.peerId === newcomer.peerId)
      const records = (await getJson(`${requester.gatewayUrl}/v1/ledger?job=${last.id}`)).body.records as any[]
      // an award it won and lost (a handover from it) says why, e.g. silent past lostAfterMs on a loaded machine
      const handovers = ((await getJson(`${requester.gatewayUrl}/v1/ledger?type=handover`)).body.records as any[]).filter(r => r.body.from === newcomer.peerId).map(r => r.body.reason)
      expect.fail(`the newcomer never won: handovers from it ${JSON.stringify(handovers)}; its book entry ${JSON.stringify(entry)}; the last job's bids ${JSON.stringify(last.view.bids)} and offers ${JSON.stringify(records.filter(r => r.type === 'offer').map(r => r.body.invited ?? 'open call'))}`)
    }
  })
})
