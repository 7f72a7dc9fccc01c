/**
 * Balances and reputation, derived from receipts and from what this node saw
 * itself (losses, mismatches). Nothing here is trusted input: receipts are
 * verified before they are applied and each is counted once.
 *
 * Bad marks are forgiven with time: each one weighs into `penalty`, which halves
 * every `forgiveHalfLifeMs`, so a provider that crashed and came back is heard
 * again and can earn its standing back; completed jobs stay. See trust.ts for
 * how the score decides who is awarded.
 */
import { messageId, type Signed } from '../crypto/index.js'
import type { Receipt } from './protocol/messages.js'
import { FORGIVE_HALF_LIFE_MS } from './constants.js'
import { SeenSet } from './protocol/gossip.js'

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
  /** the weight of the bad marks still remembered (failed, lost, 3 × mismatched), halving every half-life */
  penalty: number
  /** completed − penalty */
  score: number
}

export interface ReputationOptions {
  /** bad marks lose half their weight in this time (default {@link FORGIVE_HALF_LIFE_MS}) */
  forgiveHalfLifeMs?: number
  /** clock (tests) */
  now?: () => number
}


/** Peers whose standing is kept (a table entry is ≈ 200 bytes). */
const MAX_PEERS = 50_000
/** Receipt ids remembered to count each receipt once: those applied firsthand, and those only heard. */
const MAX_APPLIED_RECEIPTS = 200_000
const MAX_HEARD_RECEIPTS = 100_000

/** Weights of the score: a mismatch (a wrong answer) costs more than a crash. */
const WEIGHTS = { completed: 1, failed: 1, lost: 1, mismatched: 3 }

interface Entry extends PeerStanding {
  /** when `penalty` was last brought up to date */
  penaltyAt: number
}

export class Reputation {
  private readonly peers = new Map<string, Entry>()
  private readonly applied = new SeenSet(MAX_APPLIED_RECEIPTS)
  private readonly heard = new SeenSet(MAX_HEARD_RECEIPTS)
  private readonly halfLifeMs: number
  private readonly now: () => number

  constructor (opts: ReputationOptions = {}) {
    this.halfLifeMs = opts.forgiveHalfLifeMs ?? FORGIVE_HALF_LIFE_MS
    this.now = opts.now ?? Date.now
  }

  private standing (peerId: string): Entry {
    let s = this.peers.get(peerId)
    if (s == null) {
      s = { peerId, completed: 0, failed: 0, lost: 0, mismatched: 0, earned: 0, spent: 0, heardPaid: 0, heardFailed: 0, penalty: 0, score: 0, penaltyAt: this.now() }
      this.peers.set(peerId, s)
      // gossiped receipts can name any key: keep the table bounded (oldest entry out first)
      if (this.peers.size > MAX_PEERS) this.peers.delete(this.peers.keys().next().value as string)
    }
    return s
  }

  /** Bring the penalty's decay up to now and recompute the score. */
  private rescore (s: Entry): Entry {
    const now = this.now()
    if (s.penalty > 0 && now > s.penaltyAt) {
      s.penalty *= 0.5 ** ((now - s.penaltyAt) / this.halfLifeMs)
      if (s.penalty < 1e-3) s.penalty = 0
    }
    s.penaltyAt = now
    s.score = s.completed * WEIGHTS.completed - s.penalty
    return s
  }

  record (peerId: string, kind: 'failed' | 'lost' | 'mismatched'): void {
    const s = this.rescore(this.standing(peerId))
    s[kind]++
    s.penalty += WEIGHTS[kind]
    this.rescore(s)
  }

  /**
   * Apply a (verified) receipt once. `firsthand` receipts are ours (we signed them, or we are the
   * provider they pay); they move scores and balances. Receipts heard on gossip only count in
   * `heardPaid`/`heardFailed`: any key can sign a receipt naming any provider, so hearsay must not
   * decide who may bid. The same receipt often comes both ways (a provider gets it on the award
   * channel and on gossip, in either order): heard first, it still counts when it comes firsthand;
   * applied firsthand, it is not counted as heard again. `id` is its {@link messageId} when known.
   */
  applyReceipt (receipt: Signed<Receipt>, firsthand = true, id = messageId(receipt)): boolean {
    if (firsthand ? !this.applied.add(id) : this.applied.has(id) || !this.heard.add(id)) return false
    const r = receipt.payload
    const provider = this.standing(r.provider)
    if (!firsthand) {
      if (r.status === 'paid') provider.heardPaid++
      else if (r.status === 'failed') provider.heardFailed++
      return true
    }
    const requester = this.standing(r.requester)
    this.rescore(provider)
    if (r.status === 'paid') {
      provider.completed++
      provider.earned += r.price
      requester.spent += r.price
    } else if (r.status === 'failed') {
      provider.failed++
      provider.penalty += WEIGHTS.failed
    }
    this.rescore(provider)
    return true
  }

  /** completed − the penalty still remembered (0 for a peer never seen) */
  score (peerId: string): number {
    const s = this.peers.get(peerId)
    return s == null ? 0 : this.rescore(s).score
  }

  get (peerId: string): PeerStanding {
    return view(this.rescore(this.standing(peerId)))
  }

  /** Standing of a peer without adding it to the table (a stranger's standing is all zeros). */
  peek (peerId: string): PeerStanding {
    const s = this.peers.get(peerId)
    return s != null ? view(this.rescore(s)) : { peerId, completed: 0, failed: 0, lost: 0, mismatched: 0, earned: 0, spent: 0, heardPaid: 0, heardFailed: 0, penalty: 0, score: 0 }
  }

  all (): PeerStanding[] {
    return [...this.peers.values()].map(s => view(this.rescore(s)))
  }
}

function view (s: Entry): PeerStanding {
  const { penaltyAt: _, ...out } = s
  // rounded for display; the table keeps the exact values
  return { ...out, penalty: Math.round(s.penalty * 1000) / 1000, score: Math.round(s.score * 1000) / 1000 }
}
