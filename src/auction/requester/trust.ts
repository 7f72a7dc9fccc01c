/**
 * Trust: which bids may win an award, and how long a provider may hold a job, given what this
 * requester has seen of each provider itself. Pure functions; the requester feeds them its
 * {@link Reputation} and logs what they decided (the award record lists the eligible bids).
 *
 * A key costs nothing in an open network, so a provider this requester has never seen finish a
 * job (*unproven*) must not be able to sink one:
 *
 * - **One probation attempt per job.** While a proven provider still bids on the job, an unproven
 *   one can win only the job's first award that goes to a non-proven provider; once one such
 *   attempt was made (whatever its outcome), the remaining attempts go to proven bidders only.
 * - **A short leash.** A non-proven provider must deliver within the job's timeout plus
 *   {@link UNPROVEN_MARGIN_MS}, whatever start delay it bid; a proven one gets its estimated start
 *   plus the timeout plus {@link PROVEN_MARGIN_MS}.
 * - **Doubtful providers wait.** A provider with bad marks and no standing to outweigh them
 *   (penalty ≥ {@link PROBATION_MAX_PENALTY}) gets no probation while others can run the job; its
 *   marks halve every forgiveness half-life (see reputation.ts), so it is heard again later.
 * - **Nobody proven bids** (a new network, or every proven provider is busy): the job runs on the
 *   others — unproven before doubtful — so a fresh mesh never stalls.
 *
 * Inside the eligible set the market's rule is unchanged: lowest price, then earliest start, then
 * hash(jobId, provider); settlement is the uniform (second) price over the eligible bids.
 *
 * What an honest newcomer pays for its first job: it must rank first among the bids of a job that
 * has not had its probation attempt yet — i.e. ask less than the proven bidders (or tie and win the
 * tie-break) and less than any other unproven bidder — and then deliver within timeout + 3 s.
 */
import { PROBATION_MAX_PENALTY, PROVEN_MARGIN_MS, UNPROVEN_MARGIN_MS } from '../constants.js'

export { PROBATION_MAX_PENALTY, PROVEN_MARGIN_MS, UNPROVEN_MARGIN_MS }

export type Trust = 'proven' | 'unproven' | 'doubtful'

/** The part of a standing the trust rule reads (see PeerStanding). */
export interface TrustInput {
  completed: number
  /** weight of the bad marks still remembered (decays with time) */
  penalty: number
  /** completed − penalty */
  score: number
}

/**
 * proven: has completed work for us and its completions outweigh its remembered failures;
 * unproven: no standing, no (remaining) bad marks; doubtful: bad marks not outweighed.
 */
export function trustOf (s: TrustInput): Trust {
  if (s.completed > 0 && s.score > 0) return 'proven'
  if (s.penalty < PROBATION_MAX_PENALTY) return 'unproven'
  return 'doubtful'
}

/**
 * The bids that may win this attempt, in the order given (the winner rule's order; providers lost
 * in this job already removed). `tried`: providers awarded before in this job;
 * `probationUsed`: an earlier attempt of this job went to a provider that was not proven.
 * The winner is the first eligible bid whose provider is not in `tried`.
 */
export function eligibleBids<T extends { provider: string }> (ranked: readonly T[], trust: (provider: string) => Trust, tried: ReadonlySet<string>, probationUsed: boolean): T[] {
  const untried = ranked.filter(b => !tried.has(b.provider))
  if (untried.some(b => trust(b.provider) === 'proven')) {
    return ranked.filter(b => {
      const t = trust(b.provider)
      return t === 'proven' || (t === 'unproven' && !probationUsed)
    })
  }
  // nobody proven is left: run the job on the others, unproven before doubtful
  if (untried.some(b => trust(b.provider) === 'unproven')) return ranked.filter(b => trust(b.provider) !== 'doubtful')
  return [...ranked]
}

/** When an award must have brought a result, by the provider's trust. */
export function attemptDeadline (trust: Trust, awardedAt: number, estStartMs: number, timeoutMs: number): number {
  if (trust === 'proven') return awardedAt + estStartMs + timeoutMs + PROVEN_MARGIN_MS
  return awardedAt + timeoutMs + UNPROVEN_MARGIN_MS
}

/** Does this bid count toward the job's `minBids` (the early close of the bid window)? Only proven ones do. */
export function countsTowardMinBids (trust: Trust): boolean {
  return trust === 'proven'
}
