/**
 * A block's bytes as the pieces they arrived in, or as one array.
 *
 * A block read off a channel spans several noise frames (a 256 KiB leaf is four or five of them).
 * Joining them costs a copy of every byte fetched and an allocation of the block's size, which
 * the collector then has to find: on a 2-core machine the fetching node's collector took as much
 * CPU as its main thread. So a fetched block stays in its pieces while it is hashed, written to
 * its pack and streamed on to a reader; it is joined only where one array is needed (a DAG node to
 * decode, a block read from memory before its write ends).
 */
import { concat } from 'uint8arrays/concat'

export type Chunks = Uint8Array | readonly Uint8Array[]

/** The pieces of `c`, in order. PURE. */
export const piecesOf = (c: Chunks): readonly Uint8Array[] => c instanceof Uint8Array ? [c] : c

/** How many bytes `c` holds. PURE. */
export function sizeOfChunks (c: Chunks): number {
  if (c instanceof Uint8Array) return c.length
  let n = 0
  for (const p of c) n += p.length
  return n
}

/** `c` as one array: itself when it is one piece, else a copy of its pieces joined. PURE. */
export function joined (c: Chunks): Uint8Array {
  if (c instanceof Uint8Array) return c
  if (c.length === 1) return c[0]
  return concat([...c], sizeOfChunks(c))
}

/** The bytes [from, to) of `c` as views of its pieces (nothing copied); empty pieces left out. PURE. */
export function rangeOf (c: Chunks, from: number, to: number): Uint8Array[] {
  const out: Uint8Array[] = []
  let pos = 0
  for (const p of piecesOf(c)) {
    const start = Math.max(from - pos, 0)
    const end = Math.min(to - pos, p.length)
    if (end > start) out.push(start === 0 && end === p.length ? p : p.subarray(start, end))
    pos += p.length
    if (pos >= to) break
  }
  return out
}
