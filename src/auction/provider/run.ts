/**
 * An award, from the provider's side: check it, accept or refuse, fetch the
 * module and the input files (inputs.ts: a failure there is a named failure
 * result, the job does not run), run the job in the executor with heartbeats, send the signed
 * Result, log the Receipt. While the job runs, what it writes goes to the
 * requester as `log` frames (live logs, capped: see logs.ts).
 *
 * The first frame on `/mercato/award/1.0.0` must be an Award (decoded and
 * signature-checked by the protocol codec) signed by the peer on the other
 * end, for an offer we bid on, naming our bid at no less than our ask, not
 * seen before, from a requester not flagged. The requester may withdraw the
 * award (a `cancel` frame): the run stops and the slot is freed. A channel
 * that merely drops is not a withdrawal: we finish, and a restarted
 * requester collects the result over the status protocol.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, open, rename, rm, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import { canonicalEncode, messageId, type Signed } from '../../crypto/index.js'
import { UNIXFS_CHUNK_BYTES, unixfsCidOfFile } from '../../crypto/unixfs.js'
import { computeResultHash, outputsField, type ExecJob, type ExecResult } from '../../executor/index.js'
import type { MessageChannel } from '../../p2p/index.js'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { MAX_BLOB_BYTES } from '../constants.js'
import { RefusedMessageError, sign, type Award, type Offer, type Result } from '../protocol/messages.js'
import { decodeFrame, encodeFrame, type Frame } from '../protocol/frames.js'
import { LIVE_LOG_BYTES_PER_SEC, LIVE_LOG_MAX_BYTES } from '../constants.js'
import { dropOffer, finishHeld, fromRequesterOrHolders, MAX_PAYING_REQUESTERS, type HeldJob, type ProviderContext } from './state.js'
import { LiveLogSender } from './logs.js'
import { InputFailure, stageInputs, type StagedInputs } from './inputs.js'
import { OutputPusher } from './push.js'

/**
 * executor errors that say nothing about the job: the award is dropped and the requester fails over.
 * `invalid-inputs` is among them: the inputs were checked with the offer and staged by us, so a
 * sandbox that cannot open them (a backend without input files, an isolation that hides our data
 * dir) is our problem, not a result to sign.
 * Also any `retryable` error, such as a backend that lost the job (a Slurm job that failed or was preempted).
 */
const TRANSIENT_EXEC_ERRORS = new Set(['queue-full', 'aborted', 'executor-stopped', 'invalid-inputs'])
/** how long the first frame (the award) may take */
const AWARD_WAIT_MS = 5000
/** how long the last live logs may hold back the result (a stuck channel holds the result anyway) */
const LOG_CLOSE_WAIT_MS = 2000
/** how long we wait for the receipt after sending the result */
const RECEIPT_WAIT_MS = 10_000

/** Take an award channel from its first frame to the receipt. */
export async function onAwardChannel (ctx: ProviderContext, channel: MessageChannel): Promise<void> {
  const it = channel[Symbol.asyncIterator]()
  const first = await Promise.race([
    it.next(),
    new Promise<never>((_resolve, reject) => setTimeout(() => { reject(new Error('no award in time')) }, AWARD_WAIT_MS).unref())
  ])
  if (first.done === true) return
  let frame: Frame
  try {
    frame = decodeFrame(first.value)
  } catch (err: any) {
    ctx.count(err instanceof RefusedMessageError ? err.reason : 'bad-schema')
    channel.abort()
    return
  }
  if (frame.t !== 'award') { ctx.count('bad-schema'); channel.abort(); return }
  await handleAward(ctx, frame.m, channel, it)
}

