// Channels: on/off (written to baton.cfg and applied by the running serve
// without a restart), queue depth, the rate it sends at (the last
// minute's, beside the configured limit) and recent failures.
import * as api from '../api.js';
import { h, clear, fmtNum, status, errorBox } from '../dom.js';
import { can, onLeave } from '../app.js';

export async function show() {
  const main = document.getElementById('main');
  const body = h('div', { id: 'channels' });
  clear(main, h('h1', null, 'Channels'), h('p', { class: 'help' }, 'Switching a channel writes enabled = true|false into the configuration file and applies it at once (like SIGHUP): a campaign that sends on a disabled channel refuses to start; a journey node on it records “skipped”.'), body);
  const load = async () => {
    let data;
    try { data = await api.get('/v1/channels'); } catch (e) { if (e.status === 401) throw e; clear(body, errorBox(e)); return; }
    const rows = data.channels;
    clear(body, h('table', null, h('caption', { class: 'sr' }, 'Channels'),
      h('thead', null, h('tr', null, ['Channel', 'Plugin', 'State', 'Queue', 'Sending now', 'Rate limit', 'Recent failures', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, rows.map((c) => {
        const on = c.enabled;
        const btn = h('button', { type: 'button', 'data-channel': c.name, 'aria-pressed': String(on), disabled: !can('admin'),
          'aria-label': `${c.name}: ${on ? 'on, switch off' : 'off, switch on'}`, onclick: async () => {
            btn.disabled = true;
            try {
              await api.put(`/v1/channels/${api.enc(c.name)}`, { enabled: !on });
              status(`Channel ${c.name} switched ${on ? 'off' : 'on'}; baton serve applied it.`, 'ok');
            } catch (e) { status(`Channel ${c.name}: ${e.message}`, 'error'); }
            load();
          } }, on ? 'Switch off' : 'Switch on');
                return h('tr', null,
          h('th', { scope: 'row' }, c.name),
          h('td', null, c.plugin),
          h('td', null, h('span', { class: `badge ${on ? 'on' : 'off'}`, 'data-state': c.name }, on ? 'on' : 'off')),
          h('td', { class: 'num' }, c.on ? fmtNum(c.queue) : 'not running'),
          // the actual rate: what the channel confirmed in the last 60 s
          h('td', { class: 'num', 'data-sending': c.name }, c.sent_last_minute === null ? 'not running'
            : `${fmtNum(c.sent_last_minute)} in the last minute (${c.sent_per_s.toFixed(2)}/s)`),
          h('td', { class: 'num' }, c.rate === null ? 'no limit' : `${c.rate}/s`),
          h('td', { 'data-failures': c.name }, c.last_errors.length ? h('ul', null, c.last_errors.map((e) => h('li', { 'data-key': e.key }, h('time', null, e.at), ` ${e.reason} (${e.key})`))) : 'none'),
          h('td', null, btn));
      }))));
  };
  await load();
  const t = setInterval(() => { if (!document.activeElement || !document.activeElement.dataset.channel) load().catch(() => {}); }, 5000);
  onLeave(() => clearInterval(t));
}
