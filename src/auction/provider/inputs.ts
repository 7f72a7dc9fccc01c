/**
 * A won job's input files, from the provider's side: fetched before the job starts, handed to the
 * executor (it reads them as the guest reads, never whole), and let go when the job is over.
 *
 * - Blob inputs (`{ path, cid, size }`) come over the blob protocol from the requester, or from a
 *   holder the DHT names, each capped at the size the signed offer gives and checked against its CID,
 *   into the blob store. The job reads them there: the ranges of the pack files that hold their
 *   leaves (BlobStore.extents, no copy), held and leased until the job is over; an executor that
 *   cannot open those (an isolated pool) gets a copy in a folder of the job's (under
 *   `provider.inputsDir`), removed when the job is over.
 * - URL inputs (`{ path, url, sha256, size? }`) are fetched into that folder with `fetch()`: http and https only (a
 *   redirect elsewhere, to `file:` or `data:` say, is refused; at most INPUT_URL_MAX_REDIRECTS hops),
 *   streamed to disk and stopped at the provider's per-file cap (or the room left in its total cap),
 *   within `urlTimeoutMs` for the whole body, and the pinned sha256 (and size, when given) checked
 *   before the job starts. Unless the provider allows private addresses (`dialPrivateAddresses`,
 *   devnets and tests), a URL whose host resolves to a loopback, private or link-local address is
 *   refused: a signed offer must not make providers probe their own network.
 *
 * Each problem is a named failure ({@link InputFailure}), the same on every provider that meets it,
 * so replicas agree on it: `input-mismatch` (bytes other than pinned), `input-too-large` (over a
 * cap), `input-unreachable` (not served, HTTP error, timeout, a refused address or redirect). A
 * failed fetch leaves nothing behind: the job's folder goes with the failure.
 */
import { createHash, randomBytes } from 'node:crypto'
import { lookup, type LookupAddress } from 'node:dns'
import { BlockList, isIP, type LookupFunction } from 'node:net'
import type { Agent, Response } from 'undici'
import { closeSync, openSync, writeSync } from 'node:fs'
import { mkdir, open, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { ExecInput } from '../../executor/index.js'
import { MAX_INPUT_EXTENT_FILES, MAX_INPUT_EXTENTS } from '../../executor/constants.js'
import { INPUT_FETCH_BASE_MS, INPUT_FETCH_MIN_BYTES_PER_SEC, INPUT_URL_MAX_REDIRECTS, transferBudgetMs } from '../constants.js'
import type { InputRef, Offer } from '../protocol/messages.js'
import { fromRequesterOrHolders, inputLimits, type ProviderContext } from './state.js'

export type InputFailureName = 'input-mismatch' | 'input-too-large' | 'input-unreachable'

/** A job's inputs could not be had as the offer pins them: the job ends with this failure (a signed result naming it). */
export class InputFailure extends Error {
  readonly code: InputFailureName
  constructor (code: InputFailureName, message: string) {
    super(message)
    this.name = 'InputFailure'
    this.code = code
  }
}

/** Addresses a URL input may not reach unless the provider allows private addresses. */
const PRIVATE = new BlockList()
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.168.0.0', 16], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) PRIVATE.addSubnet(net, bits, 'ipv4')
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) PRIVATE.addSubnet(net, bits, 'ipv6')

function isPrivateAddress (address: string): boolean {
  const family = isIP(address)
  if (family === 4) return PRIVATE.check(address, 'ipv4')
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
    return mapped != null ? PRIVATE.check(mapped[1], 'ipv4') : PRIVATE.check(address, 'ipv6')
  }
  return true
}

/** A name that resolved to a private address (the connection was never made). */
class PrivateAddressError extends Error {
  readonly code = 'EPRIVATE'
}

/**
 * DNS for URL inputs, checked where the connection is made: the addresses checked are the ones
 * connected to. (Checking a name first and letting fetch() resolve it again would let a name that
 * answers a public address, then 127.0.0.1, reach the provider's own services: DNS rebinding.)
 */
