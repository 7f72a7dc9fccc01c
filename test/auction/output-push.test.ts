/**
 * `/mercato/output-push/1.0.0` (provider/push.ts, requester/push.ts): a provider sends the leaves
 * of a large output file while it imports it; the requester stores them by their own hash, and the
 * fetch after the result asks only for what is missing. Real nodes on 127.0.0.1, and a hostile
 * client of the protocol: strangers, bad first messages, a second push for the same job, junk
 * blocks, a push for a job that is over.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { BlobStore, JOBS_TOPIC, MAX_OUTPUT_PUSHES, OUTPUT_PUSH_HELLO_MS, OUTPUT_PUSH_PROTOCOL, OUTPUT_PUSH_STALL_MS } from '../../src/auction/index.js'
import { decodePushReply, encodePushHello, type PushReply } from '../../src/auction/protocol/frames.js'
import { cidOfBytes } from '../../src/crypto/index.js'
import { UNIXFS_CHUNK_BYTES, unixfsCidOfBytes } from '../../src/crypto/unixfs.js'
import { createNetwork, type MessageChannel, type NetworkNode } from '../../src/p2p/index.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { getJson, startNodeProcess, stopAll, waitFor as waitForAsync, type NodeProcess } from '../helpers/cli.js'

const MiB = 1024 * 1024
/** 3 MiB and 7 bytes: 13 leaves (12 whole, one of 7 bytes) under one root */
const BIG = 3 * MiB + 7
/** the big file a job of `seed` writes (each test its own, so that no test finds another's blocks held) */
const bigBytes = (seed: number): Uint8Array => {
  const b = new Uint8Array(BIG)
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + (i >> 12) + seed) & 255
  return b
}
const WRITE_BIG = `function main ({ seed }) {
  readFile('gate.txt')
  const b = new Uint8Array(${BIG})
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + (i >> 12) + seed) & 255
  writeFile('big.bin', b)
  writeFile('small.txt', 'small ' + seed)
  return 1
}`

async function openPush (from: MercatoNode, to: MercatoNode, hello: Uint8Array): Promise<{ channel: MessageChannel, reply: PushReply }> {
  const channel = await from.network.openChannel(to.peerId, OUTPUT_PUSH_PROTOCOL, { maxMessageBytes: 512 })
  await channel.send(hello)
  const first = await channel[Symbol.asyncIterator]().next()
  if (first.done === true) throw new Error('the push closed without a reply')
  return { channel, reply: decodePushReply(first.value) }
}

/** Open a push, take the requester's first reply, close our end (a peer gets two push streams at once). */
async function replyTo (from: MercatoNode, to: MercatoNode, hello: Uint8Array): Promise<PushReply> {
  const { channel, reply } = await openPush(from, to, hello)
  await channel.close().catch(() => {})
  return reply
}

