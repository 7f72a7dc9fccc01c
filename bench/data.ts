/**
 * Data benchmark: `npm run bench:data` prints ONE JSON object. Not a test: nothing here asserts.
 * Runs the compiled dist/ (`npm run build` first), as users run it.
 *
 * Two `mercato start` processes on 127.0.0.1: A (the requester) and B (the provider, bootstrapped
 * to A). Legs:
 * - upload: a 100 MiB file (BENCH_DATA_MIB) streamed from disk by the client's `uploadFile` into
 *   A's `POST /v1/blobs` (UnixFS import into A's block store);
 * - fetch: B's `GET /v1/blobs/:cid?from=<A>`: B fetches the blob from A over one
 *   `/mercato/blob/2.1.0` stream (batches of block requests; each block verified, stored) and
 *   streams it on as it arrives to a small HTTP client process ({@link httpSink}), which checks its
 *   sha256 (`firstByteMs`: the root and first leaf fetched and sent on; `clientCpuMs`: the client's).
 * - job: a wasm job submitted on A with the blob as its input `in.bin`; on B it copies
 *   /inputs/in.bin to /outputs/out.bin in 1 MiB pieces, every byte inverted so the output is a blob
 *   A does not hold already (test/fixtures/src/copy-input.wat), B writes
 *   the output to disk as the guest writes it and stores it as a UnixFS blob, pushing its leaves to
 *   A as it reads them (`/mercato/output-push/1.0.0`); after the result A fetches what it lacks
 *   (the DAG's root and inner nodes) and checks the whole before it pays. Timed from submit to
 *   `completed`; `blocks` counts the blocks A was pushed and fetched meanwhile. (B already holds the
 *   input from the fetch leg, so this is the run, the output's import and A's pull, not the input's
 *   transfer.)
 * - output download: A's `GET /v1/jobs/:id/outputs/out.bin`, streamed to the same kind of client
 *   process, which checks its sha256 (the inverted input's).
 * For each leg: MB/s (10^6 bytes per second), the CPU each node used (`cpuMs`, from /proc: which side
 * bounds a leg), and each node's RSS before and its peak (VmHWM) after;
 * for the job, its steps from the job's events (auction, provider, the output's pull onto A).
 * The legs run BENCH_DATA_ROUNDS times (default 2) over fresh random data in the same two
 * processes: `MBps.first` is each path's first run (cold: code not yet optimised, and memory the
 * processes have not touched yet, which docs/ARCHITECTURE.md finds is most of it), `MBps.warm` the last round.
 * Raw figures from the same run, to compare machines: sha256 of the same bytes in memory, a
 * plain loopback TCP copy of them (node:net, no framing, no crypto), and the same bytes over a
 * channel between two of Mercato's network nodes in this process (TCP + Noise + yamux: the ceiling
 * of the blob legs; `first` runs cold code, `warm` is a second pass).
 * BENCH_PROF=<dir>: each node process writes a V8 CPU profile there when it exits (`--cpu-prof`).
 */
import '../src/polyfill.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { once } from 'node:events'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NODE_FLAGS } from '../test/helpers/cli.js'
import { processCpuMs } from './util.js'
import { MercatoClient } from '../src/client/index.js'
import { createNetwork } from '../src/p2p/index.js'
import { configureLogger } from '../src/logger.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MiB = 1024 * 1024
const SIZE = Number(process.env.BENCH_DATA_MIB ?? 100) * MiB
/** passes of the four legs over fresh data, in the same two processes (BENCH_DATA_ROUNDS, default 2) */
const ROUNDS = Math.max(1, Number(process.env.BENCH_DATA_ROUNDS ?? 2))
/** the job's memory cap: the copy needs 1.1 MiB of wasm memory; the bound is RSS ≤ cap + 64 MiB */
const JOB_MEMORY_MB = 16
const dirs: string[] = []
const procs = new Set<ChildProcess>()

const round = (x: number): number => Math.round(x * 10) / 10
const mbps = (bytes: number, ms: number): number => round(bytes / 1e6 / (ms / 1000))

async function memoryOf (pid: number): Promise<{ rssMiB: number, peakMiB: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN)
  return { rssMiB: round(kb('VmRSS') / 1024), peakMiB: round(kb('VmHWM') / 1024) }
}

/** Both nodes' CPU ms so far; two readings give a leg's with {@link cpuSince}. */
const cpuNow = (a: number, b: number): { a: number, b: number } => ({ a: processCpuMs(a), b: processCpuMs(b) })
const cpuSince = (from: { a: number, b: number }, to: { a: number, b: number }): { requester: number, provider: number } => ({ requester: to.a - from.a, provider: to.b - from.b })

