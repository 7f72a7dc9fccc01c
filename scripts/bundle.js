/**
 * Bundles the compiled command line (dist/cli.js and everything it imports) into a few files in
 * dist/bundle/, which bin/mercato.js runs. Loading ~1,300 small ES modules one by one (resolve,
 * stat, read, compile each) was most of a node's start-up; a bundle is read and compiled at once.
 * Split at the command line's dynamic imports: `mercato start` loads the node's chunk, a client
 * command (`mercato submit`, `logs`) loads only the client's. Run by `npm run build` after tsc:
 * dist/ keeps the separate modules too (the package's `exports`, the sandbox workers and child
 * processes load those). dist/bundle.meta.json says which module went into which file.
 *
 * Left out of the bundle, loaded from node_modules as before: packages that find their own files
 * at run time (a native addon, wasm, static assets, their package.json, worker scripts), and
 * undici (imported only when a job has a URL input). The build fails when a bundled package
 * starts doing that (`__dirname`, `import.meta.url`, `require.resolve` in its code), so an
 * upgrade cannot break the bundle at run time instead.
 */
import { build } from 'esbuild'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const outdir = join(root, 'dist', 'bundle')
rmSync(outdir, { recursive: true, force: true })

const EXTERNAL = [
  'classic-level', // native addon
  'quickjs-emscripten', '@jitl/*', // wasm files beside their modules
  '@fastify/swagger-ui', '@fastify/swagger', // static assets, their package.json
  '@achingbrain/ssdp', // its package.json (UPnP)
  'pino', 'thread-stream', // transport worker scripts
  'commander', // __dirname (subcommand executables)
  'undici' // imported on a job's first URL input only
]

/** What in a bundled package's code means it reads files relative to itself. */
const SELF_RELATIVE = /\b__dirname\b|\b__filename\b|import\.meta\.(url|dirname|filename)\b|require\.resolve\(/

/**
 * Node 22+ gives node:http three lazy exports (WebSocket, CloseEvent, MessageEvent) backed by its own
 * copy of undici. An ES import of node:http builds the module's ES facade, which reads every export
 * and so loads and compiles undici: ~15 ms of every start on Node 24, for a WebSocket client nothing
 * here uses (@libp2p/websockets imports node:http for its listener). A require() reads only what
 * the code uses: bundled ES imports of node:http get the module through one. The export names are
 * this Node's; a bundled module importing a name not among them fails the build, not a start.
 */
const LAZY_UNDICI = new Set(['WebSocket', 'CloseEvent', 'MessageEvent'])
const httpNames = Object.keys(createRequire(import.meta.url)('node:http')).filter(k => !LAZY_UNDICI.has(k))
const httpByRequire = {
  name: 'http-by-require',
  setup (b) {
    b.onResolve({ filter: /^(node:)?http$/ }, args => args.kind === 'import-statement' ? { path: 'node:http', namespace: 'http-by-require' } : undefined)
    b.onLoad({ filter: /.*/, namespace: 'http-by-require' }, () => ({
      contents: `import { createRequire } from 'node:module'\nconst http = createRequire(import.meta.url)('node:http')\nexport default http\nexport const { ${httpNames.join(', ')} } = http\n`,
      loader: 'js'
    }))
  }
}

const result = await build({
  entryPoints: [join(root, 'dist', 'cli.js')],
  outdir,
  bundle: true,
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: EXTERNAL,
  plugins: [httpByRequire],
  // bundled CommonJS packages call require(): give the ES module one
  banner: { js: "import { createRequire as __mercatoCreateRequire } from 'node:module'; const require = __mercatoCreateRequire(import.meta.url);" },
  // whitespace and syntax only: names stay readable in stack traces; half the bytes to read and compile at start
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  // the bundled packages' license comments go to a .LEGAL.txt beside each file, not into the code: one
  // "ä" in a comment made Node read that whole 1 MiB chunk as a two-byte string (see the check below)
  legalComments: 'external',
  metafile: true,
  logLevel: 'warning'
})

const offenders = []
for (const input of Object.keys(result.metafile.inputs)) {
  if (!input.includes('node_modules/')) continue
  if (SELF_RELATIVE.test(readFileSync(join(root, input), 'utf8'))) offenders.push(input)
}
if (offenders.length > 0) {
  rmSync(outdir, { recursive: true, force: true })
  process.stderr.write(`bundle: these bundled files locate their own files at run time; add their packages to EXTERNAL in scripts/bundle.js:\n  ${offenders.join('\n  ')}\n`)
  process.exit(1)
}
// the bundle imports each external by its bare name from dist/bundle/: it must be a dependency of
// ours, or an install that does not hoist it (pnpm, npm's nested strategy) cannot find it, and one
// that hoists another version gives us that one
const { dependencies = {} } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const undeclared = new Set()
for (const output of Object.values(result.metafile.outputs)) {
  for (const imp of output.imports ?? []) {
    if (imp.external !== true) continue
    const name = imp.path.startsWith('@') ? imp.path.split('/').slice(0, 2).join('/') : imp.path.split('/')[0]
    // ours to declare: what EXTERNAL names (not Node's built-ins, nor optional requires left unresolved)
    const ours = EXTERNAL.some(e => e.endsWith('/*') ? name.startsWith(e.slice(0, -1)) : e === name)
    if (ours && dependencies[name] == null) undeclared.add(name)
  }
}
if (undeclared.size > 0) {
  rmSync(outdir, { recursive: true, force: true })
  process.stderr.write(`bundle: the bundle imports these packages by name, but package.json does not depend on them:\n  ${[...undeclared].join('\n  ')}\n`)
  process.exit(1)
}
// ASCII only: Node reads a module's source as a one-byte string when every byte is ASCII, and as a
// two-byte one (twice the memory, for as long as the module lives) when one byte is not. esbuild
// escapes non-ASCII characters in code; a comment it keeps is copied as it is
const js = Object.entries(result.metafile.outputs).filter(([o]) => o.endsWith('.js'))
const wide = js.map(([o]) => o).filter(o => readFileSync(join(root, o)).some(b => b > 0x7f))
if (wide.length > 0) {
  rmSync(outdir, { recursive: true, force: true })
  process.stderr.write(`bundle: these files hold non-ASCII bytes, so Node would keep their source as two-byte strings:\n  ${wide.join('\n  ')}\n`)
  process.exit(1)
}
writeFileSync(join(root, 'dist', 'bundle.meta.json'), JSON.stringify(result.metafile))
const bytes = js.reduce((n, [, o]) => n + o.bytes, 0)
process.stdout.write(`bundled ${Object.keys(result.metafile.inputs).length} modules into dist/bundle/ (${js.length} files, ${(bytes / 1024 / 1024).toFixed(1)} MiB)\n`)
