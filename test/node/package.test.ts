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
import { ROOT, startNodeProcess, stopAll, tempDir, type NodeProcess } from '../helpers/cli.js'

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
    await access(join(pkg, 'dist/gateway/dashboard.html'))
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
