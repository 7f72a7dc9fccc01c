import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { JobLimits } from '../../src/executor/index.js'

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url))

const cache = new Map<string, Uint8Array<ArrayBuffer>>()

/** A built wasm fixture (test/fixtures/wasm/<name>.wasm). */
export function wasm (name: string): Uint8Array<ArrayBuffer> {
  let b = cache.get(name)
  if (b == null) { b = new Uint8Array(readFileSync(`${FIXTURES}wasm/${name}.wasm`)); cache.set(name, b) }
  return b
}

/** A JS job fixture (test/fixtures/js/<name>.js). */
export function js (name: string): string {
  return readFileSync(`${FIXTURES}js/${name}.js`, 'utf8')
}

export const LIMITS: JobLimits = { timeoutMs: 5000, memoryMb: 32, outputBytes: 64 * 1024 }

export function text (b: Uint8Array): string {
  return new TextDecoder().decode(b)
}
