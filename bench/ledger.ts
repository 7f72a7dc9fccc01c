/**
 * Ledger benchmark: `npm run bench:ledger` prints one JSON object.
 *
 * - appendsPerSec: sequential appends (each awaited) of ≈ 300-byte records
 * - concurrentAppendsPerSec: the same with all appends in flight at once (group commit)
 * - verifiedPerSec: full verify() of a 100,000-record log (worker threads)
 *
 * LevelDB in a temp dir, removed afterwards. BENCH_RECORDS overrides 100,000.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir, availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import { randomSigner, canonicalEncode } from '../src/crypto/index.js'
import { openLedger } from '../src/ledger/index.js'

const N = Number(process.env.BENCH_RECORDS ?? 100_000)
const SEQUENTIAL = Math.min(N, 20_000)

function body (i: number): Record<string, unknown> {
  return { jobId: `bafyreib${(i % 5000).toString(36).padStart(8, '0')}`, price: i % 97, note: 'n'.repeat(30) }
}

async function main (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mercato-bench-ledger-'))
  try {
    const signer = randomSigner()
    // sequential
    let ledger = await openLedger({ signer, path: join(dir, 'seq') })
    let t0 = performance.now()
    for (let i = 0; i < SEQUENTIAL; i++) await ledger.append('bid', body(i))
    const appendsPerSec = SEQUENTIAL / ((performance.now() - t0) / 1000)
    const sample = await ledger.get(1)
    const recordBytes = sample != null ? canonicalEncode(sample).length : 0
    await ledger.close()

    // concurrent: everything in flight, awaited in waves of 10,000 to bound memory
    ledger = await openLedger({ signer, path: join(dir, 'conc') })
    t0 = performance.now()
    const WAVE = 10_000
    for (let done = 0; done < N; done += WAVE) {
      const ps: Array<Promise<unknown>> = []
      for (let i = done; i < Math.min(N, done + WAVE); i++) ps.push(ledger.append('bid', body(i)))
      await Promise.all(ps)
    }
    const concurrentAppendsPerSec = N / ((performance.now() - t0) / 1000)

    t0 = performance.now()
    const report = await ledger.verify()
    const verifiedPerSec = report.count / ((performance.now() - t0) / 1000)
    t0 = performance.now()
    const inline = await ledger.verify({ workers: 0 })
    const verifiedInlinePerSec = inline.count / ((performance.now() - t0) / 1000)
    await ledger.close()

    process.stdout.write(JSON.stringify({
      appendsPerSec: Math.round(appendsPerSec),
      concurrentAppendsPerSec: Math.round(concurrentAppendsPerSec),
      verifiedPerSec: Math.round(verifiedPerSec),
      verifiedInlinePerSec: Math.round(verifiedInlinePerSec),
      records: N,
      sequentialRecords: SEQUENTIAL,
      recordBytes,
      verifyOk: report.ok && report.count === N,
      cores: availableParallelism(),
      // other processes compete for the 2 cores: read the figures with this
      loadAvg1m: Math.round(loadavg()[0] * 100) / 100,
      node: process.version
    }) + '\n')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
