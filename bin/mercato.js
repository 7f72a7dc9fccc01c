#!/usr/bin/env node
// Entry point of the `mercato` command: runs the TypeScript sources through tsx.
import '../src/polyfill-js.js'
import { register } from 'tsx/esm/api'

register()
process.argv[1] = new URL('../src/cli.ts', import.meta.url).pathname
await import('../src/cli.ts')