async function handleAward (ctx: ProviderContext, award: Signed<Award>, channel: MessageChannel, it: AsyncIterator<Uint8Array>): Promise<void> {
  const { state } = ctx
  const a = award.payload
  const awardId = messageId(award)
  const mine = state.offers.get(a.offerId)
  const offer = mine?.offer
  const refuse = async (reason: string): Promise<void> => {
    const refusal = sign(ctx.deps.signer, 'refuse', { v: 1, jobId: a.jobId, awardId, provider: ctx.peerId, reason, ts: Date.now() })
    await channel.send(encodeFrame({ t: 'refuse', m: refusal })).catch(() => {})
    await channel.close().catch(() => {})
  }
  if (a.provider !== ctx.peerId) { ctx.count('wrong-sender'); await refuse('award names another provider'); return }
  if (award.signer !== channel.remotePeer) { ctx.count('wrong-sender'); channel.abort(); return }
  // before the offer check: an accepted award's offer is dropped from the cache
  if (state.seenAwards.has(awardId)) { ctx.count('replay'); await refuse('award already seen'); return }
  if (mine == null || offer == null || offer.signer !== award.signer || offer.payload.jobId !== a.jobId) { ctx.count('unknown-job'); await refuse('unknown offer'); return }
  if (a.bidId !== mine.bidId || a.price < mine.price) { ctx.count('wrong-state'); await refuse('award does not match our bid'); return }
  if (ctx.deps.isFlagged?.(award.signer) === true) { ctx.count('wrong-state'); await refuse('requester is flagged for equivocation'); return }
  state.seenAwards.add(awardId)
  if (state.running >= ctx.slots() + ctx.queue()) { await refuse('no-slot'); return }
  // the award was for this one bid: one job, one provider, so the offer is no longer needed
  dropOffer(state, a.offerId)
  state.running++
  const held: HeldJob = { jobId: a.jobId, awardId, requester: award.signer, state: 'fetching' }
  state.held.set(a.jobId, held)
  let channelOpen = true
  const send = async (f: Frame): Promise<void> => {
    if (!channelOpen) return
    try { await channel.send(encodeFrame(f)) } catch { channelOpen = false }
  }
  const accept = sign(ctx.deps.signer, 'accept', { v: 1, jobId: a.jobId, awardId, provider: ctx.peerId, ts: Date.now() })
  await send({ t: 'accept', m: accept })
  // the award record holds the requester's signed offer and award and our own signed bid
  void ctx.journal.awarded(offer, mine.bid, award)
    .then(async () => { await ctx.journal.accept('provider', accept) })
    .catch(err => { ctx.log.error({ err }, 'ledger append failed') })

  // heartbeats while we fetch and run
  const hb = setInterval(() => { void send({ t: 'hb', ts: Date.now(), state: held.state === 'done' ? 'running' : held.state }) }, ctx.cfg.heartbeatMs)
  // watch the channel for the receipt, and for the requester withdrawing the award
  const withdrawn = new AbortController()
  // live logs: what the job writes, capped, while it runs (none from a backend that cannot see it)
  const logs = new LiveLogSender({
    bytesPerSec: ctx.cfg.liveLogBytesPerSec ?? LIVE_LOG_BYTES_PER_SEC,
    maxBytes: ctx.cfg.liveLogMaxBytes ?? LIVE_LOG_MAX_BYTES
  }, send)
  const receiptP = readReceipt(ctx, it, a.jobId, award.signer, () => { withdrawn.abort(new Error('award withdrawn')) }).finally(() => { channelOpen = false })
  let result: Signed<Result>
  // the job's input files on disk, removed when it is over
  let staged: StagedInputs | undefined
  // the job's output files on disk (written there as the guest writes them), removed once stored as blobs
  const outputDir = outputsFolder(ctx, a.jobId)
  const releaseOutputs: Array<() => void> = []
  // large output files go to the requester while they are imported (push.ts), not only when it asks after the result
  const pusher = new OutputPusher(ctx.network, channel.remotePeer, a.jobId, ctx.log)
  try {
    const started = Date.now()
    const job = await buildExecJob(ctx, offer.payload, award.signer)
    job.outputDir = outputDir
    // an output file is imported into the blob store as it is named (one read of it, not two)
    // (empty files are not blobs; a provider told to withhold its outputs must not hold them)
    const imported = new Set<string>()
    if (ctx.deps.withholdOutputs !== true) {
      job.nameOutput = async (file, size) => {
        if (size === 0) return await unixfsCidOfFile(file)
        const cid = await importOutput(ctx, file, size, pusher, { inPlace: true })
        // held until the job is over (stored outputs are pinned by then): a long job on a full
        // store must not see its first outputs collected before the result names them
        releaseOutputs.push(ctx.deps.blobs.gc.hold(cid))
        imported.add(cid)
        return cid
      }
    }
    let exec: ExecResult | undefined
    try {
      staged = await stageInputs(ctx, offer.payload, award.signer, withdrawn.signal)
      if (staged != null) job.inputs = staged.inputs
    } catch (err) {
      // inputs other than the offer pins (or not to be had): a named failure, not a run
      if (!(err instanceof InputFailure)) throw err
      ctx.log.info({ jobId: a.jobId, code: err.code, why: err.message }, 'job inputs refused')
      exec = failureResult(job.id, err)
    }
    exec ??= await runJob(ctx, job, held, withdrawn.signal, send, logs)
    state.avgRunMs = state.avgRunMs * 0.8 + (Date.now() - started) * 0.2
    if (ctx.deps.corruptResults === true) exec = await corrupt(a.jobId, exec)
    // the output files become blobs (served over the blob protocol) before the result names them
    await storeOutputs(ctx, exec, imported, pusher)
    pusher.finish()
    result = signResult(ctx, a.jobId, awardId, exec)
  } catch (err: any) {
    // the requester withdrew the award (it cancelled the job, or handed it on): nothing went wrong here
    if (withdrawn.signal.aborted) ctx.log.info({ jobId: a.jobId }, 'award withdrawn while the job ran; stopped it')
    // could not even fetch the module: let the requester fail over
    else ctx.log.warn({ err, jobId: a.jobId }, 'could not run awarded job')
    pusher.abort()
    clearInterval(hb)
    void logs.close()
    state.running--
    ctx.slotFreed()
    state.held.delete(a.jobId)
    channel.abort(err instanceof Error ? err : new Error(String(err)))
    return
  } finally {
    clearInterval(hb)
    for (const release of releaseOutputs) release()
    if (staged != null) void staged.remove()
    // not on the result's way: the folder's name is this award's own, and start-up empties the parent
    void removeOutputs(ctx, outputDir)
  }
  // the last of the live logs go before the result
  await Promise.race([logs.close(), new Promise(resolve => setTimeout(resolve, LOG_CLOSE_WAIT_MS).unref())])
  state.running--
  ctx.slotFreed()
  finishHeld(state, held, result)
  await ctx.journal.result('provider', result).catch(err => { ctx.log.error({ err }, 'ledger append failed') })
  // the pushed leaves go ahead of the result (push.ts)
  await pusher.flushed()
  // owed until a receipt answers it (a requester owing too many gets no more bids: UnpaidResults)
  if (award.signer !== ctx.peerId) state.unpaid.sent(award.signer, a.jobId)
  await send({ t: 'result', m: result })
  const answered = await Promise.race([receiptP.then(() => true), new Promise<false>(resolve => setTimeout(() => { resolve(false) }, RECEIPT_WAIT_MS).unref())])
  await channel.close().catch(() => {})
  // no receipt in time: the requester's side is not read any longer (it may pay later in gossip or
  // after collecting the result over the status protocol)
  if (!answered) channel.abort(new Error(`no receipt within ${RECEIPT_WAIT_MS} ms`))
}

