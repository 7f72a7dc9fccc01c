// One job's page: its life on a time line drawn to scale (ms), the winner
// rule in words, bids, declines, attempts, the result with its output files
// (download links), and the job's ledger
// records with a verify button. Follows the job live while it runs.
'use strict'
const jobId = decodeURIComponent(location.pathname.replace(/^\/jobs\//, '').replace(/\/$/, ''))
let view = null
let events = []
let records = []
let stream = null

/** one constraint in the selector string form: `region=eu`, `gpu in (a100,h100)`, `!spot`, `cores gt 8` */
function selectorText (c) {
  const v = c.values ?? []
  if (c.op === '=' || c.op === '!=') return `${c.key}${c.op}${v[0]}`
  if (c.op === 'in' || c.op === 'notin') return `${c.key} ${c.op} (${v.join(',')})`
  if (c.op === 'exists') return c.key
  if (c.op === '!exists') return `!${c.key}`
  return `${c.key} ${c.op} ${v[0]}`
}

function fill (tbodyId, emptyId, rows) {
  $(tbodyId).replaceChildren(...rows)
  $(emptyId).hidden = rows.length > 0
}

/** Bids in award order: price, then promised start (the page cannot know the hash tie-break, so equal bids keep their order). */
function ranked (bids) {
  const best = new Map()
  for (const b of bids) { const c = best.get(b.provider); if (c == null || b.price < c.price) best.set(b.provider, b) }
  return [...best.values()].sort((a, b) => a.price - b.price || (a.estStartMs ?? 0) - (b.estStartMs ?? 0))
}

/** The job's auction rounds (a handover with no runner-up offers the job again): each with its bids and awards. */
function rounds () {
  const out = []
  for (const e of events) {
    // a queued job's rounds (announced with queued: true) are one round with the one that got a bid
    if (e.type === 'announced' && e.recovered !== true && e.queued !== true) out.push({ ts: e.ts, bids: [], awards: [] })
    const r = out[out.length - 1]
    if (r == null) continue
    if (e.type === 'bid') r.bids.push(e)
    if (e.type === 'awarded') r.awards.push(e)
  }
  return out
}

/** One round in words: who won and what it is paid, from the bids in hand at its first award. */
function roundText (r, j) {
  const first = r.awards[0]
  const inTime = ranked(first == null ? r.bids : r.bids.filter(b => b.ts <= first.ts))
  const late = first == null ? 0 : r.bids.length - inTime.length
  if (inTime.length === 0) {
    if (j.status === 'bidding') return 'waiting for bids…'
    if (j.status === 'queued') return `queued: no provider bid yet; announced again until ${new Date(j.queueUntil).toLocaleTimeString()}, and at once when a provider frees a slot or joins`
    return `no provider bid (at or under the max price of ${credits(j.maxPrice)})`
  }
  const k = j.replicas ?? 1
  const paid = first?.price
  let text
  if (k === 1) {
    const win = inTime[0]
    const second = inTime.length === 1 ? win.price : inTime[1].price
    text = inTime.length === 1
      ? `the only bid: ${credits(win.price)} from ${short(win.provider)}; with no second bid it is paid its own ask`
      : `cheapest of ${inTime.length} bids: ${credits(win.price)} from ${short(win.provider)}; paid the second price, ${second}`
    if (paid != null && paid !== second) text += ` (capped at the max price: paid ${paid})`
  } else {
    text = `the ${Math.min(k, inTime.length)} cheapest of ${inTime.length} bids win (${k} replicas); each is paid the ${k + 1}th price${paid != null ? `, ${paid}` : ''}`
  }
  if (late > 0) text += ` (${late} more bid${late === 1 ? '' : 's'} came after the award)`
  // a later award in the same round: the runner-up took over
  for (const a of r.awards.slice(k)) text += `; after a handover, the runner-up ${short(a.provider)} took over at ${a.price}`
  return text
}

/** The winner rule in words, round by round. */
function ruleText (j) {
  const rs = rounds()
  if (rs.length === 0) return ''
  const text = rs.map((r, i) => (i === 0 ? '' : 'after a handover, offered again: ') + roundText(r, j)).join('; ')
  return (j.status === 'bidding' ? 'so far: ' : '') + text
}

function niceStep (span) {
  const raw = span / 6
  const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))))
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p
  return 10 * p
}

