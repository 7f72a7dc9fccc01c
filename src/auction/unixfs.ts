/**
 * How Mercato turns bytes into a UnixFS file DAG: the IPFS ecosystem's own importer with its
 * defaults, which are kubo's `ipfs add --cid-version 1` (256 KiB chunks, raw leaves, balanced
 * layout, 174 links per node). One place for it, so the CID a node gives an upload
 * (BlobStore.putStream) and the CID the CLI names a file by before uploading it
 * (cli/upload-cid.ts) cannot drift apart.
 */
import { importByteStream, type WritableStorage } from 'ipfs-unixfs-importer'

/** Import a byte stream into `store` (or nowhere, to learn its CID); returns the root CID. */
export async function importFile (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, store: WritableStorage): Promise<string> {
  return (await importByteStream(source, store)).cid.toString()
}
