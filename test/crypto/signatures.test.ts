/**
 * Signed messages: a copy decoded afresh that was verified before (or signed here) is not
 * verified again, and nothing but the exact signer, signature and bytes gets that pass.
 */
import { expect } from 'chai'
import { canonicalDecode, canonicalEncode, randomSigner, signatureChecks, signMessage, signPayload, verifyMessage, type Signed } from '../../src/crypto/index.js'

/** A fresh object for the same message, as the network hands one over. */
const copy = <T>(m: Signed<T>): Signed<T> => canonicalDecode(canonicalEncode(m)) as Signed<T>

describe('crypto: signatures checked once per process', () => {
  it('a message signed here comes back (through the loopback) without an Ed25519 verification', () => {
    const s = randomSigner()
    const m = signMessage(s, 'receipt', { v: 1, jobId: 'j1', price: 3 })
    const before = { ...signatureChecks }
    expect(verifyMessage(copy(m), 'receipt')).to.equal(true)
    expect(signatureChecks.verified - before.verified).to.equal(0)
    expect(signatureChecks.cached - before.cached).to.equal(1)
  })

  it('a foreign message is verified the first time and looked up after; a changed payload, signer or signature is verified, and fails', () => {
    const other = randomSigner()
    // signed elsewhere: signPayload alone, so this process has no record of it
    const payload = { v: 1, jobId: 'j2', price: 5 }
    const m: Signed = { domain: 'bid', signer: other.peerId, payload, sig: signPayload(other, 'bid', payload) }
    const before = { ...signatureChecks }
    expect(verifyMessage(copy(m), 'bid')).to.equal(true)
    expect(signatureChecks.verified - before.verified, 'the first copy went to Ed25519').to.equal(1)
    expect(verifyMessage(copy(m), 'bid')).to.equal(true)
    expect(verifyMessage(copy(m), 'bid')).to.equal(true)
    expect(signatureChecks.verified - before.verified, 'the next copies were looked up').to.equal(1)
    expect(signatureChecks.cached - before.cached).to.equal(2)

    expect(verifyMessage({ ...copy(m), payload: { v: 1, jobId: 'j2', price: 4 } }, 'bid'), 'a changed payload under the same signature').to.equal(false)
    expect(verifyMessage({ ...copy(m), signer: randomSigner().peerId }, 'bid'), 'the same signature and bytes under another signer').to.equal(false)
    const sig = new Uint8Array(m.sig)
    sig[0] ^= 1
    expect(verifyMessage({ ...copy(m), sig }, 'bid'), 'a changed signature').to.equal(false)
    expect(verifyMessage({ ...copy(m), domain: 'offer' }), 'another domain').to.equal(false)
    expect(signatureChecks.verified - before.verified, 'each went to Ed25519').to.equal(5)
    expect(signatureChecks.cached - before.cached).to.equal(2)
  })
})