function eventDetail (e) {
  const bits = []
  if (e.price != null) bits.push(`price ${e.price}`)
  if (e.reason) bits.push(String(e.reason))
  if (e.from) bits.push(`from ${short(e.from)} to ${e.to ? short(e.to) : 'nobody'}`)
  if (e.silentMs != null) bits.push(`silent ${fmtMs(e.silentMs)}`)
  if (e.exitCode != null) bits.push(`exit ${e.exitCode}`)
  if (e.latencyMs != null) bits.push(`latency ${fmtMs(e.latencyMs)}`)
  if (e.bids != null && e.type === 'bid') bits.push(`bid #${e.bids}`)
  if (e.type === 'queued' && e.until != null) bits.push(`waits for a provider until ${new Date(e.until).toLocaleTimeString()}`)
  if (e.detail) bits.push(String(e.detail))
  return bits.join(', ')
}

const LABEL = { announced: 'offer', awarded: 'award', accepted: 'accept', settled: 'receipt (settled)' }

function drawTimeline () {
  const j = view
  const t0 = events[0]?.ts ?? j.createdAt
  const receipt = records.filter(r => r.type === 'receipt').map(r => r.ts)
  const ends = [...events.map(e => e.ts), ...receipt, ...j.attempts.map(a => a.endedAt ?? 0)]
  const live = !TERMINAL.has(j.status)
  const t1 = Math.max(t0 + 1, ...ends, live ? Date.now() : 0)
  const span = t1 - t0
  const pos = (t) => `${Math.max(0, Math.min(100, (t - t0) / span * 100)).toFixed(3)}%`
  const mark = (t, type, title) => {
    const m = el('span', { class: `mark ${type}`, title: `${LABEL[type] ?? type} at +${Math.round(t - t0)} ms${title ? ' · ' + title : ''}`, 'data-type': type, 'data-t': Math.round(t - t0) })
    m.style.left = pos(t)
    return m
  }
  const lane = (label, attrs, ...marks) => el('div', { class: 'lane', ...attrs }, el('div', { class: 'label' }, label), el('div', { class: 'track' }, ...marks))

  // the auction: offer, bids, declines, awards
  const auction = events.filter(e => ['announced', 'queued', 'bid', 'decline', 'awarded', 'no-bids'].includes(e.type))
  const lanes = [lane('auction', { 'data-lane': 'auction' }, ...auction.map(e => mark(e.ts, e.type, [e.provider ? short(e.provider) : '', eventDetail(e)].filter(Boolean).join(' · '))))]
  // one lane per attempt, in order: its bar from award to end, and what the provider did
  const attempts = [...j.attempts].sort((a, b) => a.attempt - b.attempt || a.awardedAt - b.awardedAt)
  // each provider's event goes to that provider's latest attempt awarded by then
  const laneOf = new Map()
  for (const e of events) {
    const who = e.type === 'handover' ? e.from : e.provider
    if (who == null || ['bid', 'decline', 'awarded', 'settled'].includes(e.type)) continue
    const att = attempts.filter(a => a.provider === who && a.awardedAt <= e.ts + 5).pop() ?? attempts.find(a => a.provider === who)
    if (att == null) continue
    if (!laneOf.has(att)) laneOf.set(att, [])
    laneOf.get(att).push(e)
  }
  for (const a of attempts) {
    const end = a.endedAt ?? (live ? Date.now() : t1)
    const bar = el('span', { class: `bar ${a.state}`, title: `${a.state} ${fmtMs(end - a.awardedAt)}` })
    bar.style.left = pos(a.awardedAt)
    bar.style.width = `${Math.max(0.3, (end - a.awardedAt) / span * 100).toFixed(3)}%`
    const mine = laneOf.get(a) ?? []
    // heartbeats as a span: from the first `running` to when the provider was last heard from
    // (a lost attempt's span stops where its heartbeats did; the gap after it is the silence)
    const running = mine.find(e => e.type === 'running')
    const hb = []
    if (running != null) {
      // an ended attempt that did not complete: up to the silence its last suspect event measured,
      // else to its end. A completed one was heard to its end, whatever silences it had before
      // (a provider on a loaded machine can be suspect for a moment and then finish)
      const suspect = a.state === 'completed' ? undefined : mine.findLast(e => e.type === 'suspect' && e.silentMs != null)
      const heard = a.endedAt == null ? (live ? Date.now() : end) : Math.max(running.ts, Math.min(end, suspect != null ? suspect.ts - suspect.silentMs : end))
      const span2 = Math.max(0, heard - running.ts)
      const b2 = el('span', { class: `bar hb ${a.state}`, 'data-from': Math.round(running.ts - t0), 'data-to': Math.round(heard - t0), title: `running, heartbeats for ${fmtMs(span2)}` })
      b2.style.left = pos(running.ts)
      b2.style.width = `${Math.max(0.3, span2 / span * 100).toFixed(3)}%`
      hb.push(b2)
    }
    lanes.push(lane(el('span', {}, `attempt ${a.attempt + 1} `, el('span', { class: 'mono', title: a.provider }, short(a.provider)), el('br'), el('span', { class: `pill s-${a.state === 'completed' ? 'completed' : a.state === 'lost' || a.state === 'refused' ? 'failed' : 'running'}` }, a.state)),
      { 'data-lane': 'attempt', 'data-attempt': a.attempt, 'data-provider': a.provider, 'data-state': a.state },
      bar, ...hb, ...mine.map(e => mark(e.ts, e.type, eventDetail(e)))))
  }
  // the outcome: settled, the receipt in the ledger, or how it ended
  const outcome = events.filter(e => ['settled', 'failed', 'cancelled'].includes(e.type))
  lanes.push(lane('outcome', { 'data-lane': 'outcome' }, ...outcome.map(e => mark(e.ts, e.type, eventDetail(e))), ...receipt.map(t => mark(t, 'receipt', 'receipt recorded in the ledger'))))
  $('timeline').replaceChildren(...lanes)

  const step = niceStep(span)
  const ticks = []
  for (let t = 0; t <= span; t += step) {
    const tick = el('span', { class: 'tick' }, t === 0 ? '0' : fmtMs(t))
    tick.style.left = pos(t0 + t)
    ticks.push(tick)
  }
  $('axis').replaceChildren(...ticks)
  $('timeline-span').textContent = `${fmtMs(span)} from offer to ${live ? 'now' : 'end'}`
  $('events').replaceChildren(...events.map(e => el('tr', { 'data-type': e.type },
    el('td', { class: 'num mono' }, Math.round(e.ts - t0)),
    el('td', {}, LABEL[e.type] ?? e.type),
    el('td', { class: 'mono', title: e.provider ?? '' }, e.provider ? short(e.provider) : ''),
    el('td', {}, eventDetail(e)))))
}

