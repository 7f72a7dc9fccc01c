/**
 * `mercato get <id> [-o DIR]` through the real command (issue 14, outputs): it downloads every
 * output of a finished job under DIR, checked against its CID, progress on stderr; a path that
 * would land outside DIR (from a hostile node, or through a symbolic link in DIR) is refused and
 * nothing is written.
 */
import { expect } from 'chai'
import { createServer, type Server } from 'node:http'
import { lstat, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { getJson, runCli, startNodeProcess, stopAll, tempDir, waitFor, type NodeProcess } from '../helpers/cli.js'

const WRITER = `function main () {
  writeFile('report.txt', 'all good\\n')
  writeFile('data/numbers.bin', new Uint8Array([1, 2, 3]))
  return 'ok'
}`

describe('CLI: mercato get', function () {
  this.timeout(90_000)
  let node: NodeProcess
  let jobId: string

  before(async () => {
    node = await startNodeProcess()
    const res = await getJson(`${node.gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ engine: 'js', source: WRITER }) })
    expect(res.status, JSON.stringify(res.body)).to.equal(202)
    jobId = res.body.id
    await waitFor(async () => (await getJson(`${node.gatewayUrl}/v1/jobs/${jobId}`)).body.status === 'completed', 30_000)
  })
  after(stopAll)

  it('downloads every output under -o DIR, keeping paths; stdout lists them, stderr shows progress', async () => {
    const dir = join(await tempDir(), 'out')
    const res = await runCli(['get', jobId, '-o', dir, '--api', node.gatewayUrl])
    expect(res.code, res.stderr).to.equal(0)
    expect(await readFile(join(dir, 'report.txt'), 'utf8')).to.equal('all good\n')
    expect([...await readFile(join(dir, 'data/numbers.bin'))]).to.deep.equal([1, 2, 3])
    expect(res.stdout.trim().split('\n').map(l => l.replace(/^.*\/out\//, ''))).to.deep.equal(['data/numbers.bin', 'report.txt'])
    expect(res.stderr).to.match(/1\/2 data\/numbers.bin 3 B/)
    expect(res.stderr).to.match(/2 files, 12 B in /)
    // no temp files left behind
    expect((await readdir(dir)).sort()).to.deep.equal(['data', 'report.txt'])
  })

  it('refuses to write through a symbolic link in DIR that leads outside it', async () => {
    const base = await tempDir()
    const dir = join(base, 'out')
    const outside = join(base, 'outside')
    await mkdir(dir)
    await mkdir(outside)
    await symlink(outside, join(dir, 'data'))
    const res = await runCli(['get', jobId, '-o', dir, '--api', node.gatewayUrl])
    expect(res.code).to.equal(2)
    expect(res.stderr).to.match(/refusing output path "data\/numbers.bin"/)
    expect(await readdir(outside)).to.deep.equal([])
  })

  it('never writes through a link left at a file\'s name or its .part name in DIR', async () => {
    const base = await tempDir()
    const dir = join(base, 'out')
    const victim = join(base, 'victim.txt')
    await mkdir(dir)
    await writeFile(victim, 'precious\n')
    await symlink(victim, join(dir, 'report.txt'))
    await symlink(victim, join(dir, 'report.txt.part'))
    const res = await runCli(['get', jobId, '-o', dir, '--api', node.gatewayUrl])
    expect(res.code, res.stderr).to.equal(0)
    expect(await readFile(victim, 'utf8')).to.equal('precious\n')
    expect(await readFile(join(dir, 'report.txt'), 'utf8')).to.equal('all good\n')
    expect((await lstat(join(dir, 'report.txt'))).isSymbolicLink()).to.equal(false)
  })

  it('a node listing a path that escapes DIR: refused before anything is written', async () => {
    // a hostile gateway: lists one good file and one that climbs out
    const server: Server = createServer((req, res) => {
      res.setHeader('content-type', 'application/json')
      if (req.url === '/v1/jobs/evil/outputs') {
        res.end(JSON.stringify([{ path: 'a.txt', cid: 'bafkreiaaaa', size: 1 }, { path: '../escaped.txt', cid: 'bafkreibbbb', size: 1 }]))
      } else {
        res.statusCode = 404
        res.end(JSON.stringify({ error: { code: 'not-found', message: 'no' } }))
      }
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const base = await tempDir()
      const dir = join(base, 'out')
      const { port } = server.address() as { port: number }
      const res = await runCli(['get', 'evil', '-o', dir, '--api', `http://127.0.0.1:${port}`])
      expect(res.code).to.equal(2)
      expect(res.stderr).to.match(/refusing output path "..\/escaped.txt"/)
      expect(await readdir(base)).to.deep.equal([])
    } finally {
      server.close()
    }
  })

  it('a job with no outputs: says so, exit 0', async () => {
    const sub = await getJson(`${node.gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ engine: 'js', source: 'function main () { return 1 }' }) })
    await waitFor(async () => (await getJson(`${node.gatewayUrl}/v1/jobs/${sub.body.id}`)).body.status === 'completed', 30_000)
    const res = await runCli(['get', sub.body.id, '-o', await tempDir(), '--api', node.gatewayUrl])
    expect(res.code, res.stderr).to.equal(0)
    expect(res.stderr).to.match(/wrote no output files/)
  })
})
