/**
 * The requester role: the driver of a job's life.
 *
 * It never decides what happens next itself. On every event (the bid window
 * closed, an award ended, a result was counted, a cancel, a restart) it asks
 * the pure planner (`plan.ts`) for the next step and runs it with the step
 * runners: `bidding.ts` (announce, collect answers), `award.ts` (award,
 * watch, hand over), `settle.ts` (results, receipts, mismatches),
 * `recover.ts` (rebuild from the log, status polls). `views.ts` builds what
 * the gateway shows.
 *
 * A job's path: submit → announce (bidding) → window closes → planner:
 * award → accept / heartbeats → result → planner: settle (or, on a loss,
 * handover → planner: runner-up, announce again, or fail).
 */
import { EventEmitter } from 'node:events'
import { cidOfValue } from '../../crypto/index.js'
import { InvalidInputError, JobStateError, QueueFullError } from '../../errors.js'
import { logger, type Logger } from '../../logger.js'
import { FINISHED_JOB_BYTES_IN_MEMORY, FINISHED_JOBS_IN_MEMORY, JOBS_TOPIC, MAX_EXTRA_RUNS, MAX_KNOWN_BIDDERS, MAX_QUEUE_TIMEOUT_MS } from '../constants.js'
import { Journal, MAX_JOB_NAME, type FinishedJob, type JobMeta } from '../protocol/journal.js'
import { checkConstraints, checkLabels } from '../../labels.js'
import { countInto, type Advert, type RefusalReason } from '../protocol/messages.js'
import { TERMINAL, type JobEvent, type JobEventType, type JobStatus, type JobView, type ResultView, type SubmitSpec } from '../types.js'
import { deafMs, isInFlight, liveness, next, type PlanConfig, type PlanEvent } from './plan.js'
import { buildSpec, declinesOf, newJob, planView, type Attempt, type RequesterConfig, type RequesterContext, type RequesterDeps, type RequesterJob } from './job.js'
import { Bidding } from './bidding.js'
import { Awards, end, withdraw } from './award.js'
import { Settlement } from './settle.js'
import { pollStatus, readUnfinished, rebuildJobs } from './recover.js'
import * as views from './views.js'
import { trustOf, type Trust } from './trust.js'
import { FinishedJobs, heldBytes, readFinishedFromLog, type HeldJobs } from './memory.js'
import { JobQueue } from './queue.js'
import { OutputPushes, type PushStats } from './push.js'
import { LruCache } from '../../lru.js'

export type { RequesterConfig, RequesterDeps } from './job.js'
export type { KnownProvider } from './views.js'
export type { HeldJobs } from './memory.js'
export type { PushStats } from './push.js'
export type { ListOptions } from './views.js'

/** The name, labels and constraints of a submitted job, checked (InvalidInputError / SelectorError naming the bad one). */
function jobMeta (input: SubmitSpec): JobMeta {
  const meta: JobMeta = {}
  if (input.name != null) {
    if (typeof input.name !== 'string' || input.name.length > MAX_JOB_NAME) throw new InvalidInputError(`name: a string of at most ${MAX_JOB_NAME} characters`, 'invalid-spec')
    meta.name = input.name
  }
  if (input.labels != null) meta.labels = checkLabels(input.labels)
  if (input.constraints != null) {
    const cs = checkConstraints(input.constraints)
    if (cs.length > 0) meta.constraints = cs
  }
  return meta
}

export class Requester {
  readonly events = new EventEmitter()
  readonly refused = new Map<RefusalReason, number>()
  private readonly jobs = new Map<string, RequesterJob>()
  private readonly probations = new Map<string, Attempt[]>()
  /** providers that bid on our jobs: their last ask and engines (the provider list; never the jobs scanned for it) */
  private readonly bidders = new LruCache<views.KnownBidder>(MAX_KNOWN_BIDDERS)
  /** submissions with an idempotency key under way, by the job id the key gives: a repeat waits for the first */
  private readonly keyed = new Map<string, Promise<JobView>>()
  private readonly deps: RequesterDeps
  private readonly cfg: RequesterConfig
  private readonly log: Logger
  private readonly ctx: RequesterContext
  private readonly bidding: Bidding
  private readonly settlement: Settlement
  private readonly awards: Awards
  /** output files our providers push while they import them (push.ts) */
  private readonly pushes: OutputPushes
  /** jobs waiting for a provider (queue.ts) */
  private readonly queue: JobQueue
  /** the finished jobs held in memory, oldest first (memory.ts) */
  private readonly finished: FinishedJobs
  private watchdog?: NodeJS.Timeout
  /** when the watchdog last ran, and how often it runs */
  private lastCheck = 0
  private readonly watchEveryMs: number
  private stopped = false

