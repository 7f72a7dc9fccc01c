/**
 * How Mercato turns bytes into a UnixFS file DAG (kubo's `ipfs add --cid-version 1`): the one
 * import lives in crypto/unixfs.ts, shared with the executor, which names output files by it.
 */
export { importFile } from '../crypto/unixfs.js'
