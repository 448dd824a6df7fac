// Live query: an SQL editor completing table and column names from the
// agents' table schemas, results streaming in per host, exports.
import { api, stream, h, clear, toast, dataTable, exportButtons } from './lib.js';

let schemaCache = null;
export async function schemas() {
  if (!schemaCache) schemaCache = await api('GET', '/api/v1/schema');
  return schemaCache;
}

const KEYWORDS = ['SELECT', 'FROM', 'WHERE', 'AND', 'OR', 'NOT', 'JOIN', 'LEFT', 'ON', 'GROUP BY', 'ORDER BY', 'LIMIT', 'AS', 'LIKE', 'IN', 'COUNT(*)', 'DISTINCT', 'DESC'];

// completer attaches completion of tables (after FROM/JOIN) and columns
// (of the tables the query names) to a textarea. Tab or Enter accepts,
// arrows move, Escape closes.
export function completer(ta, tables) {
  const byName = new Map(tables.map(t => [t.name.toLowerCase(), t]));
  const list = h('ul', { class: 'complete', role: 'listbox', id: ta.id + '-complete', hidden: true });
  ta.setAttribute('aria-autocomplete', 'list');
  ta.setAttribute('aria-controls', list.id);
  let items = [];
  let sel = 0;
  let word = { start: 0, end: 0, text: '' };

  function currentWord() {
    const end = ta.selectionStart;
    const before = ta.value.slice(0, end);
    const m = /[A-Za-z_][\w]*$/.exec(before);
    const start = m ? end - m[0].length : end;
    return { start, end, text: m ? m[0] : '', before: before.slice(0, start) };
  }

  function candidates(w) {
    const prev = /(\w+)\s*$/.exec(w.before);
    const afterFrom = prev && /^(from|join)$/i.test(prev[1]);
    const named = [...ta.value.matchAll(/\b(?:from|join)\s+([A-Za-z_]\w*)/gi)].map(m => byName.get(m[1].toLowerCase())).filter(Boolean);
    const out = [];
    if (afterFrom || !named.length) for (const t of tables) out.push({ label: t.name, kind: 'table', detail: t.description || '' });
    if (!afterFrom) {
      for (const t of named) for (const c of t.columns) out.push({ label: c.name, kind: 'column', detail: `${t.name} · ${c.type}` });
      for (const k of KEYWORDS) out.push({ label: k, kind: 'keyword', detail: '' });
    }
    const q = w.text.toLowerCase();
    const seen = new Set();
    return out.filter(c => {
      const l = c.label.toLowerCase();
      if (!q || !l.startsWith(q) || l === q || seen.has(c.kind + l)) return false;
      seen.add(c.kind + l);
      return true;
    }).sort((x, y) => x.label.length - y.label.length).slice(0, 50);
  }

  function show() {
    word = currentWord();
    items = word.text ? candidates(word) : [];
    sel = 0;
    if (!items.length) { list.hidden = true; ta.removeAttribute('aria-activedescendant'); return; }
    clear(list, items.map((c, i) => h('li', { role: 'option', id: `${list.id}-${i}`, 'aria-selected': i === sel ? 'true' : 'false',
      onmousedown: e => { e.preventDefault(); sel = i; accept(); } },
    h('span', { class: 'label' }, c.label), h('span', { class: 'kind' }, c.kind), h('span', { class: 'detail' }, c.detail))));
    list.hidden = false;
    ta.setAttribute('aria-activedescendant', `${list.id}-0`);
  }

  function mark() {
    [...list.children].forEach((li, i) => li.setAttribute('aria-selected', i === sel ? 'true' : 'false'));
    ta.setAttribute('aria-activedescendant', `${list.id}-${sel}`);
    list.children[sel]?.scrollIntoView({ block: 'nearest' });
  }

  function accept() {
    const c = items[sel];
    if (!c) return;
    ta.setRangeText(c.label, word.start, word.end, 'end');
    list.hidden = true;
    ta.focus();
  }

  ta.addEventListener('input', show);
  ta.addEventListener('blur', () => setTimeout(() => { list.hidden = true; }, 100));
  ta.addEventListener('keydown', e => {
    if (list.hidden) return;
    if (e.key === 'ArrowDown') { sel = (sel + 1) % items.length; mark(); e.preventDefault(); }
    else if (e.key === 'ArrowUp') { sel = (sel - 1 + items.length) % items.length; mark(); e.preventDefault(); }
    else if ((e.key === 'Tab' || e.key === 'Enter') && !e.ctrlKey && !e.metaKey) { accept(); e.preventDefault(); }
    else if (e.key === 'Escape') { list.hidden = true; e.preventDefault(); e.stopPropagation(); }
  });
  return list;
}