describe('output push', function () {
  this.timeout(60_000)

  it('the importer\'s leaves are a file cut in UNIXFS_CHUNK_BYTES pieces from its start (what a push sends)', async () => {
    const store = new BlobStore()
    await store.start()
    const bytes = randomBytes(BIG)
    const root = await store.putStream([bytes.subarray(0, 1000), bytes.subarray(1000)])
    expect(root).to.equal(await unixfsCidOfBytes(bytes))
    const pieces: string[] = []
    for (let pos = 0; pos < bytes.length; pos += UNIXFS_CHUNK_BYTES) pieces.push(cidOfBytes(bytes.subarray(pos, pos + UNIXFS_CHUNK_BYTES)))
    const held = (await store.blocks.list()).map(b => b.key)
    // every piece is a block of the DAG; the rest is its one root node
    expect(held.filter(k => k !== root).sort()).to.deep.equal([...pieces].sort())
    expect(held).to.have.length(pieces.length + 1)
  })

  describe('between a requester and its provider', function () {
    let requester: MercatoNode
    let provider: MercatoNode
    let stranger: MercatoNode
    let server: Server
    let base: string
    /** the gate's answers held until the test opens it */
    const waiting: Array<() => void> = []
    const openGate = (): void => { for (const release of waiting.splice(0)) release() }

    before(async () => {
      server = createServer((req, res) => {
        if (req.url !== '/gate') { res.writeHead(404); res.end(); return }
        waiting.push(() => { res.end('go') })
      })
      await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      requester = await startTestNode({ provide: false })
      provider = await startTestNode({ price: 1, bootstrap: requester.network.addresses() })
      stranger = await startTestNode({ provide: false, bootstrap: requester.network.addresses() })
      await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).includes(provider.peerId), 15_000)
      await waitFor(() => requester.network.isConnected(stranger.peerId), 15_000)
    })
    after(async () => {
      openGate()
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
      await stopNodes()
    })

    /** submit the big writer; it waits at its input until the gate opens (its attempt in flight meanwhile) */
    const submitGated = async (seed: number): Promise<string> => {
      const { id } = await requester.market.submit({
        engine: 'js',
        source: WRITE_BIG,
        input: { seed },
        inputs: [{ path: 'gate.txt', url: `${base}/gate`, sha256: createHash('sha256').update('go').digest('hex') }],
        limits: { memoryMb: 64, timeoutMs: 30_000 }
      })
      await waitFor(() => waiting.length > 0, 15_000)
      return id
    }

    it('a large output file is pushed while it is imported: the fetch after the result asks only for its root', async () => {
      const before = requester.market.blobStatus().blocks
      const pushes = requester.market.outputPushes()
      const id = await submitGated(1)
      openGate()
      const job = await requester.market.waitFor(id, { signal: AbortSignal.timeout(30_000) })
      expect(job.status, JSON.stringify(job)).to.equal('completed')
      const result = await requester.market.result(id)
      expect(result.outputs.map(o => [o.path, o.size])).to.deep.equal([['big.bin', BIG], ['small.txt', 7]])
      expect(result.outputs[0].cid).to.equal(await unixfsCidOfBytes(bigBytes(1)))
      expect(Buffer.compare(Buffer.from((await requester.market.getBlob(result.outputs[0].cid))!), Buffer.from(bigBytes(1)))).to.equal(0)
      // one push (the 7-byte file is not pushed: it is fetched), its 13 leaves, every byte of the file
      const after = requester.market.blobStatus().blocks
      expect(requester.market.outputPushes()).to.deep.equal({ accepted: pushes.accepted + 1, refused: pushes.refused, bytes: pushes.bytes + BIG })
      expect(after.blocksPushed - before.blocksPushed).to.equal(Math.ceil(BIG / UNIXFS_CHUNK_BYTES))
      // fetched after the result: the DAG's root and the small file, nothing else
      expect(after.blocksFetched - before.blocksFetched).to.equal(2)
    })

    it('strangers and bad first messages are refused before any block is read', async () => {
      const id = await submitGated(2)
      try {
        const before = requester.market.outputPushes()
        const blocks = requester.market.blobStatus().blocks.blocksPushed
        // a node that holds no attempt of the job, for a job that exists and is in flight
        const stranger1 = await openPush(stranger, requester, encodePushHello(id))
        expect(stranger1.reply).to.deep.equal({ refused: 'unknown-job' })
        await stranger1.channel.send(new Uint8Array(UNIXFS_CHUNK_BYTES)).catch(() => {})
        // the provider, for a job that is not there
        await stranger1.channel.close().catch(() => {})
        expect(await replyTo(provider, requester, encodePushHello('bafyreinotajobatall0000000000'))).to.deep.equal({ refused: 'unknown-job' })
        // not a hello: garbage, a hello of another version, a block first
        for (const bad of [randomBytes(40), new Uint8Array([0xa2, 0x61, 0x76, 0x02, 0x65]), new Uint8Array(400).fill(1)]) {
          expect(await replyTo(provider, requester, bad)).to.deep.equal({ refused: 'bad-request' })
        }
        await new Promise(resolve => setTimeout(resolve, 100))
        expect(requester.market.outputPushes()).to.deep.equal({ ...before, refused: before.refused + 5 })
        expect(requester.market.blobStatus().blocks.blocksPushed).to.equal(blocks)
      } finally {
        openGate()
      }
      const job = await requester.market.waitFor(id, { signal: AbortSignal.timeout(30_000) })
      expect(job.status, JSON.stringify(job)).to.equal('completed')
    })

    it('one push per job at a time; junk blocks from the provider are harmless; a job that is over takes no push', async () => {
      const id = await submitGated(3)
      const before = requester.market.outputPushes()
      let first: { channel: MessageChannel, reply: PushReply } | undefined
      try {
        // the awarded provider (here: a hand-made push from its node) is taken; a second push is not
        first = await openPush(provider, requester, encodePushHello(id))
        expect(first.reply).to.deep.equal({ stored: 0 })
        expect(await replyTo(provider, requester, encodePushHello(id))).to.deep.equal({ refused: 'busy' })
        // blocks that are no leaf of anything: stored under their own hash, cached, not a problem
        const junk = [randomBytes(UNIXFS_CHUNK_BYTES), randomBytes(1000)]
        for (const block of junk) await first.channel.send(block)
        await first.channel.close()
        await waitFor(() => requester.market.outputPushes().bytes === before.bytes + UNIXFS_CHUNK_BYTES + 1000, 10_000)
        expect(await requester.market.getBlob(cidOfBytes(junk[1]))).to.deep.equal(new Uint8Array(junk[1]))
      } finally {
        openGate()
      }
      // the provider's own push comes once the first one is over: the job completes with the right bytes
      const job = await requester.market.waitFor(id, { signal: AbortSignal.timeout(30_000) })
      expect(job.status, JSON.stringify(job)).to.equal('completed')
      const result = await requester.market.result(id)
      expect(Buffer.compare(Buffer.from((await requester.market.getBlob(result.outputs[0].cid))!), Buffer.from(bigBytes(3)))).to.equal(0)
      expect(requester.market.outputPushes().refused).to.equal(before.refused + 1)
      // over: no attempt in flight
      expect(await replyTo(provider, requester, encodePushHello(id))).to.deep.equal({ refused: 'unknown-job' })
    })

    it('strangers\' silent streams take no push slot: each is refused at once, and the provider\'s push is taken; its own silent stream is reset after OUTPUT_PUSH_HELLO_MS', async () => {
      const id = await submitGated(7)
      const strangers: NetworkNode[] = []
      const held: MessageChannel[] = []
      try {
        // four stranger identities, two push streams each (as many as a connection may have): all
        // the pushes a requester takes at once, if a stream took a slot before its hello
        for (let k = 0; k < MAX_OUTPUT_PUSHES / 2; k++) {
          const net = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
          strangers.push(net)
          for (let i = 0; i < 2; i++) held.push(await net.openChannel(requester.network.addresses()[0], OUTPUT_PUSH_PROTOCOL, { maxMessageBytes: 512 }))
        }
        // the provider of the job pushes while they say nothing: taken
        const push = await openPush(provider, requester, encodePushHello(id))
        expect(push.reply).to.deep.equal({ stored: 0 })
        // the strangers were each refused as their stream opened, without waiting for a hello
        const answers = await Promise.all(held.map(async ch => await Promise.race([
          ch[Symbol.asyncIterator]().next().then(r => r.done === true ? 'closed' : JSON.stringify(decodePushReply(r.value)), () => 'reset'),
          new Promise<string>(resolve => setTimeout(() => { resolve('no answer') }, 1000))
        ])))
        expect(answers).to.deep.equal(held.map(() => JSON.stringify({ refused: 'unknown-job' })))
        // a stream from the provider that says nothing is reset after OUTPUT_PUSH_HELLO_MS, not OUTPUT_PUSH_STALL_MS
        // timed from before the open: the requester's timer starts when its side of the stream does,
        // which a loaded machine may run before the open resolves here (1,793 ms were measured from after it)
        const t0 = Date.now()
        const silent = await provider.network.openChannel(requester.peerId, OUTPUT_PUSH_PROTOCOL, { maxMessageBytes: 512 })
        const ended = await silent[Symbol.asyncIterator]().next().then(r => r.done === true ? 'closed' : 'a reply', () => 'reset')
        expect(ended).to.not.equal('a reply')
        expect(Date.now() - t0).to.be.within(OUTPUT_PUSH_HELLO_MS - 200, OUTPUT_PUSH_HELLO_MS + 2000)
        await push.channel.close()
      } finally {
        for (const ch of held) ch.abort()
        await Promise.all(strangers.map(async n => { await n.stop() }))
        openGate()
      }
      const job = await requester.market.waitFor(id, { signal: AbortSignal.timeout(30_000) })
      expect(job.status, JSON.stringify(job)).to.equal('completed')
    })

    it('the fetch after the result waits for a push under way, and leaves that come after the result still count', async () => {
      const id = await submitGated(4)
      const before = requester.market.blobStatus().blocks
      // a push from the provider's node, opened before its own (which is then refused: one per job)
      const push = await openPush(provider, requester, encodePushHello(id))
      expect(push.reply).to.deep.equal({ stored: 0 })
      openGate()
      // the result is in and the requester is collecting: it waits for our push, which has sent nothing yet
      await waitFor(() => (requester.market.heldEvents(id) ?? []).some(e => e.type === 'collecting'), 20_000)
      await new Promise(resolve => setTimeout(resolve, 200))
      expect((await requester.market.get(id)).status).to.equal('running')
      // now the leaves of big.bin, as a push sends them
      const bytes = bigBytes(4)
      for (let pos = 0; pos < bytes.length; pos += UNIXFS_CHUNK_BYTES) await push.channel.send(bytes.subarray(pos, pos + UNIXFS_CHUNK_BYTES))
      await push.channel.close()
      const job = await requester.market.waitFor(id, { signal: AbortSignal.timeout(20_000) })
      expect(job.status, JSON.stringify(job)).to.equal('completed')
      const after = requester.market.blobStatus().blocks
      expect(after.blocksPushed - before.blocksPushed).to.equal(Math.ceil(BIG / UNIXFS_CHUNK_BYTES))
      // the root and the small file: every leaf of big.bin came by the push
      expect(after.blocksFetched - before.blocksFetched).to.equal(2)
    })
  })

  describe('a push that goes silent', function () {
    after(stopNodes)

    it('is reset after OUTPUT_PUSH_STALL_MS: the result waits for it no longer, the job completes by the fetch', async () => {
      const requester = await startTestNode({ provide: false })
      const provider = await startTestNode({ price: 1, bootstrap: requester.network.addresses() })
      await waitFor(() => requester.network.topicPeers(JOBS_TOPIC).includes(provider.peerId), 15_000)
      const source = WRITE_BIG.replace("readFile('gate.txt')", "for (let k = 0; k < 3e6; k++) {}")
      const { id } = await requester.market.submit({ engine: 'js', source, input: { seed: 6 }, limits: { memoryMb: 64, timeoutMs: 30_000 } })
      // as soon as the provider holds the job, a push from its node that says nothing after its hello
      await waitFor(async () => (await requester.market.get(id)).attempts.some(a => a.state === 'accepted' || a.state === 'running'), 15_000, 5)
      const silent = await openPush(provider, requester, encodePushHello(id))
      expect(silent.reply).to.deep.equal({ stored: 0 })
      const openedAt = Date.now()
      const job = await requester.market.waitFor(id, { signal: AbortSignal.timeout(OUTPUT_PUSH_STALL_MS + 20_000) })
      expect(job.status, JSON.stringify(job)).to.equal('completed')
      // settled only once the silent push was reset
      expect(Date.now() - openedAt).to.be.at.least(OUTPUT_PUSH_STALL_MS - 500)
      const result = await requester.market.result(id)
      expect(Buffer.compare(Buffer.from((await requester.market.getBlob(result.outputs[0].cid))!), Buffer.from(bigBytes(6)))).to.equal(0)
      // the silent stream was reset by the requester
      const ended = await silent.channel[Symbol.asyncIterator]().next().then(r => r.done, () => true)
      expect(ended).to.equal(true)
    })
  })

  describe('with replicas', function () {
    after(stopNodes)

    it('one replica pushes; its twins are refused (their files are held, or fetched where they differ)', async () => {
      const requester = await startTestNode({ provide: false })
      const providers = await Promise.all([1, 2, 3].map(async price => await startTestNode({ price, bootstrap: requester.network.addresses() })))
      await waitFor(() => providers.every(p => requester.network.topicPeers(JOBS_TOPIC).includes(p.peerId)), 15_000)
      const source = WRITE_BIG.replace("readFile('gate.txt')", '')
      const { id } = await requester.market.submit({ engine: 'js', source, input: { seed: 5 }, replicas: 3, maxPrice: 10, bidWindowMs: 3000, limits: { memoryMb: 64, timeoutMs: 30_000 } })
      const job = await requester.market.waitFor(id, { signal: AbortSignal.timeout(30_000) })
      expect(job.status, JSON.stringify(job)).to.equal('completed')
      // the quorum settles the job; the third replica finishes after it (and is paid if it agrees)
      await waitFor(async () => (await requester.market.get(id)).attempts.filter(a => a.state === 'completed').length === 3, 20_000)
      const pushes = requester.market.outputPushes()
      expect(pushes.accepted, JSON.stringify(pushes)).to.equal(1)
      expect(pushes.bytes).to.equal(BIG)
      expect(requester.market.blobStatus().blocks.blocksPushed).to.equal(Math.ceil(BIG / UNIXFS_CHUNK_BYTES))
      // (what the twins fetch after their results depends on the order things happen in: usually
      // nothing, the first push being over; a result that overtakes the first push fetches leaves)
      const result = await requester.market.result(id)
      expect(Buffer.compare(Buffer.from((await requester.market.getBlob(result.outputs[0].cid))!), Buffer.from(bigBytes(5)))).to.equal(0)
    })
  })

  describe('across processes (@slow)', function () {
    this.timeout(120_000)
    after(stopAll)

    /** 128 MiB written 1 MiB at a time (each MiB stamped with its number): a push of about a second */
    const MIBS = 128
    const WRITE_MANY = `function main () {
      const c = new Uint8Array(1 << 20)
      for (let i = 0; i < c.length; i++) c[i] = (i * 13) & 255
      for (let k = 0; k < ${MIBS}; k++) { c[0] = k & 255; c[1] = k >> 8; appendFile('big.bin', c) }
      return ${MIBS}
    }`
    const expectedSha256 = (): string => {
      const c = new Uint8Array(MiB)
      for (let i = 0; i < c.length; i++) c[i] = (i * 13) & 255
      const hash = createHash('sha256')
      for (let k = 0; k < MIBS; k++) { c[0] = k & 255; c[1] = k >> 8; hash.update(c) }
      return hash.digest('hex')
    }
    const blocksOf = async (node: NodeProcess): Promise<{ blocksPushed: number, blocksFetched: number }> => (await getJson(`${node.gatewayUrl}/v1/node`)).body.blobs.blocks

    it('the provider is SIGKILLed while it pushes a 128 MiB output: the job completes on the runner-up, every byte checked', async () => {
      const requester = await startNodeProcess(['--no-provide'])
      const boot = requester.addresses[0]
      const providers = await Promise.all([1, 2].map(async (p) => await startNodeProcess(['--bootstrap', boot, '--price', String(p), '--slots', '1'])))
      await waitForAsync(async () => ((await getJson(`${requester.gatewayUrl}/v1/providers`)).body as unknown[]).length >= 2, 20_000)
      const submitted = await getJson(`${requester.gatewayUrl}/v1/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ engine: 'js', source: WRITE_MANY, limits: { timeoutMs: 30_000 }, maxPrice: 50 })
      })
      expect(submitted.status, JSON.stringify(submitted.body)).to.equal(202)
      const id = submitted.body.id as string
      // the winner's push has begun: kill it mid-transfer
      await waitForAsync(async () => (await blocksOf(requester)).blocksPushed > 0, 60_000, 5)
      const job0 = (await getJson(`${requester.gatewayUrl}/v1/jobs/${id}`)).body
      const victim = providers.find(p => p.peerId === job0.provider) as NodeProcess
      expect(victim, JSON.stringify(job0)).to.not.equal(undefined)
      victim.proc.kill('SIGKILL')
      await victim.exited
      const pushedAtKill = (await blocksOf(requester)).blocksPushed
      let done: any
      await waitForAsync(async () => { done = (await getJson(`${requester.gatewayUrl}/v1/jobs/${id}`)).body; return ['completed', 'failed', 'no-bids'].includes(done.status) }, 60_000, 50)
      expect(done.status, JSON.stringify(done)).to.equal('completed')
      expect(done.provider).to.not.equal(victim.peerId)
      expect(done.attempts.find((a: any) => a.provider === victim.peerId).state, JSON.stringify(done.attempts)).to.equal('lost')
      // less than the whole file had come when the victim died: the runner-up's push brought the rest
      expect(pushedAtKill).to.be.lessThan(MIBS * 4)
      // the output, streamed out of the requester's gateway: the job's bytes
      const res = await fetch(`${requester.gatewayUrl}/v1/jobs/${id}/outputs/big.bin`)
      expect(res.status).to.equal(200)
      const hash = createHash('sha256')
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) hash.update(chunk)
      expect(hash.digest('hex')).to.equal(expectedSha256())
      // the requester is well: it still answers
      expect((await getJson(`${requester.gatewayUrl}/v1/node`)).status).to.equal(200)
    })
  })
})
