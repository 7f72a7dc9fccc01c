/**
 * Wiring: the one place that knows the concrete parts of a Mercato node.
 * `start()` builds them in order and pushes each one's cleanup on a stack;
 * `stop()` (or a failed start) runs the stack backwards, so parts stop in
 * the reverse order they started.
 */
import { mkdir, writeFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Config } from './config.js'
import { ConfigError, InvalidInputError } from './errors.js'
import { logger, type Logger } from './logger.js'
import { VERSION } from './version.js'
import { buildNetworkNode, DIAL_TIMEOUT_MS, loadOrCreateIdentity, loadNetworkKey, NetworkKeyError, peerOfAddress, type Identity, type NetworkNode } from './p2p/index.js'
import { startGateway, isLoopbackHost, type Gateway, type GatewayNode, type NodeInfo, type PeerView } from './gateway/index.js'
import { loadOrCreateToken } from './gateway/token.js'
import { MAX_PEER_ADDRESS_CHARS } from './gateway/constants.js'
import { openLedger, createLedgerAudit, type Ledger, type LedgerAudit } from './ledger/index.js'
import { createExecutor, createSlurmBackend, type Executor } from './executor/index.js'
import { createMarket, type Market } from './auction/index.js'
import { jobRoutes } from './gateway/routes/jobs.js'
import { ledgerRoutes } from './gateway/routes/ledger.js'
import { metricsRoutes } from './gateway/metrics.js'
import { dashboardRoutes } from './gateway/dashboard.js'
import { cpus } from 'node:os'
import { IDLE_GC_MIN_SPACING_MS, startIdleGc } from './idle-gc.js'
import { whenCpusIdle } from './cpu-idle.js'

type Cleanup = { name: string, fn: () => Promise<void> }

export interface NodeOptions {
  /** test-only: this provider corrupts its results (replica quorum tests) */
  corruptResults?: boolean
  /** test-only: this provider names output files in its results without serving them */
  withholdOutputs?: boolean
}

export class MercatoNode implements GatewayNode {
  readonly config: Config
  identity!: Identity
  network!: NetworkNode
  ledger!: Ledger
  audit!: LedgerAudit
  executor!: Executor
  market!: Market
  gateway?: Gateway
  private readonly cleanups: Cleanup[] = []
  private log: Logger = logger('node')
  private started = false

  private readonly options: NodeOptions

  constructor (config: Config, options: NodeOptions = {}) {
    this.config = config
    this.options = options
  }

