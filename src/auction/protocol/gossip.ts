/**
 * What a batched market topic (`mercato/jobs/1`, `mercato/receipts/1`) lets
 * through, on every node, before anything else sees a message:
 *
 * - **Replays.** A batch `{ b: [...] }` gets a new gossip id whenever it is
 *   re-wrapped, so the gossip layer's own duplicate check does not see a
 *   captured item sent again. Each item is named by its own id (the CID of the
 *   signed envelope) and remembered once checked: a batch whose items are all
 *   known is ignored (not verified, delivered or forwarded again), a batch that
 *   holds one item twice is rejected, and known items in a mixed batch are
 *   neither verified again nor delivered again.
 * - **Floods from one key.** Items are counted per signer in a token bucket;
 *   past it, the batch is ignored (not forwarded), so one key cannot make the
 *   mesh verify, store and answer without bound. The bucket is looked at before
 *   any signature is checked (an item is only charged to it once verified).
 * - **Floods through one peer.** Items are charged, before anything is computed for
 *   them (their ids, their signatures), to the peer that forwarded them
 *   ({@link GossipGateInit.perSource}, shared by the topics): a peer past its budget
 *   has its messages ignored, whatever keys it signs them with and whether it
 *   re-wraps known items or sends new ones.
 * - **Stale items.** An expired item is skipped before anything is computed for it, and a
 *   batch of nothing but items expired over STALE_GRACE_MS ago is rejected: an honest peer
 *   forwards only what it accepted, so it never sends those (the grace covers clock skew and
 *   late gossip), and resending them costs the sender its gossip score, not us a signature check.
 */
import { randomBytes } from 'node:crypto'
import { canonicalDecode, messageId, type Signed } from '../../crypto/index.js'
import type { RawTopicMessage, TopicVerdict } from '../../p2p/index.js'
import { checkSigned, RefusedMessageError, type Kind, type PayloadOf, type RefusalReason } from './messages.js'
import { GOSSIP_STALE_GRACE_MS, GOSSIP_VERIFY_PER_SOURCE_BURST, GOSSIP_VERIFY_PER_SOURCE_PER_SEC, GOSSIP_VERIFY_SOURCES } from '../constants.js'

/** A checked item and its id. */
export interface GossipItem<T> { id: string, m: Signed<T> }

/** Two random 32-bit seeds per process: which ids share a fingerprint cannot be worked out elsewhere. */
const SEEDS = new Uint32Array(randomBytes(8).buffer)

/**
 * A 53-bit fingerprint of an id (cyrb53: two 32-bit multiply-xor lanes over its characters, seeded
 * per process). Remembered ids are kept as fingerprints: a number costs about a third of what a
 * 59-character CID string does in a Set, and a new id is taken for one of 200,000 remembered ones
 * with odds of about 1 in 4 × 10^10. The ids remembered are hashes of signed messages, which
 * nobody can aim at a fingerprint without the seeds.
 */
export function fingerprint (id: string): number {
  let h1 = 0xdeadbeef ^ SEEDS[0]
  let h2 = 0x41c6ce57 ^ SEEDS[1]
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i)
    h1 = Math.imul(h1 ^ c, 2654435761)
    h2 = Math.imul(h2 ^ c, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507)
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507)
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return 4294967296 * (2097151 & h2) + (h1 >>> 0)
}

/** Ids remembered (as {@link fingerprint}s), oldest forgotten first. */
export class SeenSet {
  private readonly ids = new Set<number>()
  constructor (private readonly max: number) {}
  has (id: string): boolean { return this.ids.has(fingerprint(id)) }
  /** Remember `id`; false when it was known already. */
  add (id: string): boolean {
    const fp = fingerprint(id)
    if (this.ids.has(fp)) return false
    this.ids.add(fp)
    if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value as number)
    return true
  }

  get size (): number { return this.ids.size }
}

