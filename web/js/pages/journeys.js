// Journeys: the list, and a canvas per journey with each node's counts
// (profiles at it and through it, sends, failures, skipped...) and
// `journey test` on pasted or uploaded events, each profile's path drawn;
// pause, resume and close (POST /v1/journeys/NAME/pause...), each asked
// for first, the state and the events held shown.
import * as api from '../api.js';
import { h, clear, table, fmtNum, kv, errorBox, status } from '../dom.js';
import { parse } from '../libcfg.js';
import { journeyGraph, explainNode } from '../model.js';
import { draw } from '../graph.js';
import { can, onLeave } from '../app.js';

// A journey's dead letters: the profiles that failed at one of its nodes
// (the status's nodes[].dead_letters); the status's own dead_letters are
// the inbox's, every journey's (events refused, profiles not found).
const nodeDead = (st) => Object.values(st.nodes || {}).reduce((a, n) => a + (n.dead_letters || 0), 0);

export async function list() {
  const data = await api.get('/v1/journeys');
  const rows = data.journeys;
  clear(document.getElementById('main'), h('h1', null, 'Journeys'),
    rows.length ? table([
      { label: 'Journey', get: (j) => h('a', { href: `#/journeys/${api.enc(j.journey)}` }, j.journey) },
      { label: 'Control', get: (j) => j.control },
      { label: 'Profiles', num: true, get: (j) => fmtNum(j.profiles) },
      { label: 'Active', num: true, get: (j) => fmtNum(j.states.active) },
      { label: 'Completed', num: true, get: (j) => fmtNum(j.states.completed) },
      { label: 'Dead letters', num: true, get: (j) => fmtNum(nodeDead(j)) },
      { label: 'Inbox dead letters (every journey)', num: true, get: (j) => fmtNum(j.dead_letters) },
    ], rows, 'Journeys') : h('p', null, 'No journey is configured.'));
}

// The journey's state (running, paused, closed: GET /v1/journeys/NAME's
// control, and held: the events a pause holds) and the buttons that change
// it. Each asks first; the answer's control is shown at once (serve
// applies it within a second).
const VERBS = {
  pause: { label: 'Pause', when: (c) => c !== 'paused', ask: (n) => `Pause journey ${n}? The events it would hear are held and none of its waits fire until it is resumed.` },
  resume: { label: 'Resume', when: (c) => c !== 'running', ask: (n, c) => (c === 'closed' ? `Open journey ${n} to new entries again?` : `Resume journey ${n}? The events held while it was paused are routed to it in order, and overdue waits fire.`) },
  close: { label: 'Close to entries', when: (c) => c === 'running', ask: (n) => `Close journey ${n} to new entries? The profiles inside go on to their end.` },
};

function controls(name, st) {
  const allowed = can('campaigns:run');
  const badge = h('span', { class: 'badge', id: 'control', role: 'status' });
  const held = h('span', { class: 'badge', id: 'held' });
  const buttons = {};
  const render = () => {
    badge.textContent = st.control;
    badge.className = `badge ${st.control === 'running' ? 'on' : 'off'}`;
    held.textContent = `${fmtNum(st.held)} event(s) held`;
    held.hidden = !st.held;
    for (const [verb, b] of Object.entries(buttons)) b.disabled = !allowed || !VERBS[verb].when(st.control);
  };
  for (const [verb, v] of Object.entries(VERBS)) {
    buttons[verb] = h('button', { type: 'button', id: verb, title: allowed ? null : 'needs the scope campaigns:run', onclick: async () => {
      if (!confirm(v.ask(name, st.control))) return;
      try {
        const r = await api.post(`/v1/journeys/${api.enc(name)}/${verb}`);
        st.control = r.control;
        status(`Journey ${name}: ${r.control} (was ${r.was}); baton serve applies it within a second.`, 'ok');
      } catch (e) {
        if (e.status === 401) throw e;
        status(`Journey ${name}: ${v.label.toLowerCase()} refused: ${e.message}`, 'error');
      }
      render();
      // the button pressed is now disabled: the keyboard goes on from the one that undoes it
      const next = Object.values(buttons).find((b) => !b.disabled);
      if (next) next.focus();
    } }, v.label);
  }
  render();
  return { box: h('span', { class: 'group', role: 'group', 'aria-label': 'Pause, resume or close the journey' }, badge, held, Object.values(buttons)), render };
}

