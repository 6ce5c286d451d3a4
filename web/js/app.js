// app.js — login, navigation and the hash router of the baton console.
import * as api from './api.js';
import { h, clear, status } from './dom.js';

const main = () => document.getElementById('main');
export const who = { name: '', scopes: [] };
export function can(scope) { return who.scopes.includes('admin') || who.scopes.includes(scope); }

const routes = [
  [/^#\/campaigns$/, 'campaigns', (m) => import('./pages/campaigns.js').then((p) => p.list())],
  [/^#\/campaigns\/([^/]+)$/, 'campaigns', (m) => import('./pages/campaign.js').then((p) => p.show(decodeURIComponent(m[1])))],
  [/^#\/campaigns\/([^/]+)\/edit$/, 'campaigns', (m) => import('./pages/editor.js').then((p) => p.edit('campaigns', decodeURIComponent(m[1])))],
  [/^#\/journeys$/, 'journeys', () => import('./pages/journeys.js').then((p) => p.list())],
  [/^#\/journeys\/([^/]+)$/, 'journeys', (m) => import('./pages/journeys.js').then((p) => p.show(decodeURIComponent(m[1])))],
  [/^#\/journeys\/([^/]+)\/edit$/, 'journeys', (m) => import('./pages/editor.js').then((p) => p.edit('journeys', decodeURIComponent(m[1])))],
  [/^#\/profiles(?:\/([^/]+))?$/, 'profiles', (m) => import('./pages/profiles.js').then((p) => p.show(m[1] ? decodeURIComponent(m[1]) : ''))],
  [/^#\/channels$/, 'channels', () => import('./pages/channels.js').then((p) => p.show())],
  [/^#\/deliveries$/, 'deliveries', () => import('./pages/deliveries.js').then((p) => p.show())],
];

let leaving = null; // a page's cleanup (timers, pollers)
export function onLeave(fn) { leaving = fn; }

async function route() {
  if (leaving) { try { leaving(); } catch { /* nothing to keep */ } leaving = null; }
  if (!api.token()) return login();
  const hash = location.hash || '#/campaigns';
  for (const [re, nav, run] of routes) {
    const m = re.exec(hash.split('?')[0]);
    if (!m) continue;
    document.querySelectorAll('[data-nav]').forEach((a) => {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    });
    status('');
    clear(main(), h('p', { class: 'help' }, 'Loading…'));
    try {
      await run(m);
    } catch (e) {
      if (e.status !== 401) clear(main(), h('h1', null, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, e.message));
    }
    const h1 = main().querySelector('h1');
    if (h1) { h1.tabIndex = -1; document.title = `${h1.textContent} — baton`; }
    return;
  }
  location.hash = '#/campaigns';
}

function login(message) {
  document.getElementById('top').hidden = true;
  const err = h('p', { class: 'error', role: 'alert', id: 'login-error' }, message || '');
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'token-help login-error' });
  const form = h('form', { class: 'panel login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'baton console'),
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { class: 'help', id: 'token-help' }, 'A token from the http.tokens list of baton.cfg. It is kept in this tab only.'),
    err,
    h('button', { type: 'submit', class: 'primary' }, 'Log in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    try {
      const s = await api.session(input.value.trim());
      api.setToken(input.value.trim());
      setWho(s);
      route();
    } catch (e) {
      err.textContent = e.status === 401 ? 'That token is not valid (or has expired).' : e.message;
      input.focus();
    }
  });
  clear(main(), form);
  input.focus();
}

function setWho(s) {
  who.name = s.name || '';
  who.scopes = s.scopes || [];
  document.getElementById('top').hidden = false;
  document.getElementById('who').textContent = `${who.name} (${who.scopes.join(', ')})`;
}

api.setAuthLost((msg) => { location.hash = location.hash || '#/campaigns'; login(`Logged out: ${msg}`); });

async function start() {
  document.getElementById('logout').addEventListener('click', () => { api.setToken(null); login('Logged out.'); });
  window.addEventListener('hashchange', route);
  if (api.token()) {
    try { setWho(await api.session(api.token())); } catch (e) {
      api.setToken(null);
      return login(e.status === 401 ? `Logged out: ${e.message}` : e.message);
    }
  }
  route();
}
start();
