// Shared by the dashboard pages: DOM helpers, the JSON API, formatting, and
// a live event stream that says "reconnecting" when it drops and lets the
// page catch up when it is back.
'use strict'
const $ = (id) => document.getElementById(id)
const short = (id) => typeof id === 'string' && id.length > 16 ? id.slice(0, 8) + '…' + id.slice(-6) : String(id ?? '')
const POLL_MS = Number(document.querySelector('meta[name="mercato-poll-ms"]')?.content) || 3000
const EVENT_TYPES = ['announced', 'queued', 'bid', 'decline', 'awarded', 'accepted', 'refused', 'running', 'suspect', 'rerouted', 'handover', 'result', 'superseded', 'mismatch', 'settled', 'failed', 'no-bids', 'cancelled']
const TERMINAL = new Set(['completed', 'failed', 'no-bids', 'cancelled'])

function el (tag, attrs, ...children) {
  const svg = tag.startsWith('svg:')
  const e = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4)) : document.createElement(tag)
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue
    if (k === 'class') svg ? e.setAttribute('class', v) : (e.className = v)
    else if (k === 'title' && !svg) e.title = v
    else e.setAttribute(k, v === true ? '' : v)
  }
  for (const c of children.flat()) if (c != null && c !== false) e.append(c instanceof Node ? c : document.createTextNode(String(c)))
  return e
}

async function api (path) {
  const res = await fetch(path, { headers: { accept: 'application/json' }, credentials: 'same-origin' })
  if (!res.ok) {
    let msg = res.status + ''
    try { msg = (await res.json()).error.message } catch {}
    const err = new Error(msg)
    err.status = res.status
    throw err
  }
  return await res.json()
}

function fmtMs (ms) {
  if (ms == null) return '–'
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`
  return `${(ms / 60_000).toFixed(1)} min`
}
const credits = (n) => `${n} credit${n === 1 ? '' : 's'}`
const jobLink = (id, text) => el('a', { href: `/jobs/${encodeURIComponent(id)}`, class: 'mono', title: id }, text ?? short(id))

/** A peer's standing in one word: flagged (equivocation), suspect (lost or wrong results), good, or unknown. */
function standingOf (standing, flagged) {
  if (flagged) return 'flagged'
  if (standing == null) return 'unknown'
  if ((standing.mismatched ?? 0) > 0 || ((standing.lost ?? 0) > 0 && (standing.lost ?? 0) >= (standing.completed ?? 0)) || standing.score < 0) return 'suspect'
  return 'good'
}

/**
 * An EventSource that shows its state in `#conn`; `onBack` runs on every
 * (re)connection so the page can re-read what it missed while down.
 */
function liveStream (url, onEvent, onBack, opts = {}) {
  const conn = $('conn')
  let es
  let retry = null
  const show = (text, cls) => { if (conn) { conn.textContent = text; conn.className = `conn ${cls}` } }
  const open = () => {
    es = new EventSource(url)
    es.onopen = () => { show('● live', 'live'); onBack?.() }
    es.onerror = () => {
      show('○ reconnecting…', 'down')
      // the browser retries by itself while CONNECTING; a CLOSED stream (e.g. a 5xx) is reopened here
      if (es.readyState === EventSource.CLOSED && retry == null) retry = setTimeout(() => { retry = null; open() }, 2000)
    }
    for (const type of EVENT_TYPES) {
      es.addEventListener(type, (m) => { try { onEvent(JSON.parse(m.data)) } catch (err) { console.warn(err) } })
    }
    if (opts.onLog != null) es.addEventListener('log', (m) => { try { opts.onLog(JSON.parse(m.data)) } catch (err) { console.warn(err) } })
    es.addEventListener('end', () => { es.close(); show('● finished', 'live'); opts.onEnd?.() })
  }
  open()
  return { close: () => es.close() }
}