/** One token bucket per key (bounded: the least recently refilled keys are forgotten first). */
export class KeyedRateLimit {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()
  constructor (private readonly perSec: number, private readonly burst: number, private readonly maxKeys: number) {}

  /** `key`'s bucket holds `n` tokens now (nothing is taken, nothing remembered). */
  has (key: string, n: number, now = Date.now()): boolean {
    const b = this.buckets.get(key)
    return b == null ? n <= this.burst : Math.min(this.burst, b.tokens + (now - b.at) * this.perSec / 1000) >= n
  }

  /** Take `n` tokens from `key`'s bucket; false (and nothing taken) when it has fewer. */
  take (key: string, n: number, now = Date.now()): boolean {
    let b = this.buckets.get(key)
    if (b == null) {
      b = { tokens: this.burst, at: now }
    } else {
      this.buckets.delete(key) // re-inserted below: the map stays ordered by last use
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perSec / 1000)
      b.at = now
    }
    this.buckets.set(key, b)
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string)
    if (b.tokens < n) return false
    b.tokens -= n
    return true
  }
}

export interface GossipGateInit {
  /** item ids remembered for replay checks */
  maxSeen: number
  /** items per second per signer, and the burst allowed */
  rate?: { perSec: number, burst: number, maxKeys: number }
  /** count a refusal (by reason) */
  count: (reason: RefusalReason) => void
  /** our own PeerId: our own items coming back from the network are ignored (our own delivery to ourselves, through the loopback, is not) */
  self?: string
  /**
   * Items (unexpired, known or new) taken per forwarding peer, charged before anything is computed
   * for them; one budget shared by every topic's gate (see {@link gossipSourceBudget}). Our own
   * messages are not charged.
   */
  perSource?: KeyedRateLimit
}

/**
 * The decoder of a batched topic of one kind. `decode` answers accept / ignore / reject; what it
 * accepts is the new items only (each checked once: size, encoding, schema, signature,
 * freshness), handed to the topic's handler, which neither decodes nor verifies again.
 */
export class GossipGate<K extends Kind> {
  private readonly seen: SeenSet
  private readonly rate?: KeyedRateLimit
  readonly ignored = { replay: 0, rate: 0, source: 0 }

  constructor (private readonly kind: K, private readonly maxBytes: number, private readonly maxItems: number, private readonly init: GossipGateInit) {
    this.seen = new SeenSet(init.maxSeen)
    if (init.rate != null) this.rate = new KeyedRateLimit(init.rate.perSec, init.rate.burst, init.rate.maxKeys)
  }

  decode (msg: RawTopicMessage): TopicVerdict<Array<GossipItem<PayloadOf<K>>>> {
    let items: Array<GossipItem<PayloadOf<K>>> | undefined
    try {
      items = this.check(msg)
    } catch (err: any) {
      this.init.count(err instanceof RefusedMessageError ? err.reason : 'bad-schema')
      return { result: 'reject' }
    }
    // over a budget (not verified), or every item known or expired: nothing new to deliver or forward
    if (items == null || items.length === 0) return { result: 'ignore' }
    const signer = items[0].m.signer
    // our own items coming back from a peer: nothing new for anyone
    if (signer === this.init.self && msg.from !== this.init.self) return { result: 'ignore' }
    if (this.rate != null && !this.rate.take(signer, items.length)) { this.ignored.rate++; return { result: 'ignore' } }
    for (const it of items) this.seen.add(it.id)
    return { result: 'accept', value: items }
  }

  /**
   * The same checks for an item that came another way (a direct offer): false when it is known
   * or its signer is over its rate; otherwise it is remembered and true.
   */
  admit (signer: string, id: string): boolean {
    if (this.seen.has(id)) { this.ignored.replay++; this.init.count('replay'); return false }
    if (this.rate != null && !this.rate.take(signer, 1)) { this.ignored.rate++; return false }
    this.seen.add(id)
    return true
  }

