// The front page: market charts (uPlot), the mesh, peers, providers, live
// auctions, events, jobs and the ledger browser. Live over /v1/events; peers,
// providers and the ledger head are re-read every POLL_MS; after the stream
// drops and comes back, jobs and recent events are re-read (catch up).
'use strict'
const WINDOW_S = 15 * 60
const BUCKET_S = 30
const LEDGER_PAGE = 25
const state = {
  self: null, peers: [], providers: [], flagged: new Set(), auctions: new Map(), jobs: [],
  asks: new Map(), // provider → [[t (s), ask]]
  historyJobs: [], // finished jobs of the last 15 minutes from the node's history (GET /v1/market/history)
  seenEvents: new Set(), ledger: { before: null, history: [], type: '' }
}
const charts = {}

function fill (tbodyId, emptyId, rows) {
  $(tbodyId).replaceChildren(...rows)
  $(emptyId).hidden = rows.length > 0
}

/** `{ region: 'eu' }` → `region=eu` ('' for none) */
const labelText = (labels) => Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')

async function refreshNode () {
  const info = await api('/v1/node')
  state.self = info.peerId
  $('node-id').textContent = short(info.peerId)
  $('node-id').title = info.peerId
  const p = info.provider
  const labels = labelText(p.labels)
  $('node-provider').textContent = p.enabled ? `provider: ask ${p.price}, slots ${p.busy}/${p.slots}, engines ${(p.engines ?? []).join(', ')}${labels ? `, labels ${labels}` : ''}` : 'not a provider'
  try {
    const b = await api('/v1/balance')
    $('node-balance').textContent = `earned ${b.earned} · spent ${b.spent}`
  } catch {}
}

async function refreshPeers () {
  state.peers = await api('/v1/peers')
  $('peer-count').textContent = state.peers.length
  fill('peers', 'peers-empty', state.peers.map(p => el('tr', { 'data-peer': p.peerId },
    el('td', { class: 'mono nw', title: p.peerId }, short(p.peerId)),
    el('td', { class: 'mono' }, (p.addresses ?? []).join(' ')),
    el('td', {}, p.flagged || state.flagged.has(p.peerId) ? el('span', { class: 'pill flagged' }, 'flagged') : ''))))
  drawMesh()
}

async function refreshProviders () {
  try { state.flagged = new Set(((await api('/v1/ledger/flagged')).flagged ?? []).map(f => typeof f === 'string' ? f : f.peerId)) } catch {}
  state.providers = await api('/v1/providers')
  const t = Date.now() / 1000
  for (const p of state.providers) {
    if (p.lastAsk == null) continue
    const series = state.asks.get(p.peerId) ?? []
    series.push([t, p.lastAsk])
    while (series.length > 0 && series[0][0] < t - WINDOW_S) series.shift()
    state.asks.set(p.peerId, series)
  }
  $('provider-count').textContent = state.providers.length
  fill('providers', 'providers-empty', state.providers.map(p => {
    const s = p.standing
    const word = standingOf(s, state.flagged.has(p.peerId))
    return el('tr', { 'data-provider': p.peerId, 'data-standing': word },
      el('td', {}, el('span', { class: 'mono', title: p.peerId }, short(p.peerId)), p.self ? ' (this node) ' : ' ', el('span', { class: `pill ${word}` }, word === 'unknown' ? 'new' : word)),
      el('td', {}, (p.engines ?? []).join(', ')),
      el('td', { class: 'hide-sm', 'data-labels': '' }, labelText(p.labels) || '–'),
      el('td', { class: 'num' }, p.lastAsk ?? '–'),
      el('td', { class: 'num' }, s ? s.score : '–'),
      el('td', { class: 'num' }, s ? `${s.completed} · ${s.lost} · ${s.mismatched}` : '–'))
  }))
  drawMesh()
  drawCharts()
}

async function refreshLedgerHead () {
  try {
    const h = await api('/v1/ledger/head')
    $('ledger-head').textContent = h.seq < 0 ? 'empty' : `#${h.seq} ${short(h.id)}`
    $('ledger-head').title = h.id ?? ''
    // the newest page follows the head, on a settled event and on the poll: records also come without
    // a settled event (a receipt gossiped after the job settled, a record of a job we ran)
    if (ledgerShownHead != null && h.seq !== ledgerShownHead) scheduleLedger()
  } catch { $('ledger-head').textContent = 'n/a' }
}

