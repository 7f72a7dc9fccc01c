import '../../src/polyfill.js'
import { expect } from 'chai'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateIdentity, IDENTITY_FILE } from '../../src/p2p/index.js'
import { libp2pKeyFromSeed } from '../../src/p2p/identity.js'
import { tempDir, stopAll, runCli } from '../helpers/cli.js'

describe('identity', () => {
  after(stopAll)

  it('survives a restart (same PeerId) and the key file is mode 0600', async () => {
    const dir = await tempDir()
    const a = await loadOrCreateIdentity(dir)
    const b = await loadOrCreateIdentity(dir)
    expect(a.peerId).to.match(/^12D3KooW/)
    expect(b.peerId).to.equal(a.peerId)
    const st = await stat(join(dir, IDENTITY_FILE))
    expect(st.mode & 0o777).to.equal(0o600)
  })

  it('`mercato id` prints the PeerId alone, the same on every call', async () => {
    const dir = await tempDir()
    const first = await runCli(['id', '--data-dir', dir])
    const second = await runCli(['id', '--data-dir', dir])
    expect(first.code).to.equal(0)
    expect(first.stdout).to.match(/^12D3KooW\w+\n$/)
    expect(second.stdout).to.equal(first.stdout)
    const id = await loadOrCreateIdentity(dir)
    expect(first.stdout.trim()).to.equal(id.peerId)
  })

  it('the libp2p key built from the seed (public key from node:crypto) is the one @libp2p/crypto derives, and signs alike', async () => {
    const dir = await tempDir()
    const id = await loadOrCreateIdentity(dir)
    const ours = await libp2pKeyFromSeed(id.seed)
    const theirs = await generateKeyPairFromSeed('Ed25519', id.seed)
    expect(Buffer.from(ours.raw).equals(Buffer.from(theirs.raw))).to.equal(true)
    expect(peerIdFromPrivateKey(ours).toString()).to.equal(id.peerId)
    const msg = new TextEncoder().encode('mercato')
    expect(await theirs.publicKey.verify(msg, await ours.sign(msg))).to.equal(true)
  })
})
