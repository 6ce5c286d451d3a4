// The campaigns list: schedule, last run, state.
import * as api from '../api.js';
import { h, clear, table } from '../dom.js';

function sched(s) {
  if (!s) return 'manual';
  if (typeof s === 'string') return s;
  return [s.at && `from ${s.at}`, s.repeat && `every ${s.repeat}`, s.timezone && `(${s.timezone})`].filter(Boolean).join(' ') || 'manual';
}

function lastRun(c) {
  const r = c.last_run;
  if (!r) return 'never';
  return `${r.status || ''} ${r.started_at || ''}${r.dry_run ? ' (dry run)' : ''}`.trim();
}

export async function list() {
  const data = await api.get('/v1/campaigns');
  const rows = Array.isArray(data) ? data : data.campaigns || [];
  const main = document.getElementById('main');
  clear(main,
    h('h1', null, 'Campaigns'),
    rows.length ? table([
      { label: 'Campaign', get: (c) => h('a', { href: `#/campaigns/${api.enc(c.name)}` }, c.name) },
      { label: 'Schedule', get: (c) => sched(c.schedule) },
      { label: 'Last run', get: lastRun },
      { label: 'State', get: (c) => c.state || (c.errors ? 'invalid' : 'ready') },
      { label: 'File', get: (c) => h('code', null, c.file || '') },
    ], rows, 'Campaigns') : h('p', null, 'No campaign is configured.'));
}