/** Reset a process's peak RSS (VmHWM) to its current RSS (Linux: `echo 5 > /proc/PID/clear_refs`), so a leg's peak is its own. */
async function resetPeak (pid: number): Promise<boolean> {
  try { await writeFile(`/proc/${pid}/clear_refs`, '5'); return true } catch { return false }
}

interface Node { proc: ChildProcess, gatewayUrl: string, address: string, stop: () => Promise<void> }

async function startNode (extra: string[] = []): Promise<Node> {
  const dataDir = await mkdtemp(join(tmpdir(), 'mercato-bench-data-'))
  dirs.push(dataDir)
  const profile = process.env.BENCH_PROF != null && process.env.BENCH_PROF !== '' ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : []
  const args = [...NODE_FLAGS, ...profile, join(ROOT, 'bin/mercato.js'), 'start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--gateway', '127.0.0.1:0', '--no-mdns', '--log-level', 'warn', ...extra]
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '', MERCATO_P2P_ALLOW: '/ip4/127.0.0.1', MERCATO_PROVIDER_DIAL_PRIVATE_ADDRESSES: 'true', MERCATO_GATEWAY_MAX_UPLOAD_BYTES: String(Math.max(SIZE, 256 * MiB)) }
  })
  procs.add(proc)
  let out = ''
  let err = ''
  proc.stderr.on('data', (d) => { err += d })
  const exited = new Promise<void>(resolve => proc.on('exit', () => { procs.delete(proc); resolve() }))
  await new Promise<void>((resolve, reject) => {
    proc.stdout.on('data', (d) => { out += d; if (/Ready in/.test(out)) resolve() })
    void exited.then(() => { reject(new Error(`node exited before ready\n${out}\n${err}`)) })
  })
  return {
    proc,
    gatewayUrl: /Gateway:\s+(\S+)/.exec(out)?.[1] ?? '',
    address: /Listen:\s+(\S+)/.exec(out)?.[1] ?? '',
    stop: async () => { proc.kill('SIGTERM'); await exited }
  }
}

/** Write `bytes` random bytes to `path`; returns their sha256 and that of the same bytes inverted (the copy job's output). */
async function writeRandomFile (path: string, bytes: number): Promise<{ sha256: string, invertedSha256: string }> {
  const out = createWriteStream(path)
  const hash = createHash('sha256')
  const inverted = createHash('sha256')
  for (let i = 0; i < bytes; i += MiB) {
    const chunk = randomBytes(Math.min(MiB, bytes - i))
    hash.update(chunk)
    inverted.update(chunk.map(b => b ^ 0xff))
    if (!out.write(chunk)) await once(out, 'drain')
  }
  out.end()
  await once(out, 'finish')
  return { sha256: hash.digest('hex'), invertedSha256: inverted.digest('hex') }
}

/** sha256 of SIZE bytes already in memory, MB/s. */
function sha256Baseline (): number {
  const buf = randomBytes(16 * MiB)
  const t0 = performance.now()
  const h = createHash('sha256')
  for (let i = 0; i < SIZE; i += buf.length) h.update(buf.subarray(0, Math.min(buf.length, SIZE - i)))
  h.digest()
  return mbps(SIZE, performance.now() - t0)
}

/** A plain loopback TCP copy of SIZE bytes (1 MiB writes), MB/s. */
async function tcpBaseline (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const received = new Promise<number>((resolve) => {
    server.once('connection', (sock) => {
      let n = 0
      sock.on('data', (d: Buffer) => { n += d.length })
      sock.on('end', () => { resolve(n) })
    })
  })
  const chunk = randomBytes(MiB)
  const t0 = performance.now()
  const sock = connect(port, '127.0.0.1')
  await once(sock, 'connect')
  for (let i = 0; i < SIZE; i += MiB) if (!sock.write(chunk)) await once(sock, 'drain')
  sock.end()
  const n = await received
  const ms = performance.now() - t0
  server.close()
  if (n !== SIZE) throw new Error(`tcp baseline: ${n} bytes arrived of ${SIZE}`)
  return mbps(SIZE, ms)
}

/**
 * The network stack's own ceiling, in this process: two Mercato network nodes (TCP, Noise, yamux,
 * as the nodes use) and SIZE bytes sent over one channel in 256 KiB messages, twice (the first
 * pass runs cold code). The blob legs cannot beat this; they add framing, hashing and disk.
 */