// A node's dead letters (GET /v1/journeys/NAME/dead_letters?node=ID):
// the profiles that failed at it, newest first, with the reason and the
// event that brought them in.
async function deadLetters(name, id, box) {
  clear(box, h('p', { class: 'help' }, 'Loading the dead letters…'));
  let r;
  try { r = await api.get(`/v1/journeys/${api.enc(name)}/dead_letters?node=${api.enc(id)}&limit=20`); } catch (e) {
    if (e.status === 401) throw e;
    clear(box, errorBox(e)); return;
  }
  clear(box, h('h3', { id: 'node-dead-title' }, `Dead letters: ${fmtNum(r.count)}`),
    h('p', { class: 'help' }, `Profiles that failed at ${id}${r.count > r.latest.length ? ` (the latest ${r.latest.length})` : ''}.`),
    h('ul', { class: 'dead-list', 'aria-labelledby': 'node-dead-title' }, r.latest.map((d) => h('li', { 'data-dead-profile': d.profile },
      h('a', { href: `#/profiles/${api.enc(d.profile)}` }, d.profile), ' ', h('time', null, d.at),
      h('div', { class: 'error' }, d.reason), h('code', null, JSON.stringify(d.event))))));
}

export async function show(name) {
  const main = document.getElementById('main');
  const [file, st] = await Promise.all([api.get(`/v1/journeys/${api.enc(name)}/file`), api.get(`/v1/journeys/${api.enc(name)}`)]);
  let doc = {};
  try { doc = parse(file.text); } catch (e) { main.appendChild(errorBox(e)); }
  const nodes = (doc.journey && doc.journey.nodes) || [];
  const canvas = h('div', { class: 'canvas', id: 'canvas' });
  const side = h('aside', { class: 'side panel', id: 'node-panel', 'aria-label': 'Selected node' }, h('p', { class: 'help' }, 'Select a node for its settings and counts.'));
  const testOut = h('div', { id: 'test-result', 'aria-live': 'polite' });
  const events = h('textarea', { id: 'events', rows: 6, placeholder: '{"id": "e-1", "type": "cart_updated", "profile": "p42", "time": "2026-11-23T10:00:00Z", "data": {"total": 59.9}}' });
  const upload = h('input', { type: 'file', id: 'events-file', accept: '.jsonl,.json,.ndjson,text/plain' });
  upload.addEventListener('change', async () => { if (upload.files[0]) events.value = await upload.files[0].text(); });
  const until = h('input', { id: 'until', placeholder: '2026-11-24T00:00:00Z', size: 24 });
  let g = journeyGraph(doc, st);
  let view;
  const pick = (id) => {
    view.select(id);
    const nd = nodes.find((x) => x.id === id);
    const s = st.nodes && st.nodes[id];
    const settings = {};
    for (const [k, v] of Object.entries(nd || {})) if (k !== 'id' && k !== 'type') settings[k] = v;
    const dead = h('div', { id: 'node-dead', 'aria-live': 'polite' });
    clear(side, h('h2', null, `${id} `, h('span', { class: 'badge' }, nd ? nd.type : '')), h('p', null, nd ? explainNode(nd) : ''),
      s ? h('div', null, h('h3', null, 'Counts'), kv(Object.fromEntries(Object.entries(s).filter(([k]) => k !== 'type').map(([k, v]) => [k.replace(/_/g, ' '), typeof v === 'number' ? fmtNum(v) : v])))) : null,
      dead, h('h3', null, 'Settings'), kv(settings));
    if (s && s.dead_letters) deadLetters(name, id, dead);
  };
  const redraw = () => { view = draw(canvas, `Journey ${name}`, g.nodes, g.edges, pick); };
  const dl = st.latest_dead_letters;
  const control = controls(name, st);
  clear(main,
    h('h1', null, `Journey ${name}`),
    h('div', { class: 'toolbar' }, h('code', null, file.file),
      h('span', null, `profiles ${fmtNum(st.profiles)}`), control.box, ...Object.entries(st.states).map(([k, v]) => h('span', { class: 'badge' }, `${k} ${v}`)),
      h('span', { class: 'badge', id: 'dead-total' }, `dead letters ${fmtNum(nodeDead(st))}`),
      h('span', { class: 'badge' }, `inbox dead letters ${fmtNum(st.dead_letters)}`),
      can('admin') ? h('a', { class: 'button', href: `#/journeys/${api.enc(name)}/edit` }, 'Edit') : null,
      h('button', { type: 'button', onclick: () => show(name) }, 'Refresh')),
    h('div', { class: 'row' }, h('div', { class: 'grow' }, canvas), side),
    h('section', { 'aria-labelledby': 'counts-title' }, h('h2', { id: 'counts-title' }, 'Nodes'),
      table([{ label: 'Node', get: (n) => n.id }, { label: 'Type', get: (n) => n.type },
        ...['at', 'through', 'sent', 'failed', 'skipped', 'reacted', 'timed_out', 'dead_letters'].filter((k) => Object.values(st.nodes).some((x) => x[k] !== undefined))
          .map((k) => ({ label: k.replace(/_/g, ' '), num: true, get: (n) => h('span', { 'data-node-count': `${n.id}.${k}` }, fmtNum((st.nodes[n.id] || {})[k])) }))], nodes, 'Counts per node')),
    dl.length ? h('section', null, h('h2', null, 'Latest dead letters of the inbox (every journey\'s)'), table([{ label: 'When', get: (d) => d.at }, { label: 'Source', get: (d) => d.source }, { label: 'Reason', get: (d) => d.reason }, { label: 'Event', get: (d) => h('code', null, d.body) }], dl, 'Latest dead letters of the inbox')) : null,
    h('section', { class: 'panel', 'aria-labelledby': 'test-title' },
      h('h2', { id: 'test-title' }, 'Journey test'),
      h('p', { class: 'help' }, 'Runs the journey over these events (one JSON object per line) on a simulated clock. Nothing is sent.'),
      h('label', { for: 'events' }, 'Events'), events,
      h('label', { for: 'events-file' }, 'or a file'), upload,
      h('label', { for: 'until' }, 'Until ', h('span', { class: 'help' }, '(optional timestamp)')), until,
      h('div', { class: 'toolbar' }, h('button', { type: 'button', id: 'run-test', class: 'primary', onclick: async () => {
        clear(testOut, h('p', null, 'Running…'));
        try {
          const body = { events: events.value };
          if (until.value.trim()) body.until = until.value.trim();
          const r = await api.post(`/v1/journeys/${api.enc(name)}/test`, body);
          const profs = Object.entries(r.profiles);
          clear(testOut, h('p', null, `${profs.length} profile(s) entered; dead letters: ${r.dead_letters}. Select a profile to draw its path.`),
            table([
              { label: 'Profile', get: ([p]) => h('button', { type: 'button', 'data-profile': p, onclick: () => {
                const path = r.profiles[p].path;
                view.mark(path, 'path');
                view.markEdges(path.slice(1).map((x, k) => `${path[k]}->${x}`), 'path');
              } }, p) },
              { label: 'State', get: ([, v]) => v.state },
              { label: 'Path', get: ([, v]) => v.path.join(' → ') },
              { label: 'Sent', get: ([, v]) => v.sent.map((s) => `${s.node} (${'channel' in s ? s.channel : s.action})`).join(', ') },
            ], profs, 'Each profile\'s path'));
        } catch (e) { clear(testOut, errorBox(e)); }
      } }, 'Run the test')),
      testOut));
  redraw();
  // live counts: refresh every 3 s while the page is open
  const t = setInterval(async () => {
    try {
      const s2 = await api.get(`/v1/journeys/${api.enc(name)}`);
      if (s2.control !== st.control || s2.held !== st.held) { st.control = s2.control; st.held = s2.held; control.render(); }
      if (JSON.stringify(s2.nodes) !== JSON.stringify(st.nodes)) { Object.assign(st, s2); g = journeyGraph(doc, st); redraw(); }
    } catch { /* the next tick tries again */ }
  }, 3000);
  onLeave(() => clearInterval(t));
}
