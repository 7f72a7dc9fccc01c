#!/usr/bin/env node
// Entry point of the `mercato` command: runs the compiled JavaScript in dist/
// (built by `npm run build`, which `npm ci` and `npm pack` run as `prepare`).
import { existsSync } from 'node:fs'

const cli = new URL('../dist/cli.js', import.meta.url)
if (!existsSync(cli)) {
  process.stderr.write('mercato: dist/ is missing; run `npm run build` in the checkout first\n')
  process.exit(2)
}
// Node 20 lacks Promise.withResolvers (libp2p calls it); newer lines never load the polyfill
if (typeof Promise.withResolvers !== 'function') await import('../dist/polyfill.js')
await import(cli.href)
