/**
 * How Mercato turns bytes into a UnixFS file DAG: the IPFS ecosystem's own importer with its
 * defaults, which are kubo's `ipfs add --cid-version 1` (256 KiB chunks, raw leaves, balanced
 * layout, 174 links per node). One place for it, so the CID a node gives an upload
 * (BlobStore.putStream), the CID the CLI names a file by before uploading it (cli/upload-cid.ts)
 * and the CID the executor gives an output file (a result's hash covers it) cannot drift apart.
 */
import { createReadStream } from 'node:fs'
import { importByteStream, type WritableStorage } from 'ipfs-unixfs-importer'
import type { CID } from 'multiformats/cid'

/**
 * The importer's leaf size (its default fixed-size chunker): every raw leaf of a file DAG is this
 * many bytes of the file, but the last; a file of at most this many bytes is one raw block. The
 * output push (auction/provider/push.ts) cuts files the same way, so the blocks it sends are the
 * DAG's leaves (test/auction/output-push.test.ts holds the two together).
 */
export const UNIXFS_CHUNK_BYTES = 262_144

/** Import a byte stream into `store` (or nowhere, to learn its CID); returns the root CID. */
export async function importFile (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, store: WritableStorage): Promise<string> {
  return (await importByteStream(source, store)).cid.toString()
}

/** Keeps no block: for learning a CID. */
const DISCARD: WritableStorage = { put: (cid: CID): CID => cid }

/**
 * The UnixFS CID of a file on disk, read as a stream (a chunk of memory at a time, never the whole
 * file): what `ipfs add --cid-version 1 FILE` prints, and what BlobStore.putStream gives the same bytes.
 */
export async function unixfsCidOfFile (path: string, opts: { signal?: AbortSignal } = {}): Promise<string> {
  return await importFile(createReadStream(path, { highWaterMark: 256 * 1024, signal: opts.signal }), DISCARD)
}

/** The UnixFS CID of bytes in memory. */
export async function unixfsCidOfBytes (bytes: Uint8Array): Promise<string> {
  return await importFile([bytes], DISCARD)
}
