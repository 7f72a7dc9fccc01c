import { expect } from 'chai'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command } from 'commander'
import { EXIT_SANDBOX_FAILURE, EXIT_USAGE, execCommand, registerExecCommand, type ExecIo } from '../../src/executor/cli.js'
import { FIXTURES } from './helpers.js'

function capture (): ExecIo & { out: () => string, err: () => string } {
  const out: string[] = []
  const err: string[] = []
  const dec = new TextDecoder()
  const w = (into: string[]) => ({ write: (c: string | Uint8Array) => { into.push(typeof c === 'string' ? c : dec.decode(c)) } })
  return { stdout: w(out), stderr: w(err), out: () => out.join(''), err: () => err.join('') }
}

const wasmFile = (n: string): string => `${FIXTURES}wasm/${n}.wasm`
const jsFile = (n: string): string => `${FIXTURES}js/${n}.js`

describe('executor: mercato exec', () => {
  let dir: string
  before(() => { dir = mkdtempSync(join(tmpdir(), 'mercato-exec-')) })
  after(() => { rmSync(dir, { recursive: true, force: true }) })

  it('prints stdout and exits with the job exit code', async () => {
    const io = capture()
    expect(await execCommand(wasmFile('hello'), { arg: ['x', 'y'] }, io)).to.equal(0)
    expect(io.out()).to.equal('hello, world\narg 1: x\narg 2: y\n')
    const io2 = capture()
    expect(await execCommand(wasmFile('hello'), { arg: ['!'] }, io2)).to.equal(7)
  })

  it('--file name=path gives a wasm job /inputs/<name> and a js job readFile(name); bad flags are usage errors', async () => {
    writeFileSync(join(dir, 'local.txt'), 'from a local file\n')
    const io = capture()
    expect(await execCommand(wasmFile('read-inputs'), { file: [`data.txt=${join(dir, 'local.txt')}`] }, io)).to.equal(0)
    expect(io.out()).to.equal('data.txt\nfrom a local file\nrofs\n')
    const js = join(dir, 'read.js')
    writeFileSync(js, 'function main () { return [listFiles(), readFile("in/a.txt", "utf8")] }')
    const io2 = capture()
    expect(await execCommand(js, { file: [`in/a.txt=${join(dir, 'local.txt')}`] }, io2)).to.equal(0)
    expect(JSON.parse(io2.out())).to.deep.equal([['in/a.txt'], 'from a local file\n'])
    for (const [flag, why] of [['nonsense', /expected NAME=PATH/], [`a=${join(dir, 'missing')}`, /cannot read .*missing \(ENOENT\)/], [`../a=${js}`, /not a plain relative path/]] as Array<[string, RegExp]>) {
      const bad = capture()
      expect(await execCommand(js, { file: [flag] }, bad)).to.equal(EXIT_USAGE)
      expect(bad.err()).to.match(why)
    }
  })

  it('--outputs DIR writes the files a wasm job wrote under /outputs; --json lists them', async () => {
    const target = join(dir, 'outs')
    const io = capture()
    expect(await execCommand(wasmFile('outputs'), { outputs: target }, io)).to.equal(0)
    expect(readFileSync(join(target, 'report.txt'), 'utf8')).to.equal('hello from wasm\nsecond line\n')
    expect([...readFileSync(join(target, 'data/bytes.bin'))]).to.deep.equal([0, 1, 2, 255])
    expect(io.err()).to.match(/output file report.txt \(28 bytes, bafkrei\w+\) written under/)
    const json = capture()
    expect(await execCommand(wasmFile('outputs'), { json: true }, json)).to.equal(0)
    expect(JSON.parse(json.out()).outputs.map((o: any) => [o.path, o.size])).to.deep.equal([['data/bytes.bin', 4], ['report.txt', 28]])
  })

  it('feeds --stdin', async () => {
    const file = join(dir, 'in.txt')
    writeFileSync(file, 'from a file\n')
    const io = capture()
    expect(await execCommand(wasmFile('echo'), { stdin: file }, io)).to.equal(0)
    expect(io.out()).to.equal('from a file\n')
    expect(io.err()).to.equal('12 bytes\n')
  })

  it('runs a JS job with --input and prints its output', async () => {
    const io = capture()
    expect(await execCommand(jsFile('hello'), { input: '{"name":"ada","n":1}' }, io)).to.equal(0)
    expect(io.out()).to.equal('hello, ada\n{"greeting":"hello, ada","n":2}\n')
  })

  it('--json prints one object with the whole result', async () => {
    const io = capture()
    expect(await execCommand(jsFile('random'), { json: true }, io)).to.equal(0)
    const lines = io.out().trim().split('\n')
    expect(lines).to.have.length(1)
    const r = JSON.parse(lines[0])
    expect(r).to.include.keys('exitCode', 'stdout', 'stderr', 'output', 'resultHash', 'usage')
    expect(r.resultHash).to.match(/^[0-9a-f]{64}$/)
    // the same file gives the same hash every time
    const io2 = capture()
    await execCommand(jsFile('random'), { json: true }, io2)
    expect(JSON.parse(io2.out()).resultHash).to.equal(r.resultHash)
  })

  it('exits 3 on sandbox failures, with the failure name', async () => {
    const io = capture()
    expect(await execCommand(wasmFile('loop'), { timeout: 100, json: true }, io)).to.equal(EXIT_SANDBOX_FAILURE)
    expect(JSON.parse(io.out()).error.name).to.equal('timeout')
    const io2 = capture()
    expect(await execCommand(wasmFile('bomb'), { memory: 8 }, io2)).to.equal(EXIT_SANDBOX_FAILURE)
    expect(io2.err()).to.match(/memory-limit/)
    const io3 = capture()
    expect(await execCommand(wasmFile('shared-memory'), { json: true }, io3)).to.equal(EXIT_SANDBOX_FAILURE)
    expect(JSON.parse(io3.out()).error.name).to.equal('invalid-module')
  })

  it('exits 2 on bad usage', async () => {
    expect(await execCommand(join(dir, 'missing.wasm'), {}, capture())).to.equal(EXIT_USAGE)
    expect(await execCommand(jsFile('hello'), { input: '{not json' }, capture())).to.equal(EXIT_USAGE)
    expect(await execCommand(jsFile('hello'), { timeout: 'soon' }, capture())).to.equal(EXIT_USAGE)
  })

  it('registers `exec` with repeatable --arg on a commander program', async () => {
    const io = capture()
    const program = new Command('mercato').exitOverride()
    registerExecCommand(program, io)
    const saved = process.exitCode
    try {
      await program.parseAsync(['exec', wasmFile('hello'), '--arg', 'one', '--arg', 'two', '--timeout', '2000', '--memory', '16'], { from: 'user' })
      expect(process.exitCode).to.equal(0)
      expect(io.out()).to.equal('hello, world\narg 1: one\narg 2: two\n')
    } finally { process.exitCode = saved }
  })

  it('as a real process: exit code = job exit code, or 3', async function () {
    this.timeout(30_000)
    const runner = fileURLToPath(new URL('./exec-runner.ts', import.meta.url))
    const exec = async (...args: string[]): Promise<{ code: number | null, out: string }> => await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', runner, 'exec', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (c: Buffer) => { out += c.toString() })
      child.on('error', reject)
      child.on('close', code => { resolve({ code, out }) })
    })
    const [ok, seven, timeout] = await Promise.all([
      exec(wasmFile('hello'), '--arg', 'p'),
      exec(wasmFile('hello'), '--arg', '!p'),
      exec(wasmFile('sleep'), '--arg', 'forever', '--timeout', '100', '--json')
    ])
    expect(ok).to.deep.equal({ code: 0, out: 'hello, world\narg 1: p\n' })
    expect(seven.code).to.equal(7)
    expect(timeout.code).to.equal(3)
    expect(JSON.parse(timeout.out).error.name).to.equal('timeout')
  })
})
