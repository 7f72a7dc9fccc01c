import { expect } from 'chai'
import { RateBudget } from '../../src/auction/live-logs.js'
import { decodeFrame, encodeFrame, type Frame } from '../../src/auction/protocol/frames.js'
import { RefusedMessageError } from '../../src/auction/protocol/messages.js'
import { LIVE_LOG_FRAME_BYTES } from '../../src/auction/constants.js'
import { LiveLogSender } from '../../src/auction/provider/logs.js'

describe('live logs: budgets and frames', () => {
  it('a budget lets through its rate (one second of burst) and never more than its total', () => {
    const b = new RateBudget(1000, 2500, 0)
    expect(b.take(5000, 0)).to.equal(1000)
    expect(b.take(100, 0)).to.equal(0)
    expect(b.take(5000, 500)).to.equal(500)
    expect(b.take(5000, 10_000)).to.equal(1000)
    expect(b.exhausted).to.equal(true)
    expect(b.take(5000, 20_000)).to.equal(0)
  })

  it('log frames round-trip; a chunk over LIVE_LOG_FRAME_BYTES or a bad fd is refused', () => {
    const ok: Frame = { t: 'log', fd: 2, data: new Uint8Array([104, 105]), dropped: 3 }
    expect(decodeFrame(encodeFrame(ok))).to.deep.equal(ok)
    const big = encodeFrame({ t: 'log', fd: 1, data: new Uint8Array(LIVE_LOG_FRAME_BYTES + 1), dropped: 0 })
    expect(() => decodeFrame(big)).to.throw(RefusedMessageError).with.property('reason', 'bad-schema')
    const badFd = encodeFrame({ t: 'log', fd: 3 as 1, data: new Uint8Array(1), dropped: 0 })
    expect(() => decodeFrame(badFd)).to.throw(RefusedMessageError).with.property('reason', 'bad-schema')
  })

  it('the provider sends at most its total, in frames no larger than the limit, and says what it dropped', async () => {
    const sent: Frame[] = []
    const sender = new LiveLogSender({ bytesPerSec: 1_000_000, maxBytes: 40_000 }, async (f) => { sent.push(f) })
    for (let i = 0; i < 100; i++) sender.push(1, new Uint8Array(1000).fill(65))
    await sender.close()
    const frames = sent.filter((f): f is Extract<Frame, { t: 'log' }> => f.t === 'log')
    const bytes = frames.reduce((n, f) => n + f.data.length, 0)
    expect(bytes).to.equal(40_000)
    expect(frames.every(f => f.data.length <= LIVE_LOG_FRAME_BYTES)).to.equal(true)
    expect(frames.reduce((n, f) => n + f.dropped, 0)).to.equal(60_000)
  })
})
