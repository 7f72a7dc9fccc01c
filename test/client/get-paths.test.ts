/**
 * `mercato get`'s path check on its own (getOutputs with a client that lists fixed outputs): a
 * name that merely starts with two dots is an ordinary file inside DIR, a `..` segment is not.
 */
import { expect } from 'chai'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getOutputs } from '../../src/cli/get.js'
import type { MercatoClient, OutputRef } from '../../src/client/index.js'
import { cidOfBytes } from '../../src/crypto/index.js'
import { unixfsCidOfBytes } from '../../src/crypto/unixfs.js'
import { outputTarget } from '../../src/executor/index.js'

const enc = new TextEncoder()

/** A client that lists `files` (path: text) as a finished job's outputs and serves their bytes. */
function listing (files: Record<string, string>): MercatoClient {
  const refs: OutputRef[] = Object.entries(files).map(([path, text]) => ({ path, cid: cidOfBytes(enc.encode(text)), size: enc.encode(text).length }))
  return {
    outputs: async () => refs,
    streamOutput: async (_id: string, file: string | OutputRef) => {
      const bytes = enc.encode(files[typeof file === 'string' ? file : file.path])
      return { ref: file, total: bytes.length, content: [bytes] }
    }
  } as unknown as MercatoClient
}

describe('mercato get: output paths', () => {
  let base: string
  beforeEach(async () => { base = await mkdtemp(join(tmpdir(), 'mercato-get-')) })
  afterEach(async () => { await rm(base, { recursive: true, force: true }) })
  const io = { out: () => {}, err: () => {}, tty: false }

  it('a file whose name starts with ".." is written inside DIR', async () => {
    const code = await getOutputs(listing({ '..notes.txt': 'dots\n', 'a/..b': 'deep\n' }), 'job', base, io)
    expect(code).to.equal(0)
    expect(await readFile(join(base, '..notes.txt'), 'utf8')).to.equal('dots\n')
    expect(await readFile(join(base, 'a', '..b'), 'utf8')).to.equal('deep\n')
  })

  it('a file whose bytes do not match its CID is refused (output-mismatch) and not left behind', async () => {
    const lying = listing({ 'ok.txt': 'ok\n' })
    const refs = await lying.outputs('job')
    refs[0].cid = cidOfBytes(enc.encode('other\n'))
    const err = await getOutputs(lying, 'job', base, io).then(() => undefined, (e: any) => e)
    expect(err?.code).to.equal('output-mismatch')
    expect(await readdir(base)).to.deep.equal([])
  })

  it('a large file is checked against its UnixFS CID (ipfs add --cid-version 1)', async () => {
    const big = 'x'.repeat(600 * 1024)
    const client = listing({ 'big.txt': big })
    const refs = await client.outputs('job')
    refs[0].cid = await unixfsCidOfBytes(enc.encode(big))
    expect(await getOutputs(client, 'job', base, io)).to.equal(0)
    expect((await readFile(join(base, 'big.txt'), 'utf8')).length).to.equal(big.length)
  })

  it('a ".." segment or an absolute path is refused and nothing is written', async () => {
    for (const bad of ['../x', 'a/../../x', '/etc/x', 'a/..', '']) {
      await getOutputs(listing({ 'ok.txt': 'ok\n', [bad]: 'bad\n' }), 'job', base, io).then(
        () => expect.fail(`${JSON.stringify(bad)} was accepted`),
        (err: Error) => { expect(err.name).to.equal('UsageError') })
      expect(await readdir(base)).to.deep.equal([])
    }
  })

  it('outputTarget: inside the root, also when the root is /', () => {
    expect(outputTarget('/tmp/d', '..x')).to.equal('/tmp/d/..x')
    expect(outputTarget('/tmp/d/', 'a/b')).to.equal('/tmp/d/a/b')
    expect(outputTarget('/', 'a/b')).to.equal('/a/b')
    expect(outputTarget('/tmp/d', '../d2/x')).to.equal(undefined)
    expect(outputTarget('/tmp/d', '.')).to.equal(undefined)
  })
})
