// Profile lookup by id or address: its fields, its address, consent and
// suppression per channel, its journeys, and one timeline, newest first,
// of its journey steps and its deliveries (campaign and journey: status,
// provider id, reason), and the rows its schema links reach (orders,
// reservations...).
import * as api from '../api.js';
import { h, clear, errorBox, table, kv } from '../dom.js';
import { deliveryOrigin } from '../model.js';

// GET /v1/profiles/ID (baton profile ID --json): journeys [{journey, state,
// node, entered, updated, path, reason?}], sent (each journey step that
// sends or calls: {journey, node, kind, channel | action, status, at}) and
// deliveries (the delivery log's rows, campaign and journey:
// {key, source, channel, recipient, status, provider_id?, reason?,
// created_at, updated_at}).
export function timeline(p) {
  const items = [];
  for (const j of p.journeys) {
    items.push({ t: j.entered, what: `entered journey ${j.journey}`, detail: `${j.state}${j.reason ? ` — ${j.reason}` : ''}; path ${j.path.join(' → ')}` });
  }
  for (const s of p.sent) items.push({ t: s.at, what: `journey ${s.journey}/${s.node}: ${s.kind === 'send' ? `message on ${s.channel}` : `action ${s.action}`}`, detail: s.status, status: s.status });
  for (const d of p.deliveries) items.push({ t: d.updated_at, what: `${deliveryOrigin(d)}: delivery on ${d.channel}`, detail: [d.status, d.recipient && `to ${d.recipient}`, d.provider_id && `provider id ${d.provider_id}`, d.reason].filter(Boolean).join(' — '), status: d.status });
  items.sort((a, b) => b.t.localeCompare(a.t));
  return items;
}

export async function show(id) {
  const main = document.getElementById('main');
  const q = h('input', { id: 'profile-q', type: 'search', value: id || '', placeholder: 'p42 or someone@example.com', required: true, 'aria-describedby': 'profile-q-help' });
  const out = h('div', { id: 'profile-out', 'aria-live': 'polite' });
  const form = h('form', { role: 'search', class: 'toolbar', 'aria-label': 'Look a profile up' },
    h('label', { for: 'profile-q', style: 'margin:0' }, 'Profile id or address'), q, h('button', { type: 'submit', class: 'primary' }, 'Look up'),
    h('span', { class: 'help', id: 'profile-q-help' }, 'An address is looked for in every channel\'s address field (email, phone...).'));
  // an address finds the ids that hold it; anything that is no one's
  // address is taken as an id
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = q.value.trim();
    let r;
    try { r = await api.get(`/v1/profiles?address=${api.enc(v)}`); } catch (e) { if (e.status === 401) throw e; clear(out, errorBox(e)); return; }
    if (r.profiles.length === 1) { location.hash = `#/profiles/${api.enc(r.profiles[0])}`; return; }
    if (!r.profiles.length) { location.hash = `#/profiles/${api.enc(v)}`; return; }
    clear(out, h('h2', null, `${r.profiles.length}${r.truncated ? '+' : ''} profiles have the address ${v}`),
      h('ul', { id: 'profile-matches' }, r.profiles.map((p) => h('li', null, h('a', { href: `#/profiles/${api.enc(p)}` }, p)))));
  });
  clear(main, h('h1', null, 'Profiles'), form, out);
  if (!id) { q.focus(); return; }
  let p;
  try { p = await api.get(`/v1/profiles/${api.enc(id)}`); } catch (e) {
    if (e.status === 401) throw e;
    clear(out, errorBox(e)); return;
  }
  // GET /v1/profiles/ID/record: {fields (the profiles row, or null), channels:
  // [{channel, enabled, address_field, address, consent_field, consent, suppressed}]}
  const rec = await api.get(`/v1/profiles/${api.enc(id)}/record`);
  const items = timeline(p);
  const linked = h('section', { id: 'profile-links', 'aria-labelledby': 'links-title' }, h('h3', { id: 'links-title' }, 'Linked rows'));
  const yes = (v) => (v === null ? 'no value' : v === true || v === 1 || v === '1' || v === 'true' ? 'yes' : 'no');
  clear(out,
    h('h2', { id: 'profile-title' }, `Profile ${p.profile}`),
    rec.fields === null ? h('p', { class: 'help' }, 'The profiles source has no row for this id.')
      : h('section', { id: 'profile-fields' }, h('h3', null, 'Fields'), kv(rec.fields)),
    h('section', null, h('h3', null, 'Channels: address, consent, suppression'), table([
      { label: 'Channel', get: (c) => `${c.channel}${c.enabled ? '' : ' (off)'}` },
      { label: 'Address', get: (c) => (c.address_field === null ? '—' : c.address === null ? `no ${c.address_field}` : c.address) },
      { label: 'Consent', get: (c) => (c.consent_field === null ? 'not asked' : `${yes(c.consent)} (${c.consent_field})`) },
      { label: 'Suppressed', get: (c) => h('span', { 'data-suppressed': c.channel }, c.suppressed === null ? 'no' : c.suppressed) },
    ], rec.channels, 'What decides whether a message to this profile is sent')),
    linked,
    p.journeys.length ? h('section', null, h('h3', null, 'Journeys'), table([
      { label: 'Journey', get: (j) => h('a', { href: `#/journeys/${api.enc(j.journey)}` }, j.journey) },
      { label: 'State', get: (j) => j.state }, { label: 'At node', get: (j) => j.node }, { label: 'Entered', get: (j) => j.entered },
      { label: 'Path', get: (j) => j.path.join(' → ') }], p.journeys, 'Journeys of this profile')) : null,
    h('section', null, h('h3', null, 'Timeline'),
      items.length ? h('ol', { class: 'timeline', id: 'timeline' }, items.map((i) => h('li', null, h('time', null, i.t), h('strong', null, i.what), i.detail ? h('div', { class: i.status === 'failed' ? 'error' : 'help' }, i.detail) : null)))
        : h('p', null, 'Nothing happened to this profile yet.')));
  if (!rec.links.length) linked.appendChild(h('p', { class: 'help' }, 'The schema gives profiles no link.'));
  // one link after the other: each read opens the profiles source on one of serve's few HTTP threads
  for (const l of rec.links) {
    const box = h('div', { 'data-link': l.name });
    linked.appendChild(box);
    await showLink(id, l, box, 10);
  }
}

// GET /v1/profiles/ID/links/LINK?limit=N: {entity, many, fields, rows,
// truncated}; every value goes in as text.
async function showLink(id, l, box, limit) {
  let r;
  try { r = await api.get(`/v1/profiles/${api.enc(id)}/links/${api.enc(l.name)}?limit=${limit}`); } catch (e) {
    if (e.status === 401) throw e;
    clear(box, h('h4', null, l.name), errorBox(e)); return;
  }
  const cell = (v) => (v === null || v === undefined ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  clear(box, h('h4', null, `${l.name} `, h('span', { class: 'help' }, `(${r.entity}${r.many ? `: ${r.rows.length}${r.truncated ? '+' : ''} row(s)` : ''})`)),
    r.rows.length ? table(r.fields.map((f) => ({ label: f, get: (row) => cell(row[f]) })), r.rows, `${l.name} of profile ${id}`)
      : h('p', { class: 'help' }, 'None.'),
    r.truncated && limit < 1000 ? h('button', { type: 'button', 'data-more': l.name, onclick: () => showLink(id, l, box, limit * 10) }, `Show up to ${limit * 10}`) : null);
}