const publicLookup: LookupFunction = (hostname, options, callback) => {
  lookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err != null) { callback(err, '', 0); return }
    if (addresses.length === 0 || addresses.some(a => isPrivateAddress(a.address))) {
      callback(new PrivateAddressError(`host ${hostname.slice(0, 200)} is a private address`), '', 0)
      return
    }
    if (options.all === true) (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses)
    else callback(null, addresses[0].address, addresses[0].family)
  })
}
/**
 * The HTTP client of URL inputs (undici, loaded with the first URL input: most nodes never fetch
 * one), with an agent for a provider that does not dial private addresses and one for one that does.
 */
interface HttpClient { fetch: typeof import('undici').fetch, publicOnly: Agent, anyAddress: Agent }
let http: Promise<HttpClient> | undefined
async function httpClient (): Promise<HttpClient> {
  http ??= import('undici').then(({ Agent, fetch }) => ({ fetch, publicOnly: new Agent({ connect: { lookup: publicLookup } }), anyAddress: new Agent() }))
  return await http
}

/** The staged inputs of one job, and how to remove them. */
export interface StagedInputs { inputs: ExecInput[], dir: string, remove: () => Promise<void> }

/**
 * Fetch a job's inputs into a folder of its own. Throws {@link InputFailure} (the folder removed), or
 * the signal's reason when the award was withdrawn.
 */
export async function stageInputs (ctx: ProviderContext, o: Offer, requester: string, signal: AbortSignal): Promise<StagedInputs | undefined> {
  const list = o.spec.inputs ?? []
  if (list.length === 0) return undefined
  const limits = inputLimits(ctx.cfg)
  if (list.length > limits.maxFiles) throw new InputFailure('input-too-large', `${list.length} input files, over ${limits.maxFiles}`)
  const dir = join(ctx.cfg.inputsDir, `${createHash('sha256').update(o.jobId).digest('hex').slice(0, 16)}-${randomBytes(6).toString('hex')}`)
  // blobs read in place: held, their packs leased, until the job is over
  const releases: Array<() => void> = []
  const remove = async (): Promise<void> => {
    for (const release of releases.splice(0)) release()
    await rm(dir, { recursive: true, force: true }).catch(err => { ctx.log.warn({ err, dir }, 'could not remove staged inputs') })
  }
  await mkdir(dir, { recursive: true })
  const inputs: ExecInput[] = []
  let total = 0
  try {
    for (let k = 0; k < list.length; k++) {
      signal.throwIfAborted()
      const i = list[k]
      const file = join(dir, String(k))
      const room = Math.min(limits.maxFileBytes, limits.maxTotalBytes - total)
      if (i.size != null && i.size > limits.maxFileBytes) throw new InputFailure('input-too-large', `input ${i.path}: ${i.size} bytes, over ${limits.maxFileBytes} a file`)
      if (i.size != null && i.size > room) throw new InputFailure('input-too-large', `input ${i.path}: ${i.size} bytes, over the ${limits.maxTotalBytes} bytes all inputs may take`)
      if ('cid' in i) {
        const blob = await fetchBlobInput(ctx, i, requester, file, signal)
        total += blob.size
        inputs.push(blob.input)
        if (blob.release != null) releases.push(blob.release)
      } else {
        total += await fetchUrlInput(ctx, i, file, room, Math.min(limits.urlTimeoutMs, 24 * 3600_000), signal)
        inputs.push({ path: i.path, file })
      }
    }
  } catch (err) {
    await remove()
    throw err
  }
  return { inputs, dir, remove }
}

/**
 * A blob input, block by block into the blob store (each block checked against its CID, capped at
 * the size the offer names). Then, for an executor that reads in place, the job reads it where the
 * store keeps it (ranges of its packs: no copy; the blob held and its packs leased until `release`);
 * otherwise it is copied into the job's folder (`file`). Never the whole input in memory.
 */