export async function queryPage(main, params) {
  const { live } = await schemas();
  const ta = h('textarea', { id: 'sql', rows: 6, spellcheck: 'false', 'data-search': true, 'aria-label': 'SQL', placeholder: 'SELECT pid, name FROM processes LIMIT 10' });
  ta.value = params.get('sql') || '';
  const target = h('input', { id: 'targets', value: params.get('hosts') || '', placeholder: 'hostnames or ids, comma-separated; empty means all hosts', 'aria-label': 'Target hosts' });
  const runBtn = h('button', { type: 'submit', id: 'run' }, 'Run (Ctrl+Enter)');
  const stopBtn = h('button', { type: 'button', id: 'stop', disabled: true }, 'Stop');
  const statusEl = h('div', { id: 'query-status', 'aria-live': 'polite' });
  const hostsEl = h('div', { id: 'query-hosts' });
  const resultsEl = h('div', { id: 'query-results' });
  const tablesEl = h('details', { class: 'schema' }, h('summary', {}, `Tables (${live.length})`),
    h('ul', {}, live.map(t => h('li', {}, h('button', { type: 'button', class: 'link', title: t.description || '',
      onclick: () => { ta.setRangeText(t.name, ta.selectionStart, ta.selectionEnd, 'end'); ta.focus(); } }, t.name),
    ' ', h('span', { class: 'note' }, t.columns.filter(c => !c.hidden).map(c => c.name).join(', '))))));
  const list = completer(ta, live);
  let ctrl = null;
  let columns = [];
  let rows = [];

  const form = h('form', { class: 'editor', onsubmit: e => { e.preventDefault(); run(); } },
    h('label', { for: 'sql' }, 'SQL (completion from the agents\' table schemas: Tab accepts)'),
    h('div', { class: 'complete-wrap' }, ta, list),
    h('label', { for: 'targets' }, 'Hosts'), target,
    h('div', { class: 'toolbar' }, runBtn, stopBtn, exportButtons('live-query', () => [columns, rows])));
  ta.addEventListener('keydown', e => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } });
  stopBtn.addEventListener('click', () => ctrl?.abort());
  clear(main, h('h1', {}, 'Live query'), live.length ? null : h('p', { class: 'note' }, 'This server did not publish table schemas; completion is off.'),
    form, tablesEl, statusEl, hostsEl, resultsEl);
  ta.focus();

  async function run() {
    const sql = ta.value.trim();
    if (!sql) { toast('Write a query first.', 'error'); return; }
    const names = target.value.split(',').map(s => s.trim()).filter(Boolean);
    ctrl?.abort();
    ctrl = new AbortController();
    columns = ['_host'];
    delete statusEl.dataset.done;
    rows = [];
    const hostState = new Map();
    const renderHosts = () => clear(hostsEl, dataTable(['Host', 'Status', 'Rows', 'Error'],
      [...hostState.values()].map(x => [x.hostname, x.status, x.rows, x.error || '']), 'Per-host status'));
    const renderRows = () => clear(resultsEl, dataTable(columns, rows, `Results (${rows.length} rows)`));
    statusEl.textContent = 'Starting…';
    runBtn.disabled = true;
    stopBtn.disabled = false;
    try {
      const started = await api('POST', '/api/v1/queries', names.length ? { sql, hosts: names } : { sql, all: true });
      for (const x of started.hosts) hostState.set(x.id, { hostname: x.hostname, status: x.status, rows: 0 });
      renderHosts();
      statusEl.textContent = `Query ${started.id} sent to ${started.hosts.length} host(s); waiting for answers…`;
      await stream(`/api/v1/queries/${encodeURIComponent(started.id)}/stream`, (name, d) => {
        if (name === 'result') {
          // The SELECT's column order when the server sends it (rows'
          // keys come in that order too); Object.keys keeps it either way.
          for (const k of d.columns || []) if (!columns.includes(k)) columns.push(k);
          for (const r of d.rows || []) {
            for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
            rows.push(columns.map(c => (c === '_host' ? d.hostname : r[c])));
          }
          const x = hostState.get(d.host_id) || { hostname: d.hostname };
          x.rows = (x.rows || 0) + (d.rows || []).length;
          hostState.set(d.host_id, x);
          // Rows of earlier hosts lack later columns: pad them.
          rows = rows.map(r => r.length < columns.length ? r.concat(Array(columns.length - r.length).fill('')) : r);
          renderRows();
          renderHosts();
        } else if (name === 'status') {
          const x = hostState.get(d.host_id) || { hostname: d.hostname, rows: 0 };
          Object.assign(x, { status: d.status, error: d.error });
          hostState.set(d.host_id, x);
          renderHosts();
        } else if (name === 'done') {
          statusEl.textContent = `Done: ${d.ok} ok, ${d.error} error, ${d.timeout} timeout, ${d.offline} offline of ${d.total}; ${rows.length} rows.`;
          statusEl.dataset.done = 'true';
          return false;
        }
        return true;
      }, ctrl.signal);
      renderRows();
    } catch (e) {
      if (e.name === 'AbortError') statusEl.textContent = 'Stopped following (the query still runs on the hosts).';
      else { statusEl.textContent = ''; toast(e.message, 'error'); }
    } finally {
      runBtn.disabled = false;
      stopBtn.disabled = true;
    }
  }
  return { cleanup: () => ctrl?.abort() };
}