  get peerId (): string { return this.identity.peerId }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    try {
      await this.startParts()
    } catch (err) {
      await this.stop().catch(() => {})
      throw err
    }
  }

  private defer (name: string, fn: () => Promise<void>): void {
    this.cleanups.push({ name, fn })
  }

  private async startParts (): Promise<void> {
    const cfg = this.config
    // how long each part took to start (ms), in the 'node started' line: where a slow start went
    const startMs: Record<string, number> = {}
    let lap = performance.now()
    const done = (part: string): void => { const now = performance.now(); startMs[part] = Math.round(now - lap); lap = now }
    await checkDataDir(cfg.dataDir)
    this.identity = await loadOrCreateIdentity(cfg.dataDir)
    this.log = logger('node', { peerId: this.identity.peerId })
    done('identity')

    // the heap's garbage goes back to the system once the node is quiet (src/idle-gc.ts); the creep
    // of a node at rest in a mesh (its gossip) at most once per IDLE_GC_MIN_SPACING_MS
    const idleGc = startIdleGc({ minSpacingMs: IDLE_GC_MIN_SPACING_MS, onCollect: (freed, ms) => { this.log.debug({ freedBytes: freed, ms: Math.round(ms) }, 'idle: heap collected') } })
    this.defer('idle-gc', async () => { idleGc.stop() })

    this.ledger = await openLedger({ signer: this.identity.signer, path: join(cfg.dataDir, 'ledger') })
    this.defer('ledger', async () => { await this.ledger.close() })
    done('ledger')

    const { backend, slurm, ...pool } = cfg.executor
    const poolSize = pool.poolSize > 0 ? pool.poolSize : cpus().length
    const onSlurm = backend === 'slurm'
    // output files of running jobs, one folder each (the only folder a bwrap-isolated pool may write);
    // what a crash left is removed before the executor starts
    const outputsRoot = join(cfg.dataDir, 'outputs')
    await rm(outputsRoot, { recursive: true, force: true })
    this.executor = onSlurm
      // won jobs go to the cluster; the pool settings are the ceilings each job is clamped to
      ? createSlurmBackend({ ...slurm, stageDir: slurm.stageDir !== '' ? slurm.stageDir : join(cfg.dataDir, 'slurm-stage'), maxJobs: slurm.maxJobs > 0 ? slurm.maxJobs : cfg.provider.slots }, { ...pool, poolSize, engines: cfg.provider.engines, outputsRoot })
      // a node that does not provide keeps no warm worker: its own `exec` jobs start one when they come
      : createExecutor({ ...pool, poolSize, warmWorkers: cfg.provider.enabled ? pool.warmWorkers : 0, queueSize: pool.queueSize, outputsRoot, deferWarmUp: true })
    // the warm sandbox worker starts at the warm-up below, once the node is ready and the machine's
    // CPUs are free (a job before it starts a worker of its own); a missing worker file fails the
    // node's start. On Slurm the market asks the backend for the cluster's CPUs: it waits for it first.
    const executorStarted = this.executor.start()
    executorStarted.catch(() => {}) // awaited below
    this.defer('executor', async () => { await executorStarted.catch(() => {}); await this.executor.stop() })

    let networkKey
    if (cfg.p2p.networkKey != null) {
      try {
        networkKey = await loadNetworkKey(cfg.p2p.networkKey)
      } catch (err: any) {
        if (err instanceof NetworkKeyError) throw new ConfigError('p2p.networkKey', `config key "p2p.networkKey": ${err.message}`)
        throw err
      }
    }
    this.network = await buildNetworkNode({
      seed: this.identity.seed,
      listen: cfg.p2p.listen,
      announce: cfg.p2p.announce,
      bootstrap: cfg.p2p.bootstrap,
      mdns: cfg.p2p.mdns,
      maxConnections: cfg.p2p.maxConnections,
      // past maxPeers, trimmed down to halfway between MIN_PEERS and maxPeers, at most TARGET_PEERS (trim.ts, trimTarget)
      discovery: { maxPeers: cfg.p2p.maxPeers },
      allow: cfg.p2p.allow,
      dialTimeoutMs: cfg.p2p.dialTimeoutMs,
      metrics: true,
      nat: { upnp: cfg.p2p.upnp, relayServer: cfg.p2p.relayServer, relayReservations: cfg.p2p.relayReservations },
      networkKey
    })
    try {
      await this.network.start()
    } catch (err: any) {
      throw new ConfigError('p2p.listen', `config key "p2p.listen": cannot listen on ${cfg.p2p.listen.join(', ')}: ${err?.code === 'EADDRINUSE' || /EADDRINUSE|in use/.test(String(err?.message)) ? 'address in use' : String(err?.message ?? err)}`)
    }
    this.defer('network', async () => { await this.network.stop() })
    done('network')

    // open audit: gossip our signed head, serve our log, watch for equivocation
    this.audit = createLedgerAudit({
      ledger: this.ledger,
      network: this.network,
      signer: this.identity.signer,
      headIntervalMs: cfg.ledger.headIntervalMs,
      headDebounceMs: cfg.ledger.headDebounceMs
    })
    await this.audit.start()
    this.defer('audit', async () => { await this.audit.stop() })
    done('audit')

    if (onSlurm) await executorStarted
    // input files staged for jobs a previous run did not finish: nothing half-fetched is kept
    await rm(join(cfg.dataDir, 'inputs'), { recursive: true, force: true })
    this.market = createMarket({
      isFlagged: (peerId) => this.audit.isFlagged(peerId),
      network: this.network,
      signer: this.identity.signer,
      ledger: this.ledger,
      executor: this.executor,
      blobsDir: join(cfg.dataDir, 'blobs'),
      blobs: cfg.blobs,
      requester: cfg.auction,
      provider: {
        enabled: cfg.provider.enabled,
        price: cfg.provider.price,
        // on Slurm: 0 = follow the cluster's free CPUs (provider.slots is the backend's cap, above)
        slots: onSlurm ? 0 : cfg.provider.slots > 0 ? cfg.provider.slots : poolSize,
        // the executor queues what the pool cannot start at once (leave room for local `exec` use); Slurm: bid only with free CPUs
        queue: onSlurm ? 0 : Math.max(0, cfg.executor.queueSize - (cfg.provider.slots > 0 ? cfg.provider.slots : poolSize)),
        engines: cfg.provider.engines,
        labels: cfg.provider.labels,
        maxTimeoutMs: cfg.executor.maxTimeoutMs,
        maxMemoryMb: cfg.executor.maxMemoryMb,
        maxOutputBytes: cfg.executor.maxOutputBytes,
        heartbeatMs: cfg.auction.heartbeatMs,
        resultRetentionMs: cfg.auction.resultRetentionMs,
        dialPrivateAddresses: cfg.provider.dialPrivateAddresses,
        liveLogBytesPerSec: cfg.provider.liveLogBytesPerSec,
        liveLogMaxBytes: cfg.provider.liveLogMaxBytes,
        inputs: cfg.provider.inputs,
        // a folder per running job's input files; what a crash left is removed below, before the market starts
        inputsDir: join(cfg.dataDir, 'inputs'),
        // a folder per running job's output files, until they are stored as blobs (emptied above at start-up)
        outputsDir: outputsRoot
      },
      // test-only switch (replica quorum tests): this provider lies about its output
      corruptResults: this.options.corruptResults ?? process.env.MERCATO_TEST_CORRUPT_RESULTS === '1',
      withholdOutputs: this.options.withholdOutputs,
      deferWarmUp: true
    })
    await this.market.start()
    this.defer('market', async () => { await this.market.stop() })
    done('market')

    if (cfg.gateway.enabled) {
      const needToken = cfg.gateway.requireToken || !isLoopbackHost(cfg.gateway.host)
      const token = needToken ? await loadOrCreateToken(cfg.dataDir) : undefined
      try {
        this.gateway = await startGateway({
          node: this,
          host: cfg.gateway.host,
          port: cfg.gateway.port,
          token,
          bodyLimitBytes: cfg.gateway.bodyLimitBytes,
          idleTimeoutMs: cfg.gateway.idleTimeoutMs,
          maxConnections: cfg.gateway.maxConnections,
          plugins: [
            jobRoutes({ market: this.market, maxUploadBytes: cfg.gateway.maxUploadBytes }),
            ledgerRoutes({ ledger: this.ledger, audit: this.audit }),
            metricsRoutes({ market: this.market, executor: this.executor, ledger: this.ledger, network: this.network }),
            dashboardRoutes()
          ]
        })
      } catch (err: any) {
        if (err?.code === 'EADDRINUSE') throw new ConfigError('gateway.port', `config key "gateway.port": port ${cfg.gateway.port} on ${cfg.gateway.host} is in use`)
        if (err?.code === 'EADDRNOTAVAIL' || err?.code === 'ENOTFOUND') throw new ConfigError('gateway.host', `config key "gateway.host": cannot bind ${cfg.gateway.host}`)
        throw err
      }
      this.defer('gateway', async () => { await this.gateway?.stop() })
      done('gateway')
    }
    await executorStarted
    done('executor')
    this.log.info({ addresses: this.network.addresses(), gateway: this.gateway?.url, startMs }, 'node started')
    // the warm worker loads QuickJS and the gateway compiles its validators once the machine's
    // CPUs are free (at once on a machine at rest), not while this node and others on the machine
    // still start and connect (cpu-idle.ts)
    const cancelWarmUp = whenCpusIdle(() => {
      this.executor.warmUp?.()
      this.market.warmUp()
      this.gateway?.warmUp()
    }, { onRun: (waitedMs, idle) => { this.log.debug({ waitedMs, cpusIdle: idle }, 'warming up') } })
    this.defer('warm-up', async () => { cancelWarmUp() })
  }

  async stop (): Promise<void> {
    while (this.cleanups.length > 0) {
      const { name, fn } = this.cleanups.pop() as Cleanup
      try {
        await fn()
      } catch (err) {
        this.log.error({ err, part: name }, 'error while stopping')
      }
    }
  }

  info (): NodeInfo {
    const capacity = this.market.capacity()
    return {
      peerId: this.identity.peerId,
      addresses: this.network.addresses(),
      version: VERSION,
      network: this.network.natStatus(),
      blobs: this.market.blobStatus(),
      provider: {
        enabled: this.config.provider.enabled,
        price: this.config.provider.price,
        slots: capacity.slots,
        busy: capacity.busy,
        engines: capacity.engines,
        labels: this.config.provider.labels
      }
    }
  }

  /**
   * Dial the peer at `address` (a multiaddr ending in /p2p/<PeerId>), as `ipfs swarm connect`: an
   * introduction by the node's own user, for a peer that bootstrap, the DHT and mDNS cannot find
   * (and by `mercato devnet`, so its mesh does not wait for DHT walks). Resolves with the peer's id
   * once connected; PeerUnreachableError says why not.
   */
  async connect (address: string): Promise<{ peerId: string }> {
    const peer = typeof address === 'string' && address.length <= MAX_PEER_ADDRESS_CHARS ? peerOfAddress(address) : undefined
    if (peer == null) throw new InvalidInputError('address: a multiaddr ending in /p2p/<PeerId>, such as /ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...', 'invalid-peer')
    if (peer === this.network.peerId) throw new InvalidInputError('address: that is this node', 'invalid-peer')
    return { peerId: await this.network.dial(address, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) }) }
  }

  peers (): PeerView[] {
    return this.network.peers().map(p => {
      const head = this.audit.latestHead(p.peerId)
      return {
        ...p,
        flagged: this.audit.isFlagged(p.peerId),
        head: head != null ? { seq: head.payload.seq, id: head.payload.id, ts: head.payload.ts } : null,
        standing: this.market.reputation.get(p.peerId)
      }
    })
  }
}

/** Fail early, with the key named, when the data dir cannot be written. */
export async function checkDataDir (dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const probe = join(dir, `.write-test-${process.pid}`)
    await writeFile(probe, '')
    await rm(probe)
  } catch (err: any) {
    throw new ConfigError('dataDir', `config key "dataDir": ${dir} is not a writable directory (${err?.code ?? err?.message})`)
  }
}

export async function startNode (config: Config): Promise<MercatoNode> {
  const node = new MercatoNode(config)
  await node.start()
  return node
}
