/**
 * Entry of the isolated pool process (see isolation.ts): runs an ordinary
 * ExecutorPool and answers the parent over the IPC channel. Started as
 * `<unshare|bwrap ...> node isolated-host.js '<ExecutorInit JSON>'`.
 */
import { existsSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { ExecutorPool } from './pool.js'
import { isMercatoError } from '../errors.js'
import type { ExecutorInit } from './index.js'
import type { ChildMessage, ParentMessage } from './isolation.js'

const init = JSON.parse(process.argv[2] ?? '{}') as ExecutorInit
const pool = new ExecutorPool({ ...init, isolation: 'none' })
const aborts = new Map<number, AbortController>()

function send (m: ChildMessage): void {
  if (process.connected) process.send?.(m)
}

process.on('message', (m: ParentMessage) => {
  if (m.type === 'abort') { aborts.get(m.id)?.abort(); return }
  if (m.type === 'probe') {
    send({ type: 'probe', id: m.id, probe: { pid: process.pid, uid: process.getuid?.() ?? -1, networkInterfaces: Object.keys(networkInterfaces()), visible: Object.fromEntries(m.paths.map(p => [p, existsSync(p)])) } })
    return
  }
  const ac = new AbortController()
  aborts.set(m.id, ac)
  pool.run(m.job, {
    signal: ac.signal,
    onStart: () => { send({ type: 'started', id: m.id }) },
    onOutput: m.live ? (fd, data) => { send({ type: 'output', id: m.id, fd, data }) } : undefined
  }).then(result => {
    send({ type: 'result', id: m.id, result, stats: pool.stats() })
  }, (err: unknown) => {
    const code = isMercatoError(err) ? err.code : 'error'
    send({ type: 'error', id: m.id, error: { code, message: err instanceof Error ? err.message : String(err) }, stats: pool.stats() })
  }).finally(() => { aborts.delete(m.id) })
})

const shutdown = (): void => { pool.stop().finally(() => process.exit(0)) }
process.on('SIGTERM', shutdown)
process.on('disconnect', shutdown)

await pool.start()
send({ type: 'ready' })
