// The campaigns list: schedule, last run, state.
import * as api from '../api.js';
import { h, clear, table } from '../dom.js';

// {at, repeat_s, timezone}, or null for a campaign run by hand
function sched(s) {
  if (!s) return 'manual';
  return [`from ${s.at}`, s.repeat_s && `every ${duration(s.repeat_s)}`, s.timezone && `(${s.timezone})`].filter(Boolean).join(' ');
}

function duration(sec) {
  for (const [n, u] of [[604800, 'w'], [86400, 'd'], [3600, 'h'], [60, 'm']]) if (sec % n === 0) return `${sec / n}${u}`;
  return `${sec}s`;
}

function lastRun(c) {
  const r = c.last_run;
  if (!r) return 'never';
  return `${r.status} ${r.started_at}`;
}

export async function list() {
  const data = await api.get('/v1/campaigns');
  const rows = data.campaigns;
  const main = document.getElementById('main');
  clear(main,
    h('h1', null, 'Campaigns'),
    rows.length ? table([
      { label: 'Campaign', get: (c) => h('a', { href: `#/campaigns/${api.enc(c.name)}` }, c.name) },
      { label: 'Schedule', get: (c) => sched(c.schedule) },
      { label: 'Last run', get: lastRun },
      { label: 'State', get: (c) => (c.state === 'invalid' ? `invalid: ${c.error}` : c.state) },
      { label: 'File', get: (c) => h('code', null, c.file) },
    ], rows, 'Campaigns') : h('p', null, 'No campaign is configured.'));
}