/** Run the job in the backend; a deterministic refusal of the job itself is a (failure) result. */
async function runJob (ctx: ProviderContext, job: ExecJob, held: HeldJob, signal: AbortSignal, send: (f: Frame) => Promise<void>, logs: LiveLogSender): Promise<ExecResult> {
  try {
    // heartbeats follow the backend: queued (e.g. PENDING in Slurm), then running
    return await ctx.backend.run(job, {
      signal,
      onState: (state) => { held.state = state; void send({ t: 'hb', ts: Date.now(), state }) },
      onOutput: logs.push
    })
  } catch (err: any) {
    // a sandbox that cannot take the job now, or a backend that lost it, is our problem: let the requester fail over
    if (TRANSIENT_EXEC_ERRORS.has(err?.code) || err?.retryable === true) throw err
    // deterministic refusals of the job itself (invalid module, unsupported engine) are results
    return failureResult(job.id, err)
  }
}

/** Read the award channel after the award: a receipt to log, or a withdrawal. */
async function readReceipt (ctx: ProviderContext, it: AsyncIterator<Uint8Array>, jobId: string, requester: string, onCancel: () => void): Promise<void> {
  try {
    while (true) {
      const next = await it.next()
      if (next.done === true) return
      let frame: Frame
      try { frame = decodeFrame(next.value) } catch (err: any) { ctx.count(err instanceof RefusedMessageError ? err.reason : 'bad-schema'); continue }
      if (frame.t === 'cancel') { onCancel(); return }
      if (frame.t !== 'receipt') continue
      const receipt = frame.m
      if (receipt.signer !== requester || receipt.payload.jobId !== jobId || receipt.payload.provider !== ctx.peerId) { ctx.count('wrong-sender'); continue }
      ctx.state.unpaid.settled(requester, jobId)
      await ctx.journal.receipt('provider', receipt)
      if (receipt.payload.status === 'paid') {
        ctx.state.paidBy.add(requester)
        if (ctx.state.paidBy.size > MAX_PAYING_REQUESTERS) ctx.state.paidBy.delete(ctx.state.paidBy.values().next().value as string)
      }
      ctx.deps.onReceipt?.(receipt)
      return
    }
  } catch {
    // channel reset: the requester went away; the result stays available over the status protocol
  }
}