function drawTables () {
  const j = view
  // every round's bids, cheapest first within a round
  const rs = rounds()
  const t0 = events[0]?.ts ?? j.createdAt
  const rows = []
  rs.forEach((r, i) => ranked(r.bids).forEach((b, rank) => rows.push(el('tr', { 'data-provider': b.provider, 'data-round': i + 1 },
    el('td', { class: 'num' }, rs.length > 1 ? `${i + 1}.${rank + 1}` : rank + 1),
    el('td', { class: 'mono', title: b.provider }, short(b.provider)),
    el('td', { class: 'num' }, b.price),
    el('td', { class: 'num' }, `+${Math.round(b.ts - t0)} ms`)))))
  $('bid-count').textContent = rows.length
  fill('bids', 'bids-empty', rows)
  fill('declines', 'declines-empty', j.declines.map(d => el('tr', { 'data-provider': d.provider },
    el('td', { class: 'mono', title: d.provider }, short(d.provider)),
    el('td', {}, d.reason, d.detail ? ` (${d.detail})` : ''))))
  $('attempt-count').textContent = j.attempts.length
  fill('attempts', 'attempts-empty', j.attempts.map(a => el('tr', { 'data-attempt': a.attempt, 'data-provider': a.provider, 'data-state': a.state },
    el('td', { class: 'num' }, a.attempt + 1),
    el('td', { class: 'mono', title: a.provider }, short(a.provider)),
    el('td', { class: 'num' }, a.price),
    el('td', {}, a.state),
    el('td', { class: 'num' }, a.endedAt != null ? fmtMs(a.endedAt - a.awardedAt) : '…'),
    el('td', {}, a.reason ?? ''))))
  $('job-status').replaceChildren(el('span', { class: `pill s-${j.status}` }, j.status), ` ${j.engine} · max price ${j.maxPrice}`, j.price != null ? ` · paid ${j.price}` : '', j.latencyMs != null ? ` · latency ${fmtMs(j.latencyMs)}` : '', j.error ? el('span', { class: 'bad' }, ` · ${j.error}`) : '',
    j.name ? ` · ${j.name}` : '', Object.keys(j.labels ?? {}).length > 0 ? ` · labels ${Object.entries(j.labels).map(([k, v]) => `${k}=${v}`).join(', ')}` : '',
    (j.constraints ?? []).length > 0 ? el('span', { 'data-constraints': '' }, ` · runs on ${j.constraints.map(selectorText).join(', ')}`) : '')
  $('rule').textContent = ruleText(j)
}