async function refreshJobs () {
  const jobs = await api('/v1/jobs?limit=1000')
  state.jobs = jobs
  $('job-count').textContent = jobs.length
  fill('jobs', 'jobs-empty', jobs.slice(0, 100).map(j => el('tr', { 'data-job': j.id, 'data-status': j.status },
    el('td', { class: 'nw' }, jobLink(j.id), j.name || labelText(j.labels) ? el('div', { class: 'muted', 'data-job-meta': '' }, [j.name, labelText(j.labels)].filter(Boolean).join(' · ')) : null),
    el('td', {}, el('span', { class: `pill s-${j.status}` }, j.status), j.error ? el('div', { class: 'bad' }, j.error) : null),
    el('td', { class: 'hide-sm' }, j.engine),
    el('td', { class: 'num' }, j.bids.length + (j.declines.length ? ` (+${j.declines.length} declined)` : '')),
    el('td', { class: 'num' }, j.price ?? '–'),
    el('td', { class: 'mono hide-sm', title: j.provider ?? '' }, j.provider ? short(j.provider) : '–'),
    el('td', { class: 'num' }, fmtMs(j.latencyMs)),
    el('td', { class: 'hide-sm nw' }, new Date(j.createdAt).toLocaleTimeString()))))
  // auctions still open (e.g. after a reload) come from the list
  for (const j of jobs) {
    if (j.status === 'bidding' && !state.auctions.has(j.id)) {
      state.auctions.set(j.id, { id: j.id, bids: j.bids.map(b => ({ provider: b.provider, price: b.price })), declines: j.declines.map(d => ({ provider: d.provider, reason: d.reason })), winner: null, closedAt: null })
    }
  }
  renderAuctions()
  drawCharts()
  // when the page first showed data (the test reads it: first render)
  if (document.body.dataset.firstDataMs == null) document.body.dataset.firstDataMs = String(Math.round(performance.now()))
}

function renderAuctions () {
  const now = Date.now()
  for (const [id, a] of state.auctions) if (a.closedAt != null && now - a.closedAt > 8000) state.auctions.delete(id)
  const cards = [...state.auctions.values()].map(a => el('div', { class: 'auction', 'data-auction': a.id },
    el('div', {}, jobLink(a.id), ' ',
      a.winner ? el('span', { class: 'ok' }, `awarded to ${short(a.winner.provider)} at ${a.winner.price}`) : a.closedAt ? el('span', { class: 'bad' }, a.outcome) : el('span', { class: 's-bidding' }, `bidding… ${a.bids.length} bid(s)`)),
    el('div', { class: 'bids' },
      ...a.bids.map(b => el('span', { class: 'bid' + (a.winner && a.winner.provider === b.provider ? ' win' : ''), title: b.provider }, `${short(b.provider)} · ${b.price}`)),
      ...a.declines.map(d => el('span', { class: 'bid decline', title: d.provider }, `${short(d.provider)} · ${d.reason}`)))))
  $('auctions').replaceChildren(...cards)
  $('auctions-empty').hidden = cards.length > 0
}

// ---- events ----------------------------------------------------------------

const eventKey = (e) => `${e.jobId}|${e.type}|${e.ts}|${e.provider ?? ''}|${e.attempt ?? ''}`

function eventLine (e) {
  const bits = [new Date(e.ts).toLocaleTimeString(), e.type]
  if (e.provider) bits.push(short(e.provider))
  if (e.price != null) bits.push(`price ${e.price}`)
  if (e.reason) bits.push(String(e.reason))
  if (e.latencyMs != null) bits.push(fmtMs(e.latencyMs))
  return el('li', { class: 'mono', 'data-ts': e.ts, 'data-type': e.type }, jobLink(e.jobId, short(e.jobId)), '  ', bits.join('  '))
}

