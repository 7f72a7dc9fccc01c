/**
 * In-process Mercato nodes on 127.0.0.1 with port 0, each in its own temp
 * data dir. `stopNodes()` stops them and removes the dirs.
 */
import '../../src/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, merge } from '../../src/config.js'
import { MercatoNode, type NodeOptions } from '../../src/node.js'
import { JOBS_TOPIC } from '../../src/auction/index.js'

/** Many test nodes share 127.0.0.1: they opt in to loopback being exempt from inbound connection limits (p2p.allow). */
export const LOOPBACK = ['/ip4/127.0.0.1', '/ip6/::1']

const started: MercatoNode[] = []
const dirs: string[] = []

export interface TestNodeOptions extends NodeOptions {
  bootstrap?: string[]
  provide?: boolean
  price?: number
  slots?: number
  gateway?: boolean
  config?: Record<string, any>
  dataDir?: string
}

export async function startTestNode (opts: TestNodeOptions = {}): Promise<MercatoNode> {
  const dataDir = opts.dataDir ?? await mkdtemp(join(tmpdir(), 'mercato-node-'))
  if (opts.dataDir == null) dirs.push(dataDir)
  const overrides = merge({
    dataDir,
    logLevel: 'silent',
    p2p: { listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: opts.bootstrap ?? [], mdns: false, allow: LOOPBACK },
    gateway: { enabled: opts.gateway ?? false, port: 0 },
    executor: { poolSize: 1 },
    // every test node is on 127.0.0.1: answers may dial loopback addresses
    provider: { enabled: opts.provide ?? true, price: opts.price ?? 10, slots: opts.slots ?? 2, dialPrivateAddresses: true },
    ledger: { headIntervalMs: 1000, headDebounceMs: 50 }
  }, opts.config ?? {})
  const config = loadConfig({ env: {}, overrides })
  const node = new MercatoNode(config, opts)
  await node.start()
  started.push(node)
  return node
}

export async function stopNode (node: MercatoNode): Promise<void> {
  const i = started.indexOf(node)
  if (i >= 0) started.splice(i, 1)
  await node.stop()
}

export async function stopNodes (): Promise<void> {
  await Promise.all(started.splice(0).map(async n => n.stop().catch(() => {})))
  await Promise.all(dirs.splice(0).map(async d => rm(d, { recursive: true, force: true })))
}

export async function waitFor (cond: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 25): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`condition not met in ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, stepMs))
  }
}

/**
 * A requester and three providers bootstrapped to it, on the jobs topic: the first provider
 * (price 1, the cheapest, so a replica job always includes it) corrupts its results, the other
 * two (prices 2 and 3) are honest.
 */
export async function startLiarAndTwoHonest (): Promise<{ requester: MercatoNode, liar: MercatoNode, honest1: MercatoNode, honest2: MercatoNode }> {
  const requester = await startTestNode({ provide: false })
  const boot = [requester.network.addresses()[0]]
  const [liar, honest1, honest2] = await Promise.all([
    startTestNode({ price: 1, bootstrap: boot, corruptResults: true }),
    startTestNode({ price: 2, bootstrap: boot }),
    startTestNode({ price: 3, bootstrap: boot })
  ])
  await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).length === 3, 15_000)
  return { requester, liar, honest1, honest2 }
}
