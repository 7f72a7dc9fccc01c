/**
 * `GET /metrics`: Prometheus text. Mercato's own metrics live in a registry
 * of their own (prefix `mercato_`); libp2p's (`libp2p_*`, plus the process
 * and Node.js ones it collects) live in prom-client's default registry,
 * where `@libp2p/prometheus-metrics` puts them. A scrape merges the two.
 *
 * Event-driven metrics (bids per job, auction duration, latency, failovers,
 * ledger appends) count from the moment the plugin is built; gauges (jobs
 * by state, slots, refused messages) are read from the parts at scrape time.
 *
 * Only one libp2p node per process has its metrics in the default registry
 * (the library clears it when a node is created); a daemon runs one node.
 */
import type { FastifyPluginAsync } from 'fastify'
import { Counter, Gauge, Histogram, Registry, register as defaultRegistry } from 'prom-client'
import type { JobEvent, JobStatus } from '../auction/index.js'
import { signatureChecks } from '../crypto/index.js'

/** What the metrics need of the market. */
export interface MetricsMarket {
  readonly events: {
    on (event: 'job', listener: (e: JobEvent) => void): unknown
    on (event: 'done', listener: (id: string) => void): unknown
    off (event: 'job', listener: (e: JobEvent) => void): unknown
    off (event: 'done', listener: (id: string) => void): unknown
  }
  /** jobs by state, every state present (a count, not a list of views) */
  statusCounts (): Map<JobStatus, number>
  get (id: string): Promise<{ bids: unknown[] }>
  capacity (): { slots: number, busy: number }
  refusals (): { requester: ReadonlyMap<string, number>, provider: ReadonlyMap<string, number> }
  /** output pushes taken and refused, and their bytes */
  outputPushes (): { accepted: number, refused: number, bytes: number }
}

export interface MetricsExecutor {
  stats (): { poolSize: number, busy: number, queued: number, completed: number, failed: number }
}

export interface MetricsLedger {
  head (): { seq: number }
  onChange (listener: (head: { seq: number }) => void): () => void
}

interface ByPath { direct: number, relayed: number }
const PATHS = ['direct', 'relayed'] as const

/** What the metrics need of the network: messages received, connections by path (relayed through a circuit relay, or direct). */
export interface MetricsNetwork {
  traffic?: () => { gossip: number, requests: number, frames: number, gossipByTopic?: Record<string, number> }
  connectionsByPath?: () => { open: ByPath, opened: ByPath }
}

export interface MetricsDeps {
  market: MetricsMarket
  executor?: MetricsExecutor
  ledger?: MetricsLedger
  /** the node's network: messages received from peers, connections by path */
  network?: MetricsNetwork
  /** include prom-client's default registry (libp2p, process); default true */
  includeDefault?: boolean
}


/**
 * A counter that shows totals kept elsewhere (the network's traffic, the market's refusals, the
 * signature checks): at each scrape its series are set to `totals()` as they are (nothing, when it
 * gives nothing). The totals only grow, so this is a counter to Prometheus.
 */
function mirroredCounter (registry: Registry, name: string, help: string, labelNames: string[], totals: () => Iterable<[Record<string, string>, number]> | undefined): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect () {
      const now = totals()
      if (now == null) return
      this.reset()
      for (const [labels, n] of now) this.inc(labels, n)
    }
  })
}

