// Rules: the loaded detection rules, enable/disable (admin), and testing
// a rule (or an edit of it) against stored events before enabling it.
import { api, h, clear, toast, dataTable, moveSelection } from './lib.js';
import { me } from './app.js';

export async function rulesPage(main, params) {
  const { rules } = await api('GET', '/api/v1/rules');
  const search = h('input', { type: 'search', id: 'rule-search', 'data-search': true, placeholder: 'title, id, level, source', 'aria-label': 'Search rules' });
  const tbody = h('tbody');
  const yaml = h('textarea', { id: 'rule-yaml', rows: 14, spellcheck: 'false', 'aria-label': 'Sigma rule (YAML)', placeholder: 'title: …\nlogsource: {category: process_creation, product: linux}\ndetection: …' });
  const out = h('div', { id: 'rule-test-out', 'aria-live': 'polite' });
  const testBtn = h('button', { type: 'submit', id: 'rule-test' }, 'Test against stored events');
  const isAdmin = me.role === 'admin';
  const canTest = isAdmin || me.role === 'operator';

  async function pick(r) {
    if (!r.has_source) { toast('This server does not serve rule sources; paste the YAML.', 'error'); return; }
    try {
      const { yaml: src } = await api('GET', `/api/v1/rules/${encodeURIComponent(r.id)}/source`);
      yaml.value = src;
      yaml.focus();
    } catch (e) { toast(e.message, 'error'); }
  }
  async function toggle(r) {
    try {
      await api('PUT', `/api/v1/rules/${encodeURIComponent(r.id)}/enabled`, { enabled: !r.enabled });
      r.enabled = !r.enabled;
      toast(`${r.title}: ${r.enabled ? 'enabled' : 'disabled'}.`);
      render();
    } catch (e) { toast(e.message, 'error'); }
  }
  function render() {
    const q = search.value.trim().toLowerCase();
    clear(tbody, rules.filter(r => !q || [r.title, r.id, r.level, r.source].some(v => (v || '').toLowerCase().includes(q))).map(r => {
      const tr = h('tr', { tabindex: 0, dataset: { id: r.id } },
        h('td', {}, r.title), h('td', {}, h('span', { class: `badge level-${r.level}` }, r.level)),
        h('td', {}, r.enabled ? 'enabled' : 'disabled'), h('td', {}, r.source || ''),
        h('td', {}, h('button', { type: 'button', onclick: () => pick(r) }, 'Test'), ' ',
          isAdmin && r.can_toggle ? h('button', { type: 'button', onclick: () => toggle(r) }, r.enabled ? 'Disable' : 'Enable') : null));
      tr.addEventListener('keydown', e => { if (e.key === 'Enter' && e.target === tr) pick(r); });
      return tr;
    }));
  }
  async function test() {
    testBtn.disabled = true;
    clear(out, h('p', { class: 'note' }, 'Running…'));
    try {
      const res = await api('POST', '/api/v1/rules/test', { yaml: yaml.value, limit: 200 });
      clear(out, h('p', { id: 'rule-test-summary' }, `${res.title}: ${res.rows.length}${res.truncated ? '+' : ''} matching event(s) in ${res.table}.`),
        h('details', {}, h('summary', {}, 'Compiled SQL'), h('pre', {}, res.sql)),
        dataTable(res.columns, res.rows));
    } catch (e) {
      clear(out, h('p', { class: 'error', role: 'alert' }, e.message));
    } finally { testBtn.disabled = false; }
  }
  search.addEventListener('input', render);
  yaml.addEventListener('keydown', e => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); test(); } });
  clear(main, h('h1', {}, `Rules (${rules.length})`),
    h('div', { class: 'toolbar' }, h('label', { for: 'rule-search' }, 'Search'), search),
    h('div', { class: 'scroll short' }, h('table', { class: 'list', id: 'rules' },
      h('thead', {}, h('tr', {}, ['Title', 'Level', 'State', 'Source', ''].map(c => h('th', { scope: 'col' }, c)))), tbody)),
    canTest ? h('form', { class: 'editor', onsubmit: e => { e.preventDefault(); test(); } },
      h('h2', {}, 'Test a rule'),
      h('label', { for: 'rule-yaml' }, 'Sigma rule (YAML); nothing is alerted, no watermark moves'),
      yaml, h('div', { class: 'toolbar' }, testBtn)) : h('p', { class: 'note' }, 'Testing rules needs the operator role.'),
    out);
  render();
  const id = params.get('id');
  if (id) { search.value = id; render(); tbody.rows[0]?.focus(); }
  return {
    keys(e) {
      if (e.key === 'j' || e.key === 'k') { moveSelection(tbody, e.key === 'j' ? 1 : -1); return true; }
      return false;
    },
  };
}
