import { expect } from 'chai'
import { FUEL_EXPORT, GROW_FAILED_EXPORT } from '../../src/executor/constants.js'
import { MemoryCapExceeded, ModuleRejected, prepareModule } from '../../src/executor/wasm-module.js'
import { wasm } from './helpers.js'

function memoryOf (bytes: Uint8Array<ArrayBuffer>): WebAssembly.ModuleExportDescriptor[] {
  return WebAssembly.Module.exports(new WebAssembly.Module(bytes))
}

describe('executor: wasm module rewriting', () => {
  it('caps a defined memory without maximum and keeps the module valid', () => {
    const p = prepareModule(wasm('sieve'), { maxPages: 16, fuel: false })
    expect(p.memory).to.deep.include({ imported: false, maximumPages: 16 })
    expect(p.hasStart).to.equal(true)
    expect(p.growHook).to.equal(true)
    expect(WebAssembly.validate(p.bytes)).to.equal(true)
    const names = memoryOf(p.bytes).map(e => e.name)
    expect(names).to.include(GROW_FAILED_EXPORT)
    expect(names).to.not.include(FUEL_EXPORT)
    // the cap is real: growing past it fails
    const inst = new WebAssembly.Instance(new WebAssembly.Module(p.bytes), { wasi_snapshot_preview1: new Proxy({}, { get: () => () => 0 }) })
    const mem = inst.exports.memory as WebAssembly.Memory
    expect(() => mem.grow(16)).to.throw(RangeError)
  })

  it('caps an imported memory', () => {
    const p = prepareModule(wasm('imported-memory'), { maxPages: 8, fuel: false })
    expect(p.memory).to.deep.equal({ imported: true, module: 'env', name: 'memory', initialPages: 1, maximumPages: 8 })
    const imp = WebAssembly.Module.imports(new WebAssembly.Module(p.bytes)).find(i => i.kind === 'memory')
    expect(imp?.name).to.equal('memory')
  })

  it('keeps a smaller existing maximum', () => {
    const p = prepareModule(wasm('trivial'), { maxPages: 1000, fuel: false })
    expect(p.memory?.maximumPages).to.equal(1000)
    const q = prepareModule(p.bytes, { maxPages: 2000, fuel: false })
    expect(q.memory?.maximumPages).to.equal(1000)
  })

  it('refuses shared memory, foreign imports, bad magic and components', () => {
    expect(() => prepareModule(wasm('shared-memory'), { maxPages: 16, fuel: false })).to.throw(ModuleRejected, /shared/)
    expect(() => prepareModule(wasm('foreign-import'), { maxPages: 16, fuel: false })).to.throw(ModuleRejected, /env.system/)
    expect(() => prepareModule(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), { maxPages: 16, fuel: false })).to.throw(ModuleRejected, /magic/)
    expect(() => prepareModule(new Uint8Array([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]), { maxPages: 16, fuel: false })).to.throw(ModuleRejected, /version/)
  })

  it('refuses 64-bit memories', () => {
    // (module (memory i64 1)) by hand: limits flag 0x04
    const bytes = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0x04, 1])
    expect(() => prepareModule(bytes, { maxPages: 16, fuel: false })).to.throw(ModuleRejected, /64-bit/)
  })

  it('reports an initial size above the cap as a memory-limit', () => {
    expect(() => prepareModule(wasm('big-initial'), { maxPages: 16, fuel: false })).to.throw(MemoryCapExceeded)
  })

  it('meters fuel deterministically in every C fixture', () => {
    for (const name of ['hello', 'echo', 'sieve', 'bomb', 'flood', 'sleep', 'escape', 'entropy', 'count', 'loop']) {
      const p = prepareModule(wasm(name), { maxPages: 64, fuel: true })
      expect(p.fuel, name).to.equal(true)
      expect(WebAssembly.validate(p.bytes), name).to.equal(true)
      expect(memoryOf(p.bytes).map(e => e.name), name).to.include(FUEL_EXPORT)
    }
  })
})