/** Build the registry and the listeners that feed it; `close()` removes the listeners. */
export function createMercatoMetrics (deps: MetricsDeps): { registry: Registry, close: () => void } {
  const { market, executor, ledger, network } = deps
  const registry = new Registry()

  new Gauge({
    name: 'mercato_jobs',
    help: 'Jobs submitted by this node and held in memory (unfinished, and the most recent finished ones), by state',
    labelNames: ['state'],
    registers: [registry],
    collect () {
      for (const [state, n] of market.statusCounts()) this.set({ state }, n)
    }
  })
  const bidsPerJob = new Histogram({
    name: 'mercato_job_bids',
    help: 'Bids received per finished job',
    buckets: [0, 1, 2, 3, 5, 8, 13, 21, 34],
    registers: [registry]
  })
  const auctionSeconds = new Histogram({
    name: 'mercato_auction_duration_seconds',
    help: 'From announcing a job to its award (or to no-bids)',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers: [registry]
  })
  const latencySeconds = new Histogram({
    name: 'mercato_job_latency_seconds',
    help: 'End-to-end latency of settled jobs, from submit to the settled receipt',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [registry]
  })
  const failovers = new Counter({ name: 'mercato_failovers_total', help: 'Jobs handed over to a runner-up after their provider was lost', registers: [registry] })
  const events = new Counter({ name: 'mercato_job_events_total', help: 'Job events by type', labelNames: ['type'], registers: [registry] })
  const ledgerAppends = new Counter({ name: 'mercato_ledger_appends_total', help: 'Records appended to this node\'s ledger', registers: [registry] })
  new Gauge({
    name: 'mercato_connections',
    help: 'Connections open now, by path: direct, or relayed through a circuit relay',
    labelNames: ['path'],
    registers: [registry],
    collect () {
      const open = network?.connectionsByPath?.().open
      if (open == null) return
      for (const path of PATHS) this.set({ path }, open[path])
    }
  })
  mirroredCounter(registry, 'mercato_connections_opened_total', 'Connections opened since start, by path: direct, or relayed through a circuit relay', ['path'], () => {
    const opened = network?.connectionsByPath?.().opened
    return opened == null ? undefined : PATHS.map(path => [{ path }, opened[path]])
  })
  new Gauge({
    name: 'mercato_ledger_head_seq',
    help: 'Sequence number of the ledger head (-1 when empty)',
    registers: [registry],
    collect () { if (ledger != null) this.set(ledger.head().seq) }
  })
  new Gauge({
    name: 'mercato_provider_slots',
    help: 'Provider job slots: in use and total',
    labelNames: ['state'],
    registers: [registry],
    collect () {
      const { busy, slots } = market.capacity()
      this.set({ state: 'busy' }, busy)
      this.set({ state: 'total' }, slots)
    }
  })
  new Gauge({
    name: 'mercato_executor_slots',
    help: 'Executor worker slots: in use, total, and jobs queued for one',
    labelNames: ['state'],
    registers: [registry],
    collect () {
      if (executor == null) return
      const s = executor.stats()
      this.set({ state: 'busy' }, s.busy)
      this.set({ state: 'total' }, s.poolSize)
      this.set({ state: 'queued' }, s.queued)
    }
  })
  mirroredCounter(registry, 'mercato_network_messages_received_total', 'Messages received from peers, by kind: gossip (handed to a topic decoder), request, frame (channel message). Summed over a mesh, each transmission counts once.', ['kind'], () => {
    const t = deps.network?.traffic?.()
    if (t == null) return undefined
    // a kind shows from its first message on
    return ([['gossip', t.gossip], ['request', t.requests], ['frame', t.frames]] as const).filter(([, n]) => n > 0).map(([kind, n]) => [{ kind }, n])
  })
  mirroredCounter(registry, 'mercato_signature_checks_total', 'Ed25519 signatures checked, by how: verified, or cached (a copy of one already verified or signed here)', ['how'], () =>
    [[{ how: 'verified' }, signatureChecks.verified], [{ how: 'cached' }, signatureChecks.cached]])
  mirroredCounter(registry, 'mercato_gossip_messages_received_total', 'Gossip messages received from peers, by topic (offers of open calls, adverts, receipts): what the mesh\'s broadcast traffic costs this node', ['topic'], () =>
    Object.entries(deps.network?.traffic?.().gossipByTopic ?? {}).filter(([, n]) => n > 0).map(([topic, n]) => [{ topic }, n]))
  mirroredCounter(registry, 'mercato_output_pushes_total', 'Pushes of output files from our jobs\' providers (sent while they import them), by result: accepted, refused', ['result'], () => {
    const p = market.outputPushes()
    return [[{ result: 'accepted' }, p.accepted], [{ result: 'refused' }, p.refused]]
  })
  mirroredCounter(registry, 'mercato_output_push_bytes_total', 'Bytes of output files our jobs\' providers pushed to us and we stored', [], () => [[{}, market.outputPushes().bytes]])
  mirroredCounter(registry, 'mercato_refused_messages_total', 'Network messages refused (size, schema, signature, sender...), by role and reason', ['role', 'reason'], () => {
    const refused = market.refusals()
    return (['requester', 'provider'] as const).flatMap(role => [...refused[role]].filter(([, n]) => n > 0).map(([reason, n]): [Record<string, string>, number] => [{ role, reason }, n]))
  })

  // auction timing: from a fresh announcement to the first award or no-bids
  const announcedAt = new Map<string, number>()
  const onJob = (e: JobEvent): void => {
    events.inc({ type: e.type })
    if (e.type === 'announced') {
      if (e.recovered !== true) announcedAt.set(e.jobId, e.ts)
    } else if (e.type === 'awarded' || e.type === 'no-bids' || e.type === 'failed' || e.type === 'cancelled') {
      const t0 = announcedAt.get(e.jobId)
      announcedAt.delete(e.jobId)
      if (t0 != null && e.type !== 'cancelled' && e.type !== 'failed') auctionSeconds.observe(Math.max(0, e.ts - t0) / 1000)
    } else if (e.type === 'handover') {
      failovers.inc()
    } else if (e.type === 'settled' && typeof e.latencyMs === 'number') {
      latencySeconds.observe(e.latencyMs / 1000)
    }
  }
  const onDone = (id: string): void => {
    announcedAt.delete(id)
    // 'done' comes while the job is held: the view is read from memory at once
    market.get(id).then(v => { bidsPerJob.observe(v.bids.length) }, () => {})
  }
  market.events.on('job', onJob)
  market.events.on('done', onDone)
  let lastSeq = ledger?.head().seq ?? -1
  const offLedger = ledger?.onChange((head) => {
    if (head.seq > lastSeq) ledgerAppends.inc(head.seq - lastSeq)
    lastSeq = head.seq
  })

  return {
    registry,
    close () {
      market.events.off('job', onJob)
      market.events.off('done', onDone)
      offLedger?.()
    }
  }
}

export function metricsRoutes (deps: MetricsDeps): FastifyPluginAsync {
  return async (app) => {
    const { registry, close } = createMercatoMetrics(deps)
    app.addHook('onClose', async () => { close() })
    app.get('/metrics', {
      schema: {
        tags: ['meta'],
        summary: 'Prometheus metrics: mercato_* plus libp2p\'s own',
        response: { 200: { description: 'Prometheus text exposition format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } } }
      }
    }, async (_req, reply) => {
      const merged = deps.includeDefault === false ? registry : Registry.merge([registry, defaultRegistry])
      const text = await merged.metrics()
      return await reply.type(merged.contentType).send(text)
    })
  }
}