async function fetchBlobInput (ctx: ProviderContext, i: Extract<InputRef, { cid: string }>, requester: string, file: string, signal: AbortSignal): Promise<{ size: number, input: ExecInput, release?: () => void }> {
  const { blobs } = ctx.deps
  // held from the first block on: the collector must not take it meanwhile; afterwards it is
  // cache, collected when the store is past blobs.cacheMaxBytes
  const hold = blobs.gc.hold(i.cid)
  const letGo = (): void => { hold(); blobs.gc.collectSoon() }
  let size: number
  let inPlace: Awaited<ReturnType<typeof blobs.extents>>
  try {
    size = await pull(ctx, i, requester, signal)
    // (past what the executor takes, a DAG naming one small leaf many times or scattered over many packs: copied)
    inPlace = ctx.backend.readsInPlace === true ? await blobs.extents(i.cid, { maxExtents: MAX_INPUT_EXTENTS, maxFiles: MAX_INPUT_EXTENT_FILES }) : undefined
  } catch (err) {
    letGo()
    throw err
  }
  if (inPlace != null) {
    const lease = inPlace.release
    return { size, input: { path: i.path, extents: inPlace.extents }, release: () => { lease(); letGo() } }
  }
  try {
    await copyInto(ctx, i, file, signal)
  } finally {
    letGo()
  }
  return { size, input: { path: i.path, file } }
}

/** How long a blob input of `bytes` may take to arrive (INPUT_FETCH_BASE_MS, INPUT_FETCH_MIN_BYTES_PER_SEC). PURE. */
export function inputFetchMs (bytes: number): number {
  return transferBudgetMs(bytes, INPUT_FETCH_BASE_MS, INPUT_FETCH_MIN_BYTES_PER_SEC)
}

/** Pull a blob input into the blob store; its size, which must be the one the offer names. */
async function pull (ctx: ProviderContext, i: Extract<InputRef, { cid: string }>, requester: string, signal: AbortSignal): Promise<number> {
  const { blobs } = ctx.deps
  const withinMs = inputFetchMs(i.size)
  const deadline = AbortSignal.timeout(withinMs)
  const both = AbortSignal.any([signal, deadline])
  let size: number
  try {
    size = await fromRequesterOrHolders(ctx, i.cid, requester, async peers => await blobs.pull(ctx.network, i.cid, peers, { maxBytes: i.size, signal: both }), both)
  } catch (err) {
    signal.throwIfAborted()
    ctx.log.debug({ err, cid: i.cid }, 'input blob not served')
    if (deadline.aborted) throw new InputFailure('input-unreachable', `input ${i.path}: blob ${i.cid} was not fetched within ${withinMs} ms`)
    throw new InputFailure('input-unreachable', `input ${i.path}: blob ${i.cid} is not served by the requester or any holder`)
  }
  if (size !== i.size) throw new InputFailure('input-mismatch', `input ${i.path}: blob ${i.cid} has ${size} bytes, not ${i.size}`)
  return size
}

/** A held blob streamed into the job's folder (an executor that cannot read the block store's packs). */
async function copyInto (ctx: ProviderContext, i: Extract<InputRef, { cid: string }>, file: string, signal: AbortSignal): Promise<void> {
  // block by block, written as it comes: synchronous writes of a block each to the page cache, no
  // stream machinery between (bench:data, staging a 100 MiB input: 190-320 ms through a write stream)
  const fd = openSync(file, 'wx')
  try {
    for await (const block of ctx.deps.blobs.cat(i.cid, { signal })) {
      for (let n = 0; n < block.length;) n += writeSync(fd, block, n, block.length - n)
    }
  } finally {
    closeSync(fd)
  }
}

