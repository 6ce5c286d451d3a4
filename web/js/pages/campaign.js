// One campaign: its canvas with the exact counts of `plan` on every edge,
// the node panel (settings, explanation, last runs), and run / dry-run / proof
// with parameters and proof addresses, and live progress.
import * as api from '../api.js';
import { h, clear, table, fmtNum, kv, errorBox, status } from '../dom.js';
import { parse } from '../libcfg.js';
import { campaignGraph, explainActivity, inputsOf, parseCheckMessage } from '../model.js';
import { draw } from '../graph.js';
import { can, onLeave } from '../app.js';

export async function loadCampaign(name) {
  const file = await api.get(`/v1/campaigns/${api.enc(name)}/file`);
  let doc = null, parseError = null;
  try { doc = parse(file.text); } catch (e) { parseError = e; }
  return { file, doc, parseError };
}

export function checkList(msgs) {
  return h('ul', { class: 'msgs', role: 'list' }, (msgs || []).map((m) => {
    const p = parseCheckMessage(m);
    return h('li', { class: p.warning ? 'warn' : 'msg-error' }, p.text);
  }));
}

export async function show(name) {
  const main = document.getElementById('main');
  const { file, doc, parseError } = await loadCampaign(name);
  let plan = null, planError = null, runs = [];
  try { plan = await api.get(`/v1/campaigns/${api.enc(name)}/plan`); } catch (e) { if (e.status === 401) throw e; planError = e; }
  try { const r = await api.get(`/v1/campaigns/${api.enc(name)}/runs`); runs = r.runs; } catch (e) { if (e.status === 401) throw e; }
  const acts = (doc && doc.campaign && doc.campaign.activities) || [];
  const side = h('aside', { class: 'side panel', 'aria-label': 'Selected activity', id: 'node-panel' },
    h('p', { class: 'help' }, 'Select an activity (click, or Tab to it and press Enter) to see its settings, what it does and its last runs. Arrow keys move along the edges.'));
  const canvas = h('div', { class: 'canvas', id: 'canvas' });
  const runPanel = h('section', { class: 'panel', 'aria-labelledby': 'run-title' });
  const problems = h('div', { id: 'problems' });
  clear(main,
    h('h1', null, `Campaign ${name}`),
    h('div', { class: 'toolbar' },
      h('code', null, file.file || ''),
      can('admin') ? h('a', { class: 'button', href: `#/campaigns/${api.enc(name)}/edit` }, 'Edit') : null,
      h('button', { type: 'button', onclick: () => show(name) }, 'Refresh counts')),
    problems,
    h('div', { class: 'row' }, h('div', { class: 'grow' }, canvas), side),
    runPanel,
    h('section', { 'aria-labelledby': 'tr-title' }, h('h2', { id: 'tr-title' }, 'Transitions'), transitionsTable(acts, plan)));
  if (parseError) problems.appendChild(errorBox(`${file.file}:${parseError.message}`));
  if (planError) {
    problems.appendChild(h('div', { class: 'panel', role: 'alert' }, h('p', { class: 'error' }, `The plan failed: ${planError.message}`),
      // campaign_invalid: details is [{file, line, message}]
      planError.code === 'campaign_invalid' ? h('ul', { class: 'msgs' }, planError.details.map((m) => h('li', { class: 'msg-error' }, `${m.file}:${m.line}: ${m.message}`))) : null));
  }
  const g = campaignGraph(doc || {}, plan);
  for (const d of g.dangling) problems.appendChild(h('p', { class: 'error' }, `${d.activity}: input '${d.input}' is not produced by any activity`));
  const view = draw(canvas, `Campaign ${name}: ${acts.length} activities`, g.nodes, g.edges, (id) => {
    view.select(id);
    const a = acts.find((x) => x.id === id);
    clear(side, nodePanel(name, a, plan, runs));
  });
  view.mark(g.dangling.map((d) => d.activity), 'bad');
  runControls(name, doc, runPanel, view, runs);
}

function transitionsTable(acts, plan) {
  const rows = [];
  for (const a of acts) for (const t of inputsOf(a)) rows.push({ t, to: a, minus: a.type === 'combine' && a.op === 'exclusion' && inputsOf(a).indexOf(t) > 0 });
  return table([
    { label: 'Transition', get: (r) => r.t },
    { label: 'Into', get: (r) => `${r.to.id} (${r.to.type})${r.minus ? ' — subtracted' : ''}` },
    { label: 'Rows', num: true, get: (r) => h('span', { 'data-count': r.t }, fmtNum(plan && plan.counts ? plan.counts[r.t] : undefined)) },
  ], rows, 'Every transition with its exact row count');
}