/** Put events into the log, newest on top, each once (the stream and the catch-up may both bring one). */
function logEvents (events) {
  const log = $('log')
  for (const e of events) {
    const k = eventKey(e)
    if (state.seenEvents.has(k)) continue
    state.seenEvents.add(k)
    const li = eventLine(e)
    // keep the log in time order even when caught-up events arrive after live ones
    let before = null
    for (const c of log.children) if (Number(c.dataset.ts) <= e.ts) { before = c; break }
    log.insertBefore(li, before)
  }
  while (log.children.length > 80) log.lastChild.remove()
  $('log-empty').hidden = log.children.length > 0
  if (state.seenEvents.size > 5000) state.seenEvents = new Set([...state.seenEvents].slice(-1000))
}

async function catchUp () {
  try { logEvents((await api('/v1/events/recent?limit=80')).reverse()) } catch (err) { console.warn(err) }
  scheduleJobs()
}

function onJobEvent (e) {
  logEvents([e])
  let a = state.auctions.get(e.jobId)
  if (e.type === 'announced' && e.queued === true && a && a.closedAt != null && !a.winner) { a.bids = []; a.declines = []; a.closedAt = null; a.outcome = undefined }
  if (e.type === 'announced' && !a) { a = { id: e.jobId, bids: [], declines: [], winner: null, closedAt: null }; state.auctions.set(e.jobId, a) }
  if (a) {
    if (e.type === 'bid' && !a.bids.some(b => b.provider === e.provider)) a.bids.push({ provider: e.provider, price: e.price })
    if (e.type === 'decline') a.declines.push({ provider: e.provider, reason: e.reason })
    if (e.type === 'awarded' && !a.winner) { a.winner = { provider: e.provider, price: e.price }; a.closedAt = Date.now() }
    if (['no-bids', 'failed', 'cancelled'].includes(e.type) && a.closedAt == null) { a.outcome = e.type; a.closedAt = Date.now() }
    // queued: no provider yet; the card goes (the job stays in the list, badge "queued") and comes back if a round gets a bid
    if (e.type === 'queued' && a.closedAt == null) { a.outcome = 'queued: waiting for a provider'; a.closedAt = Date.now() }
    renderAuctions()
  }
  scheduleJobs()
  // a settled job moved our log's head: refreshLedgerHead reloads the newest page when it did
  if (e.type === 'settled') { void refreshLedgerHead(); void refreshProviders().catch(() => {}) }
}

let jobsTimer = null
function scheduleJobs () {
  if (jobsTimer != null) return
  jobsTimer = setTimeout(() => { jobsTimer = null; void refreshJobs().catch(showError) }, 200)
}

function showError (err) { $('conn').textContent = `error: ${err.message}`; $('conn').className = 'conn down' }

// ---- charts (uPlot) ----------------------------------------------------------

/** The market's last 15 minutes as the node kept them: asks and finished jobs from before the page opened. */
async function loadHistory () {
  const h = await api('/v1/market/history')
  for (const sample of h.asks) {
    const t = sample.t / 1000
    for (const [peer, ask] of Object.entries(sample.asks)) {
      const series = state.asks.get(peer) ?? []
      series.push([t, ask])
      state.asks.set(peer, series)
    }
  }
  // the page's own samples (refreshProviders) come later in time: keep every series in order
  for (const series of state.asks.values()) series.sort((x, y) => x[0] - y[0])
  state.historyJobs = h.jobs
  drawCharts()
}

/** Finished jobs for the charts: the node's history, and the jobs list (newer, and kept longer) over it. */
function chartJobs () {
  const byId = new Map()
  for (const h of state.historyJobs) byId.set(h.id, h)
  for (const j of state.jobs) {
    if (j.completedAt == null) continue
    byId.set(j.id, { id: j.id, status: j.status, completedAt: j.completedAt, price: j.price, latencyMs: j.latencyMs, bids: j.bids.length })
  }
  return [...byId.values()]
}

