/**
 * The CID a node gives bytes uploaded with `POST /v1/blobs`, computed here
 * without a node and without keeping a block: the node's own import
 * (crypto/unixfs.ts) fed from a file stream, so a 256 MiB input costs a
 * chunk of memory, not 256 MiB. The CLI names inputs by this CID before it
 * uploads them (a dry run shows it) and checks that the node answers the
 * same one.
 */
// loaded when a command uploads something: most commands never do
type UnixFs = typeof import('../crypto/unixfs.js')
const unixfs = async (): Promise<UnixFs> => await import('../crypto/unixfs.js')

/** The upload CID of a local file, read as a stream. */
export async function uploadCidOfFile (path: string): Promise<string> {
  return await (await unixfs()).unixfsCidOfFile(path)
}

/** The upload CID of bytes already in memory (a module). */
export async function uploadCidOfBytes (bytes: Uint8Array): Promise<string> {
  return await (await unixfs()).unixfsCidOfBytes(bytes)
}
