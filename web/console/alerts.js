// Alerts: filters, a keyboard-driven list, the detail with the matched
// event and the rule, and the lifecycle (assign, acknowledge, close with a
// reason), one at a time or in bulk. Paging is server-side with a keyset
// cursor (next_before), so a deep page costs what the first does.
import { api, h, clear, toast, fmtTime, cell, moveSelection } from './lib.js';
import { me } from './app.js';
import { suppressForm } from './suppress.js';

const PAGE = 100;
let rulesCache = null;

async function rulesByID() {
  if (!rulesCache) {
    try {
      const { rules } = await api('GET', '/api/v1/rules');
      rulesCache = new Map(rules.map(r => [r.id, r]));
    } catch { rulesCache = new Map(); }
  }
  return rulesCache;
}

export async function alertsPage(main, params) {
  const canTriage = me.role === 'operator' || me.role === 'admin';
  const status = h('select', { id: 'f-status', 'aria-label': 'Status' },
    ['open', 'acknowledged', 'closed', ''].map(s => h('option', { value: s, selected: (params.get('status') ?? 'open') === s }, s || 'any status')));
  const host = h('input', { id: 'f-host', 'data-search': true, placeholder: 'host id or hostname', 'aria-label': 'Host', value: params.get('host') || '' });
  const rule = h('input', { id: 'f-rule', placeholder: 'rule id', 'aria-label': 'Rule', value: params.get('rule') || '' });
  const count = h('span', { class: 'note', id: 'alert-count', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const detail = h('section', { class: 'detail', id: 'alert-detail', 'aria-label': 'Alert detail' }, h('p', { class: 'note' }, 'Select an alert (j/k, Enter).'));
  const more = h('button', { type: 'button', id: 'more', hidden: true }, 'Show more');
  const bulkReason = h('input', { id: 'bulk-reason', placeholder: 'close reason', 'aria-label': 'Close reason for selected alerts' });
  const bulkAssignee = h('input', { id: 'bulk-assignee', placeholder: 'assignee', 'aria-label': 'Assignee for selected alerts' });
  const selCount = h('span', { class: 'note' });
  const bulk = h('div', { class: 'toolbar bulk', hidden: !canTriage },
    selCount,
    h('button', { type: 'button', id: 'bulk-ack', onclick: () => bulkDo('acknowledged') }, 'Acknowledge selected'),
    bulkAssignee, h('button', { type: 'button', id: 'bulk-assign', onclick: () => bulkDo(null) }, 'Assign selected'),
    bulkReason, h('button', { type: 'button', id: 'bulk-close', onclick: () => bulkDo('closed') }, 'Close selected'));
  let next = 0; // the cursor of the page after those shown; 0: none
  let alerts = [];
  const selected = new Set();
  let current = null;

  const filters = h('form', { class: 'toolbar', onsubmit: e => { e.preventDefault(); load(); } },
    h('label', { for: 'f-status' }, 'Status'), status,
    h('label', { for: 'f-host' }, 'Host'), host,
    h('label', { for: 'f-rule' }, 'Rule'), rule,
    h('button', { type: 'submit' }, 'Filter'), count);
  status.addEventListener('change', () => load());
  more.addEventListener('click', () => load(null, true));
  clear(main, h('h1', {}, 'Alerts'), filters, bulk,
    h('div', { class: 'split' },
      h('div', {}, h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'alerts' },
        h('thead', {}, h('tr', {}, ['', 'Time', 'Level', 'Rule', 'Host', 'Status', 'Assignee'].map(c => h('th', { scope: 'col' }, c)))),
        tbody)), more),
      detail));

  function updateSel() {
    selCount.textContent = `${selected.size} selected`;
  }

  // load shows the first page (as many alerts as were shown, after a
  // change) or, with append, the next one.
  async function load(keepID, append = false) {
    const size = append ? PAGE : Math.min(10000, Math.max(PAGE, keepID ? alerts.length : 0));
    const q = new URLSearchParams({ limit: String(size) });
    if (status.value) q.set('status', status.value);
    if (host.value.trim()) q.set('host', host.value.trim());
    if (rule.value.trim()) q.set('rule', rule.value.trim());
    if (append && next) q.set('before', String(next));
    const res = await api('GET', '/api/v1/alerts?' + q);
    alerts = append ? alerts.concat(res.alerts) : res.alerts;
    next = res.next_before || 0;
    count.textContent = next ? `${alerts.length}+ alerts` : `${alerts.length} alerts`;
    more.hidden = !next;
    for (const id of [...selected]) if (!alerts.some(a => a.id === id)) selected.delete(id);
    updateSel();
    clear(tbody, alerts.map(a => {
      const box = h('input', { type: 'checkbox', 'aria-label': `Select alert ${a.id}`, checked: selected.has(a.id), tabindex: -1,
        onchange: e => { if (e.target.checked) selected.add(a.id); else selected.delete(a.id); updateSel(); } });
      const tr = h('tr', { tabindex: 0, dataset: { id: a.id }, class: a.id === current?.id ? 'current' : '', onclick: e => { if (e.target !== box) open(a); } },
        h('td', {}, canTriage ? box : ''),
        h('td', {}, fmtTime(a.created_at)),
        h('td', {}, h('span', { class: `badge level-${a.level}` }, a.level || '')),
        h('td', {}, a.rule_title || a.rule_id, a.match_count > 1 ? h('span', { class: 'badge count', title: `${a.match_count} matches folded into this alert` }, `×${a.match_count}`) : null),
        h('td', {}, a.hostname || a.host_id),
        h('td', {}, h('span', { class: `badge st-${a.status}` }, a.status)),
        h('td', {}, a.assignee || ''));
      tr.addEventListener('keydown', e => { if (e.key === 'Enter') open(a); });
      return tr;
    }));
    if (keepID) {
      const a = alerts.find(x => x.id === keepID);
      if (a) open(a, false);
      tbody.querySelector(`tr[data-id="${keepID}"]`)?.focus();
    }
  }

  async function change(a, status, extra = {}) {
    const body = { status, assignee: extra.assignee ?? a.assignee ?? '', close_reason: extra.close_reason ?? (status === 'closed' ? a.close_reason : '') };
    try {
      await api('PATCH', `/api/v1/alerts/${a.id}`, body);
      toast(`Alert ${a.id}: ${status}${body.assignee ? ', assigned to ' + body.assignee : ''}.`);
      // The alert may leave the filtered list (acknowledged under "open"):
      // keep showing it with its new state.
      Object.assign(a, { status, assignee: body.assignee, close_reason: body.close_reason });
      await load(a.id);
      if (!alerts.some(x => x.id === a.id)) open(a, false);
    } catch (e) { toast(e.message, 'error'); }
  }

  async function bulkDo(status) {
    const ids = [...selected];
    if (!ids.length) { toast('Select alerts first (x or the checkboxes).', 'error'); return; }
    if (status === 'closed' && !bulkReason.value.trim()) { toast('Closing needs a reason.', 'error'); bulkReason.focus(); return; }
    // Assigning keeps each alert's status; the bulk call sets one status,
    // so group by it.
    const groups = new Map();
    for (const id of ids) {
      const a = alerts.find(x => x.id === id);
      const st = status || a.status;
      if (!groups.has(st)) groups.set(st, []);
      groups.get(st).push(id);
    }
    try {
      let n = 0;
      for (const [st, group] of groups) {
        const r = await api('POST', '/api/v1/alerts/bulk', { ids: group, status: st, assignee: bulkAssignee.value.trim(), close_reason: st === 'closed' ? bulkReason.value.trim() : '' });
        n += r.updated;
      }
      toast(`${n} alert(s) updated.`);
      selected.clear();
      await load();
    } catch (e) { toast(e.message, 'error'); }
  }

  async function open(a, focus = true) {
    current = a;
    for (const tr of tbody.rows) tr.classList.toggle('current', tr.dataset.id === String(a.id));
    const rules = await rulesByID();
    const r = rules.get(a.rule_id);
    const assignee = h('input', { id: 'assignee', value: a.assignee || '', placeholder: 'who handles it', 'aria-label': 'Assignee' });
    const reason = h('input', { id: 'close-reason', value: a.close_reason || '', placeholder: 'e.g. false positive: admin script', 'aria-label': 'Close reason' });
    const fields = Object.entries(a.fields || {}).sort(([x], [y]) => x.localeCompare(y));
    const around = encodeURIComponent(a.event_time && !a.event_time.startsWith('0001-') ? a.event_time : a.created_at);
    clear(detail,
      h('h2', {}, `#${a.id} ${a.rule_title || a.rule_id}`),
      h('dl', {},
        h('dt', {}, 'Status'), h('dd', { id: 'detail-status' }, a.status + (a.close_reason ? ` (${a.close_reason})` : '')),
        h('dt', {}, 'Assignee'), h('dd', { id: 'detail-assignee' }, a.assignee || '—'),
        h('dt', {}, 'Level'), h('dd', {}, a.level),
        h('dt', {}, 'Host'), h('dd', {}, a.hostname || '', ' ', h('code', {}, a.host_id)),
        h('dt', {}, 'Event time'), h('dd', {}, fmtTime(a.event_time)),
        h('dt', {}, 'Raised'), h('dd', {}, fmtTime(a.created_at)),
        h('dt', {}, 'Matches'), h('dd', { id: 'detail-matches' }, String(a.match_count || 1),
          a.match_count > 1 ? ` (last ${fmtTime(a.last_match_at)})` : ''),
        h('dt', {}, 'Event'), h('dd', {}, h('code', {}, `${a.event_table} / ${a.event_id}`))),
      canTriage ? h('form', { class: 'triage', onsubmit: e => e.preventDefault() },
        h('div', { class: 'toolbar' }, h('label', { for: 'assignee' }, 'Assignee'), assignee,
          h('button', { type: 'button', id: 'assign', onclick: () => change(a, a.status, { assignee: assignee.value.trim() }) }, 'Assign')),
        h('div', { class: 'toolbar' },
          h('button', { type: 'button', id: 'ack', disabled: a.status === 'acknowledged', onclick: () => change(a, 'acknowledged', { assignee: assignee.value.trim() }) }, 'Acknowledge (a)'),
          h('button', { type: 'button', id: 'reopen', disabled: a.status === 'open', onclick: () => change(a, 'open', { assignee: assignee.value.trim() }) }, 'Reopen')),
        h('div', { class: 'toolbar' }, h('label', { for: 'close-reason' }, 'Reason'), reason,
          h('button', { type: 'button', id: 'close', onclick: () => {
            if (!reason.value.trim()) { toast('Closing needs a reason.', 'error'); reason.focus(); return; }
            change(a, 'closed', { assignee: assignee.value.trim(), close_reason: reason.value.trim() });
          } }, 'Close (c)'))) : h('p', { class: 'note' }, 'Triage needs the operator role.'),
      canTriage ? suppressForm(a) : null,
      h('p', {}, h('a', { id: 'to-timeline', href: `#/timeline?host=${encodeURIComponent(a.host_id)}&at=${around}` }, 'Host timeline around this alert')),
      h('h3', {}, 'Matched event'),
      fields.length ? h('table', { class: 'kv' }, h('tbody', {}, fields.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, cell(v))))))
        : h('p', { class: 'note' }, 'The alert carries no event fields.'),
      h('h3', {}, 'Rule'),
      r ? h('dl', {}, h('dt', {}, 'Title'), h('dd', {}, r.title), h('dt', {}, 'Id'), h('dd', {}, h('code', {}, r.id)),
        h('dt', {}, 'Level'), h('dd', {}, r.level), h('dt', {}, 'Source'), h('dd', {}, r.source || '—'),
        h('dt', {}, 'Enabled'), h('dd', {}, r.enabled ? 'yes' : 'no'),
        h('dt', {}, 'Description'), h('dd', {}, r.description || '—'),
        h('dd', {}, h('a', { href: `#/rules?id=${encodeURIComponent(r.id)}` }, 'Open in rules')))
        : h('p', { class: 'note' }, `Rule ${a.rule_id} is not loaded on this server.`));
    if (focus) detail.querySelector('button, a')?.focus({ preventScroll: true });
  }

  await load();
  return {
    keys(e) {
      if (e.key === 'j' || e.key === 'k') {
        if (!tbody.contains(document.activeElement) && current) tbody.querySelector(`tr[data-id="${current.id}"]`)?.focus();
        moveSelection(tbody, e.key === 'j' ? 1 : -1);
        return true;
      }
      if (e.key === 'x' && canTriage) {
        const tr = document.activeElement?.closest?.('tr[data-id]');
        const box = tr?.querySelector('input[type=checkbox]');
        if (box) { box.checked = !box.checked; box.dispatchEvent(new Event('change')); }
        return true;
      }
      if (e.key === 'a' && current && canTriage) { change(current, 'acknowledged'); return true; }
      if (e.key === 'c' && current && canTriage) { document.getElementById('close-reason')?.focus(); return true; }
      if (e.key === 's' && current && canTriage) {
        const p = document.getElementById('suppress-panel');
        if (p) { p.open = true; document.getElementById('sup-reason')?.focus(); }
        return true;
      }
      return false;
    },
  };
}
