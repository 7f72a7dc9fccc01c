/**
 * A whole market (requester and, if asked, provider) on an in-memory network: a fresh identity
 * and ledger, the timings the in-memory auction tests use, started. Stop with {@link stopMemoryMarkets}.
 */
import { randomSigner } from '../../src/crypto/index.js'
import { createMarket, JOBS_TOPIC, OFFER_PROTOCOL, type Market } from '../../src/auction/index.js'
import { openLedger, type Ledger } from '../../src/ledger/index.js'
import type { Executor } from '../../src/executor/index.js'
import type { MemoryHub, MemoryNetwork } from './memory-network.js'

export interface MemoryMarket { market: Market, ledger: Ledger, net: MemoryNetwork, peerId: string }

export interface MemoryMarketOptions {
  /** provide at this price (default: requester only) */
  price?: number
  slots?: number
  maxTimeoutMs?: number
}

export async function startMemoryMarket (hub: MemoryHub, executor: Executor, opts: MemoryMarketOptions = {}): Promise<MemoryMarket> {
  const signer = randomSigner()
  const ledger = await openLedger({ signer })
  const net = hub.createNode(signer.peerId)
  const market = createMarket({
    network: net,
    signer,
    ledger,
    executor,
    requester: { bidWindowMs: 50, minBids: 1, maxAttempts: 4, heartbeatMs: 250, suspectAfterMs: 2000, lostAfterMs: 5000, defaultMaxPrice: 100, minReputation: -3 },
    provider: { enabled: opts.price != null, price: opts.price ?? 0, slots: opts.slots ?? 1, engines: ['js'], maxTimeoutMs: opts.maxTimeoutMs ?? 10_000, maxMemoryMb: 64, maxOutputBytes: 65536, heartbeatMs: 250, resultRetentionMs: 60_000, dialPrivateAddresses: true }
  })
  await market.start()
  return { market, ledger, net, peerId: signer.peerId }
}

/** Stop markets in reverse order of start, then close their ledgers. */
export async function stopMemoryMarkets (list: MemoryMarket[]): Promise<void> {
  for (const m of [...list].reverse()) await m.market.stop()
  for (const m of list) await m.ledger.close()
  list.length = 0
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/**
 * Offers sent straight to this provider reach it `ms` late (Infinity: never answered), as a loaded
 * machine delays them; with `gossip`, offers it hears on the jobs topic too.
 */
export function delayOffers (net: MemoryNetwork, ms: number, opts: { gossip?: boolean } = {}): void {
  const h = net.handlers.get(OFFER_PROTOCOL)
  if (h == null) throw new Error('no offer handler')
  net.handlers.set(OFFER_PROTOCOL, { ...h, handler: async (data, ctx) => { if (ms === Infinity) return new Uint8Array(0); await sleep(ms); return await h.handler(data, ctx) } })
  if (opts.gossip !== true) return
  const sub = net.subs.get(JOBS_TOPIC)
  if (sub == null) throw new Error('not subscribed to the jobs topic')
  net.subs.set(JOBS_TOPIC, { ...sub, handler: async (msg: any) => { if (ms === Infinity) return; await sleep(ms); await sub.handler(msg) } })
}
