import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Signer } from '../../src/crypto/index.js'
import { LevelBackend, MemoryBackend, openLedger, recordKey, type Ledger, type LedgerBackend } from '../../src/ledger/index.js'

/** One storage implementation, as the shared suite sees it. */
export interface LedgerEnv {
  open (signer: Signer | { peerId: string }, opts?: { readOnly?: boolean }): Promise<Ledger>
  /** raw access to the stored keys while no ledger is open (to tamper) */
  raw<T> (fn: (b: LedgerBackend) => Promise<T>): Promise<T>
  cleanup (): Promise<void>
}

export interface LedgerImplFactory { name: string, create (): Promise<LedgerEnv> }

export const IMPLEMENTATIONS: LedgerImplFactory[] = [
  {
    name: 'memory',
    async create () {
      const backend = new MemoryBackend()
      return {
        open: async (signer, opts = {}) => await openLedger({ signer, backend, readOnly: opts.readOnly }),
        async raw (fn) {
          await backend.open()
          try { return await fn(backend) } finally { await backend.close() }
        },
        async cleanup () {}
      }
    }
  },
  {
    name: 'leveldb',
    async create () {
      const dir = await mkdtemp(join(tmpdir(), 'mercato-ledger-test-'))
      const path = join(dir, 'ledger')
      return {
        open: async (signer, opts = {}) => await openLedger({ signer, path, readOnly: opts.readOnly }),
        async raw (fn) {
          const b = new LevelBackend(path)
          await b.open()
          try { return await fn(b) } finally { await b.close() }
        },
        async cleanup () { await rm(dir, { recursive: true, force: true }) }
      }
    }
  }
]

export async function getRaw (b: LedgerBackend, seq: number): Promise<Uint8Array> {
  const v = await b.get(recordKey(seq))
  if (v == null) throw new Error(`no record ${seq}`)
  return v
}

export async function putRaw (b: LedgerBackend, seq: number, value: Uint8Array): Promise<void> {
  await b.batch([{ type: 'put', key: recordKey(seq), value }])
}

export async function delRaw (b: LedgerBackend, seq: number): Promise<void> {
  await b.batch([{ type: 'del', key: recordKey(seq) }])
}