  /** The batch's new items, checked; undefined when a budget refused them before any was verified. */
  private check (msg: RawTopicMessage): Array<GossipItem<PayloadOf<K>>> | undefined {
    const { kind } = this
    const { data, from } = msg
    if (data.length > this.maxBytes) throw new RefusedMessageError('too-large', `${kind} batch: ${data.length} bytes exceeds ${this.maxBytes}`)
    let value: any
    try { value = canonicalDecode(data) } catch { throw new RefusedMessageError('bad-encoding', `${kind} batch: not canonical CBOR`) }
    const raw = value?.b
    if (!Array.isArray(raw) || raw.length === 0 || raw.length > this.maxItems || Object.keys(value).length !== 1) {
      throw new RefusedMessageError('bad-schema', `${kind} batch: expected { b: [1..${this.maxItems} items] }`)
    }
    const now = Date.now()
    // a batch holds one signer's items: past its rate, nothing is computed for them (ids, signatures)
    const claimed: unknown = raw[0]?.signer
    if (typeof claimed === 'string' && this.rate != null && !this.rate.has(claimed, 1, now)) { this.ignored.rate++; return undefined }
    // expired items: nothing to deliver, so nothing is computed for them (not even their ids)
    const live: any[] = []
    let stale = 0
    for (const item of raw) {
      const expires = item?.payload?.expires
      if (typeof expires !== 'number' || expires >= now) live.push(item)
      else if (expires < now - GOSSIP_STALE_GRACE_MS) stale++
    }
    if (stale === raw.length) throw new RefusedMessageError('expired', `${kind} batch: every item expired over ${GOSSIP_STALE_GRACE_MS} ms ago`)
    if (live.length === 0) return []
    // the forwarding peer's budget, for every item we compute anything for (an id, a signature)
    const budget = this.init.perSource
    if (budget != null && from !== this.init.self && !budget.take(from, live.length, now)) { this.ignored.source++; return undefined }
    const ids = new Set<string>()
    const fresh: Array<{ id: string, item: unknown }> = []
    let signer: string | undefined
    let replays = 0
    for (const item of live) {
      let id: string
      try { id = messageId(item) } catch { throw new RefusedMessageError('bad-encoding', `${kind} batch: an item cannot be encoded`) }
      if (ids.has(id)) throw new RefusedMessageError('replay', `${kind} batch: one item twice`)
      ids.add(id)
      if (typeof item?.signer === 'string') {
        if (signer == null) signer = item.signer
        else if (item.signer !== signer) throw new RefusedMessageError('bad-schema', `${kind} batch: items from more than one signer`)
      }
      // known: checked when first seen, delivered then; neither verified nor delivered again
      if (this.seen.has(id)) { replays++; continue }
      fresh.push({ id, item })
    }
    if (replays > 0) { this.ignored.replay += replays; this.init.count('replay') }
    if (fresh.length === 0) return []
    // the signer's rate for all of them, before any signature is checked (it is charged only for
    // verified items, in decode, so nobody can spend an honest key's)
    if (signer != null && this.rate != null && !this.rate.has(signer, fresh.length, now)) { this.ignored.rate++; return undefined }
    const out: Array<GossipItem<PayloadOf<K>>> = []
    for (const { id, item } of fresh) {
      try {
        out.push({ id, m: checkSigned(item, kind, { now }) })
      } catch (err) {
        if (err instanceof RefusedMessageError && err.reason === 'expired') continue
        throw err
      }
    }
    return out
  }
}

/** The budget of new gossip items verified per forwarding peer that a node's gates share (GOSSIP_VERIFY_PER_SOURCE_*). */
export function gossipSourceBudget (rate: { perSec: number, burst: number } = { perSec: GOSSIP_VERIFY_PER_SOURCE_PER_SEC, burst: GOSSIP_VERIFY_PER_SOURCE_BURST }): KeyedRateLimit {
  return new KeyedRateLimit(rate.perSec, rate.burst, GOSSIP_VERIFY_SOURCES)
}