function percentile (sorted, p) {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim()

function chartWidth (id) { return Math.max(200, $(id).clientWidth) }

function axes (yLabel, xTime = true) {
  const stroke = css('--muted')
  const grid = { stroke: css('--line'), width: 1 }
  const ax = { stroke, grid, ticks: grid }
  return [xTime ? { ...ax } : { ...ax, label: yLabel.x }, { ...ax, label: xTime ? yLabel : yLabel.y, size: 50 }]
}

function makeChart (id, opts, data) {
  const u = new uPlot({ width: chartWidth(id), height: 200, legend: { live: false }, cursor: { drag: { x: false, y: false } }, ...opts }, data, $(id))
  charts[id] = u
  return u
}

function setPoints (id, n) { $(id).dataset.points = String(n) }

/** Series of the last 15 minutes in BUCKET_S steps: completions per second, latency p50 and p99. */
function rateData (now) {
  const start = Math.floor((now - WINDOW_S) / BUCKET_S) * BUCKET_S
  const xs = []
  for (let t = start; t <= now; t += BUCKET_S) xs.push(t)
  const counts = xs.map(() => 0)
  const lats = xs.map(() => [])
  for (const j of chartJobs()) {
    if (j.completedAt == null) continue
    const t = j.completedAt / 1000
    if (t < start) continue
    const i = Math.min(xs.length - 1, Math.floor((t - start) / BUCKET_S))
    counts[i]++
    if (j.latencyMs != null) lats[i].push(j.latencyMs)
  }
  const p50 = lats.map(l => percentile(l.sort((a, b) => a - b), 0.5))
  const p99 = lats.map(l => percentile(l, 0.99))
  // the bucket in progress counts over the seconds elapsed so far
  const rate = counts.map((c, i) => c / Math.max(1, Math.min(BUCKET_S, now - xs[i])))
  return [xs, rate, p50, p99]
}

function priceData (now) {
  const done = chartJobs().filter(j => j.price != null && j.completedAt / 1000 >= now - WINDOW_S).sort((a, b) => a.completedAt - b.completedAt)
  const provs = [...state.asks.keys()].slice(0, 8)
  const times = new Set(done.map(j => j.completedAt / 1000))
  for (const p of provs) for (const [t] of state.asks.get(p)) times.add(t)
  times.add(now - WINDOW_S); times.add(now)
  const xs = [...times].sort((a, b) => a - b)
  const paid = new Map(done.map(j => [j.completedAt / 1000, j.price]))
  const series = [xs, xs.map(t => paid.get(t) ?? null)]
  for (const p of provs) {
    const pts = state.asks.get(p)
    // the ask holds from the first time it was seen; drawn back to the window's start (the ask known now)
    series.push(xs.map(t => { let v = pts[0][1]; for (const [pt, a] of pts) if (pt <= t) v = a; return v }))
  }
  return { data: series, provs, points: done.length }
}

const LAT_BUCKETS = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, Infinity]
function latencyHistogram () {
  const counts = LAT_BUCKETS.map(() => 0)
  let n = 0
  for (const j of chartJobs()) {
    if (j.latencyMs == null) continue
    counts[LAT_BUCKETS.findIndex(b => j.latencyMs <= b)]++
    n++
  }
  return { data: [LAT_BUCKETS.map((_, i) => i), counts], n }
}
const latLabel = (i) => LAT_BUCKETS[i] === Infinity ? '>30s' : LAT_BUCKETS[i] < 1000 ? `${LAT_BUCKETS[i]}ms` : `${LAT_BUCKETS[i] / 1000}s`

function bidsHistogram () {
  const done = chartJobs().filter(j => TERMINAL.has(j.status))
  const max = Math.max(3, ...done.map(j => j.bids))
  const counts = Array.from({ length: Math.min(max, 20) + 1 }, () => 0)
  for (const j of done) counts[Math.min(j.bids, counts.length - 1)]++
  return { data: [counts.map((_, i) => i), counts], n: done.length }
}

const COLORS = ['#2d5bd7', '#1f8a4c', '#b9770e', '#8e44ad', '#16a085', '#d35400', '#7f8c8d', '#c0392b']

