/**
 * `GET /v1/blobs/:cid` on a node that does not hold the blob: it fetches it block by block from the
 * peer named in `?from=` (or the DHT's holders), then streams it. Two in-process nodes on 127.0.0.1.
 */
import '../../src/polyfill.js'
import { expect } from 'chai'
import { createHash, randomBytes } from 'node:crypto'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes } from '../helpers/nodes.js'

describe('GET /v1/blobs/:cid fetches a blob it does not hold', function () {
  this.timeout(60_000)
  let a: MercatoNode
  let b: MercatoNode
  before(async () => {
    a = await startTestNode({ gateway: true, provide: false })
    b = await startTestNode({ gateway: true, provide: false, bootstrap: [a.network.addresses()[0]] })
  })
  after(stopNodes)

  it('from the peer in ?from=, block by block, then streams it whole', async () => {
    const bytes = randomBytes(2 * 1024 * 1024 + 5)
    const up = await fetch(`${a.gateway!.url}/v1/blobs`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: bytes })
    expect(up.status).to.equal(201)
    const { cid } = await up.json() as { cid: string }
    const res = await fetch(`${b.gateway!.url}/v1/blobs/${cid}?from=${encodeURIComponent(a.network.addresses()[0])}`)
    expect(res.status).to.equal(200)
    const got = Buffer.from(await res.arrayBuffer())
    expect(createHash('sha256').update(got).digest('hex')).to.equal(createHash('sha256').update(bytes).digest('hex'))
    // held now: served without asking again
    expect((await fetch(`${b.gateway!.url}/v1/blobs/${cid}`)).status).to.equal(200)
  })

  it('HEAD gives the size from the blob\'s root and does not fetch the rest', async () => {
    const bytes = randomBytes(16 * 1024 * 1024 + 3) // 65 leaves and a root
    const up = await fetch(`${a.gateway!.url}/v1/blobs`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: bytes })
    const { cid } = await up.json() as { cid: string }
    const before = b.market.blobStatus().blocks.blocksFetched
    const res = await fetch(`${b.gateway!.url}/v1/blobs/${cid}?from=${encodeURIComponent(a.network.addresses()[0])}`, { method: 'HEAD' })
    expect(res.status).to.equal(200)
    expect(res.headers.get('content-length')).to.equal(String(bytes.length))
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(b.market.blobStatus().blocks.blocksFetched - before, 'blocks fetched for a HEAD').to.be.below(66)
    expect(await b.market.catBlob(cid)).to.equal(undefined)
  })

  it('404 blob-not-found when nobody named has it; 400 for a CID that is no UnixFS file', async () => {
    const missing = 'bafkreidfdrlkeq4m4xnxuyx6iae76fdm4wgl5d4xzsb77ixhyqwumhz244'
    const res = await fetch(`${b.gateway!.url}/v1/blobs/${missing}?from=${encodeURIComponent(a.network.addresses()[0])}`)
    expect(res.status).to.equal(404)
    expect((await res.json() as any).error.code).to.equal('blob-not-found')
    // a dag-cbor CID (a ledger record's kind), not a file
    const cbor = await fetch(`${b.gateway!.url}/v1/blobs/bafyreihdb57fdysx5h35urvxz64ros7zvywshber7id6t6c6fek37jgyfe?from=${encodeURIComponent(a.network.addresses()[0])}`)
    expect(cbor.status).to.equal(400)
    expect((await cbor.json() as any).error.code).to.equal('invalid-blob')
  })
})