async function p2pBaseline (): Promise<{ first: number, warm: number }> {
  const PIECE = 256 * 1024
  configureLogger({ level: process.env.MERCATO_LOG_LEVEL ?? 'warn' })
  const a = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'] })
  const b = await createNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'] })
  try {
    let arrived: (() => void) | undefined
    let got = 0
    await b.handleChannel('/mercato-bench/sink/1', async (channel) => {
      for await (const m of channel) { got += m.length; if (got >= SIZE) arrived?.() }
    }, { maxMessageBytes: PIECE, maxBufferBytes: 8 * MiB })
    await a.dial(b.addresses()[0])
    const piece = randomBytes(PIECE)
    const pass = async (): Promise<number> => {
      got = 0
      // a stalled pass fails the benchmark instead of hanging it
      const done = new Promise<void>((resolve, reject) => {
        arrived = resolve
        setTimeout(() => { reject(new Error(`p2p baseline: ${got} of ${SIZE} bytes arrived in 60 s`)) }, 60_000).unref()
      })
      const channel = await a.openChannel(b.peerId, '/mercato-bench/sink/1', { maxMessageBytes: PIECE })
      const t0 = performance.now()
      for (let sent = 0; sent < SIZE; sent += PIECE) await channel.send(piece.subarray(0, Math.min(PIECE, SIZE - sent)))
      await done
      const ms = performance.now() - t0
      await channel.close()
      return mbps(SIZE, ms)
    }
    return { first: await pass(), warm: await pass() }
  } finally {
    await a.stop()
    await b.stop()
  }
}

/**
 * The HTTP client of the fetch and download legs: a small `node` process of its own that GETs
 * `url`, hashes the body as it arrives and prints `{ status, bytes, sha256, firstByteMs, ms, cpuMs }`
 * (times from the request's start, by its own clock), as `curl … | sha256sum` would. Not this
 * process: its heap (tsx, the baseline's network nodes) is several times a client's, and marking it
 * took a fifth of a core from the two nodes on a 2-core machine (perf, 2026-12-05). A client that
 * stalls for 5 minutes is killed, and its leg fails.
 */
async function httpSink (url: string): Promise<{ status: number, bytes: number, sha256: string, firstByteMs: number, ms: number, cpuMs: number, error?: string }> {
  const script = `
    const { get } = require('node:http'); const { createHash } = require('node:crypto')
    const t0 = performance.now(); const hash = createHash('sha256'); let bytes = 0, firstByteMs = -1, error = ''
    const done = (status) => { const u = process.cpuUsage(); process.stdout.write(JSON.stringify({ status, bytes, sha256: hash.digest('hex'), firstByteMs: Math.round(firstByteMs), ms: Math.round(performance.now() - t0), cpuMs: Math.round((u.user + u.system) / 1000), error })) }
    get(process.argv[1], (res) => {
      res.on('data', (d) => { if (firstByteMs < 0) firstByteMs = performance.now() - t0; bytes += d.length; if (res.statusCode === 200) hash.update(d); else error += d })
      res.on('end', () => done(res.statusCode)); res.on('error', (e) => { error = String(e); done(0) })
    }).on('error', (e) => { error = String(e); done(0) })`
  const proc = spawn(process.execPath, ['-e', script, url], { stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 })
  procs.add(proc)
  let out = ''
  proc.stdout.on('data', (d) => { out += d })
  const [code, signal] = await once(proc, 'exit') as [number | null, string | null]
  procs.delete(proc)
  if (code !== 0) throw new Error(`HTTP client of ${url} exited with ${code ?? signal}`)
  return JSON.parse(out)
}

/** Timestamps of a finished job's events (the node's clock), by type: the first of each. */
async function eventTimes (client: MercatoClient, id: string): Promise<Partial<Record<string, number>>> {
  const out: Partial<Record<string, number>> = {}
  for await (const e of client.events(id, { signal: AbortSignal.timeout(30_000) })) {
    if (e.type !== 'log') out[e.type] ??= e.ts
  }
  return out
}

const msBetween = (t: Partial<Record<string, number>>, from: string, to: string): number | null =>
  t[from] != null && t[to] != null ? (t[to] as number) - (t[from] as number) : null

