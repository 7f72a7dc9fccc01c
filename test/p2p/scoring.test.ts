import '../../src/polyfill.js'
import { expect } from 'chai'
import { createNetwork, GRAYLIST_THRESHOLD, type NetworkNode, type TopicVerdict } from '../../src/p2p/index.js'
import { JOBS_TOPIC, RECEIPTS_TOPIC } from '../../src/auction/index.js'
import { EQUIVOCATIONS_TOPIC, HEADS_TOPIC } from '../../src/ledger/constants.js'
import type { MercatoNode } from '../../src/node.js'
import { LOOPBACK, startTestNode, stopNodes } from '../helpers/nodes.js'

const TOPIC = 'test/scored/1'

async function waitFor (cond: () => boolean, timeoutMs: number, stepMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met in ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, stepMs))
  }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('p2p: gossip scoring', function () {
  this.timeout(60_000)
  const nets: NetworkNode[] = []
  afterEach(async () => { await Promise.all(nets.splice(0).map(async n => n.stop().catch(() => {}))); await stopNodes() })

  async function net (bootstrap?: string): Promise<NetworkNode> {
    const n = await createNetwork({ allow: LOOPBACK, bootstrap: bootstrap != null ? [bootstrap] : [] })
    nets.push(n)
    return n
  }

  it('a peer that publishes rejected messages falls below the graylist threshold, leaves the mesh, and is not heard any more', async () => {
    const victim = await net()
    const delivered: number[] = []
    let validated = 0
    // byte 0 = 1: valid; anything else: rejected (as a bad signature would be)
    victim.subscribe(TOPIC, (m): TopicVerdict<Uint8Array> => { validated++; return m.data[0] === 1 ? { result: 'accept', value: m.data } : { result: 'reject' } }, (m) => { delivered.push(m.data[1]) })
    const attacker = await net(victim.addresses()[0])
    attacker.subscribe(TOPIC, () => {})
    await waitFor(() => victim.meshPeers(TOPIC).includes(attacker.peerId), 15_000)
    expect(victim.gossipScore(attacker.peerId)).to.be.at.least(0)

    for (let i = 0; i < 50; i++) await attacker.publish(TOPIC, Uint8Array.of(0, i, 0xff))
    await waitFor(() => victim.gossipScore(attacker.peerId) < GRAYLIST_THRESHOLD, 10_000).catch(() => {
      throw new Error(`score stayed at ${victim.gossipScore(attacker.peerId)} after ${validated} rejected messages`)
    })
    // pruned at the next heartbeat (1 s)
    await waitFor(() => !victim.meshPeers(TOPIC).includes(attacker.peerId), 5000)

    // graylisted: even valid messages from it are dropped before validation
    const before = validated
    for (let i = 0; i < 10; i++) await attacker.publish(TOPIC, Uint8Array.of(1, 100 + i))
    await sleep(1500)
    expect(delivered.filter(x => x >= 100), 'messages of a graylisted peer').to.deep.equal([])
    expect(validated - before, 'validator runs for a graylisted peer').to.equal(0)

    // and banned (GRAYLIST_BAN_MS): disconnected, and refused when it comes back, so nothing it sends is even decrypted
    await waitFor(() => !victim.isConnected(attacker.peerId), 5000)
    const redial = await attacker.dial(victim.addresses()[0]).then(() => 'connected', (err: Error) => err.message)
    await sleep(500)
    expect(victim.isConnected(attacker.peerId), `the banned peer's redial (${redial})`).to.equal(false)
    // the victim does not dial it either
    expect(await victim.dial(attacker.addresses()[0]).then(() => 'connected', () => 'refused')).to.equal('refused')
    // a peer it has never banned still connects
    const other = await net(victim.addresses()[0])
    await waitFor(() => victim.isConnected(other.peerId), 10_000)
  })

  it('every Mercato topic is scored: rejected jobs, receipts, heads and equivocation proofs each graylist their sender', async () => {
    const node: MercatoNode = await startTestNode()
    for (const topic of [JOBS_TOPIC, RECEIPTS_TOPIC, HEADS_TOPIC, EQUIVOCATIONS_TOPIC]) {
      const attacker = await net(node.network.addresses()[0])
      await waitFor(() => attacker.topicPeers(topic).includes(node.peerId), 15_000)
      for (let i = 0; i < 30; i++) await attacker.publish(topic, Uint8Array.of(0xff, i, 0xfe, 0xfd))
      await waitFor(() => node.network.gossipScore(attacker.peerId) < GRAYLIST_THRESHOLD, 10_000).catch(() => {
        throw new Error(`${topic}: score stayed at ${node.network.gossipScore(attacker.peerId)}`)
      })
    }
  })

  it('honest peers gossiping hundreds of messages a second never go negative', async () => {
    // a line and a triangle: publisher → forwarder → receiver, and publisher → receiver
    const a = await net()
    const b = await net(a.addresses()[0])
    const c = await net(a.addresses()[0])
    await b.dial(c.addresses()[0])
    let got = 0
    for (const n of [a, b, c]) n.subscribe(TOPIC, (m): TopicVerdict<Uint8Array> => m.data[0] === 1 ? { result: 'accept', value: m.data } : { result: 'reject' }, () => { got++ })
    await waitFor(() => [a, b, c].every(n => n.meshPeers(TOPIC).length === 2), 15_000)
    const pairs: Array<[NetworkNode, NetworkNode]> = [[a, b], [a, c], [b, a], [b, c], [c, a], [c, b]]
    let min = Infinity
    const sample = setInterval(() => { for (const [x, y] of pairs) min = Math.min(min, x.gossipScore(y.peerId)) }, 50)
    try {
      // up to 600 offers a second (as many as this machine can) for 6 s from two publishers, 1 KiB each
      const end = Date.now() + 6000
      let k = 0
      while (Date.now() < end) {
        const batch: Array<Promise<number>> = []
        for (let i = 0; i < 30; i++) {
          const msg = new Uint8Array(1024)
          msg[0] = 1
          new DataView(msg.buffer).setUint32(1, k++)
          batch.push((k % 2 === 0 ? a : b).publish(TOPIC, msg))
        }
        await Promise.all(batch)
        await sleep(50)
      }
      await sleep(3000) // a few heartbeats and decays after the burst
      console.log(`      ${k} messages, ${got} deliveries; lowest score seen ${min.toFixed(2)}`)
    } finally {
      clearInterval(sample)
    }
    expect(min).to.be.at.least(0)
    for (const [x, y] of pairs) expect(x.meshPeers(TOPIC), 'still in the mesh').to.include(y.peerId)
  })
})
