/**
 * `mercato submit` with spec files (.yaml/.json, --var, --dry-run) and job
 * arrays (--each), end to end: the real CLI against a real node process on
 * 127.0.0.1 (its own provider runs the jobs).
 */
import { expect } from 'chai'
import { spawn } from 'node:child_process'
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, NODE_FLAGS, ROOT, runCli, startNodeProcess, stopAll, tempDir, getJson, waitFor, type NodeProcess } from '../helpers/cli.js'

const FIXTURES = join(ROOT, 'test/fixtures')
/** ≈ 50-100 ms of QuickJS work per job: slow enough to stop a run in the middle */
const SLOW_JS = 'function main (i) { let s = 0; for (let k = 0; k < 1500000; k++) s = (s + k) % 1000003; return { line: i.n, s } }\n'

describe('CLI: spec files and job arrays', function () {
  this.timeout(120_000)
  let node: NodeProcess
  let dir: string
  let api: string[]

  const jobCount = async (): Promise<number> => ((await getJson(`${node.gatewayUrl}/v1/jobs?limit=1000`)).body as unknown[]).length
  const cli = async (args: string[], timeoutMs = 60_000): ReturnType<typeof runCli> => await runCli([...args, ...api], { timeoutMs })

  before(async () => {
    node = await startNodeProcess(['--price', '7'])
    api = ['--api', node.gatewayUrl]
    dir = await tempDir('mercato-array-')
    await mkdir(join(dir, 'specs', 'bin'), { recursive: true })
    await copyFile(join(FIXTURES, 'wasm/hello.wasm'), join(dir, 'specs', 'bin', 'hello.wasm'))
  })
  after(stopAll)

  describe('spec files', () => {
    it('a YAML spec: the module path is relative to the spec file, ${VAR}s come from --var', async () => {
      const spec = join(dir, 'specs', 'hello.yaml')
      await writeFile(spec, [
        'engine: wasm',
        'module: ./bin/hello.wasm  # uploaded for us',
        'args: ["${WHO}"]',
        'limits:',
        '  timeoutMs: ${T}',
        'maxPrice: 50'
      ].join('\n') + '\n')
      const r = await cli(['submit', spec, '--var', 'WHO=array', '--var', 'T=5000', '--wait'])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.equal('hello, world\narg 1: array\n')
    })

    it('a JSON spec: source and input files relative to it, ${VAR}s in strings', async () => {
      await writeFile(join(dir, 'specs', 'greet.js'), 'function main (i) { return `hi ${i.who} from ${i.where}` }\n')
      await writeFile(join(dir, 'specs', 'input.json'), '{ "who": "json", "where": "a file" }\n')
      await writeFile(join(dir, 'specs', 'greet.json'), JSON.stringify({ engine: 'js', source: './greet.js', input: './input.json', env: { WHERE: '${PLACE}' } }, null, 2))
      const missing = await cli(['submit', join(dir, 'specs', 'greet.json')])
      expect(missing.code).to.equal(2)
      expect(missing.stderr).to.include('greet.json:6: undefined variable ${PLACE}')
      const r = await cli(['submit', join(dir, 'specs', 'greet.json'), '--var', 'PLACE=here', '--wait', '--json'])
      expect(r.code, r.stderr).to.equal(0)
      const { result } = JSON.parse(r.stdout)
      expect(result.output).to.equal('hi json from a file')
    })

    it('an unknown field, a wrong type and an undefined variable: exit 2, the field or variable and its line named, nothing submitted', async () => {
      const before = await jobCount()
      const spec = join(dir, 'specs', 'bad.yaml')
      await writeFile(spec, 'engine: js\nsource: "function main () { return 1 }"\nlimits:\n  timeoutMs: 100\n  colour: red\n')
      let r = await cli(['submit', spec])
      expect(r.code).to.equal(2)
      expect(r.stderr).to.include('bad.yaml:5: limits.colour: unknown field')
      await writeFile(spec, 'engine: js\nsource: "function main () { return 1 }"\nreplicas: lots\n')
      r = await cli(['submit', spec])
      expect(r.code).to.equal(2)
      expect(r.stderr).to.match(/bad\.yaml:3: replicas: .*number/)
      await writeFile(spec, 'engine: js\nsource: "function main () { return 1 }"\nargs:\n  - ${DEFINED}\n  - ${MISSING}\n')
      r = await cli(['submit', spec, '--var', 'DEFINED=1'])
      expect(r.code).to.equal(2)
      expect(r.stderr).to.include('bad.yaml:5: undefined variable ${MISSING}')
      r = await cli(['submit', spec, '--var', 'no-equals-sign'])
      expect(r.code).to.equal(2)
      expect(r.stderr).to.include('--var')
      r = await cli(['submit', join(dir, 'specs', 'greet.js'), '--parallel', '4'])
      expect(r.code).to.equal(2)
      expect(await jobCount()).to.equal(before)
    })

    it('--dry-run prints the resolved spec and its cost at the current asks, and submits nothing', async () => {
      const before = await jobCount()
      expect(before).to.be.greaterThan(0) // the jobs above: the node has heard its own ask
      const r = await cli(['submit', join(dir, 'specs', 'hello.yaml'), '--var', 'WHO=dry', '--var', 'T=100', '--dry-run'])
      expect(r.code, r.stderr).to.equal(0)
      const spec = JSON.parse(r.stdout)
      expect(spec).to.deep.include({ engine: 'wasm', args: ['dry'], limits: { timeoutMs: 100 }, maxPrice: 50 })
      expect(spec.module).to.match(/^baf/)
      expect(r.stderr).to.include('cost: 7 credits per job')
      expect(r.stderr).to.include('nothing submitted')
      expect(await jobCount()).to.equal(before)
    })
  })

  describe('--each', () => {
    it('a line that is not JSON is reported with its number; the others run; results in input order', async () => {
      const inputs = join(dir, 'bad-line.ndjson')
      const lines = Array.from({ length: 12 }, (_, i) => i === 4 ? '{"n": 5,' : JSON.stringify({ n: i + 1 }))
      await writeFile(inputs, lines.join('\n') + '\n')
      await writeFile(join(dir, 'double.js'), 'function main (i) { return i.n * 2 }\n')
      const out = join(dir, 'bad-line.results.ndjson')
      const r = await cli(['submit', join(dir, 'double.js'), '--each', inputs, '--parallel', '3', '--out', out])
      expect(r.code).to.equal(1) // one line failed
      expect(r.stderr).to.include('bad-line.ndjson:5: not JSON')
      const results = (await readFile(out, 'utf8')).trim().split('\n').map(l => JSON.parse(l))
      expect(results.map(x => x.line)).to.deep.equal(Array.from({ length: 12 }, (_, i) => i + 1))
      expect(results[4]).to.deep.include({ line: 5, status: 'invalid' })
      for (const x of results.filter(x => x.line !== 5)) expect(x).to.deep.include({ status: 'completed', output: x.line * 2 })
      expect(existsSync(`${out}.state`), 'the state file is removed once the run is complete').to.equal(false)
      // without --out the results go to stdout, in order
      const s = await cli(['submit', join(dir, 'double.js'), '--each', inputs, '--parallel', '5'])
      expect(s.stdout.trim().split('\n').map(l => JSON.parse(l).line)).to.deep.equal(Array.from({ length: 12 }, (_, i) => i + 1))
    })

    it('resumes after the CLI is killed mid-run, even killed between submitting and recording: nothing submitted twice', async () => {
      const N = 30
      const inputs = join(dir, 'resume.ndjson')
      await writeFile(inputs, Array.from({ length: N }, (_, i) => JSON.stringify({ n: i + 1 })).join('\n') + '\n')
      await writeFile(join(dir, 'slow.js'), SLOW_JS)
      const out = join(dir, 'resume.results.ndjson')
      const state = `${out}.state`
      const before = await jobCount()
      const args = ['submit', join(dir, 'slow.js'), '--each', inputs, '--parallel', '3', '--out', out, ...api]
      const proc = spawn(process.execPath, [...NODE_FLAGS, CLI, ...args], { stdio: 'ignore' })
      try {
        // some results written, more in flight
        await waitFor(async () => existsSync(out) && (await readFile(out, 'utf8')).split('\n').length > 6, 60_000, 20)
      } finally {
        proc.kill('SIGKILL')
      }
      await new Promise(resolve => proc.once('exit', resolve))
      const records = (await readFile(state, 'utf8')).trim().split('\n').map(l => JSON.parse(l))
      const written = Math.max(...records.filter(r => r.w != null).map(r => r.w))
      expect(written).to.be.lessThan(N)
      // a crash between submitting and recording: the ids of the last submitted lines never reached the state file
      const submitted = records.filter(r => r.l != null && r.l > written)
      expect(submitted.length, 'jobs in flight when killed').to.be.greaterThan(0)
      const forgotten = new Set(submitted.slice(-2).map(r => r.l))
      await writeFile(state, records.filter(r => !forgotten.has(r.l)).map(r => JSON.stringify(r)).join('\n') + '\n')

      const r = await cli(['submit', join(dir, 'slow.js'), '--each', inputs, '--parallel', '3', '--out', out])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stderr).to.include('resuming')
      const results = (await readFile(out, 'utf8')).trim().split('\n').map(l => JSON.parse(l))
      expect(results.map(x => x.line)).to.deep.equal(Array.from({ length: N }, (_, i) => i + 1))
      for (const x of results) expect(x).to.deep.include({ status: 'completed' })
      expect(results.map(x => x.output.line)).to.deep.equal(Array.from({ length: N }, (_, i) => i + 1))
      expect(new Set(results.map(x => x.id)).size).to.equal(N)
      // one job per line on the node: none started twice
      expect(await jobCount()).to.equal(before + N)
      expect(existsSync(state)).to.equal(false)
    })
  })
})
