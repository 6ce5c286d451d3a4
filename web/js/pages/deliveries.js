// Delivery search: the delivery log by profile, channel, status and time,
// page by page.
import * as api from '../api.js';
import { h, clear, table, errorBox } from '../dom.js';
import { deliveryOrigin } from '../model.js';

const STATUSES = ['', 'queued', 'retry', 'deferred', 'sent', 'failed', 'capped', 'uncertain', 'skipped', 'bounced', 'complained'];

export async function show() {
  const main = document.getElementById('main');
  const f = {
    profile: h('input', { id: 'd-profile', size: 10 }),
    channel: h('input', { id: 'd-channel', size: 10 }),
    status: h('select', { id: 'd-status' }, STATUSES.map((s) => h('option', { value: s }, s || '(any)'))),
    since: h('input', { id: 'd-since', size: 22, placeholder: '2026-12-01T00:00:00Z' }),
  };
  const out = h('div', { id: 'deliveries-out', 'aria-live': 'polite' });
  const form = h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Search the delivery log' },
    ...Object.entries(f).flatMap(([k, el]) => [h('label', { for: el.id, style: 'margin:0' }, k), el]),
    h('button', { type: 'submit', class: 'primary' }, 'Search'));
  const pages = [];
  const search = async (cursor) => {
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(f)) if (el.value.trim()) q.set(k, el.value.trim());
    if (cursor) q.set('cursor', cursor);
    let r;
    try { r = await api.get(`/v1/deliveries?${q}`); } catch (e) { if (e.status === 401) throw e; clear(out, errorBox(e)); return; }
    const rows = r.deliveries;
    clear(out,
      rows.length ? table([
        { label: 'When', get: (d) => d.updated_at },
        { label: 'Profile', get: (d) => (d.profile ? h('a', { href: `#/profiles/${api.enc(d.profile)}` }, d.profile) : '') },
        { label: 'From', get: (d) => deliveryOrigin(d) },
        { label: 'Channel', get: (d) => d.channel },
        { label: 'Recipient', get: (d) => d.recipient },
        { label: 'Status', get: (d) => d.status },
        { label: 'Provider id / reason', get: (d) => [d.provider_id, d.reason].filter(Boolean).join(' — ') },
      ], rows, 'Deliveries') : h('p', null, 'No delivery matches.'),
      h('div', { class: 'toolbar' },
        pages.length ? h('button', { type: 'button', onclick: () => { pages.pop(); search(pages[pages.length - 1]); } }, 'Previous page') : null,
        r.next_cursor !== null ? h('button', { type: 'button', id: 'next-page', onclick: () => { pages.push(r.next_cursor); search(r.next_cursor); } }, 'Next page') : null));
  };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); pages.length = 0; search(); });
  clear(main, h('h1', null, 'Deliveries'), form, out);
  await search();
}
