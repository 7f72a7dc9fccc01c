/**
 * The CID the market names blobs and output files by (CIDv1, raw codec,
 * sha2-256, base32 lower case: `bafkrei…`), computed with Web Crypto so the
 * client needs no dependency and runs wherever `fetch` does.
 */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'

function base32 (bytes: Uint8Array): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5) { out += ALPHABET[(value >>> (bits - 5)) & 31]; bits -= 5 }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31]
  return out
}

/** CIDv1 raw sha2-256 of `bytes`, as the market writes it. */
export async function cidOfRaw (bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>))
  // version 1, codec raw (0x55), multihash sha2-256 (0x12) of 32 bytes (0x20)
  const cid = new Uint8Array(4 + digest.length)
  cid.set([0x01, 0x55, 0x12, 0x20])
  cid.set(digest, 4)
  return 'b' + base32(cid)
}

/** A CIDv1 with the raw codec and sha2-256 (`bafkrei…`): the sha256 of the bytes themselves, checkable with {@link cidOfRaw}. */
export function isRawCid (cid: string): boolean {
  return /^bafkrei[a-z2-7]{52}$/.test(cid)
}
