/**
 * The dashboard in headless Chromium (Debian's chromium, driven by
 * playwright-core): it shows the peers and a finished job, a job submitted
 * while it is open arrives through the event stream, and the ledger verify
 * button works — with no console errors (a CSP violation would be one).
 *
 * CI installs chromium (.ci/install-chromium.sh). Without it the test fails
 * with a clear message in CI and is skipped elsewhere.
 */
import { expect } from 'chai'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { JS_ECHO } from './helpers.js'

const CHROMIUM = '/usr/bin/chromium'
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

describe('dashboard in headless Chromium', function () {
  this.timeout(40_000)
  let a: MercatoNode
  let b: MercatoNode
  let browser: BrowserContext | undefined
  let profile: string | undefined
  let page: Page
  const problems: string[] = []

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      if (process.env.CI != null) throw new Error(`${CHROMIUM} is missing: run .ci/install-chromium.sh (apt-get install chromium) before the tests`)
      this.skip()
    }
    b = await startTestNode({ price: 5 })
    a = await startTestNode({ price: 7, gateway: true, bootstrap: b.network.addresses() })
    await waitFor(() => a.peers().some(p => p.peerId === b.peerId), 15_000, 50)
    profile = await mkdtemp(join(tmpdir(), 'mercato-chromium-'))
    // a new, empty profile (playwright passes it as --user-data-dir)
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 20_000 })
    page = browser.pages()[0] ?? await browser.newPage()
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`) })
    page.on('pageerror', (err) => { problems.push(`page error: ${err.message}`) })
  })

  after(async () => {
    await browser?.close().catch(() => {})
    await stopNodes()
    if (profile != null) await rm(profile, { recursive: true, force: true })
  })

  it('shows the peers and a finished job, with price, provider and latency', async () => {
    const job = await a.market.submit({ engine: 'js', source: JS_ECHO, input: 1, maxPrice: 20 })
    const done = await a.market.waitFor(job.id, { signal: AbortSignal.timeout(15_000) })
    expect(done.status).to.equal('completed')
    await page.goto(a.gateway!.url + '/', { waitUntil: 'domcontentloaded' })
    await page.locator(`#peers tr[data-peer="${b.peerId}"]`).waitFor({ timeout: 10_000 })
    const row = page.locator(`#jobs tr[data-job="${job.id}"][data-status="completed"]`)
    await row.waitFor({ timeout: 10_000 })
    const cells = await row.locator('td').allInnerTexts()
    expect(cells[1]).to.include('completed')
    expect(cells[4]).to.equal(String(done.price))
    expect(cells[6]).to.match(/\d+(\.\d+)? m?s/)
    expect(await page.locator('#node-id').getAttribute('title')).to.equal(a.peerId)
    await page.locator(`#providers tr[data-provider="${b.peerId}"]`).waitFor({ timeout: 10_000 })
    await page.locator('#conn.live').waitFor({ timeout: 5_000 })
  })

  it('a job submitted while the page is open arrives live: its auction, then the finished row', async () => {
    const job = await a.market.submit({ engine: 'js', source: JS_ECHO, input: 2, maxPrice: 20 })
    await page.locator(`#jobs tr[data-job="${job.id}"][data-status="completed"]`).waitFor({ timeout: 10_000 })
    // the event log saw it (the stream, not the poll)
    await page.waitForFunction((id) => Array.from(document.querySelectorAll('#log li')).some(li => li.textContent?.includes('settled') && li.textContent.includes(id.slice(0, 8))), job.id, { timeout: 5_000 })
  })

  it('the verify button checks the ledger', async () => {
    await page.click('#verify')
    await page.locator('#verify-result.ok').waitFor({ timeout: 10_000 })
    expect(await page.locator('#verify-result').innerText()).to.match(/✓ \d+ records verified/)
    expect(await page.locator('#ledger-head').innerText()).to.match(/^#\d+ /)
    expect(problems, problems.join('\n')).to.deep.equal([])
    if (process.env.MERCATO_SCREENSHOT != null) await page.screenshot({ path: process.env.MERCATO_SCREENSHOT, fullPage: true })
  })
})
