#!/usr/bin/env -S node --max-semi-space-size=2
// Entry point of the `mercato` command: runs the compiled JavaScript, bundled
// in dist/bundle/ (built by `npm run build`, which `npm ci` and `npm pack` run
// as `prepare`; scripts/bundle.js says why a bundle).
//
// --max-semi-space-size=2 (MiB; Node's default is 16): a node allocates in
// bursts at start, and the young generation then stays committed; capped, a
// node is ready at ≈ 113 MiB RSS instead of ≈ 134 MiB (bench/start.ts), and
// a busy node pays with more (cheap) scavenges. 8 was tried (2026-12-05): on
// Node 20 bench:data's first job leg gained a fifth (100–131 → 127–141 MB/s),
// but on Node 24 a 50 MiB upload then grew the node's RSS by 72–84 MiB (30 with
// 2, 54–63 with 4; the bound is 64). --no-concurrent-marking was tried too
// (2026-12-05): on Node 20 it took a tenth to a fifth off the fetching node's
// CPU in bench:data (V8's marking threads compete with the nodes on 2 cores),
// but on Node 24 a 100 MiB upload grew the node's RSS by 82–97 MiB (35–40
// without it). Whoever runs this file with
// `node bin/mercato.js` should pass the same flag (npm start runs the file
// itself; `mercato devnet` passes its own flags on to its nodes).
import { existsSync } from 'node:fs'
import module from 'node:module'

// Node 22.1+: V8 keeps the code it compiled for the bundle on disk (Node's default place, under the
// OS temp dir) and a later start reuses it; NODE_DISABLE_COMPILE_CACHE=1 turns it off. Node 20 has none.
module.enableCompileCache?.()

const cli = new URL('../dist/bundle/cli.js', import.meta.url)
if (!existsSync(cli)) {
  process.stderr.write('mercato: dist/ is missing; run `npm run build` in the checkout first\n')
  process.exit(2)
}
// Node 20 lacks Promise.withResolvers (libp2p calls it); newer lines never load the polyfill
if (typeof Promise.withResolvers !== 'function') await import('../dist/polyfill.js')
await import(cli.href)
