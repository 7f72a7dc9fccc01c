/**
 * Mercato as users get it: the compiled dist/ run with plain node, and the
 * `npm pack`ed tarball installed into a throwaway plain-JavaScript project.
 * (`npm test` builds dist/ before mocha runs.)
 */
import { expect } from 'chai'
import { execFile } from 'node:child_process'
import { readFile, writeFile, readdir, access } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CLI, NODE_FLAGS, ROOT, startNodeProcess, stopAll, tempDir, type NodeProcess } from '../helpers/cli.js'

const run = promisify(execFile)

describe('the compiled node (dist/)', function () {
  after(async () => { await stopAll() })

  it('starts under node flags a worker thread refuses (--expose-gc) and runs a job', async () => {
    const node = await startNodeProcess([], { nodeArgs: ['--expose-gc'] })
    const res = await fetch(`${node.gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ engine: 'js', source: 'function main (i) { return i * 2 }', input: 21, maxPrice: 100 }) })
    expect(res.status).to.equal(202)
    await node.stop()
  })

  it('serves the dashboard, an asset that lives next to its module, from dist/', async () => {
    const node = await startNodeProcess()
    const res = await fetch(node.gatewayUrl + '/')
    expect(res.status).to.equal(200)
    expect(await res.text()).to.match(/<html/i)
    await node.stop()
  })

  it('a client command (`mercato logs -f`) loads the client, not the node (no libp2p, fastify, market)', async () => {
    // every module the command loads, named by a resolve hook (a data: URL: no file to ship). In-thread
    // hooks (module.registerHooks) where Node has them; else off-thread ones. Written with writeSync:
    // on Node 24 an off-thread hook's process.stderr.write was lost when the command exited
    const hooks = 'import { writeSync } from "node:fs"; export async function resolve (s, c, next) { const r = await next(s, c); writeSync(2, "LOADED " + r.url + "\\n"); return r }'
    const register = 'import * as m from "node:module"; import { writeSync } from "node:fs"; ' +
      'if (typeof m.registerHooks === "function") m.registerHooks({ resolve (s, c, next) { const r = next(s, c); writeSync(2, "LOADED " + r.url + "\\n"); return r } }); ' +
      `else m.register(${JSON.stringify('data:text/javascript,' + encodeURIComponent(hooks))})`
    const { stderr } = await run(process.execPath, [...NODE_FLAGS, '--import', 'data:text/javascript,' + encodeURIComponent(register), CLI, 'logs', 'some-job', '-f', '--api', 'http://127.0.0.1:1'])
      .catch((e: { stderr: string }) => e) // exit 1: no node there
    const loaded = stderr.split('\n').filter(l => l.startsWith('LOADED ')).map(l => l.slice(7))
    expect(stderr).to.include('no Mercato node at http://127.0.0.1:1')
    // the command runs the bundle (dist/bundle/): the modules in the files it loaded, from the build's metafile
    const meta = JSON.parse(await readFile(join(ROOT, 'dist/bundle.meta.json'), 'utf8')) as { outputs: Record<string, { inputs: Record<string, unknown> }> }
    const files = loaded.filter(u => u.startsWith('file:') && u.includes('/dist/bundle/')).map(u => u.slice(u.indexOf('dist/bundle/')))
    expect(files).to.include('dist/bundle/cli.js')
    const modules = files.flatMap(f => Object.keys(meta.outputs[f]?.inputs ?? {}))
    // the hook saw the command's own modules
    expect(modules).to.include('dist/cli/client-commands.js')
    expect(modules).to.include('dist/client/index.js')
    // the node's parts load only for `mercato start` (they took ≈ 2 s before the first request)
    const heavy = [...loaded, ...modules].filter(u => /(^|\/)node_modules\/(libp2p|@libp2p\/(tcp|kad-dht|gossipsub)|fastify|level)\/|(^|\/)dist\/(node|auction\/index|gateway\/index|gateway\/routes\/jobs|p2p\/index)\.js$/.test(u))
    expect(heavy).to.deep.equal([])
  })
})

describe('the npm package in a plain JavaScript project @slow', function () {
  this.timeout(300_000)
  let node: NodeProcess
  let project: string

  before(async () => {
    project = await tempDir('mercato-pack-')
    // dist/ is fresh (npm test built it): pack without running prepare again
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', project], { cwd: ROOT })
    const [{ filename }] = JSON.parse(stdout) as Array<{ filename: string }>
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'uses-mercato', version: '1.0.0', type: 'module', private: true }))
    // dependencies come from npm's cache when `npm ci` already fetched them
    await run('npm', ['install', join(project, filename), '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: project })
    node = await startNodeProcess()
  })

  after(async () => { await stopAll() })

  it('ships dist/ with types, no TypeScript sources and no tsx', async () => {
    const pkg = join(project, 'node_modules/mercato')
    const files = await readdir(pkg)
    expect(files).to.include.members(['dist', 'bin', 'config', 'package.json'])
    expect(files).to.not.include('src')
    await access(join(pkg, 'dist/client/index.d.ts'))
    await access(join(pkg, 'dist/gateway/static/index.html'))
    const manifest = JSON.parse(await readFile(join(pkg, 'package.json'), 'utf8'))
    expect(manifest.exports['./client'].types).to.equal('./dist/client/index.d.ts')
    expect(Object.keys(manifest.dependencies)).to.not.include('tsx')
    await access(join(project, 'node_modules/tsx')).then(() => { throw new Error('tsx was installed') }, () => {})
  })

  it("`import { MercatoClient } from 'mercato/client'` runs a job on a node", async () => {
    await writeFile(join(project, 'use.js'), [
      "import { MercatoClient } from 'mercato/client'",
      'const client = new MercatoClient({ url: process.argv[2] })',
      "const { id } = await client.submit({ engine: 'js', source: 'function main (i) { return i.a + i.b }', input: { a: 1, b: 2 }, maxPrice: 100 })",
      'const job = await client.wait(id)',
      'console.log(JSON.stringify({ status: job.status, output: (await client.result(id)).output }))'
    ].join('\n'))
    const { stdout } = await run(process.execPath, ['use.js', node.gatewayUrl], { cwd: project })
    expect(JSON.parse(stdout)).to.deep.equal({ status: 'completed', output: 3 })
  })

  it('the installed `mercato` command runs from dist/ with plain node', async () => {
    const { stdout } = await run(join(project, 'node_modules/.bin/mercato'), ['--version'], { cwd: project })
    expect(stdout.trim()).to.equal(JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version)
  })
})
