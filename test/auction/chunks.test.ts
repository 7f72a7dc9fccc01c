/**
 * A block's bytes as the pieces they arrived in (src/auction/chunks.ts): sized, joined and cut
 * into ranges without copying, whatever the pieces look like.
 */
import { expect } from 'chai'
import { joined, piecesOf, rangeOf, sizeOfChunks } from '../../src/auction/chunks.js'

const bytes = (...xs: number[]): Uint8Array => Uint8Array.from(xs)
const flat = (pieces: Uint8Array[]): number[] => pieces.flatMap(p => [...p])

describe('auction: chunks', () => {
  const pieces = [bytes(0, 1, 2), bytes(), bytes(3), bytes(4, 5, 6, 7)]

  it('sizes and joins pieces; one array (or one piece) is itself, not a copy', () => {
    expect(sizeOfChunks(pieces)).to.equal(8)
    expect([...joined(pieces)]).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7])
    const one = bytes(9, 9)
    expect(joined(one)).to.equal(one)
    expect(joined([one])).to.equal(one)
    expect(piecesOf(one)).to.deep.equal([one])
    expect(sizeOfChunks([])).to.equal(0)
    expect(joined([])).to.have.length(0)
  })

  it('cuts any range across pieces into views of them: every [from, to) of the bytes, nothing empty', () => {
    for (let from = 0; from <= 8; from++) {
      for (let to = from; to <= 10; to++) {
        const got = rangeOf(pieces, from, to)
        expect(flat(got), `[${from}, ${to})`).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7].slice(from, to))
        expect(got.every(p => p.length > 0)).to.equal(true)
      }
    }
    // views, not copies: a whole piece is the piece itself, a part shares its memory
    const [whole] = rangeOf(pieces, 4, 8)
    expect(whole).to.equal(pieces[3])
    const [part] = rangeOf(pieces, 1, 2)
    expect(part.buffer).to.equal(pieces[0].buffer)
  })
})
