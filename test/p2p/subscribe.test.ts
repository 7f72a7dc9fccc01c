import '../../src/polyfill.js'
import { expect } from 'chai'
import { createNetwork, type NetworkNode, type TopicVerdict } from '../../src/p2p/index.js'

async function waitFor (cond: () => boolean, timeoutMs: number, stepMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, stepMs))
  }
}

describe('p2p: subscribe with a decoder', function () {
  this.timeout(30_000)
  const nodes: NetworkNode[] = []
  after(async () => { await Promise.all(nodes.map(async n => n.stop())) })

  it('the handler gets only what the decoder accepted, as the decoder\'s value, decoded once', async () => {
    const a = await createNetwork()
    const b = await createNetwork({ bootstrap: [a.addresses()[0]] })
    nodes.push(a, b)
    await waitFor(() => a.peers().length > 0 && b.peers().length > 0, 10_000)
    let decodes = 0
    const handled: Array<{ n: number }> = []
    const decode = (msg: { data: Uint8Array }): TopicVerdict<{ n: number }> => {
      decodes++
      const text = new TextDecoder().decode(msg.data)
      if (text === 'ignore') return { result: 'ignore' }
      if (text === 'throw') throw new Error('decoder bug')
      const n = Number(text)
      return Number.isInteger(n) ? { result: 'accept', value: { n } } : { result: 'reject' }
    }
    b.subscribe('test/decoded', decode, (msg) => { handled.push(msg.value) })
    a.subscribe('test/decoded', (msg) => { void msg })
    await waitFor(() => a.topicPeers('test/decoded').includes(b.peerId), 10_000)
    for (const text of ['not a number', 'ignore', 'throw', '42']) await a.publish('test/decoded', new TextEncoder().encode(text))
    await waitFor(() => handled.length > 0, 5000)
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(handled).to.deep.equal([{ n: 42 }])
    expect(decodes).to.equal(4)
  })
})