async function drawResult () {
  if (view.status !== 'completed') {
    $('result').replaceChildren(el('div', { class: 'empty' }, TERMINAL.has(view.status) ? `no result: the job ${view.status}` : 'no result yet'))
    return
  }
  const r = await api(`/v1/jobs/${encodeURIComponent(jobId)}/result`)
  const dl = $('result-download')
  dl.href = `/v1/jobs/${encodeURIComponent(jobId)}/result`
  dl.setAttribute('download', `${jobId}.result.json`)
  dl.hidden = false
  $('result').replaceChildren(...[
    el('div', { class: 'row' },
      el('span', { class: r.exitCode === 0 ? 'pill good' : 'pill flagged' }, `exit ${r.exitCode}`),
      el('span', { class: 'muted' }, `ran ${fmtMs(r.usage.wallMs)} · memory ${(r.usage.memoryBytes / 1048576).toFixed(1)} MiB · output ${r.usage.outputBytes} B${r.truncated ? ' (truncated)' : ''}`),
      el('span', { class: 'muted' }, 'by ', ...r.providers.map(p => el('code', { title: p }, short(p) + ' ')))),
    r.output !== undefined ? el('div', {}, el('h3', {}, 'output'), el('pre', { id: 'result-output' }, JSON.stringify(r.output, null, 2))) : null,
    r.stdout ? el('div', {}, el('h3', {}, 'stdout'), el('pre', {}, r.stdout)) : null,
    r.stderr ? el('div', {}, el('h3', {}, 'stderr'), el('pre', {}, r.stderr)) : null,
    r.error ? el('div', { class: 'bad' }, `${r.error.name}: ${r.error.message}`) : null,
    outputsTable(r.outputs ?? []),
    el('div', { class: 'muted mono' }, `result hash ${r.resultHash}`)].filter(x => x != null))
}

