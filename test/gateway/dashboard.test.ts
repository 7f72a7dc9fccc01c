/**
 * The dashboard in headless Chromium (Debian's chromium, driven by
 * playwright-core), on real nodes: a requester that only submits (a), and
 * two providers (b asks 5, c asks 3). Every panel shows their data: charts
 * with points, the mesh, peers, providers, events (also those from before
 * the page was opened), jobs linked to their pages, the ledger browser with
 * checked records and a peer audit. A job whose provider is stopped while it
 * runs shows both attempts in order on its page's time line. The page says
 * "reconnecting" when its event stream drops and catches up when it is back.
 * No console errors anywhere (a CSP violation would be one); no horizontal
 * overflow from 390 to 1,920 px; the front page weighs ≤ 300 KiB.
 *
 * Screenshots are taken only when asked for: MERCATO_KEEP_SCREENSHOTS=1 puts
 * them in a new temp dir that stays (printed), MERCATO_SCREENSHOT_DIR in that dir.
 *
 * CI installs chromium (.ci/install-chromium.sh). Without it the test fails
 * with a clear message in CI and is skipped elsewhere.
 */
import { expect } from 'chai'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdir, mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { JOBS_TOPIC, type JobView } from '../../src/auction/index.js'
import type { MercatoNode } from '../../src/node.js'
import { startTestNode, stopNode, stopNodes, waitFor } from '../helpers/nodes.js'
import { JS_ECHO, JS_SLOW } from './helpers.js'

const CHROMIUM = '/usr/bin/chromium'
/** prints lines over a few seconds (busy loops between them): the job page shows them live */
const SLOW_LINES = readFileSync(new URL('../fixtures/js/slow-lines.js', import.meta.url), 'utf8')
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

type Bid = { provider: string, price: number }
const ranked = (bids: Bid[]): Bid[] => [...bids].sort((x, y) => x.price - y.price)
/** What the page must say about the winner, in words (one winner, second price). */
function ruleFor (bids: Bid[], paid: number): string {
  const short = (id: string): string => id.slice(0, 8) + '…' + id.slice(-6)
  const credits = (n: number): string => `${n} credit${n === 1 ? '' : 's'}`
  if (bids.length === 1) return `the only bid: ${credits(bids[0].price)} from ${short(bids[0].provider)}; with no second bid it is paid its own ask` + (paid !== bids[0].price ? ` (capped at the max price: paid ${paid})` : '')
  return `cheapest of ${bids.length} bids: ${credits(bids[0].price)} from ${short(bids[0].provider)}; paid the second price, ${bids[1].price}` + (paid !== bids[1].price ? ` (capped at the max price: paid ${paid})` : '')
}