function drawCharts () {
  if (typeof uPlot === 'undefined') return
  const now = Date.now() / 1000
  const bars = uPlot.paths.bars({ size: [0.7, 40] })
  const accent = css('--accent')
  const ok = css('--ok')
  const bad = css('--bad')
  const warn = css('--warn')

  const rate = rateData(now)
  if (charts['chart-rate'] == null) {
    makeChart('chart-rate', {
      scales: { x: { time: true }, rate: { auto: true, range: (_u, _min, max) => [0, Math.max(0.1, max * 1.1)] }, ms: { auto: true, range: (_u, _min, max) => [0, Math.max(10, max * 1.1)] } },
      axes: [axes('')[0], { ...axes('jobs/s')[1], scale: 'rate', values: (_u, v) => v.map(x => +x.toFixed(2)) }, { ...axes('ms')[1], scale: 'ms', side: 1, grid: { show: false } }],
      series: [{}, { label: 'jobs/s', scale: 'rate', stroke: accent, fill: accent + '22', paths: bars }, { label: 'p50 ms', scale: 'ms', stroke: ok, width: 2, spanGaps: true }, { label: 'p99 ms', scale: 'ms', stroke: bad, width: 2, dash: [4, 3], spanGaps: true }]
    }, rate)
  } else charts['chart-rate'].setData(rate)
  setPoints('chart-rate', rate[1].filter(v => v > 0).length)

  const price = priceData(now)
  const key = price.provs.join(',')
  if (charts['chart-price'] == null || charts['chart-price']._provs !== key) {
    charts['chart-price']?.destroy()
    const u = makeChart('chart-price', {
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] } },
      axes: axes('credits'),
      series: [{}, { label: 'paid', stroke: accent, width: 0, points: { show: true, size: 7, fill: accent }, spanGaps: false },
        ...price.provs.map((p, i) => ({ label: `ask ${short(p)}`, stroke: COLORS[(i + 1) % COLORS.length], width: 1.5, dash: [5, 4], points: { show: false } }))]
    }, price.data)
    u._provs = key
  } else charts['chart-price'].setData(price.data)
  setPoints('chart-price', price.points)
  // the earliest ask drawn (ms): the node's history reaches back before the page opened
  const askFrom = Math.min(...price.provs.map(p => state.asks.get(p)[0][0]))
  if (Number.isFinite(askFrom)) $('chart-price').dataset.askFrom = String(Math.round(askFrom * 1000))

  const lat = latencyHistogram()
  if (charts['chart-latency'] == null) {
    makeChart('chart-latency', {
      scales: { x: { time: false, range: [-0.5, LAT_BUCKETS.length - 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      // each bar is the jobs up to its label (and above the one before); every other label when narrow
      axes: [{ ...axes('')[0], label: 'up to', values: (u, v) => v.map(i => Number.isInteger(i) && i >= 0 && i < LAT_BUCKETS.length && (u.width >= 560 || i % 2 === 0) ? latLabel(i) : ''), splits: () => LAT_BUCKETS.map((_, i) => i) }, axes('jobs')[1]],
      series: [{ label: 'up to', value: (_u, i) => i == null ? '' : latLabel(i) }, { label: 'jobs', stroke: warn, fill: warn + '55', paths: bars, points: { show: false } }]
    }, lat.data)
  } else charts['chart-latency'].setData(lat.data)
  setPoints('chart-latency', lat.n)

  const bids = bidsHistogram()
  const bkey = bids.data[0].length
  if (charts['chart-bids'] == null || charts['chart-bids']._n !== bkey) {
    charts['chart-bids']?.destroy()
    const u = makeChart('chart-bids', {
      scales: { x: { time: false, range: [-0.5, bkey - 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{ ...axes('')[0], splits: () => bids.data[0], values: (_u, v) => v.map(String) }, axes('jobs')[1]],
      series: [{ label: 'bids' }, { label: 'jobs', stroke: ok, fill: ok + '55', paths: bars, points: { show: false } }]
    }, bids.data)
    u._n = bkey
  } else charts['chart-bids'].setData(bids.data)
  setPoints('chart-bids', bids.n)

  const settled = chartJobs().filter(j => j.latencyMs != null)
  const ls = settled.map(j => j.latencyMs).sort((a, b) => a - b)
  $('market-summary').textContent = settled.length === 0 ? 'no finished jobs yet' : `${settled.length} jobs finished · latency p50 ${fmtMs(percentile(ls, 0.5))}, p99 ${fmtMs(percentile(ls, 0.99))}`
}

// the colours come from the stylesheet: a switch between light and dark rebuilds the charts
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
  for (const [id, u] of Object.entries(charts)) { u.destroy(); delete charts[id] }
  drawCharts()
})

let resizeTimer = null
new ResizeObserver(() => {
  clearTimeout(resizeTimer)
  resizeTimer = setTimeout(() => { for (const [id, u] of Object.entries(charts)) u.setSize({ width: chartWidth(id), height: 200 }) }, 100)
}).observe(document.querySelector('.charts'))

// ---- the mesh --------------------------------------------------------------

function drawMesh () {
  const svg = $('mesh')
  const w = Math.max(200, svg.clientWidth)
  const h = Math.max(200, svg.clientHeight)
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`)
  const cx = w / 2
  const cy = h / 2
  const connected = new Set(state.peers.map(p => p.peerId))
  const standing = new Map(state.providers.map(p => [p.peerId, p.standing]))
  const provider = new Set(state.providers.map(p => p.peerId))
  // the inner ring: connected peers; the outer ring: providers known but not connected now
  const inner = state.peers.map(p => p.peerId).filter(id => id !== state.self)
  const outer = state.providers.map(p => p.peerId).filter(id => id !== state.self && !connected.has(id))
  const r1 = Math.min(w, h) * 0.28
  const r2 = Math.min(w, h) * 0.44
  const place = (ids, r, phase) => ids.map((id, i) => ({ id, x: cx + r * Math.cos(phase + 2 * Math.PI * i / ids.length), y: cy + r * Math.sin(phase + 2 * Math.PI * i / ids.length), connected: connected.has(id) }))
  const nodes = [...place(inner, r1, -Math.PI / 2), ...place(outer, r2, -Math.PI / 2 + 0.3)]
  const lines = nodes.map(n => el('svg:line', { x1: cx, y1: cy, x2: n.x, y2: n.y, class: n.connected ? 'peer-link' : 'provider-link' }))
  const dot = (n, cls, label, r) => el('svg:g', { class: `node ${cls}`, 'data-peer': n.id, 'data-kind': cls },
    el('svg:title', {}, `${n.id}${cls === 'self' ? ' (this node)' : ''}${provider.has(n.id) ? ' · provider' : ''}${n.connected ? ' · connected' : n.id === state.self ? '' : ' · not connected'} · ${cls}`),
    el('svg:circle', { cx: n.x, cy: n.y, r }),
    el('svg:text', { x: n.x, y: n.y + r + 12, 'text-anchor': 'middle' }, label))
  const groups = nodes.map(n => dot(n, standingOf(standing.get(n.id), state.flagged.has(n.id)), '…' + n.id.slice(-6), n.connected ? 9 : 7))
  const self = state.self ? dot({ id: state.self, x: cx, y: cy, connected: true }, 'self', 'this node', 12) : null
  svg.replaceChildren(...lines, ...groups, ...(self ? [self] : []))
  svg.dataset.peers = String(inner.length)
  svg.dataset.providers = String(outer.length)
}
window.addEventListener('resize', () => drawMesh())

// ---- the ledger browser ----------------------------------------------------

let ledgerTimer = null
/** the log's head when the ledger browser last loaded (null before the first load) */
let ledgerShownHead = null
function scheduleLedger () {
  // only the newest page follows new records by itself
  if (state.ledger.before != null || ledgerTimer != null) return
  ledgerTimer = setTimeout(() => { ledgerTimer = null; void loadLedger() }, 500)
}

async function loadLedger () {
  const L = state.ledger
  const head = await api('/v1/ledger/head')
  ledgerShownHead = head.seq
  let records
  let from
  if (L.type !== '') {
    // a type: the newest LEDGER_PAGE records of that type at or before the cursor
    const all = (await api(`/v1/ledger?type=${encodeURIComponent(L.type)}&limit=1000`)).records
    const upto = L.before == null ? all : all.filter(r => r.seq < L.before)
    const page = upto.slice(-LEDGER_PAGE)
    from = page[0]?.seq
    records = page.length === 0 ? [] : (await api(`/v1/ledger?type=${encodeURIComponent(L.type)}&from=${from}&limit=${page.length}&check=true`)).records
  } else {
    const end = L.before == null ? head.seq + 1 : L.before
    from = Math.max(0, end - LEDGER_PAGE)
    records = end <= 0 ? [] : (await api(`/v1/ledger?from=${from}&limit=${end - from}&check=true`)).records
  }
  L.first = records[0]?.seq ?? null
  fill('ledger-records', 'ledger-empty', records.reverse().map(r => {
    const job = r.body?.jobId ?? null
    return el('tr', { 'data-seq': r.seq, 'data-type': r.type, 'data-sig': r.check?.sig, 'data-link': r.check?.link },
      el('td', { class: 'num mono' }, r.seq),
      el('td', {}, r.type),
      el('td', { class: 'nw hide-sm' }, new Date(r.ts).toLocaleTimeString()),
      el('td', { class: 'nw' }, typeof job === 'string' ? jobLink(job) : '–'),
      el('td', { class: `chk ${r.check?.sig === 'ok' ? 'ok' : 'bad'}`, title: r.sig }, r.check?.sig === 'ok' ? '✓ signed' : `✗ ${r.check?.sig ?? 'unchecked'}`),
      el('td', { class: `chk ${r.check?.link === 'ok' ? 'ok' : 'bad'}`, title: r.prev ?? 'first record' }, r.check?.link === 'ok' ? (r.prev == null ? '✓ first' : '✓ linked') : '✗ broken'),
      el('td', { class: 'mono hide-sm', title: r.id }, short(r.id)))
  }))
  $('ledger-summary').textContent = head.seq < 0 ? 'empty' : `${head.count ?? head.seq + 1} records, head #${head.seq}`
  $('ledger-page').textContent = records.length === 0 ? '' : `#${records[records.length - 1].seq} – #${records[0].seq}`
  $('ledger-next').disabled = L.first == null || L.first <= 0
  $('ledger-prev').disabled = L.before == null
  $('ledger-first').disabled = L.before == null
}

$('ledger-type').addEventListener('change', () => { state.ledger = { before: null, history: [], type: $('ledger-type').value }; void loadLedger().catch(showError) })
$('ledger-next').addEventListener('click', () => { const L = state.ledger; if (L.first == null) return; L.history.push(L.before); L.before = L.first; void loadLedger().catch(showError) })
$('ledger-prev').addEventListener('click', () => { const L = state.ledger; L.before = L.history.pop() ?? null; void loadLedger().catch(showError) })
$('ledger-first').addEventListener('click', () => { const L = state.ledger; L.before = null; L.history = []; void loadLedger().catch(showError) })

$('audit').addEventListener('click', async () => {
  const peer = $('audit-peer').value.trim()
  const out = $('audit-result')
  if (peer === '') { out.replaceChildren(el('span', { class: 'bad' }, 'enter a PeerId')); return }
  $('audit').disabled = true
  out.className = ''
  out.replaceChildren(el('span', { class: 'muted' }, `auditing ${short(peer)}…`))
  try {
    const r = await api(`/v1/ledger/audit/${encodeURIComponent(peer)}`)
    out.className = r.ok ? 'ok' : 'bad'
    out.replaceChildren(el('div', {}, r.ok ? `✓ ${short(r.peer ?? peer)}: ${r.count} records verified against its signed head in ${r.ms} ms` : `✗ ${short(r.peer ?? peer)}: broken at ${r.firstBad ? `#${r.firstBad.seq} (${r.firstBad.reason})` : '?'}`),
      r.flagged ? el('div', { class: 'flagged' }, 'this peer is flagged for equivocation') : null)
  } catch (err) {
    out.className = 'bad'
    out.replaceChildren(el('span', {}, `✗ ${err.message}`))
  } finally { $('audit').disabled = false }
})

$('verify').addEventListener('click', async () => {
  const out = $('verify-result')
  out.textContent = 'verifying…'; out.className = ''
  try {
    const r = await api('/v1/ledger/verify')
    out.textContent = r.ok ? `✓ ${r.count} records verified in ${r.ms} ms` : `✗ broken at ${JSON.stringify(r.firstBad)}`
    out.className = r.ok ? 'ok' : 'bad'
  } catch (err) { out.textContent = `✗ ${err.message}`; out.className = 'bad' }
})

async function poll () {
  await Promise.all([refreshNode(), refreshPeers(), refreshProviders(), refreshLedgerHead()]).catch(showError)
}

for (const o of $('ledger-type').dataset.types?.split(',') ?? []) if (o) $('ledger-type').append(el('option', { value: o }, o))
liveStream('/v1/events', onJobEvent, () => { void catchUp() })
void poll()
void refreshJobs().catch(showError)
void loadHistory().catch(showError)
void catchUp()
void loadLedger().catch(showError)
setInterval(poll, POLL_MS)
setInterval(() => { renderAuctions(); drawCharts() }, 5000)