/** One pass of the four legs over a fresh random file of SIZE bytes. */
async function legs (a: Node, b: Node, client: MercatoClient, module: string, file: string): Promise<Record<string, unknown>> {
  const { sha256, invertedSha256 } = await writeRandomFile(file, SIZE)
  const aPid = a.proc.pid as number
  const bPid = b.proc.pid as number
  // each leg's peak is its own (when the kernel lets us reset it)
  let peaksReset = await resetPeak(aPid)

  // leg 1: upload into A
  const aBefore = await memoryOf(aPid)
  let cpu0 = cpuNow(aPid, bPid)
  let t0 = performance.now()
  const { cid, size } = await client.uploadFile(file)
  const uploadMs = performance.now() - t0
  const uploadCpu = cpuSince(cpu0, cpuNow(aPid, bPid))
  const aAfterUpload = await memoryOf(aPid)
  if (size !== SIZE) throw new Error(`upload: ${size} bytes stored of ${SIZE}`)

  // leg 2: B fetches it from A (one stream, blocks verified and stored as they come), then streams it out
  peaksReset = await resetPeak(aPid) && await resetPeak(bPid) && peaksReset
  const bBefore = await memoryOf(bPid)
  cpu0 = cpuNow(aPid, bPid)
  const got = await httpSink(`${b.gatewayUrl}/v1/blobs/${cid}?from=${encodeURIComponent(a.address)}`)
  const fetchMs = got.ms
  if (got.status !== 200) throw new Error(`fetch on B: HTTP ${got.status} ${got.error ?? ''}`)
  const fetchCpu = cpuSince(cpu0, cpuNow(aPid, bPid))
  if (got.bytes !== SIZE || got.sha256 !== sha256) throw new Error(`fetch on B: ${got.bytes} bytes arrived, not those sent`)
  const bAfter = await memoryOf(bPid)
  const aAfterFetch = await memoryOf(aPid)

  // leg 3: a job on A with the blob as its input, run on B, which writes the same bytes inverted as its output
  peaksReset = await resetPeak(aPid) && await resetPeak(bPid) && peaksReset
  const blocksOf = async (): Promise<{ blocksFetched: number, blocksPushed: number }> => ((await client.node()).blobs as any).blocks
  const blocksBefore = await blocksOf()
  const aBeforeJob = await memoryOf(aPid)
  const bBeforeJob = await memoryOf(bPid)
  cpu0 = cpuNow(aPid, bPid)
  t0 = performance.now()
  const submitted = await client.submit({ engine: 'wasm', module, inputs: [{ path: 'in.bin', cid }], limits: { timeoutMs: 60_000, memoryMb: JOB_MEMORY_MB }, maxPrice: 100 })
  const job = await client.wait(submitted.id, { signal: AbortSignal.timeout(300_000) })
  const jobMs = performance.now() - t0
  const jobCpu = cpuSince(cpu0, cpuNow(aPid, bPid))
  if (job.status !== 'completed') throw new Error(`job: ${job.status} ${JSON.stringify(job)}`)
  const aAfterJob = await memoryOf(aPid)
  const blocksAfter = await blocksOf()
  const bAfterJob = await memoryOf(bPid)
  const outputs = await client.outputs(job.id)
  const out = outputs.find(o => o.path === 'out.bin')
  if (out == null || out.size !== SIZE) throw new Error(`job: outputs ${JSON.stringify(outputs)}`)
  const t = await eventTimes(client, job.id)
  const pullMs = msBetween(t, 'collecting', 'result')

  // leg 4: the output streamed out of A's gateway
  cpu0 = cpuNow(aPid, bPid)
  const dl = await httpSink(`${a.gatewayUrl}/v1/jobs/${encodeURIComponent(job.id)}/outputs/out.bin`)
  const downloadMs = dl.ms
  const downloadCpu = cpuSince(cpu0, cpuNow(aPid, bPid))
  if (dl.status !== 200 || dl.bytes !== SIZE || dl.sha256 !== invertedSha256) throw new Error(`output download: HTTP ${dl.status}, ${dl.bytes} bytes, not the inverted input ${dl.error ?? ''}`)
  const aAfterDownload = await memoryOf(aPid)

  return {
    cid,
    peaksReset,
    upload: { ms: Math.round(uploadMs), MBps: mbps(SIZE, uploadMs), cpuMs: uploadCpu, requester: { rssBeforeMiB: aBefore.rssMiB, peakAfterMiB: aAfterUpload.peakMiB, peakGrowthMiB: round(aAfterUpload.peakMiB - aBefore.rssMiB) } },
    providerFetch: {
      // B fetches, verifies and stores each block and sends it on as it comes: the whole leg is one stream
      firstByteMs: got.firstByteMs,
      clientCpuMs: got.cpuMs,
      ms: Math.round(fetchMs),
      MBps: mbps(SIZE, fetchMs),
      cpuMs: fetchCpu,
      provider: {
        rssBeforeMiB: bBefore.rssMiB,
        peakAfterMiB: bAfter.peakMiB,
        peakGrowthMiB: round(bAfter.peakMiB - bBefore.rssMiB)
      },
      requesterServing: { peakAfterMiB: aAfterFetch.peakMiB }
    },
    job: {
      id: job.id,
      output: out.cid,
      memoryCapMiB: JOB_MEMORY_MB,
      // submit → completed: the auction, B stages the input (held since leg 2: the job reads it
      // from the ranges of B's packs that hold it), runs the copy (its output written to disk as the guest
      // writes it), imports the output as a UnixFS blob; then A pulls and checks it before it pays
      ms: Math.round(jobMs),
      MBps: mbps(SIZE, jobMs),
      cpuMs: jobCpu,
      // from the job's events (A's clock): submit → accepted, accepted → B's result names its
      // output (B staging, running, storing), the output's pull onto A (collecting → result).
      // The 'running' event comes with the provider's first heartbeat of the run: a heartbeat apart
      steps: {
        auctionMs: t.accepted != null ? t.accepted - job.createdAt : null,
        providerMs: msBetween(t, 'accepted', 'collecting'),
        // of which: staging the input (accepted → running), the run and the output's import and push (running → collecting)
        providerStagingMs: msBetween(t, 'accepted', 'running'),
        providerRunMs: msBetween(t, 'running', 'collecting'),
        // the result in: the push's end awaited, the blocks it did not bring fetched, the whole checked
        outputPullMs: pullMs,
        settleMs: msBetween(t, 'result', 'settled')
      },
      blocks: { pushedToRequester: blocksAfter.blocksPushed - blocksBefore.blocksPushed, fetchedByRequester: blocksAfter.blocksFetched - blocksBefore.blocksFetched },
      provider: { rssBeforeMiB: bBeforeJob.rssMiB, peakAfterMiB: bAfterJob.peakMiB, peakGrowthMiB: round(bAfterJob.peakMiB - bBeforeJob.rssMiB) },
      requester: { rssBeforeMiB: aBeforeJob.rssMiB, peakAfterMiB: aAfterJob.peakMiB, peakGrowthMiB: round(aAfterJob.peakMiB - aBeforeJob.rssMiB) }
    },
    outputDownload: {
      ms: Math.round(downloadMs),
      MBps: mbps(SIZE, downloadMs),
      cpuMs: downloadCpu,
      clientCpuMs: dl.cpuMs,
      requester: { peakAfterMiB: aAfterDownload.peakMiB }
    }
  }
}