async function buildExecJob (ctx: ProviderContext, o: Offer, requester: string): Promise<ExecJob> {
  const spec = o.spec
  const job: ExecJob = { id: o.jobId, engine: spec.engine, args: spec.args, env: spec.env, stdin: spec.stdin, input: spec.input, limits: spec.limits, seed: o.jobId }
  if (spec.engine === 'wasm' && spec.module != null) {
    const cid = spec.module.cid
    const maxBytes = Math.min(MAX_BLOB_BYTES, spec.module.size)
    const { blobs } = ctx.deps
    job.module = await fromRequesterOrHolders(ctx, cid, requester, async peers => await blobs.fetch(ctx.network, cid, peers, { maxBytes }))
    // the blob store checked the bytes block by block against the CID; the executor checks a raw CID
    // (the sha2-256 of the whole) again, and names a module uploaded as a UnixFS DAG by that hash itself
    if (isRawCid(cid)) job.moduleCid = cid
  } else if (spec.source != null) {
    job.source = spec.source
  }
  return job
}

/** Remove a job's output folder: one rmdir when the job wrote nothing (most jobs), the whole tree otherwise. */
async function removeOutputs (ctx: ProviderContext, dir: string): Promise<void> {
  try {
    await rmdir(dir)
  } catch (err: any) {
    if (err?.code === 'ENOENT') return
    await rm(dir, { recursive: true, force: true }).catch(err => { ctx.log.warn({ err, dir }, 'could not remove output files') })
  }
}

/** A folder of its own for a job's output files (under `provider.outputsDir`). */
function outputsFolder (ctx: ProviderContext, jobId: string): string {
  return join(ctx.cfg.outputsDir, `${createHash('sha256').update(jobId).digest('hex').slice(0, 16)}-${randomBytes(6).toString('hex')}`)
}

/**
 * Import an output file into the blob store (blocks staged and committed whole, never the file in
 * memory); its UnixFS CID. The file goes to the requester as it is read (push.ts; when large enough).
 */
