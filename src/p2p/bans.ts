/**
 * Peers a node refuses for a while (GRAYLIST_BAN_MS): those whose gossip score fell below the
 * graylist threshold. The connection gater asks {@link PeerBans.has} for every connection in
 * either direction, so a banned peer can neither reconnect nor be dialled back; a ban ends by
 * itself, and the peer's score (kept an hour: scoring.ts) decides what happens then.
 */
import { MAX_BANNED_PEERS } from './constants.js'

export class PeerBans {
  /** peer → when its ban ends, oldest ban first */
  private readonly until = new Map<string, number>()

  constructor (private readonly max = MAX_BANNED_PEERS) {}

  /** Refuse `peerId` for `ms`. */
  ban (peerId: string, ms: number, now = Date.now()): void {
    this.until.delete(peerId)
    this.until.set(peerId, now + ms)
    if (this.until.size > this.max) this.until.delete(this.until.keys().next().value as string)
  }

  /** `peerId` is refused now. */
  has (peerId: string, now = Date.now()): boolean {
    const t = this.until.get(peerId)
    if (t == null) return false
    if (t > now) return true
    this.until.delete(peerId)
    return false
  }

  get size (): number { return this.until.size }
}