describe('dashboard in headless Chromium', function () {
  this.timeout(60_000)
  let a: MercatoNode
  let b: MercatoNode
  let c: MercatoNode
  let browser: Browser | undefined
  /** where screenshots go; none taken when unset (see the module doc) */
  let shots: string | undefined
  let page: Page
  const jobs: string[] = []
  const problems: string[] = []
  let pageOpenedAt = 0

  const watch = (p: Page): Page => {
    p.on('console', (m) => {
      if (m.type() !== 'error') return
      const url = m.location().url
      // the errors these tests cause on purpose: an audit of a bad PeerId (400), an unknown job (404), the cut stream
      if (/Failed to load resource: the server responded with a status of 400/.test(m.text()) && url.includes('/v1/ledger/audit/not-a-peer')) return
      if (/Failed to load resource: the server responded with a status of 404/.test(m.text()) && url.includes('/no-such-job')) return
      if (/ERR_INCOMPLETE_CHUNKED_ENCODING/.test(m.text()) && url.endsWith('/v1/events')) return
      problems.push(`console: ${m.text()} (${url})`)
    })
    p.on('pageerror', (err) => { problems.push(`page error: ${err.message}`) })
    return p
  }
  /**
   * A screenshot into `shots`, only when they are kept (MERCATO_SCREENSHOT_DIR or
   * MERCATO_KEEP_SCREENSHOTS): a full-page PNG costs Chromium CPU, and nothing here reads it.
   */
  const shoot = async (p: Page, name: string, fullPage = true): Promise<void> => {
    if (shots != null) await p.screenshot({ path: join(shots, name), fullPage })
  }
  const noOverflow = async (p: Page, what: string, shot?: string): Promise<void> => {
    if (shot != null) await shoot(p, shot)
    const o = await p.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      inner: window.innerWidth,
      // every table fits the card it is in (no scroll bar needed)
      tables: Array.from(document.querySelectorAll('table')).filter(t => t.offsetParent != null && t.scrollWidth > (t.parentElement as HTMLElement).clientWidth + 1).map(t => t.closest('section')?.querySelector('h2')?.textContent?.trim().slice(0, 30))
    }))
    // scrollWidth rounds a fractional layout width up: one pixel over is rounding, not a layout that does not fit
    expect(o.scroll, `${what}: page ${o.scroll} px wide in a ${o.inner} px window`).to.be.at.most(o.inner + 1)
    expect(o.tables, `${what}: tables wider than their card`).to.deep.equal([])
  }

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      if (process.env.CI != null) throw new Error(`${CHROMIUM} is missing: run .ci/install-chromium.sh (apt-get install chromium) before the tests`)
      this.skip()
    }
    this.timeout(120_000)
    shots = process.env.MERCATO_SCREENSHOT_DIR ?? (process.env.MERCATO_KEEP_SCREENSHOTS != null ? await mkdtemp(join(tmpdir(), 'mercato-dashboard-')) : undefined)
    if (shots != null) await mkdir(shots, { recursive: true })
    b = await startTestNode({ price: 5, slots: 1 })
    c = await startTestNode({ price: 3, slots: 1, bootstrap: b.network.addresses() })
    a = await startTestNode({ provide: false, gateway: true, bootstrap: [...b.network.addresses(), ...c.network.addresses()] })
    await waitFor(() => a.peers().length >= 2, 15_000, 50)
    await waitFor(() => a.market.providers().length >= 2, 15_000, 50)
    // jobs that ran before the page was opened (the events panel must show them too)
    for (let i = 0; i < 6; i++) {
      const job = await a.market.submit({ engine: 'js', source: JS_ECHO, input: i, maxPrice: 20 })
      const done = await a.market.waitFor(job.id, { signal: AbortSignal.timeout(15_000) })
      expect(done.status).to.equal('completed')
      jobs.push(job.id)
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 20_000 })
    page = watch(await browser.newPage({ viewport: { width: 1400, height: 1000 } }))
  })

  after(async () => {
    await browser?.close().catch(() => {})
    await stopNodes()
  })

  it('the front page weighs ≤ 300 KiB with its scripts and renders quickly', async () => {
    let bytes = 0
    const onResponse = (r: any): void => { void r.body().then((buf: Buffer) => { bytes += buf.length }).catch(() => {}) }
    page.on('response', onResponse)
    const t0 = Date.now()
    pageOpenedAt = t0
    await page.goto(a.gateway!.url + '/', { waitUntil: 'load' })
    await page.locator('#jobs tr[data-job]').first().waitFor({ timeout: 10_000 })
    const withData = Date.now() - t0
    page.off('response', onResponse)
    const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1)
    // static files only (the JSON answers are data, not page weight)
    const staticBytes = await page.evaluate(() => performance.getEntriesByType('resource').filter((e: any) => e.name.includes('/static/')).reduce((n, e: any) => n + (e.decodedBodySize as number), 0))
    const html = Number((await (await fetch(a.gateway!.url + '/')).arrayBuffer()).byteLength)
    // again, warm (the first load also starts Chromium's renderer)
    const t1 = Date.now()
    await page.reload({ waitUntil: 'load' })
    await page.locator('#jobs tr[data-job]').first().waitFor({ timeout: 10_000 })
    const withDataWarm = Date.now() - t1
    const fcpWarm = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1)
    const firstData = Number(await page.evaluate(() => document.body.dataset.firstDataMs))
    process.stderr.write(`      front page: html ${html} B + static ${staticBytes} B = ${((html + staticBytes) / 1024).toFixed(1)} KiB (all responses ${(bytes / 1024).toFixed(1)} KiB); first contentful paint ${fcp.toFixed(0)} ms (warm ${fcpWarm.toFixed(0)} ms); jobs shown after ${withData} ms (warm ${withDataWarm} ms; ${firstData} ms after navigation by the page's clock)\n`)
    expect(html + staticBytes).to.be.at.most(300 * 1024)
    expect(fcp).to.be.greaterThan(0)
    expect(fcp, 'first render (generous: the machine is shared)').to.be.lessThan(5_000)
  })

  it('shows peers, providers, finished jobs linked to their pages, and the events from before the page opened', async () => {
    await page.locator(`#peers tr[data-peer="${b.peerId}"]`).waitFor({ timeout: 10_000 })
    await page.locator(`#peers tr[data-peer="${c.peerId}"]`).waitFor({ timeout: 10_000 })
    await page.locator(`#providers tr[data-provider="${c.peerId}"][data-standing="good"]`).waitFor({ timeout: 10_000 })
    const done = await a.market.get(jobs[0])
    const row = page.locator(`#jobs tr[data-job="${jobs[0]}"][data-status="completed"]`)
    await row.waitFor({ timeout: 10_000 })
    const cells = await row.locator('td').allInnerTexts()
    expect(cells[1]).to.include('completed')
    expect(cells[4]).to.equal(String(done.price))
    expect(cells[6]).to.match(/\d+(\.\d+)? m?s/)
    expect(await row.locator('a').getAttribute('href')).to.equal(`/jobs/${jobs[0]}`)
    expect(await page.locator('#node-id').getAttribute('title')).to.equal(a.peerId)
    await page.locator('#conn.live').waitFor({ timeout: 5_000 })
    // a node that only submits: the jobs it ran before the page opened are in the events panel
    await page.waitForFunction((ids) => ids.every(id => Array.from(document.querySelectorAll('#log li[data-type="settled"] a')).some(x => x.getAttribute('href') === `/jobs/${id}`)), jobs.slice(-3), { timeout: 10_000 })
    expect(await page.locator('#log-empty').isHidden()).to.equal(true)
  })

  it('the charts have data points, and the mesh shows this node, its peers and the providers by standing', async () => {
    for (const id of ['chart-rate', 'chart-price', 'chart-latency', 'chart-bids']) {
      await page.waitForFunction((id) => Number(document.getElementById(id)?.dataset.points) > 0 && document.querySelector(`#${id} canvas`) != null, id, { timeout: 10_000 })
    }
    expect(Number(await page.locator('#chart-latency').getAttribute('data-points'))).to.be.at.least(jobs.length)
    // the asks reach back before the page was opened: the node keeps the market's history
    await page.waitForFunction(() => Number(document.getElementById('chart-price')?.dataset.askFrom) > 0, null, { timeout: 10_000 })
    expect(Number(await page.locator('#chart-price').getAttribute('data-ask-from'))).to.be.lessThan(pageOpenedAt)
    const history = await (await fetch(a.gateway!.url + '/v1/market/history')).json() as { asks: Array<{ t: number, asks: Record<string, number> }>, jobs: Array<{ id: string }> }
    expect(history.jobs.map(j => j.id)).to.include.members(jobs)
    // the message says what the node held: when this failed (a full local run, then CI), c had bid in
    // none of the six set-up jobs, open calls that did not reach it (fixed: they go to the book's providers too)
    const bidsOfC = await Promise.all(jobs.map(async id => (await a.market.get(id)).bids.filter(x => x.provider === c.peerId).map(x => x.price)))
    expect(history.asks.some(s => s.asks[c.peerId] === 3 && s.t < pageOpenedAt), JSON.stringify({ pageOpenedAt, c: c.peerId, bidsOfC, asks: history.asks.slice(0, 12) })).to.equal(true)
    await page.locator(`#mesh g[data-kind="self"][data-peer="${a.peerId}"]`).waitFor({ timeout: 10_000 })
    await page.locator(`#mesh g[data-peer="${c.peerId}"][data-kind="good"]`).waitFor({ timeout: 10_000 })
    await page.locator(`#mesh g[data-peer="${b.peerId}"]`).waitFor({ timeout: 10_000 })
    expect(await page.locator('#mesh line').count()).to.be.at.least(2)
  })

  it('a job submitted while the page is open arrives live: its auction, then the finished row, and the charts grow', async () => {
    const before = Number(await page.locator('#chart-latency').getAttribute('data-points'))
    const job = await a.market.submit({ engine: 'js', source: JS_ECHO, input: 'live', maxPrice: 20 })
    jobs.push(job.id)
    await page.locator(`#jobs tr[data-job="${job.id}"][data-status="completed"]`).waitFor({ timeout: 10_000 })
    await page.waitForFunction((id) => Array.from(document.querySelectorAll('#log li[data-type="settled"] a')).some(x => x.getAttribute('href') === `/jobs/${id}`), job.id, { timeout: 5_000 })
    await page.waitForFunction((n) => Number(document.getElementById('chart-latency')?.dataset.points) > n, before, { timeout: 10_000 })
  })

  it('the ledger browser shows checked records, filters by type, pages, and audits a peer', async () => {
    await page.locator('#ledger-records tr[data-seq]').first().waitFor({ timeout: 10_000 })
    // the newest page follows the log; every record's signature and link are checked by the node
    await page.waitForFunction(() => document.querySelectorAll('#ledger-records tr[data-seq]').length === 25, null, { timeout: 10_000 })
    // ...up to its head, records that came after the last job settled (its receipt) included: the
    // page used to reload only on a settled event, and a CI run saw it stay short of 25 rows
    const headSeq = async (): Promise<number> => ((await (await fetch(a.gateway!.url + '/v1/ledger/head')).json()) as { seq: number }).seq
    await waitFor(async () => Number(await page.locator('#ledger-records tr[data-seq]').first().getAttribute('data-seq')) === await headSeq(), 15_000, 250)
    const rows = await page.locator('#ledger-records tr[data-seq]').evaluateAll(trs => trs.map(tr => ({ seq: Number((tr as HTMLElement).dataset.seq), sig: (tr as HTMLElement).dataset.sig, link: (tr as HTMLElement).dataset.link })))
    expect(rows.every(r => r.sig === 'ok' && r.link === 'ok'), JSON.stringify(rows)).to.equal(true)
    expect(rows.map(r => r.seq)).to.deep.equal([...rows.map(r => r.seq)].sort((x, y) => y - x))
    // older: the page after the oldest record shown (read and clicked in one step: the newest page follows the log)
    const oldest = await page.evaluate(() => { const trs = document.querySelectorAll('#ledger-records tr[data-seq]'); document.getElementById('ledger-next')!.click(); return Number((trs[trs.length - 1] as HTMLElement).dataset.seq) })
    await page.waitForFunction((s) => Number((document.querySelector('#ledger-records tr[data-seq]') as HTMLElement)?.dataset.seq) === s - 1, oldest, { timeout: 10_000 })
    await page.click('#ledger-first')
    await page.locator('#ledger-type').selectOption('receipt')
    await page.waitForFunction(() => { const trs = Array.from(document.querySelectorAll('#ledger-records tr[data-seq]')) as HTMLElement[]; return trs.length > 0 && trs.every(t => t.dataset.type === 'receipt' && t.dataset.sig === 'ok' && t.dataset.link === 'ok') }, null, { timeout: 10_000 })
    // a receipt per job, and two for a job whose new provider ran beside its proven check and agreed
    const receipts = (await a.ledger.byType('receipt')).length
    expect(receipts).to.be.at.least(jobs.length)
    expect(await page.locator('#ledger-records tr[data-seq]').count()).to.equal(receipts)
    await page.locator('#ledger-type').selectOption('')

    await page.fill('#audit-peer', b.peerId)
    await page.click('#audit')
    await page.locator('#audit-result.ok').waitFor({ timeout: 30_000 })
    expect(await page.locator('#audit-result').innerText()).to.match(/✓ .* \d+ records verified/)
    await page.fill('#audit-peer', 'not-a-peer')
    await page.click('#audit')
    await page.locator('#audit-result.bad').waitFor({ timeout: 10_000 })
    expect(await page.locator('#audit-result').innerText()).to.match(/PeerId/)

    await page.click('#verify')
    await page.locator('#verify-result.ok').waitFor({ timeout: 10_000 })
    expect(await page.locator('#verify-result').innerText()).to.match(/✓ \d+ records verified/)
    expect(await page.locator('#ledger-head').innerText()).to.match(/^#\d+ /)
  })

  it('when the event stream drops it says "reconnecting", then catches up with what it missed', async () => {
    await page.evaluate(() => {
      const seen: string[] = []
      ;(window as any).connStates = seen
      new MutationObserver(() => { seen.push(document.getElementById('conn')!.textContent ?? '') }).observe(document.getElementById('conn')!, { childList: true, characterData: true, subtree: true })
    })
    // cut every HTTP connection of the gateway (the stream included); the server stays up
    a.gateway!.app.server.closeAllConnections()
    await page.waitForFunction(() => (window as any).connStates.some((s: string) => s.includes('reconnecting')), null, { timeout: 5_000 })
    const job = await a.market.submit({ engine: 'js', source: JS_ECHO, input: 'missed', maxPrice: 20 })
    jobs.push(job.id)
    await a.market.waitFor(job.id, { signal: AbortSignal.timeout(15_000) })
    await page.locator('#conn.live').waitFor({ timeout: 15_000 })
    await page.locator(`#jobs tr[data-job="${job.id}"][data-status="completed"]`).waitFor({ timeout: 10_000 })
    await page.waitForFunction((id) => Array.from(document.querySelectorAll('#log li[data-type="settled"] a')).some(x => x.getAttribute('href') === `/jobs/${id}`), job.id, { timeout: 10_000 })
  })

  it('fits 1,024–1,920 px and a phone (390 px), in light and dark', async () => {
    for (const [w, h] of [[1024, 800], [1400, 1000], [1920, 1080], [390, 844]]) {
      await page.setViewportSize({ width: w, height: h })
      // the charts follow the width 100 ms after a resize: wait until the page fits (a loaded
      // renderer takes longer than that), then check it, table by table
      await page.waitForFunction(() => document.documentElement.scrollWidth <= window.innerWidth + 1, null, { timeout: 10_000 }).catch(() => {})
      await noOverflow(page, `front page at ${w} px`, `front-${w}x${h}.png`)
      if (w === 390) {
        await shoot(page, `front-${w}x${h}-first-screen.png`, false)
        // a phone gets one column: every card starts at the same left edge
        const lefts = await page.locator('main > section').evaluateAll(ss => [...new Set(ss.filter(x => (x as HTMLElement).offsetParent != null).map(x => Math.round(x.getBoundingClientRect().left)))])
        expect(lefts, 'one column at 390 px').to.have.length(1)
      }
    }
    await page.emulateMedia({ colorScheme: 'dark' })
    await page.setViewportSize({ width: 1400, height: 1000 })
    await page.waitForTimeout(300)
    await shoot(page, 'front-1400x1000-dark.png')
    await page.emulateMedia({ colorScheme: 'light' })
    if (shots != null) process.stderr.write(`      screenshots in ${shots}\n`)
  })

  it('the job page shows a running job\'s live output as it comes, then its result', async function () {
    this.timeout(180_000)
    // QuickJS jobs have a virtual clock, so the job takes real time by spinning, and how long that
    // is depends on the machine: when the job ended before the page saw its first line (a fast
    // machine, a slow page load), run it again, longer; live output is what is tested
    let job: JobView | undefined
    let jobPage: Page | undefined
    for (const spin of [5_000_000, 12_000_000, 25_000_000]) {
      job = await a.market.submit({ engine: 'js', source: SLOW_LINES, input: { lines: 8, spin }, limits: { timeoutMs: 60_000 }, maxPrice: 20 })
      jobs.push(job.id)
      jobPage = watch(await browser!.newPage({ viewport: { width: 1400, height: 1000 } }))
      await jobPage.goto(`${a.gateway!.url}/jobs/${job.id}`)
      // the first line, or the job's end if it came first (a finished job's page shows no live log)
      await jobPage.waitForFunction(() => (document.getElementById('live-log')?.textContent ?? '').includes('line 0') || ['completed', 'failed'].includes(document.body.dataset.loaded ?? ''), null, { timeout: 60_000 })
      // shown while the job still ran
      const statusThen = (await a.market.get(job.id)).status
      if (['awarded', 'running'].includes(statusThen)) break
      process.stderr.write(`      spin ${spin}: the job was ${statusThen} before the page showed its first line; again, longer\n`)
      await a.market.waitFor(job.id, { signal: AbortSignal.timeout(120_000) })
      await jobPage.close()
      jobPage = undefined
    }
    if (job === undefined || jobPage === undefined) throw new Error('the page never showed a line while the job ran, even with a job 5 times longer')
    expect((await jobPage.locator('#live-log .note').first().innerText()).trim()).to.match(/^— attempt 1 on 12D3KooW…\w{6} —$/)
    await jobPage.waitForFunction(() => document.body.dataset.loaded === 'completed', null, { timeout: 120_000 })
    const text = await jobPage.locator('#live-log').innerText()
    for (let i = 0; i < 8; i++) expect(text).to.include(`line ${i}`)
    expect(await jobPage.locator('#live-log .stderr').allInnerTexts()).to.deep.equal(['progress 1\n', 'progress 3\n', 'progress 5\n', 'progress 7\n'])
    expect(await jobPage.locator('#live-state').textContent()).to.include('ended')
    // the running span: heartbeats drawn as a bar inside the attempt's lane
    const hb = jobPage.locator('.lane[data-lane="attempt"] .bar.hb')
    expect(await hb.count()).to.equal(1)
    const span = await hb.evaluate((b) => Number((b as HTMLElement).dataset.to) - Number((b as HTMLElement).dataset.from))
    expect(span).to.be.greaterThan(500)
    await noOverflow(jobPage, 'job page with live output at 1400 px', 'job-live-1400x1000.png')
    await jobPage.setViewportSize({ width: 390, height: 844 })
    await jobPage.waitForTimeout(300)
    await noOverflow(jobPage, 'job page with live output at 390 px', 'job-live-390x844.png')
    await jobPage.close()
  })

  it('the job page: a provider suspect for a moment before its job ran, that then completed, gets its whole running span', async function () {
    this.timeout(120_000)
    // a requester that finds any silence over 50 ms suspect, and a job whose URL input takes 1.5 s
    // to arrive: the provider, fetching it, is silent between heartbeats, so it is suspect before
    // the job runs
    const d = await startTestNode({ provide: false, gateway: true, bootstrap: [...b.network.addresses(), ...c.network.addresses()], config: { auction: { suspectAfterMs: 50, lostAfterMs: 60_000 } } })
    const slow = createServer((_req, res) => { setTimeout(() => { res.end('x') }, 1500) })
    await new Promise<void>(resolve => slow.listen(0, '127.0.0.1', resolve))
    let job: JobView
    let done: JobView
    try {
      // in the jobs topic's mesh with both providers (their adverts may be a minute away: with an
      // empty book the job is an open call)
      await waitFor(() => [b.peerId, c.peerId].every(p => d.network.topicPeers(JOBS_TOPIC).includes(p)), 20_000)
      const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/in.txt`
      const sha256 = createHash('sha256').update('x').digest('hex')
      job = await d.market.submit({ engine: 'js', source: JS_SLOW, input: { n: 6_000_000 }, inputs: [{ path: 'in.txt', url, sha256 }], limits: { timeoutMs: 60_000 }, maxPrice: 20 } as any)
      done = await d.market.waitFor(job.id, { signal: AbortSignal.timeout(60_000) })
    } finally {
      slow.close()
    }
    expect(done.status, JSON.stringify(done)).to.equal('completed')
    const events = d.market.heldEvents(job.id) ?? []
    const at = (type: string): number => events.find(e => e.type === type)?.ts as number
    expect(at('suspect'), 'a suspect event before the job ran').to.be.below(at('running'))
    const jobPage = watch(await browser!.newPage({ viewport: { width: 1400, height: 1000 } }))
    await jobPage.goto(`${d.gateway!.url}/jobs/${job.id}`)
    await jobPage.waitForFunction(() => document.body.dataset.loaded === 'completed', null, { timeout: 15_000 })
    const bar = await jobPage.locator('.lane[data-lane="attempt"] .bar.hb').evaluate((x) => ({ from: Number((x as HTMLElement).dataset.from), to: Number((x as HTMLElement).dataset.to) }))
    // from 'running' to the attempt's end (its result), not to where an earlier silence began: as
    // the page reads them (the job's view and history from the gateway)
    const view = await (await fetch(`${d.gateway!.url}/v1/jobs/${job.id}`)).json() as JobView
    const history = await (await fetch(`${d.gateway!.url}/v1/jobs/${job.id}/history`)).json() as Array<{ type: string, ts: number }>
    const endedAt = view.attempts.find(x => x.state === 'completed')?.endedAt as number
    const runningAt = history.find(e => e.type === 'running')?.ts as number
    expect(bar.to - bar.from, JSON.stringify({ bar, endedAt, runningAt })).to.be.at.least(endedAt - runningAt - 2)
    await jobPage.close()
    await stopNode(d)
  })

  it('the job page lists a job\'s output files with download links that serve their bytes', async () => {
    const source = `function main () { writeFile('report.txt', 'hello from outputs\\n'); writeFile('deep/dir/data.bin', new Uint8Array([1, 2, 3])); return 2 }`
    const job = await a.market.submit({ engine: 'js', source, maxPrice: 20 })
    const done = await a.market.waitFor(job.id, { signal: AbortSignal.timeout(20_000) })
    expect(done.status).to.equal('completed')
    const jobPage = watch(await browser!.newPage({ viewport: { width: 1400, height: 1000 } }))
    await jobPage.goto(`${a.gateway!.url}/jobs/${job.id}`)
    await jobPage.locator('#outputs a').first().waitFor({ timeout: 15_000 })
    const links = await jobPage.locator('#outputs a').evaluateAll(as => as.map(l => ({ text: l.textContent, href: (l as HTMLAnchorElement).getAttribute('href'), download: (l as HTMLAnchorElement).getAttribute('download') })))
    expect(links).to.deep.equal([
      { text: 'deep/dir/data.bin', href: `/v1/jobs/${encodeURIComponent(job.id)}/outputs/deep/dir/data.bin`, download: 'data.bin' },
      { text: 'report.txt', href: `/v1/jobs/${encodeURIComponent(job.id)}/outputs/report.txt`, download: 'report.txt' }
    ])
    // the links serve the bytes (fetched by the page itself, same origin, same CSP)
    const got = await jobPage.evaluate(async (hrefs) => await Promise.all(hrefs.map(async h => Array.from(new Uint8Array(await (await fetch(h as string)).arrayBuffer())))), links.map(l => l.href))
    expect(got[0]).to.deep.equal([1, 2, 3])
    expect(new TextDecoder().decode(new Uint8Array(got[1]))).to.equal('hello from outputs\n')
    await jobPage.setViewportSize({ width: 390, height: 844 })
    await jobPage.waitForTimeout(300)
    await noOverflow(jobPage, 'job page with outputs at 390 px', 'job-outputs-390x844.png')
    await jobPage.close()
  })

  it('the job page: a job handed over shows both attempts in order on its time line, the winner rule, result and checked records', async function () {
    this.timeout(120_000)
    // a job long enough to stop its provider while it runs; how long a spin takes depends on the
    // machine (and the Node line's wasm tiers), so a job that ended before its provider could be
    // stopped is run again, longer
    let job: JobView | undefined
    let jobPage: Page | undefined
    let victim: MercatoNode | undefined
    for (const n of [20_000_000, 60_000_000, 180_000_000]) {
      job = await a.market.submit({ engine: 'js', source: JS_SLOW, input: { n }, limits: { timeoutMs: 60_000 }, maxPrice: 20 })
      await waitFor(async () => ['running', 'completed'].includes((await a.market.get(job!.id)).status), 30_000, 20)
      const first = (await a.market.get(job.id)).provider!
      victim = first === c.peerId ? c : b
      jobPage = watch(await browser!.newPage({ viewport: { width: 1400, height: 1000 } }))
      await jobPage.goto(`${a.gateway!.url}/jobs/${job.id}`)
      await jobPage.locator(`.lane[data-lane="attempt"][data-provider="${victim.peerId}"]`).waitFor({ timeout: 10_000 })
      if ((await a.market.get(job.id)).status === 'running') break
      process.stderr.write(`      n ${n}: the job ended before its provider could be stopped; again, longer\n`)
      await a.market.waitFor(job.id, { signal: AbortSignal.timeout(60_000) })
      await jobPage.close()
      jobPage = undefined
    }
    if (job === undefined || jobPage === undefined || victim === undefined) throw new Error('every job ended before its provider could be stopped')
    const other = victim === c ? b : c
    await stopNode(victim)
    const done = await a.market.waitFor(job.id, { signal: AbortSignal.timeout(90_000) })
    expect(done.status, JSON.stringify(done)).to.equal('completed')
    expect(done.provider).to.equal(other.peerId)
    // the open page follows the job live to its end
    await jobPage.waitForFunction(() => document.body.dataset.loaded === 'completed', null, { timeout: 15_000 })
    const lanes = await jobPage.locator('.lane[data-lane="attempt"]').evaluateAll(ls => ls.map(l => ({ attempt: Number((l as HTMLElement).dataset.attempt), provider: (l as HTMLElement).dataset.provider, state: (l as HTMLElement).dataset.state })))
    expect(lanes.map(l => l.provider)).to.deep.equal([victim.peerId, other.peerId])
    expect(lanes[0].attempt).to.be.lessThan(lanes[1].attempt)
    expect(lanes[0].state).to.be.oneOf(['lost', 'refused', 'cancelled'])
    expect(lanes[1].state).to.equal('completed')
    // heartbeats as bars: the lost provider's running span stops before the handover, the runner-up's runs to the result
    const hbs = await jobPage.locator('.lane[data-lane="attempt"]').evaluateAll(ls => ls.map(l => { const b = l.querySelector('.bar.hb') as HTMLElement | null; return b == null ? null : { from: Number(b.dataset.from), to: Number(b.dataset.to) } }))
    // the marks are placed to scale: the handover comes after the first award and before the result
    const marks = await jobPage.locator('.mark').evaluateAll(ms => ms.map(m => ({ type: (m as HTMLElement).dataset.type, t: Number((m as HTMLElement).dataset.t), left: parseFloat((m as HTMLElement).style.left) })))
    const at = (type: string): { t: number, left: number } => marks.find(m => m.type === type)!
    expect(at('handover').t).to.be.greaterThan(at('awarded').t)
    expect(at('result').t).to.be.greaterThan(at('handover').t)
    expect(at('result').left).to.be.greaterThan(at('handover').left)
    expect(hbs[0], 'the first attempt ran').to.not.equal(null)
    expect(hbs[0]!.to).to.be.at.most(at('handover').t)
    expect(hbs[1]).to.not.equal(null)
    expect(hbs[1]!.from).to.be.greaterThan(at('handover').t)
    // the rule in words: the first award, then the handover (to the runner-up, or to a new round's winner)
    const short = (id: string): string => id.slice(0, 8) + '…' + id.slice(-6)
    expect(await jobPage.locator('.mark[data-type="bid"]').count()).to.equal((await a.market.jobEvents(job.id)).filter(e => e.type === 'bid').length)
    const rule = await jobPage.locator('#rule').innerText()
    expect(rule).to.match(/^(cheapest of \d bids: \d+ credits from \S+; paid the second price, \d+|the only bid: \d+ credits from \S+; with no second bid it is paid its own ask)/)
    expect(rule).to.include(`from ${short(victim.peerId)}`)
    expect(rule).to.match(/; after a handover, (the runner-up |offered again: .*)/)
    expect(rule.slice(rule.indexOf('after a handover'))).to.include(short(other.peerId))
    expect(await jobPage.locator('#attempts tr[data-attempt]').count()).to.equal(2)
    expect(JSON.parse(await jobPage.locator('#result-output').innerText())).to.be.a('number')
    expect(await jobPage.locator('#result-download').getAttribute('href')).to.equal(`/v1/jobs/${job.id}/result`)
    // the job's ledger records (a handover among them), each checked, then verified on demand
    await jobPage.locator('#records tr[data-type="handover"]').waitFor({ timeout: 10_000 })
    const checks = await jobPage.locator('#records tr[data-seq]').evaluateAll(trs => trs.map(tr => `${(tr as HTMLElement).dataset.sig}/${(tr as HTMLElement).dataset.link}`))
    expect(checks.length).to.be.at.least(4)
    expect(new Set(checks)).to.deep.equal(new Set(['ok/ok']))
    await jobPage.click('#verify')
    await jobPage.locator('#verify-result.ok').waitFor({ timeout: 10_000 })
    expect(await jobPage.locator('#verify-result').innerText()).to.match(/^✓ \d+ records of this job: signatures and links verified; the whole log \(\d+ records\) verifies$/)
    await noOverflow(jobPage, 'job page at 1400 px', 'job-handover-1400x1000.png')
    await jobPage.setViewportSize({ width: 390, height: 844 })
    await jobPage.waitForTimeout(300)
    await noOverflow(jobPage, 'job page at 390 px', 'job-handover-390x844.png')
    await jobPage.emulateMedia({ colorScheme: 'dark' })
    await shoot(jobPage, 'job-handover-390x844-dark.png')
    // the front page's mesh follows peers that go: the stopped provider leaves the inner ring
    await page.waitForFunction((id) => document.querySelector(`#mesh g[data-peer="${id}"]`)?.querySelector('title')?.textContent?.includes('not connected') ?? false, victim.peerId, { timeout: 15_000 })
    await jobPage.close()
  })

  it('a plain job page: the winner rule for its bids, no console errors anywhere', async () => {
    await page.goto(`${a.gateway!.url}/jobs/${jobs[0]}`)
    await page.waitForFunction(() => document.body.dataset.loaded === 'completed', null, { timeout: 10_000 })
    expect(await page.locator('.lane[data-lane="attempt"]').count()).to.equal(1)
    const j = await a.market.get(jobs[0])
    const history = await a.market.jobEvents(jobs[0])
    const awardTs = history.find(e => e.type === 'awarded')!.ts
    const inTime = history.filter(e => e.type === 'bid' && e.ts <= awardTs) as unknown as Bid[]
    const late = history.filter(e => e.type === 'bid' && e.ts > awardTs).length
    expect(await page.locator('#rule').innerText()).to.equal(ruleFor(ranked(inTime), j.price!) + (late > 0 ? ` (${late} more bid${late === 1 ? '' : 's'} came after the award)` : ''))
    if (inTime.length === 2) expect(await page.locator('#rule').innerText()).to.match(/^cheapest of 2 bids: 3 credits from 12D3KooW…\w{6}; paid the second price, 5$/)
    await page.goto(`${a.gateway!.url}/jobs/no-such-job`)
    await page.locator('#conn.down').waitFor({ timeout: 10_000 })
    expect(await page.locator('#conn').innerText()).to.equal('no such job on this node')
    expect(problems, problems.join('\n')).to.deep.equal([])
  })
})