/** The files the job wrote, each a download link (served as an attachment unless plain text, JSON, CSV or an image). */
function outputsTable (outputs) {
  if (outputs.length === 0) return null
  const base = `/v1/jobs/${encodeURIComponent(jobId)}/outputs/`
  const size = (n) => n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`
  const rows = outputs.map(o => el('tr', {},
    el('td', {}, el('a', { href: base + o.path.split('/').map(encodeURIComponent).join('/'), download: o.path.split('/').pop() }, o.path)),
    el('td', { class: 'num' }, size(o.size)),
    el('td', { class: 'mono hide-sm', title: o.cid }, short(o.cid))))
  return el('div', {}, el('h3', {}, `output files (${outputs.length})`),
    el('div', { class: 'scroll' }, el('table', { id: 'outputs' }, el('thead', {}, el('tr', {}, el('th', {}, 'path'), el('th', { class: 'num' }, 'size'), el('th', { class: 'hide-sm' }, 'CID'))), el('tbody', {}, rows))))
}

function drawRecords () {
  fill('records', 'records-empty', records.map(r => el('tr', { 'data-seq': r.seq, 'data-type': r.type, 'data-sig': r.check?.sig, 'data-link': r.check?.link },
    el('td', { class: 'num mono' }, r.seq),
    el('td', {}, r.type),
    el('td', { class: 'nw' }, new Date(r.ts).toLocaleTimeString()),
    el('td', { class: `chk ${r.check?.sig === 'ok' ? 'ok' : 'bad'}`, title: r.sig }, r.check?.sig === 'ok' ? '✓ signed' : `✗ ${r.check?.sig}`),
    el('td', { class: `chk ${r.check?.link === 'ok' ? 'ok' : 'bad'}`, title: r.prev ?? 'first record' }, r.check?.link === 'ok' ? '✓ linked' : '✗ broken'),
    el('td', { class: 'mono hide-sm', title: r.id }, short(r.id)))))
}

async function load () {
  try {
    ;[view, events] = await Promise.all([api(`/v1/jobs/${encodeURIComponent(jobId)}`), api(`/v1/jobs/${encodeURIComponent(jobId)}/history`)])
  } catch (err) {
    $('conn').textContent = err.status === 404 ? 'no such job on this node' : `error: ${err.message}`
    $('conn').className = 'conn down'
    return false
  }
  try { records = (await api(`/v1/ledger?job=${encodeURIComponent(jobId)}&limit=200&check=true`)).records } catch { records = [] }
  drawTables()
  drawTimeline()
  drawRecords()
  await drawResult().catch(err => { $('result').replaceChildren(el('div', { class: 'bad' }, err.message)) })
  document.body.dataset.loaded = view.status
  liveState()
  return true
}

// ---- live output: `log` events while the job runs (not kept: the result has the full output)
const LIVE_MAX_CHARS = 64 * 1024
let liveAttempt = null
let liveChars = 0
const liveSeen = new Set()
function onLog (e) {
  // a reconnected stream replays the tail: skip what is already shown (by the event's place in its
  // attempt's logs: two chunks can share a millisecond and a length)
  const key = `${e.attempt}|${e.seq}`
  if (liveSeen.has(key)) return
  liveSeen.add(key)
  if (liveSeen.size > 2000) liveSeen.delete(liveSeen.values().next().value)
  const pre = $('live-log')
  const add = (text, cls) => {
    pre.append(el('span', { class: cls, 'data-attempt': e.attempt }, text))
    liveChars += text.length
    // keep the page small: the oldest lines go first
    while (liveChars > LIVE_MAX_CHARS && pre.firstChild != null) { liveChars -= pre.firstChild.textContent.length; pre.firstChild.remove() }
  }
  if (e.attempt !== liveAttempt) {
    add(`${liveAttempt == null ? '' : '\n'}— attempt ${e.attempt + 1} on ${short(e.provider)} —\n`, 'note')
    liveAttempt = e.attempt
  }
  if (e.dropped > 0) add(`(${e.dropped} bytes left out)\n`, 'note')
  if (e.text !== '') add(e.text, e.stream)
  if (e.capped) add('(live output reached its cap; the full output is in the result)\n', 'note')
  pre.hidden = false
  $('live-empty').hidden = true
  pre.dataset.lines = String((pre.textContent.match(/\n/g) ?? []).length)
  pre.scrollTop = pre.scrollHeight
}

function liveState () {
  const s = $('live-state')
  if (view == null) return
  if (!TERMINAL.has(view.status)) { s.textContent = '· following'; return }
  s.textContent = liveAttempt == null ? '' : '· ended (the full output is in the result)'
  if (liveAttempt == null) $('live-empty').textContent = stream != null ? 'the job wrote nothing while it ran' : 'the job was over when this page opened: its output is in the result'
}

let timer = null
function schedule () {
  if (timer != null) return
  timer = setTimeout(() => { timer = null; void load() }, 150)
}

$('verify').addEventListener('click', async () => {
  const out = $('verify-result')
  out.textContent = 'verifying…'; out.className = ''
  try {
    records = (await api(`/v1/ledger?job=${encodeURIComponent(jobId)}&limit=200&check=true`)).records
    drawRecords()
    const bad = records.filter(r => r.check?.sig !== 'ok' || r.check?.link !== 'ok')
    const whole = await api('/v1/ledger/verify')
    const ok = bad.length === 0 && whole.ok
    out.textContent = ok
      ? `✓ ${records.length} records of this job: signatures and links verified; the whole log (${whole.count} records) verifies`
      : `✗ ${bad.length > 0 ? `record #${bad[0].seq}: ${bad[0].check?.sig !== 'ok' ? bad[0].check?.sig : 'broken link'}` : `log broken at ${JSON.stringify(whole.firstBad)}`}`
    out.className = ok ? 'ok' : 'bad'
  } catch (err) { out.textContent = `✗ ${err.message}`; out.className = 'bad' }
})

$('job-id').textContent = short(jobId)
$('job-id').title = jobId
document.title = `Mercato job ${short(jobId)}`
void load().then((found) => {
  if (!found) return
  if (TERMINAL.has(view.status)) { $('conn').textContent = '● finished'; $('conn').className = 'conn live'; return }
  stream = liveStream(`/v1/jobs/${encodeURIComponent(jobId)}/events`, schedule, schedule, { onEnd: schedule, onLog })
  // the bars of running attempts grow with the clock
  setInterval(() => { if (view != null && !TERMINAL.has(view.status)) drawTimeline() }, 1000)
})
