// Suppressions: silence future matches of a rule, on a host, with an
// event field equal to a value, for a while. The alerts page builds the
// "Suppress similar" form from an alert (suppressForm); this page lists
// them and expires them early (operator).
import { api, h, clear, toast, fmtTime, ago, cell, moveSelection } from './lib.js';
import { me } from './app.js';

const EXPIRIES = [['1h', '1 hour'], ['8h', '8 hours'], ['24h', '1 day'], ['7d', '7 days'], ['30d', '30 days']];

// suppressForm is the "Suppress similar" panel of an alert: which of the
// alert's rule, host and one event field must match, why, for how long.
export function suppressForm(a, onDone) {
  const rule = h('input', { type: 'checkbox', id: 'sup-rule', checked: true });
  const host = h('input', { type: 'checkbox', id: 'sup-host', checked: true });
  const entries = Object.entries(a.fields || {}).filter(([, v]) => v !== null && v !== '' && typeof v !== 'object')
    .sort(([x], [y]) => x.localeCompare(y));
  const field = h('select', { id: 'sup-field', 'aria-label': 'Event field that must match' },
    h('option', { value: '' }, 'any event'),
    entries.map(([k, v]) => h('option', { value: k }, `${k} = ${cell(v).slice(0, 80)}`)));
  const reason = h('input', { id: 'sup-reason', placeholder: 'why these matches may be silenced', 'aria-label': 'Suppression reason', size: 36 });
  const expires = h('select', { id: 'sup-expires', 'aria-label': 'Suppression expiry' },
    EXPIRIES.map(([v, label]) => h('option', { value: v, selected: v === '24h' }, label)));
  const result = h('p', { id: 'sup-result', class: 'note', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', id: 'suppress' }, 'Suppress similar');
  const form = h('form', { class: 'suppress', onsubmit: async e => {
    e.preventDefault();
    const body = { reason: reason.value.trim(), expires_in: expires.value };
    if (rule.checked) body.rule_id = a.rule_id;
    if (host.checked) body.host = a.host_id || a.hostname;
    if (field.value) { body.field = field.value; body.value = cell(a.fields[field.value]); }
    if (!body.reason) { toast('A suppression needs a reason.', 'error'); reason.focus(); return; }
    button.disabled = true;
    try {
      const s = await api('POST', '/api/v1/suppressions', body);
      clear(result, `Suppression #${s.id} silences matching alerts until ${fmtTime(s.expires_at)}. `,
        h('a', { href: '#/suppressions' }, 'All suppressions'));
      result.className = 'ok';
      toast(`Suppression #${s.id} created.`);
      onDone?.(s);
    } catch (ex) {
      clear(result, ex.message);
      result.className = 'error';
    } finally { button.disabled = false; }
  } },
  h('p', { class: 'note' }, 'Future matches like this one open no alert until the suppression expires. This alert stays as it is.'),
  h('div', { class: 'toolbar' },
    h('label', { class: 'check' }, rule, ' rule ', h('code', {}, a.rule_id)),
    h('label', { class: 'check' }, host, ' host ', h('code', {}, a.hostname || a.host_id))),
  h('div', { class: 'toolbar' }, h('label', { for: 'sup-field' }, 'Field'), field),
  h('div', { class: 'toolbar' }, h('label', { for: 'sup-reason' }, 'Reason'), reason,
    h('label', { for: 'sup-expires' }, 'For'), expires, button),
  result);
  return h('details', { id: 'suppress-panel' }, h('summary', {}, 'Suppress similar…'), form);
}

export async function suppressionsPage(main, params) {
  const canChange = me.role === 'operator' || me.role === 'admin';
  const expired = h('input', { type: 'checkbox', id: 'sup-expired', checked: params.get('expired') === '1' });
  const search = h('input', { type: 'search', id: 'sup-search', 'data-search': true, placeholder: 'rule, host, field, reason', 'aria-label': 'Search suppressions' });
  const count = h('span', { class: 'note', id: 'sup-count', 'aria-live': 'polite' });
  const tbody = h('tbody');
  let list = [];
  let titles = new Map();
  try {
    const { rules } = await api('GET', '/api/v1/rules');
    titles = new Map(rules.map(r => [r.id, r.title]));
  } catch { /* titles are a nicety */ }

  async function load() {
    const res = await api('GET', '/api/v1/suppressions' + (expired.checked ? '?expired=1' : ''));
    list = res.suppressions;
    render();
  }
  async function expire(s) {
    try {
      await api('DELETE', `/api/v1/suppressions/${s.id}`);
      toast(`Suppression #${s.id} expired.`);
      await load();
    } catch (e) { toast(e.message, 'error'); }
  }
  function render() {
    const q = search.value.trim().toLowerCase();
    const now = Date.now();
    const shown = list.filter(s => !q || [s.rule_id, titles.get(s.rule_id), s.host, s.field, s.value, s.reason, s.created_by]
      .some(v => (v || '').toLowerCase().includes(q)));
    count.textContent = `${shown.length} suppression(s)`;
    clear(tbody, shown.map(s => {
      const active = new Date(s.expires_at).getTime() > now;
      return h('tr', { tabindex: 0, dataset: { id: s.id }, class: active ? '' : 'expired' },
        h('td', {}, String(s.id)),
        h('td', {}, s.rule_id ? [titles.get(s.rule_id) || '', ' ', h('code', {}, s.rule_id)] : 'any rule'),
        h('td', {}, s.host || 'any host'),
        h('td', {}, s.field ? [h('code', {}, s.field), ' = ', h('code', {}, s.value)] : '—'),
        h('td', {}, s.reason),
        h('td', {}, s.created_by, h('br'), h('span', { class: 'note' }, fmtTime(s.created_at))),
        h('td', {}, active ? `${fmtTime(s.expires_at)}` : h('span', { class: 'badge off' }, 'expired ' + ago(s.expires_at))),
        h('td', { class: 'num' }, String(s.hits), s.hits ? h('span', { class: 'note' }, ` (last ${ago(s.last_hit_at)})`) : ''),
        h('td', {}, canChange && active ? h('button', { type: 'button', class: 'expire', dataset: { id: s.id }, onclick: () => expire(s) }, 'Expire now') : ''));
    }));
  }
  expired.addEventListener('change', load);
  search.addEventListener('input', render);
  clear(main, h('h1', {}, 'Suppressions'),
    h('div', { class: 'toolbar' }, h('label', { for: 'sup-search' }, 'Search'), search,
      h('label', { class: 'check' }, expired, ' show expired'), count),
    h('p', { class: 'note' }, 'Matches a suppression covers open no alert; they count as its hits. Create one from an alert ("Suppress similar").',
      canChange ? '' : ' Expiring one needs the operator role.'),
    h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'suppressions' },
      h('thead', {}, h('tr', {}, ['#', 'Rule', 'Host', 'Field', 'Reason', 'Created by', 'Expires', 'Hits', ''].map(c => h('th', { scope: 'col' }, c)))),
      tbody)));
  await load();
  return {
    keys(e) {
      if (e.key === 'j' || e.key === 'k') { moveSelection(tbody, e.key === 'j' ? 1 : -1); return true; }
      return false;
    },
  };
}
