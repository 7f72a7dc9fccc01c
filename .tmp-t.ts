import { randomSigner, signPayload, verifyPayload, cidOfValue, cidOfBytes, bytesMatchCid } from '/work/main/src/crypto/index.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { signerFromSeed } from '/work/main/src/crypto/index.js'
const s = randomSigner()
const sig = signPayload(s, 'mercato/v1/test', { a: 1, b: 'x', c: undefined })
console.log(s.peerId, verifyPayload(s.peerId, 'mercato/v1/test', { b: 'x', a: 1 }, sig), verifyPayload(s.peerId, 'mercato/v1/bid', { a: 1, b: 'x' }, sig))
const k = await generateKeyPair('Ed25519')
const seed = k.raw.subarray(0, 32)
console.log(peerIdFromPrivateKey(k).toString() === signerFromSeed(seed).peerId)
const b = new Uint8Array([1,2,3]); const c = cidOfBytes(b); console.log(c, bytesMatchCid(b, c), cidOfValue({x:1}))
let t = performance.now(); for (let i=0;i<10000;i++) signPayload(s, 'd', {i, x: 'hello world'}); console.log('sign/s', 10000/(performance.now()-t)*1000)
t = performance.now(); for (let i=0;i<10000;i++) verifyPayload(s.peerId, 'd', {i:0, x: 'hello world'}, sig); console.log('verify/s', 10000/(performance.now()-t)*1000)
