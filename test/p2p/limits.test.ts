import '../../src/polyfill.js'
import { expect } from 'chai'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createNetwork, type NetworkNode } from '../../src/p2p/index.js'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('p2p: connection limits hold for local peers too', function () {
  this.timeout(60_000)
  let victim: NetworkNode | undefined
  let attacker: Libp2p | undefined
  after(async () => { await attacker?.stop(); await victim?.stop() })

  it('a node with default settings refuses connections from 127.0.0.1 beyond maxConnections', async () => {
    const maxConnections = 10
    victim = await createNetwork({ maxConnections }) // p2p.allow left at its default
    // a plain libp2p client on this machine opening one connection after another to the same node
    attacker = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], connectionManager: { maxConnections: 1000 } })
    const target = multiaddr(victim.addresses()[0])
    let accepted = 0
    const tries = 40
    for (let i = 0; i < tries; i++) {
      // slower than the inbound rate limit (50/s per host): what refuses them must be maxConnections
      const conn = await attacker.dial(target, { force: true, signal: AbortSignal.timeout(5000) }).catch(() => null)
      if (conn != null) {
        await sleep(20)
        if (conn.status === 'open') accepted++
      }
      await sleep(40)
    }
    await sleep(500)
    const held = attacker.getConnections().filter(c => c.status === 'open').length
    console.log(`      ${tries} dials: ${accepted} open right after the dial, ${held} still open; the node holds ${victim.peers()[0]?.addresses.length ?? 0} connections`)
    expect(held, 'connections the node kept').to.be.at.most(maxConnections)
    expect(accepted, 'connections the node accepted').to.be.at.most(maxConnections + 2)
  })
})