async function main (): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'mercato-bench-file-'))
  dirs.push(work)
  const file = join(work, 'data.bin')
  const raw = { sha256MBps: sha256Baseline(), loopbackTcpMBps: await tcpBaseline(), p2pChannelMBps: await p2pBaseline() }

  const a = await startNode(['--no-provide'])
  const b = await startNode(['--bootstrap', a.address])
  const client = new MercatoClient({ url: a.gatewayUrl })
  const module = (await client.upload(await readFile(join(ROOT, 'test/fixtures/wasm/copy-input.wasm')))).cid
  const rounds: Array<Record<string, unknown>> = []
  for (let r = 0; r < ROUNDS; r++) rounds.push(await legs(a, b, client, module, file))
  const mb = (r: Record<string, any>): Record<string, unknown> => ({
    upload: r.upload.MBps,
    providerFetch: r.providerFetch.MBps,
    job: r.job.MBps,
    outputDownload: r.outputDownload.MBps
  })
  console.log(JSON.stringify({
    bench: 'data',
    node: process.version,
    bytes: SIZE,
    raw,
    requester: a.address.split('/p2p/').pop(),
    provider: b.address.split('/p2p/').pop(),
    // MB/s per leg: the first round (each path's first run in these processes) and the last (the
    // same two processes, warm: what a node that has been running a while does)
    MBps: { first: mb(rounds[0]), warm: rounds.length > 1 ? mb(rounds[rounds.length - 1]) : null },
    rounds
  }, null, 2))
  await Promise.all([a.stop(), b.stop()])
}

try {
  await main()
} finally {
  for (const p of procs) p.kill('SIGKILL')
  for (const d of dirs) await rm(d, { recursive: true, force: true })
}