/** Fetch one URL input into `file`, at most `maxBytes`, within `timeoutMs`; returns its size once its sha256 (and size) matched. */
async function fetchUrlInput (ctx: ProviderContext, i: Extract<InputRef, { url: string }>, file: string, maxBytes: number, timeoutMs: number, signal: AbortSignal): Promise<number> {
  // loading the HTTP client (the first URL input of the process) is not the URL's time
  const client = await httpClient()
  const timeout = AbortSignal.timeout(timeoutMs)
  const both = AbortSignal.any([signal, timeout])
  const unreachable = (why: string): InputFailure => new InputFailure('input-unreachable', `input ${i.path}: ${why}`)
  const tooLarge = (): InputFailure => new InputFailure('input-too-large', `input ${i.path}: more than ${maxBytes} bytes at ${i.url.slice(0, 200)}`)
  // every error while fetching: a withdrawal passes through, a timeout and the rest are named
  const named = (err: unknown): unknown => {
    if (err instanceof InputFailure) return err
    if (signal.aborted) return signal.reason
    if (timeout.aborted) return unreachable(`not fetched within ${timeoutMs} ms`)
    const cause = (err as { cause?: unknown })?.cause
    if (cause instanceof PrivateAddressError) return unreachable(cause.message)
    if ((cause as { code?: string })?.code === 'ENOTFOUND') return unreachable(`host ${new URL(i.url).hostname.slice(0, 200)} does not resolve`)
    ctx.log.debug({ err, url: i.url }, 'URL input not fetched')
    return unreachable(`${i.url.slice(0, 200)} could not be fetched`)
  }
  let url = new URL(i.url)
  let res: Response
  try {
    for (let hop = 0; ; hop++) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw unreachable(`redirected to a ${url.protocol} URL (http and https only)`)
      const strict = ctx.cfg.dialPrivateAddresses !== true
      // an address literal is never looked up: checked here; a name is checked as it is connected to
      const host = url.hostname.replace(/^\[|\]$/g, '')
      if (strict && isIP(host) !== 0 && isPrivateAddress(host)) throw unreachable(`host ${host.slice(0, 200)} is a private address`)
      res = await client.fetch(url, { redirect: 'manual', signal: both, headers: { accept: '*/*' }, dispatcher: strict ? client.publicOnly : client.anyAddress })
      const location = res.headers.get('location')
      if (res.status >= 300 && res.status < 400 && location != null) {
        await res.body?.cancel().catch(() => {})
        if (hop >= INPUT_URL_MAX_REDIRECTS) throw unreachable(`more than ${INPUT_URL_MAX_REDIRECTS} redirects`)
        try { url = new URL(location, url) } catch { throw unreachable('redirected to an invalid URL') }
        continue
      }
      break
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => {})
      throw unreachable(`HTTP ${res.status} from ${i.url.slice(0, 200)}`)
    }
    const declared = Number(res.headers.get('content-length') ?? NaN)
    if (Number.isFinite(declared) && declared > maxBytes) { await res.body?.cancel().catch(() => {}); throw tooLarge() }
  } catch (err) {
    throw named(err)
  }
  // streamed to disk, hashed on the way, stopped at the cap
  const hash = createHash('sha256')
  let size = 0
  const fh = await open(file, 'wx')
  try {
    if (res.body != null) {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        size += chunk.length
        if (size > maxBytes) throw tooLarge()
        hash.update(chunk)
        await fh.write(chunk)
      }
    }
  } catch (err) {
    await res.body?.cancel().catch(() => {})
    throw named(err)
  } finally {
    await fh.close()
  }
  const digest = hash.digest('hex')
  if (digest !== i.sha256) throw new InputFailure('input-mismatch', `input ${i.path}: sha256 ${digest} of ${i.url.slice(0, 200)}, not the pinned ${i.sha256}`)
  if (i.size != null && size !== i.size) throw new InputFailure('input-mismatch', `input ${i.path}: ${size} bytes at ${i.url.slice(0, 200)}, not ${i.size}`)
  return size
}
