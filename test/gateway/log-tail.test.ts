/**
 * The gateway's live-log tails (src/gateway/log-tail.ts) on a stand-in market: what a late
 * subscriber is replayed, for how long after a job ends, and what goes first at the cap.
 */
import { expect } from 'chai'
import { EventEmitter } from 'node:events'
import { LogTails } from '../../src/gateway/log-tail.js'
import type { JobEvent, LogEvent, Market } from '../../src/auction/index.js'

function fakeMarket (): { market: Market, ended: Set<string>, steps: Map<string, JobEvent[]>, log: (jobId: string, text: string) => void, step: (jobId: string, type: string) => void, done: (jobId: string) => void } {
  const events = new EventEmitter()
  const ended = new Set<string>()
  const steps = new Map<string, JobEvent[]>()
  const market = { events, isTerminal: (id: string) => ended.has(id), heldEventCount: (id: string) => steps.get(id)?.length ?? 0 } as unknown as Market
  const step = (jobId: string, type: string): void => {
    const list = steps.get(jobId) ?? []
    list.push({ type, jobId, ts: Date.now() } as unknown as JobEvent)
    steps.set(jobId, list)
  }
  const log = (jobId: string, text: string): void => {
    events.emit('log', { type: 'log', jobId, ts: Date.now(), stream: 'stdout', text, attempt: 0, provider: 'p' } as unknown as LogEvent)
  }
  const done = (jobId: string): void => { ended.add(jobId); events.emit('done', jobId) }
  return { market, ended, steps, log, step, done }
}

const texts = (tails: LogTails, id: string): string => tails.get(id).map(e => e.text).join('')

/** Tails started on `market` for the length of `body`, stopped after it. */
async function withTails (market: Market, opts: ConstructorParameters<typeof LogTails>[1], body: (tails: LogTails) => void | Promise<void>): Promise<void> {
  const tails = new LogTails(market, opts)
  tails.start()
  try {
    await body(tails)
  } finally {
    tails.stop()
  }
}

describe('gateway: live-log tails', () => {
  it('keeps an ended job\'s tail for lingerMs, then drops it; nothing is added after the end', async () => {
    const m = fakeMarket()
    await withTails(m.market, { lingerMs: 150 }, async (tails) => {
      m.log('a', 'one\n')
      m.done('a')
      m.log('a', 'late\n')
      expect(texts(tails, 'a')).to.equal('one\n')
      await new Promise(resolve => setTimeout(resolve, 300))
      expect(tails.get('a')).to.deep.equal([])
      expect(tails.size().jobs).to.equal(0)
    })
  })

  it('at the cap, an ended job\'s tail goes before a running one\'s', async () => {
    const m = fakeMarket()
    await withTails(m.market, { maxJobs: 2, lingerMs: 60_000 }, (tails) => {
      m.log('running', 'r\n')
      m.log('finished', 'f\n')
      m.done('finished')
      m.log('new', 'n\n')
      expect(texts(tails, 'running')).to.equal('r\n')
      expect(texts(tails, 'new')).to.equal('n\n')
      expect(tails.get('finished')).to.deep.equal([])
      // no ended tail left: the oldest goes
      m.log('newer', 'x\n')
      expect(tails.get('running')).to.deep.equal([])
      expect(tails.size().jobs).to.equal(2)
    })
  })

  it('replays each log event where it came among the job\'s steps, whatever their timestamps', async () => {
    const m = fakeMarket()
    await withTails(m.market, {}, (tails) => {
      for (const t of ['announced', 'awarded', 'running']) m.step('j', t)
      m.log('j', 'a\n')
      m.log('j', 'b\n')
      m.step('j', 'result')
      m.step('j', 'settled')
      // the log and the result share a millisecond or not: the order is the order they came in
      const steps = m.steps.get('j') as JobEvent[]
      for (const e of steps) e.ts = 1000
      expect(tails.replay('j', steps).map(e => e.type === 'log' ? `log:${(e as LogEvent).text.trim()}` : e.type)).to.deep.equal(['announced', 'awarded', 'running', 'log:a', 'log:b', 'result', 'settled'])
      expect(tails.replay('none', steps).map(e => e.type)).to.deep.equal(['announced', 'awarded', 'running', 'result', 'settled'])
    })
  })
})
