// Hosts: search, online state, last seen, details with the host's
// configuration, and links to its timeline and a live query.
import { api, h, clear, fmtTime, ago, moveSelection } from './lib.js';

export async function hostsPage(main, params) {
  const search = h('input', { type: 'search', 'data-search': true, id: 'host-search', placeholder: 'hostname, id, platform, address…', 'aria-label': 'Search hosts', value: params.get('q') || '' });
  const count = h('span', { class: 'note', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const detail = h('section', { class: 'detail', 'aria-label': 'Host details' });
  clear(main,
    h('h1', {}, 'Hosts'),
    h('div', { class: 'toolbar' }, h('label', { for: 'host-search' }, 'Search'), search, count),
    h('div', { class: 'split' },
      h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'hosts' },
        h('thead', {}, h('tr', {}, ['Hostname', 'State', 'Last seen', 'Platform', 'OS', 'Agent', 'Address'].map(c => h('th', { scope: 'col' }, c)))),
        tbody)),
      detail));
  const { hosts } = await api('GET', '/api/v1/hosts');
  hosts.sort((a, b) => a.hostname.localeCompare(b.hostname));

  async function open(host) {
    const health = h('div', { id: 'host-health' }, h('p', { class: 'note' }, 'Loading…'));
    const cfg = await api('GET', `/api/v1/hosts/${encodeURIComponent(host.id)}/config`).catch(e => ({ error: e.message }));
    const rows = [
      ['Id', host.id], ['Identifier', host.host_identifier], ['Hostname', host.hostname], ['UUID', host.uuid],
      ['Platform', host.platform], ['OS version', host.os_version], ['Agent', `${host.agent_name || ''} ${host.agent_version || ''}`],
      ['Online', host.online ? 'yes' : 'no'], ['Last seen', `${fmtTime(host.last_seen)} (${ago(host.last_seen)})`],
      ['Enrolled', fmtTime(host.enrolled_at)], ['Long poll', host.long_poll ? 'yes' : 'no'], ['Address', host.remote_addr],
      ['Labels', (cfg.labels || []).join(', ') || '—'], ['Config version', cfg.config_version ?? cfg.version ?? '—'],
    ];
    clear(detail,
      h('h2', {}, host.hostname),
      h('dl', {}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v || '—')])),
      h('p', {},
        h('a', { href: `#/timeline?host=${encodeURIComponent(host.id)}` }, 'Timeline'), ' · ',
        h('a', { href: `#/query?hosts=${encodeURIComponent(host.hostname)}` }, 'Live query this host'), ' · ',
        h('a', { href: `#/alerts?host=${encodeURIComponent(host.id)}` }, 'Alerts')),
      h('h3', {}, 'Agent health'), health);
    try {
      const hh = await api('GET', `/api/v1/hosts/${encodeURIComponent(host.id)}/health?limit=20`);
      const sev = ['info', 'warning', 'error'];
      clear(health,
        hh.counters.length
          ? h('div', {},
            h('p', { id: 'host-lost', class: hh.lost ? 'error' : 'note' }, `${hh.lost} event(s) lost or dropped since the agent started; counters of ${fmtTime(hh.counters_at)} (${ago(hh.counters_at)}).`),
            h('table', { class: 'kv', id: 'host-counters' }, h('tbody', {}, hh.counters.map(c => h('tr', {},
              h('th', { scope: 'row' }, c.source),
              h('td', {}, c.inactive ? `inactive: ${c.inactive}` : Object.entries(c.counters).map(([k, v]) => `${k}=${v}`).join(' ')))))))
          : h('p', { class: 'note' }, 'No event counters reported yet (agents send them every few minutes).'),
        h('h3', {}, 'Recent status lines'),
        hh.lines.length
          ? h('ul', { class: 'status-lines', id: 'host-status-lines' }, hh.lines.map(l => h('li', { class: `sev-${sev[l.severity] || l.severity}` },
            h('time', { datetime: l.time }, fmtTime(l.time)), ' ', h('span', { class: 'badge' }, sev[l.severity] || l.severity), ' ', l.message)))
          : h('p', { class: 'note' }, 'No status lines.'));
    } catch (e) {
      clear(health, h('p', { class: 'note' }, `Health unavailable: ${e.message}`));
    }
  }

  function render() {
    const q = search.value.trim().toLowerCase();
    const shown = hosts.filter(x => !q || [x.hostname, x.id, x.host_identifier, x.platform, x.os_version, x.remote_addr, x.agent_version]
      .some(v => (v || '').toLowerCase().includes(q)));
    count.textContent = `${shown.length} of ${hosts.length} hosts`;
    clear(tbody, shown.map(x => {
      const tr = h('tr', { tabindex: 0, dataset: { id: x.id }, onclick: () => open(x) },
        h('td', {}, x.hostname),
        h('td', {}, h('span', { class: x.online ? 'badge ok' : 'badge off' }, x.online ? 'online' : 'offline')),
        h('td', { title: fmtTime(x.last_seen) }, ago(x.last_seen)),
        h('td', {}, x.platform || ''), h('td', {}, x.os_version || ''),
        h('td', {}, `${x.agent_name || ''} ${x.agent_version || ''}`), h('td', {}, x.remote_addr || ''));
      tr.addEventListener('keydown', e => { if (e.key === 'Enter') open(x); });
      return tr;
    }));
  }
  search.addEventListener('input', render);
  render();
  return {
    keys(e) {
      if (e.key === 'j' || e.key === 'k') { moveSelection(tbody, e.key === 'j' ? 1 : -1); return true; }
      return false;
    },
  };
}
