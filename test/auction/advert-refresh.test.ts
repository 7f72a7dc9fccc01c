/**
 * Advert refreshes are jittered: providers started in the same second drift apart instead of
 * refreshing together forever (each refresh otherwise a burst of every advert to every node).
 */
import { expect } from 'chai'
import { ADVERT_REFRESH_JITTER, ADVERT_REFRESH_MS, ADVERT_TTL_MS } from '../../src/auction/constants.js'
import { advertRefreshDelay } from '../../src/auction/provider/advert.js'

describe('advert refresh', function () {
  const lo = ADVERT_REFRESH_MS * (1 - ADVERT_REFRESH_JITTER)
  const hi = ADVERT_REFRESH_MS * (1 + ADVERT_REFRESH_JITTER)

  it('waits ADVERT_REFRESH_MS ± the jitter, across the whole range', () => {
    expect(advertRefreshDelay(() => 0)).to.equal(lo)
    expect(advertRefreshDelay(() => 0.5)).to.equal(ADVERT_REFRESH_MS)
    expect(advertRefreshDelay(() => 1)).to.equal(hi)
    const draws = Array.from({ length: 2000 }, () => advertRefreshDelay())
    expect(Math.min(...draws)).to.be.at.least(lo)
    expect(Math.max(...draws)).to.be.at.most(hi)
    // spread over the range, not one value: the lowest and highest tenth are both drawn
    expect(draws.some(d => d < lo + (hi - lo) / 10)).to.equal(true)
    expect(draws.some(d => d > hi - (hi - lo) / 10)).to.equal(true)
  })

  it('two late refreshes still fall inside an advert\'s lifetime', () => {
    expect(2 * hi).to.be.below(ADVERT_TTL_MS)
  })

  it('100 providers started in the same millisecond are seconds apart by their tenth refresh', () => {
    // each provider's refresh times: the sum of its draws (the real timers chain the same way)
    const at = Array.from({ length: 100 }, () => Array.from({ length: 10 }, () => advertRefreshDelay()).reduce((a, b) => a + b, 0))
    const spreadMs = Math.max(...at) - Math.min(...at)
    // without the jitter every provider refreshes at 600,000 ms exactly (spread 0)
    expect(spreadMs).to.be.above(10_000)
  })
})
