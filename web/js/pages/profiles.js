// Profile lookup: journeys and their steps, campaign and journey
// deliveries (status, provider id, reason), suppression and consent, linked
// rows — one timeline, newest first.
import * as api from '../api.js';
import { h, clear, kv, errorBox, table } from '../dom.js';
import { deliveryOrigin } from '../model.js';

const when = (o) => o.at || o.time || o.sent_at || o.updated_at || o.created_at || o.entered || o.queued_at || '';

export function timeline(p) {
  const items = [];
  for (const j of p.journeys || []) {
    items.push({ t: j.entered || '', what: `entered journey ${j.journey}`, detail: `${j.state}${j.reason ? ` — ${j.reason}` : ''}; path ${(j.path || []).join(' → ')}` });
    for (const s of j.steps || []) items.push({ t: when(s), what: `${j.journey}: ${s.node}`, detail: [s.status, s.reason].filter(Boolean).join(' — ') });
  }
  for (const s of p.sent || []) items.push({ t: when(s), what: `${s.journey ? `journey ${s.journey}/${s.node}` : `campaign ${s.campaign || ''}${s.activity ? `/${s.activity}` : ''}`}: ${s.channel ? `message on ${s.channel}` : `action ${s.action}`}`, detail: [s.status, s.provider_id && `provider id ${s.provider_id}`, s.reason].filter(Boolean).join(' — '), status: s.status });
  for (const d of p.deliveries || []) items.push({ t: when(d), what: `${deliveryOrigin(d)}: message on ${d.channel}`, detail: [d.status, d.recipient && `to ${d.recipient}`, d.provider_id && `provider id ${d.provider_id}`, d.reason].filter(Boolean).join(' — '), status: d.status });
  for (const s of p.suppressions || p.suppression || []) items.push({ t: when(s), what: `suppressed${s.channel ? ` on ${s.channel}` : ''}`, detail: s.reason || '' });
  items.sort((a, b) => String(b.t).localeCompare(String(a.t)));
  return items;
}

export async function show(id) {
  const main = document.getElementById('main');
  const q = h('input', { id: 'profile-q', type: 'search', value: id || '', placeholder: 'p42', required: true });
  const out = h('div', { id: 'profile-out', 'aria-live': 'polite' });
  const form = h('form', { role: 'search', class: 'toolbar', 'aria-label': 'Look a profile up' },
    h('label', { for: 'profile-q', style: 'margin:0' }, 'Profile id'), q, h('button', { type: 'submit', class: 'primary' }, 'Look up'));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); location.hash = `#/profiles/${api.enc(q.value.trim())}`; });
  clear(main, h('h1', null, 'Profiles'), form, out);
  if (!id) { q.focus(); return; }
  let p;
  try { p = await api.get(`/v1/profiles/${api.enc(id)}`); } catch (e) {
    if (e.status === 401) throw e;
    clear(out, errorBox(e.status === 404 ? `No profile ${id}.` : e)); return;
  }
  const items = timeline(p);
  const row = p.row || p.fields || p.data;
  clear(out,
    h('h2', null, `Profile ${p.profile || id}`),
    row ? h('section', null, h('h3', null, 'Fields'), kv(row)) : null,
    p.consent ? h('section', null, h('h3', null, 'Consent'), kv(p.consent)) : null,
    (p.journeys || []).length ? h('section', null, h('h3', null, 'Journeys'), table([
      { label: 'Journey', get: (j) => h('a', { href: `#/journeys/${api.enc(j.journey)}` }, j.journey) },
      { label: 'State', get: (j) => j.state }, { label: 'Entered', get: (j) => j.entered || '' },
      { label: 'Path', get: (j) => (j.path || []).join(' → ') }], p.journeys, 'Journeys of this profile')) : null,
    h('section', null, h('h3', null, 'Timeline'),
      items.length ? h('ol', { class: 'timeline', id: 'timeline' }, items.map((i) => h('li', null, h('time', null, i.t), h('strong', null, i.what), i.detail ? h('div', { class: i.status === 'failed' ? 'error' : 'help' }, i.detail) : null)))
        : h('p', null, 'Nothing happened to this profile yet.')),
    p.links ? h('section', null, h('h3', null, 'Linked rows'), ...Object.entries(p.links).map(([k, rows]) => h('details', null, h('summary', null, `${k} (${rows.length})`),
      rows.length ? table(Object.keys(rows[0]).map((c) => ({ label: c, get: (r) => String(r[c] ?? '') })), rows) : h('p', null, 'none')))) : null);
}