async function importOutput (ctx: ProviderContext, file: string, size: number, pusher: OutputPusher, opts: { inPlace?: boolean } = {}): Promise<string> {
  // `inPlace`: a file our own worker wrote for a job that is over (nothing writes it any more), so
  // its leaves stay in it instead of a second copy on disk; not a file another process (an isolated
  // pool, Slurm) may still hold open
  return await ctx.deps.blobs.putStream(pusher.tee(createReadStream(file, { highWaterMark: UNIXFS_CHUNK_BYTES }), size), { maxBytes: size, fromFile: opts.inPlace === true ? file : undefined })
}

/**
 * Store a result's output files as blobs, each under the CID the result names and its hash covers:
 * those the executor named through `nameOutput` are stored already (`imported`); any other (a
 * backend that names files itself: an isolated pool process, Slurm) is imported from disk now and
 * must come out under the same CID. Empty files are not stored: the requester knows their bytes.
 * A provider told to withhold them (a test switch) claims them without serving them.
 */
async function storeOutputs (ctx: ProviderContext, exec: ExecResult, imported: Set<string>, pusher: OutputPusher): Promise<void> {
  if (exec.outputs == null || ctx.deps.withholdOutputs === true) return
  for (const o of exec.outputs) {
    if (o.size === 0) continue
    const cid = imported.has(o.cid) ? o.cid : await importOutput(ctx, o.file, o.size, pusher)
    if (cid !== o.cid) throw new Error(`output ${o.path} was stored as ${cid}, not the ${o.cid} the result names`)
    // served to the requester (and its user) for blobs.outputRetentionMs, then collectable
    ctx.deps.blobs.gc.pin(cid, 'output')
  }
}

/** Test switch (replica quorum tests): a consistent liar. One byte of its first output file differs (on disk), or else its stdout. */
async function corrupt (jobId: string, exec: ExecResult): Promise<ExecResult> {
  let { stdout, outputs } = exec
  if (outputs != null && outputs.length > 0 && outputs[0].size > 0) {
    // a new file in its place: the honest one may be a pack of the blob store by now (fromFile)
    const file = outputs[0].file
    await copyFile(file, `${file}.lie`)
    const f = await open(`${file}.lie`, 'r+')
    try {
      const b = new Uint8Array(1)
      await f.read(b, 0, 1, 0)
      b[0] ^= 0x01
      await f.write(b, 0, 1, 0)
    } finally { await f.close() }
    await rename(`${file}.lie`, file)
    outputs = [{ ...outputs[0], cid: await unixfsCidOfFile(outputs[0].file) }, ...outputs.slice(1)]
  } else {
    stdout = new Uint8Array([...stdout, 0x21])
  }
  return { ...exec, stdout, outputs, resultHash: computeResultHash(jobId, { exitCode: exec.exitCode, stdout, stderr: exec.stderr, output: exec.output, outputs }) }
}

function signResult (ctx: ProviderContext, jobId: string, awardId: string, exec: ExecResult): Signed<Result> {
  let { output } = exec
  try { canonicalEncode(output ?? null) } catch { output = JSON.stringify(output) }
  return sign(ctx.deps.signer, 'result', {
    v: 1, jobId, awardId, provider: ctx.peerId, exitCode: exec.exitCode, stdout: exec.stdout, stderr: exec.stderr, output, ...outputsField(exec.outputs),
    truncated: exec.truncated, resultHash: exec.resultHash, usage: exec.usage, error: exec.error, ts: Date.now()
  })
}

function failureResult (jobId: string, err: any): ExecResult {
  const stderr = new TextEncoder().encode(`${err?.code ?? 'error'}: ${err?.message ?? err}`)
  const stdout = new Uint8Array(0)
  return {
    exitCode: 3,
    stdout,
    stderr,
    truncated: false,
    resultHash: computeResultHash(jobId, { exitCode: 3, stdout, stderr }),
    usage: { wallMs: 0, memoryBytes: 0, outputBytes: stderr.length },
    error: { name: typeof err?.code === 'string' ? err.code : 'trap', message: String(err?.message ?? err).slice(0, 1000) } as ExecResult['error']
  }
}

function isRawCid (cid: string): boolean {
  try { return CID.parse(cid).code === raw.code } catch { return false }
}