// An activity's counts in a run: its transitions', or for a send under way
// (or interrupted) what the delivery log has of it so far.
function actCounts(a) {
  if (a.state) return `${a.state}: ${a.rows} rows: sent ${a.sent}, failed ${a.failed}, uncertain ${a.uncertain}, not yet sent ${a.not_yet_sent}`;
  return Object.entries(a.counts || {}).map(([k, v]) => `${k}: ${v}`).join(', ');
}

function nodePanel(name, a, plan, runs) {
  if (!a) return h('p', null, 'No such activity.');
  const settings = {};
  for (const [k, v] of Object.entries(a)) if (k !== 'id' && k !== 'type') settings[k] = v;
  const counts = plan && plan.counts ? Object.entries(plan.counts).filter(([t]) => t === a.id || t.startsWith(`${a.id}.`)) : [];
  const ex = plan && plan.excluded ? plan.excluded[a.id] : null;
  const last = (runs || []).slice(0, 5).map((r) => ({ r, act: (r.activities || []).find((x) => x.id === a.id) })).filter((x) => x.act);
  return h('div', null,
    h('h2', { id: 'node-title' }, `${a.id}`, h('span', { class: 'badge' }, a.type)),
    h('p', { id: 'node-explain' }, explainActivity(a)),
    counts.length ? h('div', null, h('h3', null, 'Counts (plan)'), kv(Object.fromEntries(counts.map(([k, v]) => [k, fmtNum(v)])))) : null,
    ex ? h('div', null, h('h3', null, 'Excluded'), kv(Object.fromEntries(Object.entries(ex).map(([k, v]) => [k.replace(/_/g, ' '), fmtNum(v)])))) : null,
    h('h3', null, 'Settings'), kv(settings),
    h('h3', null, 'Last runs'),
    last.length ? table([
      { label: 'Run', get: (x) => `#${x.r.id}${x.r.dry_run ? ' (dry)' : ''}` },
      { label: 'Started', get: (x) => x.r.started_at },
      { label: 'Counts', get: (x) => actCounts(x.act) },
      { label: 'ms', num: true, get: (x) => fmtNum(x.act.ms) },
    ], last, 'Last runs of this activity') : h('p', { class: 'help' }, 'Not run yet.'),
    a.type === 'send' ? h('p', { class: 'help' }, 'To see its messages before sending, run with proof addresses (below): only those addresses receive them.') : null);
}

