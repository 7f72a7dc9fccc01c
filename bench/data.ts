/**
 * Data benchmark: `npm run bench:data` prints ONE JSON object. Not a test: nothing here asserts.
 * Runs the compiled dist/ (`npm run build` first), as users run it.
 *
 * Two `mercato start` processes on 127.0.0.1: A (the requester) and B (the provider, bootstrapped
 * to A). Legs:
 * - upload: a 100 MiB file (BENCH_DATA_MIB) streamed from disk by the client's `uploadFile` into
 *   A's `POST /v1/blobs` (UnixFS import into A's block store);
 * - fetch: B's `GET /v1/blobs/:cid?from=<A>`: B fetches the blob from A over one
 *   `/mercato/blob/2.1.0` stream (batches of block requests; each block verified, stored), then
 *   streams it to this process, which checks its sha256.
 * - job: a wasm job submitted on A with the blob as its input `in.bin`; on B it copies
 *   /inputs/in.bin to /outputs/out.bin in 1 MiB pieces, every byte inverted so the output is a blob
 *   A does not hold already (test/fixtures/src/copy-input.wat), B writes
 *   the output to disk as the guest writes it and stores it as a UnixFS blob, A pulls it block by
 *   block and checks it before it pays. Timed from submit to `completed`. (B already holds the
 *   input from the fetch leg, so this is the run, the output's import and A's pull, not the input's
 *   transfer.)
 * - output download: A's `GET /v1/jobs/:id/outputs/out.bin`, streamed to this process, which
 *   checks its sha256 (the inverted input's).
 * For each leg: MB/s (10^6 bytes per second) and each node's RSS before and its peak (VmHWM) after.
 * Raw figures from the same run, to compare machines: sha256 of the same bytes in memory, and a
 * plain loopback TCP copy of them (node:net, no framing, no crypto).
 */
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
import { MercatoClient } from '../src/client/index.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MiB = 1024 * 1024
const SIZE = Number(process.env.BENCH_DATA_MIB ?? 100) * MiB
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

/** Reset a process's peak RSS (VmHWM) to its current RSS (Linux: `echo 5 > /proc/PID/clear_refs`), so a leg's peak is its own. */
async function resetPeak (pid: number): Promise<boolean> {
  try { await writeFile(`/proc/${pid}/clear_refs`, '5'); return true } catch { return false }
}

interface Node { proc: ChildProcess, gatewayUrl: string, address: string, stop: () => Promise<void> }

