/**
 * A URL input that never arrives: a local HTTP server that takes each request and never answers.
 * A job naming it holds a provider's slot (awarded, staging its inputs) for as long as a test needs,
 * without burning a core the way a spinning job does; cancelling the job frees the slot (the
 * provider's fetch is aborted with the award).
 */
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface StallingInput {
  /** the job spec's `inputs` entry (`held.txt`, pinned to bytes that never come) */
  input: { path: string, url: string, sha256: string }
  /** requests the server has taken so far */
  requests: () => number
  close: () => Promise<void>
}

export async function stallingInput (): Promise<StallingInput> {
  let requests = 0
  // the response is never written; closeAllConnections() ends it
  const server = createServer(() => { requests++ })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    input: { path: 'held.txt', url: `http://127.0.0.1:${port}/held.txt`, sha256: createHash('sha256').update('never sent').digest('hex') },
    requests: () => requests,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}
