/**
 * Content ids are kept by the thousand (jobs held, receipts seen, gossip
 * replay checks): each must cost about its length in memory, not the chain
 * of string pieces the CID encoder builds it from.
 */
import { expect } from 'chai'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { cidOfValue, messageIdOfEncoded } from '../../src/crypto/index.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function heapAfterGc (): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

describe('crypto: content ids in memory', () => {
  it('an id kept in a set costs a few hundred bytes at most (a flat string, not ~50 concatenated pieces)', () => {
    const n = 20_000
    const keep = new Set<string>()
    const before = heapAfterGc()
    for (let i = 0; i < n; i++) {
      keep.add(cidOfValue({ i }))
      keep.add(messageIdOfEncoded(new Uint8Array([i & 0xff, i >> 8, 1])))
    }
    const perId = (heapAfterGc() - before) / keep.size
    expect(keep.size).to.be.above(n)
    // measured: ~130 bytes flat (id and set entry), ~1,600 as the encoder's pieces
    expect(perId).to.be.below(400)
  })
})