async function startNode (extra: string[] = []): Promise<Node> {
  const dataDir = await mkdtemp(join(tmpdir(), 'mercato-bench-data-'))
  dirs.push(dataDir)
  const args = [...NODE_FLAGS, join(ROOT, 'bin/mercato.js'), 'start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--gateway', '127.0.0.1:0', '--no-mdns', '--log-level', 'warn', ...extra]
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

async function main (): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'mercato-bench-file-'))
  dirs.push(work)
  const file = join(work, 'data.bin')
  const { sha256, invertedSha256 } = await writeRandomFile(file, SIZE)
  const raw = { sha256MBps: sha256Baseline(), loopbackTcpMBps: await tcpBaseline() }

  const a = await startNode(['--no-provide'])
  const b = await startNode(['--bootstrap', a.address])
  const client = new MercatoClient({ url: a.gatewayUrl })

  // leg 1: upload into A
  const aBefore = await memoryOf(a.proc.pid as number)
  let t0 = performance.now()
  const { cid, size } = await client.uploadFile(file)
  const uploadMs = performance.now() - t0
  const aAfterUpload = await memoryOf(a.proc.pid as number)
  if (size !== SIZE) throw new Error(`upload: ${size} bytes stored of ${SIZE}`)

  // leg 2: B fetches it from A (one stream, blocks verified and stored as they come), then streams it out
  const bBefore = await memoryOf(b.proc.pid as number)
  const aPeer = a.address.split('/p2p/').pop() as string
  t0 = performance.now()
  const res = await fetch(`${b.gatewayUrl}/v1/blobs/${cid}?from=${encodeURIComponent(a.address)}`)
  if (res.status !== 200) throw new Error(`fetch on B: HTTP ${res.status} ${await res.text()}`)
  const hash = createHash('sha256')
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  const first = await reader.read()
  const firstByteMs = performance.now() - t0
  // B's peak while fetching (the whole blob is fetched and verified before its first byte goes out)
  const bFetched = await memoryOf(b.proc.pid as number)
  if (first.value != null) hash.update(first.value)
  for (let r = await reader.read(); r.done !== true; r = await reader.read()) hash.update(r.value)
  const fetchMs = performance.now() - t0
  if (hash.digest('hex') !== sha256) throw new Error('fetch on B: the bytes differ')
  const bAfter = await memoryOf(b.proc.pid as number)
  const aAfterFetch = await memoryOf(a.proc.pid as number)

  // leg 3: a job on A with the blob as its input, run on B, which writes the same bytes as its output
  const module = await client.upload(await readFile(join(ROOT, 'test/fixtures/wasm/copy-input.wasm')))
  // each node's peak from here on is this leg's (when the kernel lets us reset it)
  const peaksReset = await resetPeak(a.proc.pid as number) && await resetPeak(b.proc.pid as number)
  const aBeforeJob = await memoryOf(a.proc.pid as number)
  const bBeforeJob = await memoryOf(b.proc.pid as number)
  t0 = performance.now()
  const submitted = await client.submit({ engine: 'wasm', module: module.cid, inputs: [{ path: 'in.bin', cid }], limits: { timeoutMs: 60_000, memoryMb: JOB_MEMORY_MB }, maxPrice: 100 })
  const job = await client.wait(submitted.id, { signal: AbortSignal.timeout(300_000) })
  const jobMs = performance.now() - t0
  if (job.status !== 'completed') throw new Error(`job: ${job.status} ${JSON.stringify(job)}`)
  const aAfterJob = await memoryOf(a.proc.pid as number)
  const bAfterJob = await memoryOf(b.proc.pid as number)
  const outputs = await client.outputs(job.id)
  const out = outputs.find(o => o.path === 'out.bin')
  if (out == null || out.size !== SIZE) throw new Error(`job: outputs ${JSON.stringify(outputs)}`)

  // leg 4: the output streamed out of A's gateway
  t0 = performance.now()
  const dl = await client.streamOutput(job.id, out)
  const outHash = createHash('sha256')
  for await (const chunk of dl.content) outHash.update(chunk)
  const downloadMs = performance.now() - t0
  if (outHash.digest('hex') !== invertedSha256) throw new Error('output download: the bytes are not the inverted input')
  const aAfterDownload = await memoryOf(a.proc.pid as number)

  console.log(JSON.stringify({
    bench: 'data',
    node: process.version,
    bytes: SIZE,
    cid,
    raw,
    upload: { ms: Math.round(uploadMs), MBps: mbps(SIZE, uploadMs), requester: { rssBeforeMiB: aBefore.rssMiB, peakAfterMiB: aAfterUpload.peakMiB, peakGrowthMiB: round(aAfterUpload.peakMiB - aBefore.rssMiB) } },
    providerFetch: {
      from: aPeer,
      // B holds the whole blob (fetched and verified) when the first byte arrives; the rest is B streaming it from disk
      fetchedMs: Math.round(firstByteMs),
      fetchMBps: mbps(SIZE, firstByteMs),
      totalMs: Math.round(fetchMs),
      endToEndMBps: mbps(SIZE, fetchMs),
      provider: {
        rssBeforeMiB: bBefore.rssMiB,
        peakAfterFetchMiB: bFetched.peakMiB,
        peakGrowthFetchMiB: round(bFetched.peakMiB - bBefore.rssMiB),
        peakAfterStreamingOutMiB: bAfter.peakMiB,
        peakGrowthMiB: round(bAfter.peakMiB - bBefore.rssMiB)
      },
      requesterServing: { peakAfterMiB: aAfterFetch.peakMiB }
    },
    job: {
      id: job.id,
      output: out.cid,
      memoryCapMiB: JOB_MEMORY_MB,
      peaksReset,
      // submit → completed: B runs the copy (output written to disk as the guest writes it), imports it as a UnixFS blob, A pulls and checks it
      ms: Math.round(jobMs),
      MBps: mbps(SIZE, jobMs),
      provider: { rssBeforeMiB: bBeforeJob.rssMiB, peakBeforeMiB: bBeforeJob.peakMiB, peakAfterMiB: bAfterJob.peakMiB, peakGrowthMiB: round(bAfterJob.peakMiB - bBeforeJob.rssMiB) },
      requester: { rssBeforeMiB: aBeforeJob.rssMiB, peakBeforeMiB: aBeforeJob.peakMiB, peakAfterMiB: aAfterJob.peakMiB, peakGrowthMiB: round(aAfterJob.peakMiB - aBeforeJob.rssMiB) }
    },
    outputDownload: {
      ms: Math.round(downloadMs),
      MBps: mbps(SIZE, downloadMs),
      requester: { peakAfterMiB: aAfterDownload.peakMiB }
    }
  }, null, 2))
  await Promise.all([a.stop(), b.stop()])
}

try {
  await main()
} finally {
  for (const p of procs) p.kill('SIGKILL')
  for (const d of dirs) await rm(d, { recursive: true, force: true })
}
