/**
 * `mercato submit job.js --file data.csv=./local.csv --wait` through the real command (issue 14,
 * inputs): the local file is uploaded (POST /v1/blobs) and named as an input the job reads; a
 * missing file, a bad --file and a bad or duplicate name are usage errors (exit 2), nothing submitted.
 */
import { expect } from 'chai'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { getJson, runCli, startNodeProcess, stopAll, tempDir, type NodeProcess } from '../helpers/cli.js'

const JOB = `function main () {
  const csv = readFile('data.csv', 'utf8')
  console.log('rows: ' + (csv.trim().split('\\n').length - 1))
  return { files: listFiles(), first: csv.split('\\n')[1], notes: readFile('docs/notes.txt', 'utf8') }
}`

describe('CLI: submit --file', function () {
  this.timeout(90_000)
  let node: NodeProcess
  let dir: string

  before(async () => {
    node = await startNodeProcess()
    dir = await tempDir()
    await writeFile(join(dir, 'job.js'), JOB)
    await writeFile(join(dir, 'local.csv'), 'name,n\nada,1\nbob,2\n')
    await writeFile(join(dir, 'notes.txt'), 'some notes')
  })
  after(stopAll)

  const jobCount = async (): Promise<number> => {
    const list = (await getJson(`${node.gatewayUrl}/v1/jobs`)).body
    expect(list).to.be.an('array')
    return list.length
  }

  it('uploads the local files, names them as inputs, and the job reads them', async () => {
    const res = await runCli(['submit', join(dir, 'job.js'), '--file', `data.csv=${join(dir, 'local.csv')}`, '--file', `docs/notes.txt=${join(dir, 'notes.txt')}`, '--wait', '--api', node.gatewayUrl])
    expect(res.code, res.stderr).to.equal(0)
    expect(res.stdout).to.contain('rows: 2')
    const output = JSON.parse(res.stdout.slice(res.stdout.indexOf('{')))
    expect(output).to.deep.equal({ files: ['data.csv', 'docs/notes.txt'], first: 'ada,1', notes: 'some notes' })
  })

  it('a file of several blocks: the CLI names it by the CID the node gives its upload, and the job reads it all', async () => {
    const big = Buffer.alloc(700 * 1024)
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 9)) & 0xff
    await writeFile(join(dir, 'big.bin'), big)
    await writeFile(join(dir, 'count.js'), 'function main () { const b = readFile("big.bin"); let s = 0; for (let i = 0; i < b.length; i++) s = (s + b[i]) | 0; return { n: b.length, s } }')
    const dry = await runCli(['submit', join(dir, 'count.js'), '--file', `big.bin=${join(dir, 'big.bin')}`, '--dry-run', '--api', node.gatewayUrl])
    expect(dry.code, dry.stderr).to.equal(0)
    const cid = JSON.parse(dry.stdout).inputs[0].cid as string
    expect(cid).to.match(/^bafybei/)
    const res = await runCli(['submit', join(dir, 'count.js'), '--file', `big.bin=${join(dir, 'big.bin')}`, '--wait', '--json', '--api', node.gatewayUrl])
    expect(res.code, res.stderr).to.equal(0)
    let s = 0
    for (const b of big) s = (s + b) | 0
    expect(res.stdout).to.contain(JSON.stringify({ n: big.length, s }))
    const blob = await fetch(`${node.gatewayUrl}/v1/blobs/${cid}`)
    expect(blob.status).to.equal(200)
    expect(Buffer.from(await blob.arrayBuffer()).equals(big)).to.equal(true)
  })

  for (const [flag, why] of [
    ['data.csv=./no/such/file.csv', /--file data\.csv=\.\/no\/such\/file\.csv: cannot read \.\/no\/such\/file\.csv \(ENOENT\)/],
    ['nonsense', /--file: expected NAME=PATH/],
    ['=x', /--file: expected NAME=PATH/],
    ['data.csv=', /--file: expected NAME=PATH/],
    ['../up.csv=LOCAL', /--file: input path "\.\.\/up\.csv" is not a plain relative path/],
    ['/abs.csv=LOCAL', /not a plain relative path/]
  ] as Array<[string, RegExp]>) {
    it(`exits 2 on --file ${flag}, submitting nothing`, async () => {
      const before = await jobCount()
      const res = await runCli(['submit', join(dir, 'job.js'), '--file', flag.replace('LOCAL', join(dir, 'local.csv')), '--api', node.gatewayUrl])
      expect(res.code, res.stderr).to.equal(2)
      expect(res.stderr).to.match(why)
      expect(await jobCount()).to.equal(before)
    })
  }

  it('a spec file names input files by local path (cid: ./file): uploaded, replaced by their CIDs', async () => {
    await writeFile(join(dir, 'job.yaml'), [
      'engine: js',
      'source: ./job.js',
      'inputs:',
      '  - path: data.csv',
      '    cid: ./local.csv'
    ].join('\n') + '\n')
    const res = await runCli(['submit', join(dir, 'job.yaml'), '--file', `docs/notes.txt=${join(dir, 'notes.txt')}`, '--wait', '--api', node.gatewayUrl])
    expect(res.code, res.stderr).to.equal(0)
    expect(JSON.parse(res.stdout.slice(res.stdout.indexOf('{')))).to.deep.equal({ files: ['data.csv', 'docs/notes.txt'], first: 'ada,1', notes: 'some notes' })
    await writeFile(join(dir, 'bad.yaml'), 'engine: js\nsource: ./job.js\ninputs:\n  - path: data.csv\n    cid: ./gone.csv\n')
    const bad = await runCli(['submit', join(dir, 'bad.yaml'), '--api', node.gatewayUrl])
    expect(bad.code).to.equal(2)
    expect(bad.stderr).to.match(/bad\.yaml:5: inputs\.0\.cid: cannot read \.\/gone\.csv \(ENOENT\)/)
  })

  it('exits 2 when two --file flags name the same input', async () => {
    const local = join(dir, 'local.csv')
    const res = await runCli(['submit', join(dir, 'job.js'), '--file', `a=${local}`, '--file', `a=${local}`, '--api', node.gatewayUrl])
    expect(res.code).to.equal(2)
    expect(res.stderr).to.match(/input path "a" is listed twice/)
  })
})
