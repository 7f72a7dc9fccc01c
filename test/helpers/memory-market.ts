/**
 * A whole market (requester and, if asked, provider) on an in-memory network: a fresh identity
 * and ledger, the timings the in-memory auction tests use, started. Stop with {@link stopMemoryMarkets}.
 */
import { randomSigner } from '../../src/crypto/index.js'
import { createMarket, JOBS_TOPIC, OFFER_PROTOCOL, OFFER_STREAM_PROTOCOL, type Market } from '../../src/auction/index.js'
import { openLedger, type Ledger } from '../../src/ledger/index.js'
import type { Executor } from '../../src/executor/index.js'
import type { MemoryHub, MemoryNetwork } from './memory-network.js'
import { waitFor } from './nodes.js'

export interface MemoryMarket { market: Market, ledger: Ledger, net: MemoryNetwork, peerId: string }

export interface MemoryMarketOptions {
  /** provide at this price (default: requester only) */
  price?: number
  slots?: number
  maxTimeoutMs?: number
  /** requester settings over the in-memory defaults */
  requester?: Record<string, unknown>
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
    requester: { bidWindowMs: 50, minBids: 1, maxAttempts: 4, heartbeatMs: 250, suspectAfterMs: 2000, lostAfterMs: 5000, defaultMaxPrice: 100, minReputation: -3, ...opts.requester },
    provider: { enabled: opts.price != null, price: opts.price ?? 0, slots: opts.slots ?? 1, engines: ['js'], maxTimeoutMs: opts.maxTimeoutMs ?? 10_000, maxMemoryMb: 64, maxOutputBytes: 65536, heartbeatMs: 250, resultRetentionMs: 60_000, dialPrivateAddresses: true }
  })
  await market.start()
  return { market, ledger, net, peerId: signer.peerId }
}

/**
 * A requester (providing nothing) and one provider per entry of `providers`, each pushed onto
 * `started` as it starts (stop them with {@link stopMemoryMarkets}); resolves once the requester's
 * book holds every provider's advert.
 */
export async function startMemoryMesh (hub: MemoryHub, executor: Executor, started: MemoryMarket[], providers: MemoryMarketOptions[], requester: Omit<MemoryMarketOptions, 'price'> = {}): Promise<{ requester: MemoryMarket, providers: MemoryMarket[] }> {
  const r = await startMemoryMarket(hub, executor, requester)
  started.push(r)
  const ps: MemoryMarket[] = []
  for (const opts of providers) {
    const p = await startMemoryMarket(hub, executor, opts)
    started.push(p)
    ps.push(p)
  }
  const ids = new Set(ps.map(p => p.peerId))
  await waitFor(() => r.market.providers().filter(p => p.advert != null && ids.has(p.peerId)).length === ids.size, 20_000)
  return { requester: r, providers: ps }
}

/** Stop markets in reverse order of start, then close their ledgers. */
export async function stopMemoryMarkets (list: MemoryMarket[]): Promise<void> {
  for (const m of [...list].reverse()) await m.market.stop()
  for (const m of list) await m.ledger.close()
  list.length = 0
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** the delay each provider's offers are held now (read as each offer arrives, so it can change) */
const offerDelays = new WeakMap<MemoryNetwork, { direct: number, gossip: number }>()

/**
 * Offers sent straight to this provider reach it `ms` late (Infinity: never answered), as a loaded
 * machine delays them; with `gossip`, offers it hears on the jobs topic too. A later call changes
 * the delay, for offer streams already open as well.
 */
export function delayOffers (net: MemoryNetwork, ms: number, opts: { gossip?: boolean } = {}): void {
  const known = offerDelays.get(net)
  if (known != null) {
    known.direct = ms
    if (opts.gossip === true) known.gossip = ms
    return
  }
  const delays = { direct: ms, gossip: opts.gossip === true ? ms : 0 }
  offerDelays.set(net, delays)
  const h = net.handlers.get(OFFER_PROTOCOL)
  if (h == null) throw new Error('no offer handler')
  net.handlers.set(OFFER_PROTOCOL, { ...h, handler: async (data, ctx) => { if (delays.direct === Infinity) return new Uint8Array(0); await sleep(delays.direct); return await h.handler(data, ctx) } })
  // invitations on the offer stream: each frame reaches the provider's offer path as late
  const c = net.channelHandlers.get(OFFER_STREAM_PROTOCOL)
  if (c == null) throw new Error('no offer stream handler')
  net.channelHandlers.set(OFFER_STREAM_PROTOCOL, {
    ...c,
    handler: async (channel) => {
      for await (const frame of channel) {
        if (delays.direct === Infinity) continue
        void sleep(delays.direct).then(async () => await h.handler(frame, { from: channel.remotePeer, protocol: OFFER_PROTOCOL, signal: AbortSignal.timeout(5000), ended: Promise.resolve() })).catch(() => {})
      }
    }
  })
  const sub = net.subs.get(JOBS_TOPIC)
  if (sub == null) throw new Error('not subscribed to the jobs topic')
  net.subs.set(JOBS_TOPIC, { ...sub, handler: async (msg: any) => { if (delays.gossip === Infinity) return; if (delays.gossip > 0) await sleep(delays.gossip); await sub.handler(msg) } })
}
