// The console's entry point: sign-in, the router (#/page?args) and global
// keyboard shortcuts. Each page is a function render(main, params) that
// may return a keyboard handler for j/k and similar keys.
import { api, session, h, clear, toast } from './lib.js';
import { hostsPage } from './hosts.js';
import { queryPage } from './query.js';
import { alertsPage } from './alerts.js';
import { eventsPage, timelinePage } from './events.js';
import { rulesPage } from './rules.js';
import { suppressionsPage } from './suppress.js';
import { outputsPage } from './outputs.js';

const pages = {
  alerts: alertsPage,
  hosts: hostsPage,
  query: queryPage,
  events: eventsPage,
  timeline: timelinePage,
  rules: rulesPage,
  suppressions: suppressionsPage,
  outputs: outputsPage,
};

export const me = { user: '', role: '' };

let pageKeys = null;
let cleanup = null;

function signinPage(main) {
  document.getElementById('top').hidden = true;
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false', placeholder: 'vgl_…' });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'signin', onsubmit: async e => {
    e.preventDefault();
    session.token = input.value.trim();
    try {
      const who = await api('GET', '/api/v1/whoami');
      Object.assign(me, who);
      location.hash = '#/alerts';
    } catch (ex) {
      session.token = '';
      err.textContent = ex.status === 401 ? 'That token is not valid (or was revoked).' : ex.message;
      input.select();
    }
  } },
  h('h1', {}, 'Sign in to Vigil'),
  h('label', { for: 'token' }, 'API token'),
  input,
  h('p', { class: 'note' }, 'Paste a token from "vigil token create" or your profile. It is kept in this tab only (sessionStorage) and forgotten when the tab closes.'),
  h('button', { type: 'submit', id: 'signin' }, 'Sign in'),
  err);
  clear(main, form);
  input.focus();
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [name, query] = raw.split('?');
  return { name: name || 'alerts', params: new URLSearchParams(query || '') };
}

async function route() {
  const main = document.getElementById('main');
  if (cleanup) { cleanup(); cleanup = null; }
  pageKeys = null;
  const { name, params } = parseHash();
  if (!session.token || name === 'signin') {
    signinPage(main);
    return;
  }
  if (!me.user) {
    try {
      Object.assign(me, await api('GET', '/api/v1/whoami'));
    } catch (e) {
      if (e.status !== 401) toast(e.message, 'error');
      return;
    }
  }
  document.getElementById('top').hidden = false;
  document.getElementById('who').textContent = `${me.user} (${me.role})`;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const page = pages[name];
  if (!page) {
    clear(main, h('h1', {}, 'Not found'), h('p', {}, `There is no page "${name}".`));
    return;
  }
  clear(main);
  main.dataset.page = name;
  document.title = `Vigil · ${name}`;
  try {
    const r = await page(main, params);
    if (r) { pageKeys = r.keys || null; cleanup = r.cleanup || null; }
  } catch (e) {
    if (e.status !== 401) clear(main, h('h1', {}, 'Error'), h('p', { class: 'error', role: 'alert' }, e.message));
  }
}

let pendingG = false;
function onKey(e) {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  const typing = t instanceof HTMLElement && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName));
  if (typing) {
    if (e.key === 'Escape') t.blur();
    return;
  }
  if (pendingG) {
    pendingG = false;
    const dest = { a: 'alerts', h: 'hosts', q: 'query', e: 'events', t: 'timeline', r: 'rules', s: 'suppressions', o: 'outputs' }[e.key];
    if (dest) { e.preventDefault(); location.hash = '#/' + dest; }
    return;
  }
  if (e.key === 'g') { pendingG = true; setTimeout(() => { pendingG = false; }, 1500); return; }
  if (e.key === '?') { e.preventDefault(); document.getElementById('help').showModal(); return; }
  if (e.key === '/') {
    const s = document.querySelector('#main [data-search]');
    if (s) { e.preventDefault(); s.focus(); s.select?.(); }
    return;
  }
  if (pageKeys && pageKeys(e)) e.preventDefault();
}

document.getElementById('signout').addEventListener('click', () => {
  session.token = '';
  me.user = me.role = '';
  location.hash = '#/signin';
});
document.addEventListener('keydown', onKey);
window.addEventListener('hashchange', route);
route();