  constructor (deps: RequesterDeps) {
    this.deps = deps
    this.cfg = deps.config
    this.watchEveryMs = Math.max(10, Math.floor(this.cfg.heartbeatMs / 2))
    this.log = logger('auction:requester', { peerId: deps.signer.peerId })
    this.events.setMaxListeners(0)
    this.finished = new FinishedJobs({ maxJobs: this.cfg.finishedJobsInMemory ?? FINISHED_JOBS_IN_MEMORY, maxBytes: this.cfg.finishedJobBytesInMemory ?? FINISHED_JOB_BYTES_IN_MEMORY })
    const planConfig: PlanConfig = { maxAttempts: this.cfg.maxAttempts, maxExtraRuns: MAX_EXTRA_RUNS }
    const trust = (provider: string): Trust => provider === deps.signer.peerId ? 'proven' : trustOf(deps.reputation.peek(provider))
    this.ctx = {
      peerId: deps.signer.peerId,
      deps,
      cfg: this.cfg,
      log: this.log,
      journal: new Journal(deps.ledger),
      planConfig,
      network: deps.network,
      events: this.events,
      jobs: this.jobs,
      probations: this.probations,
      stopped: () => this.stopped,
      emit: (job, type, data) => { this.emit(job, type, data) },
      setStatus: (job, status, at) => { this.setStatus(job, status, at) },
      count: countInto(this.refused),
      // our own jobs on our own provider: we trust ourselves fully
      trust,
      // who may win an award: a provider whose probation is still in flight waits like a doubtful
      // one (it is still invited and may bid). Jobs that settle on their proven check do not wait
      // for a probation run, so without this one silent key took the probation of job after job
      awardTrust: (provider) => {
        const t = trust(provider)
        return t === 'unproven' && this.onProbation(provider) ? 'doubtful' : t
      },
      drive: async (job, event) => { await this.drive(job, event) },
      fail: async (job, reason, status) => { await this.fail(job, reason, status) },
      background: (job, p) => { this.background(job, p) },
      retire: (job) => { this.retire(job) },
      noteBid: (provider, price, engine) => {
        const known = this.bidders.get(provider)
        if (known != null) { known.lastAsk = price; known.engines.add(engine) } else this.bidders.set(provider, { lastAsk: price, engines: new Set([engine]) })
      }
    }
    this.bidding = new Bidding(this.ctx)
    this.settlement = new Settlement(this.ctx)
    this.awards = new Awards(this.ctx, this.settlement)
    this.pushes = new OutputPushes(this.ctx)
    this.queue = new JobQueue(this.ctx, async (job) => { await this.bidding.announce(job) })
  }

  get peerId (): string { return this.deps.signer.peerId }

