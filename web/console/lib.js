// Shared helpers of the console: the API client, the SSE reader, DOM
// building without innerHTML (so no value from a host can become markup),
// tables and exports.

const KEY = 'vigil.token';

export const session = {
  get token() { return sessionStorage.getItem(KEY) || ''; },
  set token(t) { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); },
};

export class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(method, path, body) {
  const init = { method, headers: { Authorization: 'Bearer ' + session.token } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await res.json() : await res.text();
  if (!res.ok) {
    // A token that stopped working (revoked, expired) sends the person
    // back to sign-in; on the sign-in page the caller shows the error.
    if (res.status === 401 && !document.querySelector('form.signin')) {
      session.token = '';
      location.hash = '#/signin';
    }
    throw new APIError(res.status, (data && data.error) || res.statusText);
  }
  return data;
}

// stream reads a text/event-stream with fetch (EventSource cannot send an
// Authorization header) and calls onEvent(name, data) for each event.
export async function stream(path, onEvent, signal) {
  const res = await fetch(path, { headers: { Authorization: 'Bearer ' + session.token }, signal });
  if (!res.ok) {
    let msg = res.statusText;
    try { msg = (await res.json()).error; } catch { /* not JSON */ }
    throw new APIError(res.status, msg);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let name = 'message';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (data.length) {
          const text = data.join('\n');
          let parsed = text;
          try { parsed = JSON.parse(text); } catch { /* plain text */ }
          if (onEvent(name, parsed) === false) { reader.cancel(); return; }
        }
        name = 'message';
        data = [];
      } else if (line.startsWith('event:')) {
        name = line.slice(6).trim();
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
    }
  }
}

// h builds an element: h('a', {href: '#'}, 'text', child...). Attributes
// starting with "on" are listeners; strings are text nodes.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function toast(msg, kind = 'info') {
  const t = document.getElementById('toast');
  clear(t, h('p', { class: kind }, msg));
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => clear(t), 6000);
}

export function fmtTime(s) {
  if (!s || s.startsWith('0001-')) return '—';
  const d = new Date(s);
  return isNaN(d) ? String(s) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function ago(s) {
  if (!s || s.startsWith('0001-')) return 'never';
  const sec = Math.round((Date.now() - new Date(s)) / 1000);
  if (sec < 60) return sec + ' s ago';
  if (sec < 3600) return Math.round(sec / 60) + ' min ago';
  if (sec < 86400) return Math.round(sec / 3600) + ' h ago';
  return Math.round(sec / 86400) + ' d ago';
}

export function cell(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

const MAX_DOM_ROWS = 1000;

// dataTable renders columns and rows (arrays) as a table; past
// MAX_DOM_ROWS it says so (exports have everything).
export function dataTable(columns, rows, caption) {
  const shown = rows.slice(0, MAX_DOM_ROWS);
  return h('div', { class: 'scroll' },
    h('table', { class: 'data' },
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, columns.map(c => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, shown.map(r => h('tr', {}, r.map(v => h('td', {}, cell(v))))))),
    rows.length > MAX_DOM_ROWS ? h('p', { class: 'note' }, `Showing ${MAX_DOM_ROWS} of ${rows.length} rows; export for all of them.`) : null);
}

export function toCSV(columns, rows) {
  const q = v => {
    const s = cell(v);
    return /[",\n\r]/.test(s) ? '"' + s.replaceAll('"', '""') + '"' : s;
  };
  return [columns.map(q).join(','), ...rows.map(r => r.map(q).join(','))].join('\r\n') + '\r\n';
}

export function toJSON(columns, rows) {
  return JSON.stringify(rows.map(r => Object.fromEntries(columns.map((c, i) => [c, r[i]]))), null, 2);
}

export function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function exportButtons(base, get) {
  return h('span', { class: 'exports' },
    h('button', { type: 'button', id: base + '-csv', onclick: () => { const [c, r] = get(); download(base + '.csv', 'text/csv', toCSV(c, r)); } }, 'Export CSV'),
    h('button', { type: 'button', id: base + '-json', onclick: () => { const [c, r] = get(); download(base + '.json', 'application/json', toJSON(c, r)); } }, 'Export JSON'));
}

// listKeys makes j/k move through the rows of tbody and Enter open one.
export function listKeys(tbody, open) {
  tbody.addEventListener('keydown', e => {
    const rows = [...tbody.rows];
    const i = rows.indexOf(document.activeElement);
    if (e.key === 'Enter' && i >= 0 && e.target === rows[i]) { e.preventDefault(); open(rows[i]); }
  });
}

export function moveSelection(tbody, delta) {
  const rows = [...tbody.rows];
  if (!rows.length) return null;
  let i = rows.indexOf(document.activeElement);
  i = i < 0 ? (delta > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, i + delta));
  rows[i].focus();
  return rows[i];
}
