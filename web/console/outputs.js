// Outputs: where alerts go (webhook, Slack, syslog, email) with their
// counters, a test send per output, and the dead letters (alerts an
// output could not deliver) with a redelivery button. Test sends and dead
// letters need the admin role.
import { api, h, clear, toast, fmtTime, ago } from './lib.js';
import { me } from './app.js';

function alertCount(payload) {
  try { const a = JSON.parse(payload); return Array.isArray(a) ? a.length : '?'; } catch { return '?'; }
}

export async function outputsPage(main) {
  const isAdmin = me.role === 'admin';
  const outBody = h('tbody');
  const dlBody = h('tbody');
  const dlSection = h('section', { id: 'dead-letters', 'aria-label': 'Dead letters' });
  const note = h('p', { class: 'note', id: 'outputs-note' });
  clear(main, h('h1', {}, 'Outputs'), note,
    h('div', { class: 'scroll short' }, h('table', { class: 'list', id: 'outputs' },
      h('thead', {}, h('tr', {}, ['Name', 'Kind', 'Sent', 'Attempts', 'Failures', 'Dead letters', 'Queued', '', 'Test result'].map(c => h('th', { scope: 'col' }, c)))),
      outBody)),
    h('h2', {}, 'Dead letters'), dlSection);

  async function testSend(name, btn, result) {
    btn.disabled = true;
    clear(result, h('span', { class: 'note' }, 'Sending…'));
    try {
      await api('POST', `/api/v1/outputs/${encodeURIComponent(name)}/test`);
      clear(result, h('span', { class: 'badge ok' }, 'delivered'), ' ', fmtTime(new Date().toISOString()));
      toast(`Test alert delivered to ${name}.`);
    } catch (e) {
      clear(result, h('span', { class: 'error' }, e.message));
    } finally { btn.disabled = false; }
    loadOutputs();
  }

  async function loadOutputs() {
    const res = await api('GET', '/api/v1/outputs');
    if (!res.configured) {
      note.textContent = 'No outputs are configured on this server: start it with --outputs FILE (webhook, slack, syslog, email).';
    } else {
      note.textContent = `${res.outputs.length} output(s). Alerts are retried with backoff; what still fails becomes a dead letter.`;
    }
    // Keep the test results shown while the counters refresh.
    const kept = new Map([...outBody.querySelectorAll('td.test-result')].map(td => [td.dataset.output, [...td.childNodes]]));
    clear(outBody, res.outputs.map(o => {
      const result = h('td', { class: 'test-result', dataset: { output: o.name }, 'aria-live': 'polite' }, kept.get(o.name) || '');
      const btn = h('button', { type: 'button', class: 'test-send', dataset: { output: o.name } }, 'Send test alert');
      btn.addEventListener('click', () => testSend(o.name, btn, result));
      return h('tr', { dataset: { output: o.name } },
        h('td', {}, o.name), h('td', {}, o.kind), h('td', { class: 'num' }, String(o.sent)), h('td', { class: 'num' }, String(o.attempts)),
        h('td', { class: 'num' }, String(o.failures)), h('td', { class: 'num' }, String(o.dead_lettered)), h('td', { class: 'num' }, String(o.queued)),
        h('td', {}, isAdmin ? btn : ''), result);
    }));
  }

  async function redeliver(d, btn) {
    btn.disabled = true;
    try {
      await api('POST', `/api/v1/dead-letters/${d.id}/redeliver`);
      toast(`Dead letter #${d.id} delivered to ${d.output}.`);
      await Promise.all([loadDeadLetters(), loadOutputs()]);
    } catch (e) {
      toast(`Dead letter #${d.id}: ${e.message}`, 'error');
      btn.disabled = false;
    }
  }

  async function loadDeadLetters() {
    if (!isAdmin) {
      clear(dlSection, h('p', { class: 'note' }, 'Dead letters need the admin role.'));
      return;
    }
    const { dead_letters: dls } = await api('GET', '/api/v1/dead-letters');
    if (!dls.length) {
      clear(dlSection, h('p', { class: 'note', id: 'dl-none' }, 'None: every alert reached its outputs.'));
      return;
    }
    clear(dlBody, dls.map(d => h('tr', { dataset: { id: d.id } },
      h('td', {}, String(d.id)), h('td', {}, fmtTime(d.created_at), h('br'), h('span', { class: 'note' }, ago(d.created_at))),
      h('td', {}, d.output), h('td', {}, d.kind), h('td', { class: 'num' }, String(alertCount(d.payload))),
      h('td', { class: 'num' }, String(d.attempts)), h('td', { class: 'error' }, d.error),
      h('td', {}, h('details', {}, h('summary', {}, 'Payload'), h('pre', {}, d.payload))),
      h('td', {}, h('button', { type: 'button', class: 'redeliver', dataset: { id: d.id }, onclick: e => redeliver(d, e.currentTarget) }, 'Redeliver')))));
    clear(dlSection, h('div', { class: 'scroll short' }, h('table', { class: 'list', id: 'dead-letter-list' },
      h('thead', {}, h('tr', {}, ['#', 'Time', 'Output', 'Kind', 'Alerts', 'Attempts', 'Last error', '', ''].map(c => h('th', { scope: 'col' }, c)))),
      dlBody)));
  }

  await Promise.all([loadOutputs(), loadDeadLetters()]);
}
