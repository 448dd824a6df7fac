// The event explorer (read-only SQL over the event store) and a host's
// timeline of processes, connections, files and logins around a time.
import { api, h, clear, toast, fmtTime, cell, dataTable, exportButtons } from './lib.js';
import { schemas, completer } from './query.js';

export async function eventsPage(main, params) {
  const { events } = await schemas();
  const ta = h('textarea', { id: 'event-sql', rows: 6, spellcheck: 'false', 'data-search': true, 'aria-label': 'SQL over the event store' });
  ta.value = params.get('sql') || 'SELECT event_time, hostname, process_name, process_command_line\nFROM process_creation\nORDER BY event_time DESC\nLIMIT 100';
  const out = h('div', { id: 'event-results', 'aria-live': 'polite' });
  const runBtn = h('button', { type: 'submit', id: 'event-run' }, 'Run (Ctrl+Enter)');
  let columns = [];
  let rows = [];
  const list = completer(ta, events);
  async function run() {
    runBtn.disabled = true;
    clear(out, h('p', { class: 'note' }, 'Running…'));
    const t0 = performance.now();
    try {
      const res = await api('POST', '/api/v1/events/query', { sql: ta.value });
      columns = res.columns;
      rows = res.rows;
      const ms = Math.round(performance.now() - t0);
      clear(out, h('p', { class: 'note', id: 'event-summary' }, `${rows.length} row(s)${res.truncated ? ' (truncated)' : ''} in ${ms} ms.`),
        dataTable(columns, rows));
    } catch (e) {
      clear(out, h('p', { class: 'error', role: 'alert' }, e.message));
    } finally { runBtn.disabled = false; }
  }
  ta.addEventListener('keydown', e => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } });
  clear(main, h('h1', {}, 'Event explorer'),
    h('form', { class: 'editor', onsubmit: e => { e.preventDefault(); run(); } },
      h('label', { for: 'event-sql' }, 'SQL (one SELECT, read-only; needs the operator role)'),
      h('div', { class: 'complete-wrap' }, ta, list),
      h('div', { class: 'toolbar' }, runBtn, exportButtons('events', () => [columns, rows]))),
    h('details', { class: 'schema' }, h('summary', {}, 'Event tables'),
      h('ul', {}, events.map(t => h('li', {}, h('strong', {}, t.name), ' ', h('span', { class: 'note' }, t.columns.map(c => c.name).join(', ')))))),
    out);
  ta.focus();
  if (params.get('run')) run();
}

const KINDS = ['process', 'connection', 'file', 'login'];

function summary(ev) {
  const f = ev.fields;
  switch (ev.kind) {
    case 'process': return `${f.user_name ? f.user_name + ' ' : ''}pid ${f.process_pid ?? '?'}: ${f.process_command_line || f.process_executable || ''}`;
    case 'connection': return `${f.network_action || ''} ${f.source_ip || ''}:${f.source_port ?? ''} → ${f.destination_ip || ''}:${f.destination_port ?? ''} (${f.process_executable || 'pid ' + (f.process_pid ?? '?')})`;
    case 'file': return `${f.file_action || ''} ${f.file_path || ''} (${f.process_executable || 'pid ' + (f.process_pid ?? '?')})`;
    case 'login': return `${f.user_name || ''} ${f.source_ip ? 'from ' + f.source_ip : ''} ${f.terminal || ''} ${f.auth_message || ''} (type ${f.auth_type ?? '?'})`;
    default: return JSON.stringify(f);
  }
}

export async function timelinePage(main, params) {
  const { hosts } = await api('GET', '/api/v1/hosts');
  const hostSel = h('select', { id: 'tl-host', 'aria-label': 'Host' }, hosts.map(x => h('option', { value: x.id, selected: x.id === params.get('host') }, x.hostname)));
  const at = h('input', { id: 'tl-at', value: params.get('at') || new Date().toISOString(), 'aria-label': 'Around (UTC, RFC 3339)', size: 28 });
  const span = h('select', { id: 'tl-span', 'aria-label': 'Window' }, ['5m', '15m', '1h', '6h', '24h'].map(s => h('option', { value: s, selected: s === (params.get('span') || '15m') }, `± ${s}`)));
  const filter = h('input', { id: 'tl-filter', 'data-search': true, placeholder: 'filter events', 'aria-label': 'Filter events' });
  const kinds = new Set(KINDS);
  const out = h('div', { id: 'timeline', 'aria-live': 'polite' });
  let data = null;
  function render() {
    if (!data) return;
    const q = filter.value.trim().toLowerCase();
    const shown = data.events.filter(ev => kinds.has(ev.kind) && (!q || summary(ev).toLowerCase().includes(q)));
    const centre = new Date(at.value).getTime();
    clear(out,
      h('p', { class: 'note', id: 'tl-summary' }, `${shown.length} of ${data.events.length} events on ${data.host.hostname} from ${fmtTime(data.from)} to ${fmtTime(data.to)}${data.truncated ? ' (some tables truncated)' : ''}.`),
      h('ol', { class: 'timeline' }, shown.map(ev => h('li', { class: `tl-${ev.kind}${Math.abs(new Date(ev.time).getTime() - centre) < 1000 ? ' centre' : ''}`, tabindex: 0 },
        h('time', { datetime: ev.time }, fmtTime(ev.time)), ' ',
        h('span', { class: `badge k-${ev.kind}` }, ev.kind), ' ',
        h('span', { class: 'what' }, summary(ev)),
        h('details', {}, h('summary', {}, 'fields'), h('table', { class: 'kv' }, h('tbody', {},
          Object.entries(ev.fields).map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, cell(v)))),
          h('tr', {}, h('th', { scope: 'row' }, 'event_id'), h('td', {}, ev.event_id)))))))));
    out.querySelector('li.centre')?.scrollIntoView({ block: 'center' });
  }
  async function load() {
    if (!hostSel.value) { clear(out, h('p', { class: 'note' }, 'No host enrolled yet.')); return; }
    const q = new URLSearchParams({ before: span.value, after: span.value });
    const d = new Date(at.value);
    if (isNaN(d)) { toast('Write the time as 2026-01-02T15:04:05Z.', 'error'); return; }
    q.set('at', d.toISOString());
    try {
      data = await api('GET', `/api/v1/hosts/${encodeURIComponent(hostSel.value)}/timeline?${q}`);
      render();
    } catch (e) { clear(out, h('p', { class: 'error', role: 'alert' }, e.message)); }
  }
  clear(main, h('h1', {}, 'Host timeline'),
    h('form', { class: 'toolbar', onsubmit: e => { e.preventDefault(); load(); } },
      h('label', { for: 'tl-host' }, 'Host'), hostSel, h('label', { for: 'tl-at' }, 'Around'), at,
      h('label', { for: 'tl-span' }, 'Window'), span, h('button', { type: 'submit', id: 'tl-show' }, 'Show')),
    h('div', { class: 'toolbar' }, KINDS.map(k => h('label', { class: 'check' },
      h('input', { type: 'checkbox', checked: true, onchange: e => { if (e.target.checked) kinds.add(k); else kinds.delete(k); render(); } }), ` ${k}`)),
    filter),
    out);
  filter.addEventListener('input', render);
  await load();
  return {
    keys(e) {
      if (e.key === 'j' || e.key === 'k') {
        const items = [...out.querySelectorAll('li')];
        if (!items.length) return false;
        let i = items.indexOf(document.activeElement);
        i = i < 0 ? 0 : Math.min(items.length - 1, Math.max(0, i + (e.key === 'j' ? 1 : -1)));
        items[i].focus();
        return true;
      }
      return false;
    },
  };
}
