/**
 * Labels and constraints through the real `mercato` command (issue 15): `start --label`,
 * `submit --constraint/--name/--label`, `jobs --label`, `providers`; bad selectors and labels
 * are usage errors (exit 2) naming the bad part, and nothing is submitted.
 */
import { expect } from 'chai'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { getJson, runCli, startNodeProcess, stopAll, tempDir, type NodeProcess } from '../helpers/cli.js'

describe('CLI: labels and constraints', function () {
  this.timeout(90_000)
  let node: NodeProcess
  let script: string

  before(async () => {
    node = await startNodeProcess(['--label', 'region=eu', '--label', 'licence=matlab'])
    const dir = await tempDir()
    script = join(dir, 'job.js')
    await writeFile(script, 'function main () { return 42 }\n')
  })
  after(stopAll)

  it('start --label: the labels are in /v1/node and in the providers list', async () => {
    const info = await getJson(`${node.gatewayUrl}/v1/node`)
    expect(info.body.provider.labels).to.deep.equal({ region: 'eu', licence: 'matlab' })
    const res = await runCli(['providers', '--api', node.gatewayUrl])
    expect(res.code, res.stderr).to.equal(0)
    expect(res.stdout).to.match(/region=eu,licence=matlab/)
  })

  it('submit --constraint runs on a matching provider; a job nobody matches prints constraint declines', async () => {
    const ok = await runCli(['submit', script, '--constraint', 'region in (eu,uk),licence', '--name', 'first', '--label', 'project=atlas', '--wait', '--api', node.gatewayUrl])
    expect(ok.code, ok.stderr).to.equal(0)
    expect(ok.stdout).to.equal('42\n')
    const none = await runCli(['submit', script, '--constraint', 'region=us', '--queue-timeout', '0', '--wait', '--api', node.gatewayUrl])
    expect(none.code).to.equal(1)
    expect(none.stderr).to.match(/constraint {2}constraint region=us not met \(region=eu\)/)
  })

  it('jobs --label lists the jobs carrying the label, with their name', async () => {
    const res = await runCli(['jobs', '--label', 'project=atlas', '--json', '--api', node.gatewayUrl])
    expect(res.code, res.stderr).to.equal(0)
    const jobs = JSON.parse(res.stdout)
    expect(jobs.map((j: any) => [j.name, j.status, j.labels])).to.deep.equal([['first', 'completed', { project: 'atlas' }]])
    const table = await runCli(['jobs', '--label', 'project=atlas', '--api', node.gatewayUrl])
    expect(table.stdout).to.match(/first\s+completed\s+js/)
  })

  it('a bad operator, a malformed selector or a bad label: exit 2 naming it, nothing submitted', async () => {
    const before = (await getJson(`${node.gatewayUrl}/v1/jobs`)).body.length
    const badOp = await runCli(['submit', script, '--constraint', 'gpu like a100', '--api', node.gatewayUrl])
    expect(badOp.code).to.equal(2)
    expect(badOp.stderr).to.match(/selector term "gpu like a100": unknown operator "like"/)
    const malformed = await runCli(['submit', script, '--constraint', 'gpu in (a100', '--api', node.gatewayUrl])
    expect(malformed.code).to.equal(2)
    expect(malformed.stderr).to.match(/unclosed "\("/)
    const badLabel = await runCli(['submit', script, '--label', 'project', '--api', node.gatewayUrl])
    expect(badLabel.code).to.equal(2)
    expect(badLabel.stderr).to.match(/label "project": expected key=value/)
    const badFilter = await runCli(['jobs', '--label', 'a b=c', '--api', node.gatewayUrl])
    expect(badFilter.code).to.equal(2)
    expect((await getJson(`${node.gatewayUrl}/v1/jobs`)).body.length).to.equal(before)
  })

  it('start with a bad --label: one line naming it, exit 2', async () => {
    const dataDir = await tempDir()
    const res = await runCli(['start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--gateway', '127.0.0.1:0', '--no-mdns', '--label', 'region=e u'])
    expect(res.code).to.equal(2)
    expect(res.stderr).to.match(/^mercato: --label: label value "e u"/)
  })
})