function runControls(name, doc, panel, view, runs) {
  const params = (doc && doc.campaign && doc.campaign.parameters) || [];
  const inputs = params.map((p) => {
    const id = `param-${p.name}`;
    return { p, el: h('input', { id, name: p.name, value: p.default !== undefined ? String(p.default) : '', 'aria-describedby': `${id}-t` }),
      label: h('label', { for: id }, p.name, ' ', h('span', { class: 'help', id: `${id}-t` }, `(${p.type || 'string'})`)) };
  });
  const proof = h('input', { id: 'proof', placeholder: 'me@example.com, other@example.com' });
  const out = h('div', { id: 'run-progress', 'aria-live': 'polite' });
  // POST .../preview: a dry run that answers each send's first three
  // messages as they would be delivered; nothing is sent
  const typed = (i) => (/^(int|float)$/.test(i.p.type) ? Number(i.el.value) : i.p.type === 'bool' ? i.el.value === 'true' : i.el.value);
  const preview = async () => {
    const parameters = {};
    for (const i of inputs) if (i.el.value !== '') parameters[i.p.name] = typed(i);
    clear(out, h('p', null, 'Rendering…'));
    try {
      const r = await api.post(`/v1/campaigns/${api.enc(name)}/preview`, { parameters });
      clear(out, h('h3', null, `Preview: ${r.messages.length} message(s), nothing sent`),
        h('ol', { id: 'preview-out' }, r.messages.map((m) => h('li', { 'data-activity': m.activity },
          h('strong', null, `${m.activity} on ${m.channel} → ${m.profile}${m.recipient === null ? '' : ` (${m.recipient})`}`), kv(m.parts)))));
    } catch (e) { clear(out, errorBox(e), e.details ? h('ul', { class: 'msgs' }, e.details.messages.map((m) => h('li', { class: 'msg-error' }, m.message))) : null); }
  };
  let timer = null;
  onLeave(() => clearTimeout(timer));
  // a run held at a `signal` activity: the holds, and the button that sends
  // the signal (POST .../runs/ID/signal), kept apart from the progress
  // table so polling does not take the focus away from it
  const sigBox = h('div', { id: 'signal-box', 'aria-live': 'polite' });
  let sigShown = '';
  const types = Object.fromEntries(((doc && doc.campaign && doc.campaign.activities) || []).map((a) => [a.id, a.type]));
  const showHolds = (r) => {
    const holds = r.holds || [];
    const waiting = r.status === 'waiting' ? holds.filter((x) => x.state === 'waiting' && types[x.activity] === 'signal') : [];
    const key = JSON.stringify([r.id, r.status, holds]);
    if (key === sigShown) return;
    sigShown = key;
    clear(sigBox, holds.length ? table([
      { label: 'Held at', get: (x) => x.activity }, { label: 'Until', get: (x) => x.until },
      { label: 'State', get: (x) => h('span', { 'data-hold': x.activity }, x.state) }], holds, 'What holds the run\'s rows') : null,
    waiting.length ? h('div', { class: 'toolbar' }, h('button', { type: 'button', id: 'signal', class: 'primary', disabled: !can('campaigns:run'), onclick: async (ev) => {
      // the parameters typed above that differ from their defaults go with the signal
      const parameters = {};
      for (const i of inputs) if (i.el.value !== '' && i.el.value !== String(i.p.default ?? '')) parameters[i.p.name] = typed(i);
      const said = Object.entries(parameters).map(([k, v]) => `${k} = ${v}`).join(', ');
      if (!confirm(`Signal run #${r.id} of ${name}? ${waiting.map((x) => x.activity).join(', ')} let${waiting.length > 1 ? '' : 's'} its rows go on now${said ? `, with ${said}` : ''}.`)) return;
      ev.target.disabled = true;
      try {
        const a = await api.post(`/v1/campaigns/${api.enc(name)}/runs/${r.id}/signal`, { parameters });
        status(`Run #${r.id}: signaled ${a.signaled.join(', ')}; ${a.status}.`, 'ok');
        clearTimeout(timer);
        poll(r.id);
      } catch (e) {
        if (e.status === 401) throw e;
        ev.target.disabled = false;
        status(`Run #${r.id}: the signal was refused: ${e.message}`, 'error');
      }
    } }, `Send the signal (${waiting.map((x) => x.activity).join(', ')})`),
    h('span', { class: 'help' }, 'Parameters changed above go with it.')) : null);
  };
  const start = async (dry) => {
    const parameters = {};
    for (const i of inputs) if (i.el.value !== '') parameters[i.p.name] = typed(i);
    const body = { parameters, dry_run: dry };
    const pr = proof.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (pr.length) body.proof = pr;
    clear(out, h('p', null, 'Starting…'));
    try {
      const r = await api.post(`/v1/campaigns/${api.enc(name)}/runs`, body);
      poll(r.run);
    } catch (e) { clear(out, errorBox(e), e.details ? h('pre', null, JSON.stringify(e.details, null, 2)) : null); }
  };
  const poll = async (id) => {
    try {
      const r = await api.get(`/v1/campaigns/${api.enc(name)}/runs/${id}`);
      const acts = r.activities;
      const done = acts.filter((a) => !a.state); // a send under way (or interrupted) has a state
      const total = (doc && doc.campaign && doc.campaign.activities || []).length || 1;
      view.mark(done.map((a) => a.id), 'done');
      clear(out,
        h('p', { id: 'run-status' }, `Run #${r.id}${r.dry_run ? ' (dry run)' : ''}: `, h('strong', { 'data-status': r.status }, r.status),
          ' ', h('progress', { max: total, value: Math.min(total, done.length), 'aria-label': 'activities done' })),
        r.error ? h('p', { class: 'error' }, r.error) : null,
        table([
          { label: 'Activity', get: (a) => a.id },
          { label: 'Counts', get: (a) => actCounts(a) },
          { label: 'ms', num: true, get: (a) => fmtNum(a.ms) },
        ], acts, 'Progress of the run'));
      showHolds(r);
      // running, waiting (for a signal or a time: polled less often), done, failed
      if (r.status === 'running' || r.status === 'waiting') timer = setTimeout(() => poll(id), r.status === 'running' ? 400 : 2000);
      else status(`Run #${id} ${r.status}.`);
    } catch (e) { clear(out, errorBox(e)); }
  };
  const allowed = can('campaigns:run');
  clear(panel,
    h('h2', { id: 'run-title' }, 'Run'),
    allowed ? null : h('p', { class: 'help' }, 'Your token may not run campaigns (scope campaigns:run).'),
    ...inputs.flatMap((i) => [i.label, i.el]),
    h('label', { for: 'proof' }, 'Proof addresses ', h('span', { class: 'help' }, '(optional, comma separated: only these receive the messages)')), proof,
    h('div', { class: 'toolbar' },
      h('button', { type: 'button', id: 'preview', disabled: !allowed, onclick: preview }, 'Preview messages'),
      h('button', { type: 'button', id: 'dry-run', disabled: !allowed, onclick: () => start(true) }, 'Dry run'),
      h('button', { type: 'button', id: 'run', class: 'primary', disabled: !allowed, onclick: () => { if (confirm(`Run ${name} now and send its messages?`)) start(false); } }, 'Run now')),
    out, sigBox);
  // the latest run waits (at a signal, or a wait): follow it
  if (runs && runs[0] && runs[0].status === 'waiting') poll(runs[0].id);
}
