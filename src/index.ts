/**
 * Mercato as a library: run a node inside your own process, or talk to one.
 *
 * @example
 * ```ts
 * import { loadConfig, startNode } from 'mercato'
 * const node = await startNode(loadConfig({ overrides: { dataDir: '/tmp/m1', gateway: { port: 0 } } }))
 * const job = await node.market.submit({ engine: 'js', source: 'function main (i) { return i.x * 2 }', input: { x: 21 } })
 * await node.market.waitFor(job.id)
 * console.log((await node.market.result(job.id)).output) // 42
 * await node.stop()
 * ```
 */
// Node 20 lacks Promise.withResolvers (libp2p calls it); newer lines never load the polyfill
if (typeof Promise.withResolvers !== 'function') await import('./polyfill.js')

export { MercatoNode, startNode, type NodeOptions } from './node.js'
export { loadConfig, validateConfig, configSchema, type Config } from './config.js'
export { MercatoError, InvalidInputError, NotFoundError, InvalidMessageError, ConfigError } from './errors.js'
export { MercatoClient } from './client/index.js'
export type { JobView, ResultView, JobEvent, JobStatus, SubmitSpec } from './auction/index.js'
export { VERSION } from './version.js'
