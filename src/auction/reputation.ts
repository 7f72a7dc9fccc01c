/**
 * Balances and reputation, derived from receipts and from what this node saw
 * itself (losses, mismatches). Nothing here is trusted input: receipts are
 * verified before they are applied and each is counted once.
 */
import { messageId, type Signed } from '../crypto/index.js'
import type { Receipt } from './protocol/messages.js'

export interface PeerStanding {
  peerId: string
  completed: number
  failed: number
  lost: number
  mismatched: number
  /** credits earned as a provider */
  earned: number
  /** credits spent as a requester */
  spent: number
  /** receipts about this peer heard on gossip (informational; not in the score) */
  heardPaid: number
  heardFailed: number
  score: number
}

/** Peers whose standing is kept (a table entry is ≈ 200 bytes). */
const MAX_PEERS = 50_000
/** Receipt ids remembered to count each receipt once. */
const MAX_SEEN_RECEIPTS = 200_000

/** Weights of the score: a mismatch (a wrong answer) costs more than a crash. */
const WEIGHTS = { completed: 1, failed: -1, lost: -1, mismatched: -3 }

export class Reputation {
  private readonly peers = new Map<string, PeerStanding>()
  private readonly seen = new Set<string>()

  private standing (peerId: string): PeerStanding {
    let s = this.peers.get(peerId)
    if (s == null) {
      s = { peerId, completed: 0, failed: 0, lost: 0, mismatched: 0, earned: 0, spent: 0, heardPaid: 0, heardFailed: 0, score: 0 }
      this.peers.set(peerId, s)
      // gossiped receipts can name any key: keep the table bounded (oldest entry out first)
      if (this.peers.size > MAX_PEERS) this.peers.delete(this.peers.keys().next().value as string)
    }
    return s
  }

  private rescore (s: PeerStanding): void {
    s.score = s.completed * WEIGHTS.completed + s.failed * WEIGHTS.failed + s.lost * WEIGHTS.lost + s.mismatched * WEIGHTS.mismatched
  }

  record (peerId: string, kind: 'failed' | 'lost' | 'mismatched'): void {
    const s = this.standing(peerId)
    s[kind]++
    this.rescore(s)
  }

  /**
   * Apply a (verified) receipt once. `firsthand` receipts are ours (we signed them, or we are the
   * provider they pay); they move scores and balances. Receipts heard on gossip only count in
   * `heardPaid`/`heardFailed`: any key can sign a receipt naming any provider, so hearsay must not
   * decide who may bid.
   */
  applyReceipt (receipt: Signed<Receipt>, firsthand = true): boolean {
    const id = messageId(receipt)
    if (this.seen.has(id)) return false
    this.seen.add(id)
    if (this.seen.size > MAX_SEEN_RECEIPTS) this.seen.delete(this.seen.values().next().value as string)
    const r = receipt.payload
    const provider = this.standing(r.provider)
    if (!firsthand) {
      if (r.status === 'paid') provider.heardPaid++
      else if (r.status === 'failed') provider.heardFailed++
      return true
    }
    const requester = this.standing(r.requester)
    if (r.status === 'paid') {
      provider.completed++
      provider.earned += r.price
      requester.spent += r.price
    } else if (r.status === 'failed') {
      provider.failed++
    }
    this.rescore(provider)
    return true
  }

  score (peerId: string): number {
    return this.peers.get(peerId)?.score ?? 0
  }

  get (peerId: string): PeerStanding {
    return { ...this.standing(peerId) }
  }

  all (): PeerStanding[] {
    return [...this.peers.values()].map(s => ({ ...s }))
  }
}
