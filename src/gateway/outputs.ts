/**
 * Serving a job's output files: content types, ranges and headers.
 *
 * An output file is a stranger's bytes served from the gateway's own origin,
 * where the dashboard and the API live. So it is never active content here:
 * only plain text, JSON, CSV and raster images are labelled as themselves
 * (inline); anything else (HTML, SVG, scripts, unknown) is
 * application/octet-stream as an attachment; every answer carries `nosniff`
 * and a sandboxing CSP, so even a browser that renders it runs nothing.
 */

/** Types served inline, by extension. */
const INLINE_TYPES: Record<string, string> = {
  txt: 'text/plain; charset=utf-8',
  log: 'text/plain; charset=utf-8',
  md: 'text/plain; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  tsv: 'text/tab-separated-values; charset=utf-8',
  json: 'application/json',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp'
}

/** Types served as attachments (a label, never rendered here). */
const ATTACHMENT_TYPES: Record<string, string> = {
  wasm: 'application/wasm',
  pdf: 'application/pdf',
  zip: 'application/zip',
  gz: 'application/gzip',
  tar: 'application/x-tar'
}

export const OUTPUT_CSP = "default-src 'none'; sandbox"

/** Content type and disposition of an output file, from its path. */
export function outputContentType (path: string): { type: string, inline: boolean } {
  const base = path.slice(path.lastIndexOf('/') + 1)
  const dot = base.lastIndexOf('.')
  const ext = dot > 0 ? base.slice(dot + 1).toLowerCase() : ''
  const inline = INLINE_TYPES[ext]
  if (inline != null) return { type: inline, inline: true }
  return { type: ATTACHMENT_TYPES[ext] ?? 'application/octet-stream', inline: false }
}

/** `Content-Disposition` for a file name (RFC 6266: an ASCII fallback and the UTF-8 name). */
export function contentDisposition (path: string, inline: boolean): string {
  const base = path.slice(path.lastIndexOf('/') + 1)
  const ascii = base.replace(/[^\x20-\x7e]|["\\]/g, '_')
  return `${inline ? 'inline' : 'attachment'}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(base)}`
}

/**
 * One byte range of a `Range` header against a file of `size` bytes:
 * `undefined` to serve the whole file (no header, a malformed one, or
 * several ranges: the header is ignored as RFC 9110 allows), `'unsatisfiable'`
 * (416), or the inclusive [start, end].
 */
export function parseRange (header: string | undefined, size: number): { start: number, end: number } | 'unsatisfiable' | undefined {
  if (header == null) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m == null || (m[1] === '' && m[2] === '')) return undefined
  if (m[1] === '') {
    // the last N bytes
    const n = Number(m[2])
    if (!Number.isSafeInteger(n)) return undefined
    if (n === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) return undefined
  if (m[2] !== '' && Number(m[2]) < start) return undefined
  if (start >= size) return 'unsatisfiable'
  return { start, end }
}