  async start (): Promise<void> {
    await this.bidding.start()
    await this.pushes.start()
    this.lastCheck = Date.now()
    this.watchdog = setInterval(() => { this.checkHeartbeats() }, this.watchEveryMs)
    this.watchdog.unref()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.watchdog)
    this.queue.stop()
    for (const job of this.jobs.values()) {
      clearTimeout(job.biddingTimer)
      for (const a of job.attempts) a.channel?.abort(new Error('requester stopping'))
    }
    await this.pushes.stop()
    await this.bidding.stop()
  }

  /** Output pushes taken and refused, and their bytes (since start). */
  pushStats (): PushStats {
    return { ...this.pushes.stats }
  }

  // ---------------------------------------------------------------- the driver

  /** Ask the planner what follows `event` for this job, and do it. */
  private async drive (job: RequesterJob, event: PlanEvent): Promise<void> {
    if (this.stopped && event.type !== 'cancel') return
    const step = next(planView(job, this.ctx.awardTrust), event, this.ctx.planConfig)
    switch (step.kind) {
      case 'wait':
        return
      case 'announce':
        if (step.extraRun) job.extraRuns++
        job.round = step.round
        await this.bidding.announce(job)
        return
      case 'award':
        if (step.extraRun) job.extraRuns++
        // each award records its attempt before its first await: the next one sees it
        for (const { bid, price, trust, eligible } of step.awards) this.background(job, this.awards.award(job, bid, price, trust, eligible))
        return
      case 'settle':
        await this.settlement.settle(job, step.hash, step.agreeing, step.outvoted)
        return
      case 'fail':
        await this.fail(job, step.reason, step.status)
        return
      case 'cancel': {
        const at = Date.now()
        for (const i of step.withdraw) {
          const a = job.attempts[i]
          end(a, 'cancelled', undefined, at)
          withdraw(a.channel, 'cancelled')
        }
        job.closeBidding?.()
        this.setStatus(job, 'cancelled', at)
        this.emit(job, 'cancelled')
        await this.ctx.journal.ended(job.id, 'cancelled', at)
        this.retire(job)
        return
      }
      case 'poll':
        this.setStatus(job, 'awarded')
        for (const i of step.attempts) this.background(job, pollStatus(this.ctx, this.awards, this.settlement, job, job.attempts[i]))
        return
      case 'refuse':
        throw new JobStateError(step.reason)
      case 'queue':
        await this.queue.park(job)
    }
  }

  private async fail (job: RequesterJob, reason: string, status: 'failed' | 'no-bids' = 'failed'): Promise<void> {
    if (TERMINAL.has(job.status)) return
    job.error = reason
    const declines = declinesOf(job)
    this.setStatus(job, status)
    this.emit(job, status, { reason, declines })
    await this.ctx.journal.ended(job.id, status, job.completedAt ?? Date.now(), { reason, declines })
    this.retire(job)
  }

  /** Run a job step in the background; a failure fails the job instead of the process. */
  private background (job: RequesterJob, p: Promise<unknown>): void {
    p.catch(async (err) => {
      this.log.error({ err, jobId: job.id }, 'job step failed')
      await this.fail(job, `internal error: ${err?.message ?? err}`).catch(() => {})
    })
  }

  private emit (job: RequesterJob, type: JobEventType, data: Record<string, unknown> = {}): void {
    const event: JobEvent = { type, ts: Date.now(), jobId: job.id, ...data }
    job.events.push(event)
    this.events.emit('job', event)
  }

  private setStatus (job: RequesterJob, status: JobStatus, at = Date.now()): void {
    if (job.status === status) return
    if (job.status === 'queued') this.queue.remove(job)
    job.status = status
    if (TERMINAL.has(status)) {
      job.completedAt = at
      clearTimeout(job.biddingTimer)
      this.events.emit('done', job.id)
    }
  }

  /** Silent or late providers are suspect, then lost (plan.ts decides which). */
  /** Has `provider` a probation attempt in flight? (ended ones are forgotten on the way) */
  private onProbation (provider: string): boolean {
    const list = this.probations.get(provider)
    if (list == null) return false
    const live = list.filter(a => isInFlight(a.state))
    if (live.length === 0) this.probations.delete(provider)
    else if (live.length < list.length) this.probations.set(provider, live)
    return live.length > 0
  }

  private checkHeartbeats (): void {
    const now = Date.now()
    for (const p of this.probations.keys()) this.onProbation(p)
    // the time this node was deaf (its loop held past the check) is not counted as anyone's silence
    const deaf = deafMs(this.lastCheck, now, this.watchEveryMs)
    this.lastCheck = now
    for (const job of this.jobs.values()) {
      // a settled job's runs still in flight (a late replica, a probation run its check beat) are
      // watched to their end too: one that never delivers is lost, and marked, like any other
      if (job.status !== 'awarded' && job.status !== 'running' && job.status !== 'completed') continue
      for (const a of job.attempts) {
        if (job.status === 'completed' && !isInFlight(a.state)) continue
        if (deaf > 0 && isInFlight(a.state)) a.lastSeen = Math.min(now, a.lastSeen + deaf)
        const l = liveness(a, now, this.cfg)
        if (l.kind === 'lost') this.background(job, this.awards.lose(job, a, l.reason))
        else if (l.kind === 'suspect') {
          a.suspect = true
          if (job.status !== 'completed') this.emit(job, 'suspect', { provider: a.provider, silentMs: l.silentMs })
        }
      }
    }
  }

  // ---------------------------------------------------------------- submit, cancel, recover

  /** Validate a spec, log the job, announce it. Resolves once announced. */
  async submit (input: SubmitSpec): Promise<JobView> {
    if (input.idempotencyKey == null) return await this.submitNew(input)
    // the id follows from the key: the same key finds the same job, held or in the log
    const id = cidOfValue({ requester: this.peerId, idempotencyKey: input.idempotencyKey })
    const pending = this.keyed.get(id)
    if (pending != null) return await pending
    const held = this.jobs.get(id)
    if (held != null) return views.view(held)
    const p = (async () => {
      try {
        return views.viewFromLog(await this.fromLog(id))
      } catch (err: any) {
        if (err?.code !== 'job-not-found') throw err
        return await this.submitNew(input, id)
      }
    })()
    this.keyed.set(id, p)
    try { return await p } finally { this.keyed.delete(id) }
  }

  private async submitNew (input: SubmitSpec, keyedId?: string): Promise<JobView> {
    const spec = await buildSpec(input, this.deps.blobs)
    const maxPrice = input.maxPrice ?? this.cfg.defaultMaxPrice
    if (!Number.isFinite(maxPrice) || maxPrice < 0) throw new InvalidInputError('maxPrice must be a number ≥ 0', 'invalid-spec')
    const replicas = input.replicas ?? 1
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 15) throw new InvalidInputError('replicas must be an integer from 1 to 15', 'invalid-spec')
    const nonce = new Uint8Array(16)
    globalThis.crypto.getRandomValues(nonce)
    const createdAt = Date.now()
    const id = keyedId ?? cidOfValue({ requester: this.peerId, nonce, ts: createdAt })
    const meta = jobMeta(input)
    const queueTimeoutMs = input.queueTimeoutMs ?? this.cfg.queueTimeoutMs ?? 0
    if (!Number.isInteger(queueTimeoutMs) || queueTimeoutMs < 0 || queueTimeoutMs > MAX_QUEUE_TIMEOUT_MS) throw new InvalidInputError(`queueTimeoutMs must be an integer from 0 to ${MAX_QUEUE_TIMEOUT_MS}`, 'invalid-spec')
    // a job that may queue is refused while the queue is full (one that may not still fails fast)
    if (queueTimeoutMs > 0 && this.queue.full()) throw new QueueFullError(`the queue holds ${this.queue.size} jobs (auction.maxQueuedJobs ${this.queue.cap}); retry later, or submit with queueTimeoutMs 0`)
    const queueUntil = queueTimeoutMs > 0 ? createdAt + queueTimeoutMs : 0
    const job = newJob({ id, spec, maxPrice, replicas, minBids: Math.max(input.minBids ?? this.cfg.minBids, replicas), bidWindowMs: input.bidWindowMs ?? this.cfg.bidWindowMs, createdAt, round: 0, queueUntil, ...meta })
    this.jobs.set(id, job)
    // queued, not awaited: the offer record follows it in the same group commit, and the auction
    // does not close before both are written (see announce)
    job.logged = this.ctx.journal.submitted(id, spec, maxPrice, replicas, createdAt, meta, queueUntil)
    try {
      await this.bidding.announce(job)
    } catch (err: any) {
      // never announced (its offer is too large): the caller gets the error and no id, so the job
      // must not stay in memory as an unfinished job forever; the log says it failed
      this.jobs.delete(id)
      job.status = 'failed'
      // whoever waits for this id (a second submit with its idempotency key) hears that it is over
      this.events.emit('done', id)
      await this.ctx.journal.ended(id, 'failed', Date.now(), { reason: `not announced: ${err?.message ?? err}` }).catch(() => {})
      throw err
    }
    return views.view(job)
  }

  /**
   * A finished job whose end is in the log joins the finished jobs held; the oldest leave memory
   * while more than `finishedJobsInMemory` are held or they hold more than
   * `finishedJobBytesInMemory` (memory.ts). A job that left is read back from the log by id.
   */
  private retire (job: RequesterJob): void {
    if (job.retired === true || this.jobs.get(job.id) !== job) return
    job.retired = true
    // an ended attempt's award stream is closed: do not hold it (with its buffers and listeners)
    // for as long as the job is held; a replica still running keeps its own
    for (const a of job.attempts) if (!isInFlight(a.state)) a.channel = undefined
    for (const id of this.finished.add(job.id, heldBytes(job))) this.jobs.delete(id)
  }

  /** Cancel an unfinished job; 409 for a finished one (held or only in the log), 404 for an unknown one. */
  async cancel (id: string): Promise<JobView> {
    const job = this.jobs.get(id)
    if (job == null) {
      const done = await this.fromLog(id)
      throw new JobStateError(`job ${id} is already ${done.status}`)
    }
    await this.drive(job, { type: 'cancel' })
    return views.view(job)
  }

  /**
   * Rebuild unfinished jobs from the ledger: jobs still bidding are announced again; awarded jobs
   * ask their provider for status and fail over if it is gone. Resolves once every job has been
   * looked at.
   */
  async recover (): Promise<number> {
    const jobs = rebuildJobs(this.ctx, await readUnfinished(this.deps.ledger))
    for (const job of jobs) {
      this.jobs.set(job.id, job)
      this.emit(job, 'announced', { recovered: true })
      await this.drive(job, { type: 'recovered' }).catch(err => { this.log.error({ err, jobId: job.id }, 're-announce failed') })
    }
    return jobs.length
  }

  /**
   * A new advert in the provider book (a provider joined, or re-advertised after freeing a slot):
   * wake the queued jobs it can run (queue.ts). Returns how many were woken.
   */
  onAdvert (advert: Advert): number {
    const entry = this.deps.book?.get(advert.provider)
    return this.queue.wake(advert, entry ?? { advert, benchedUntil: 0 })
  }

  /** Jobs queued now, and the queue's cap and counters. */
  queueStats (): { size: number, cap: number, counts: JobQueue['counts'] } {
    return { size: this.queue.size, cap: this.queue.cap, counts: { ...this.queue.counts } }
  }

  // ---------------------------------------------------------------- views

  knownProviderList (): views.KnownProvider[] {
    return views.knownProviders(this.peerId, this.deps.network.topicPeers(JOBS_TOPIC), this.bidding.engineMap(), this.bidders.entries(), this.deps.book?.all() ?? [])
  }

  /** A job held in memory (unfinished, or among the recent finished ones); undefined otherwise. */
  peek (id: string): JobView | undefined {
    const job = this.jobs.get(id)
    return job != null ? views.view(job) : undefined
  }

  /** A job: from memory, or rebuilt from the log for a finished job no longer held (NotFoundError when unknown). */
  async get (id: string): Promise<JobView> {
    const job = this.jobs.get(id)
    if (job != null) return views.view(job)
    return views.viewFromLog(await this.fromLog(id))
  }

  /** A finished job's result: from memory or from the log; JobStateError while it has none. */
  async result (id: string): Promise<ResultView> {
    const job = this.jobs.get(id)
    if (job != null) return views.result(job)
    return views.resultFromLog(await this.fromLog(id))
  }

  /** Held jobs only: newest first. Older jobs are read by id. */
  list (opts: views.ListOptions = {}): JobView[] { return views.list(this.jobs, opts) }

  /** A job's events while it is held in memory; undefined when it is not. */
  heldEvents (id: string): JobEvent[] | undefined {
    const job = this.jobs.get(id)
    return job != null ? [...job.events] : undefined
  }

  /** How many events a held job has had (0 when not held), without copying them. */
  heldEventCount (id: string): number {
    return this.jobs.get(id)?.events.length ?? 0
  }

  /** A job's events: empty for a finished job no longer held (the log keeps records, not events); NotFoundError when unknown. */
  async jobEvents (id: string): Promise<JobEvent[]> {
    const held = this.heldEvents(id)
    if (held != null) return held
    await this.fromLog(id)
    return []
  }

  /** Held jobs by state, every state present. */
  statusCounts (): Map<JobStatus, number> { return views.statusCounts(this.jobs) }

  /** Is this job held and over? (A job not held is over too, or unknown: ask `get`.) */
  isTerminal (id: string): boolean {
    const job = this.jobs.get(id)
    return job != null && TERMINAL.has(job.status)
  }

  /** How many jobs memory holds, and the finished ones' approximate bytes. */
  held (): HeldJobs {
    return { jobs: this.jobs.size, finished: this.finished.count, finishedBytes: this.finished.bytes }
  }

  private async fromLog (id: string): Promise<FinishedJob> { return await readFinishedFromLog(this.deps.ledger, id) }
}
