/**
 * Gossip peer scoring: how a peer that forwards rejected messages loses its
 * place in the mesh.
 *
 * gossipsub counts invalid deliveries (a validator answered `reject`) only on
 * topics that have score parameters; with none, 2,000 rejected messages left
 * an attacker at score 0, in the mesh. Every topic a Mercato node subscribes
 * to is scored ({@link scoreTopic}, called by `subscribe`), so the p2p layer
 * needs no list of the auction's or the ledger's topic names.
 *
 * Per topic (weights per message, decays per second):
 * - invalid deliveries: −1 × n² (n decays by 1 % a second: about a minute of
 *   memory). With positive score capped at +10, ten rejected messages take a
 *   peer below the graylist threshold (−80): everything it sends is dropped
 *   unread. One rejected message (a version skew, say) costs −1: out of our
 *   mesh for that topic, nothing more.
 * - first deliveries: +1 each, decaying by 10 % a second, capped at 10; time in
 *   mesh: +0.01 per second, capped at +3. Honest forwarders are never
 *   negative however fast they gossip: no positive component can go below 0.
 * - mesh delivery rate and mesh failure penalties: off. Mercato's topics are
 *   bursty and often quiet (heads every 30 s, equivocation proofs almost never);
 *   a delivery-rate floor would push honest peers negative in every quiet spell.
 *
 * Thresholds: below 0 a peer leaves our meshes at the next heartbeat; −10 no
 * gossip (IHAVE) to or from it; −50 we do not publish to it; −80 graylisted,
 * and then disconnected and refused for a while (bans.ts, GRAYLIST_BAN_MS).
 */
import { allowEntries } from './multiaddr.js'
import { createTopicScoreParams, type PeerScoreParams, type PeerScoreThresholds, type TopicScoreParams } from '@libp2p/gossipsub/score'

/** Score parameters of every Mercato topic (see the module doc for the reasons). */
export const TOPIC_SCORE_PARAMS: TopicScoreParams = createTopicScoreParams({
  topicWeight: 1,
  timeInMeshWeight: 0.01,
  timeInMeshQuantum: 1000,
  timeInMeshCap: 300,
  firstMessageDeliveriesWeight: 1,
  firstMessageDeliveriesDecay: 0.9,
  firstMessageDeliveriesCap: 10,
  meshMessageDeliveriesWeight: 0,
  meshFailurePenaltyWeight: 0,
  invalidMessageDeliveriesWeight: -1,
  invalidMessageDeliveriesDecay: 0.99
})

export const SCORE_THRESHOLDS: PeerScoreThresholds = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
  // peer exchange is off; a peer needs a sustained record before we would trust its peer lists
  acceptPXThreshold: 10,
  // graft better peers when the mesh median falls this low (positive scores reach +13 at most)
  opportunisticGraftThreshold: 5
}

/** IP addresses (from `/ip4/A` or `/ip6/A` allow-list entries) exempt from the IP-colocation penalty. */
export function colocationWhitelist (allow: string[]): Set<string> {
  return new Set(allowEntries(allow).filter(e => e.prefix == null).map(e => e.address))
}

/** The peer-score parameters of a node; topics are added as it subscribes ({@link scoreTopic}). */
export function peerScoreParams (allow: string[]): Partial<PeerScoreParams> {
  return {
    topics: {},
    // positive topic score is worth little: an attacker cannot bank credit to spend on rejected messages
    topicScoreCap: 10,
    // many nodes behind one address look like Sybils, except addresses the operator vouches for (p2p.allow)
    IPColocationFactorWhitelist: colocationWhitelist(allow),
    // keep a departed peer's score for an hour: reconnecting does not wash it
    retainScore: 3600 * 1000
  }
}

/** The parts of gossipsub's implementation that scoring reads (its exported interface is narrower). */
export interface ScoredPubsub {
  score: { params: PeerScoreParams }
  getScore: (peerId: string) => number
  getMeshPeers?: (topic: string) => string[]
}

/** Give `topic` Mercato's score parameters, so rejected messages on it count against their forwarder. */
export function scoreTopic (pubsub: unknown, topic: string): void {
  const topics = (pubsub as ScoredPubsub).score?.params?.topics
  if (topics != null && topics[topic] == null) topics[topic] = { ...TOPIC_SCORE_PARAMS }
}

/** A peer's current gossip score (0 for a peer gossipsub does not know). */
export function gossipScore (pubsub: unknown, peerId: string): number {
  const p = pubsub as ScoredPubsub
  return typeof p.getScore === 'function' ? p.getScore(peerId) : 0
}
