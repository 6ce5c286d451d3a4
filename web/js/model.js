// model.js — what the canvases show, from a parsed campaign or journey
// file (libcfg.parse) and the counts the API reports.
import { num } from './libcfg.js';

const CLS = {
  build_audience: 'audience', read_audience: 'audience', save_audience: 'audience', reconcile: 'audience',
  enrich: 'audience', deduplicate: 'audience', combine: 'combine', and_join: 'combine', or_join: 'combine',
  split: 'split', test: 'split', send: 'send', alert: 'send', change_dimension: 'dim',
  wait: 'flow', end: 'flow', signal: 'flow',
};

export function inputsOf(a) {
  if (Array.isArray(a.inputs)) return a.inputs.map(String);
  if (typeof a.input === 'string') return [a.input];
  return [];
}

// The transitions an activity produces, as its file says.
export function outputsOf(a) {
  if (a.type === 'split' && Array.isArray(a.branches)) return a.branches.map((b) => `${a.id}.${b.name}`);
  if (a.type === 'test') return [`${a.id}.then`, `${a.id}.else`];
  if (a.type === 'end' || a.type === 'alert') return [];
  return [a.id];
}

const list = (v) => (Array.isArray(v) ? v.map((x) => (typeof x === 'object' ? x.name || JSON.stringify(x) : x)).join(', ') : v);

export function campaignSub(a, plan) {
  const c = plan && plan.counts ? plan.counts[a.id] : undefined;
  switch (a.type) {
  case 'send': return `on ${a.channel || '?'}${c !== undefined ? ` · ${c} msg` : ''}`;
  case 'alert': return `alert on ${a.channel || '?'}`;
  case 'build_audience': return a.dimension || '';
  case 'change_dimension': return `→ ${a.to || '?'}`;
  case 'combine': return a.op || '';
  case 'split': return `${a.mode || 'filter'} split`;
  case 'read_audience': case 'save_audience': return a.name ? `“${a.name}”` : '';
  case 'wait': return a.duration || '';
  case 'deduplicate': return `by ${list(a.by) || '?'}`;
  default: return '';
  }
}

export function campaignGraph(doc, plan) {
  const acts = (doc.campaign && doc.campaign.activities) || [];
  const counts = (plan && plan.counts) || {};
  const excluded = (plan && plan.excluded) || {};
  const ids = new Set(acts.map((a) => a.id));
  const nodes = acts.map((a) => {
    const ex = excluded[a.id];
    const exTxt = ex ? Object.entries(ex).map(([k, v]) => `${k.replace(/_/g, ' ')} ${v}`).join(', ') : '';
    return {
      id: a.id, label: a.type, sub: campaignSub(a, plan) + (exTxt && ex && Object.values(ex).some((v) => v) ? ' · excl.' : ''),
      cls: `t-${CLS[a.type] || 'other'}`,
      title: `${a.id}, ${a.type}. ${explainActivity(a)}${exTxt ? ` Excluded: ${exTxt}.` : ''}`,
    };
  });
  const edges = [];
  const dangling = [];
  for (const a of acts) {
    inputsOf(a).forEach((t, k) => {
      const from = t.split('.')[0];
      if (!ids.has(from)) { dangling.push({ activity: a.id, input: t }); return; }
      const minus = a.type === 'combine' && a.op === 'exclusion' && k > 0;
      const c = counts[t];
      edges.push({ from, to: a.id, id: t, cls: minus ? 'minus' : '',
        label: `${t.includes('.') ? `${t.split('.')[1]}: ` : ''}${minus ? '− ' : ''}${c === undefined ? '?' : c}` });
    });
  }
  return { nodes, edges, dangling };
}

function quoteList(v) { return (Array.isArray(v) ? v : [v]).filter((x) => x !== undefined).map((x) => `“${x}”`).join(', '); }

// A plain-language sentence for an activity: no SQL, the expressions as written.
export function explainActivity(a) {
  const ins = inputsOf(a);
  switch (a.type) {
  case 'build_audience': return a.filter ? `Every row of ${a.dimension} for which ${a.filter} is true.` : `Every row of ${a.dimension}.`;
  case 'read_audience': return `The rows saved earlier as the audience “${a.name}”.`;
  case 'save_audience': return `Saves the rows of ${ins[0]} as the audience “${a.name}” (kept for later runs and campaigns) and passes them on.`;
  case 'combine':
    if (a.op === 'union') return `Rows that are in any of ${quoteList(ins)}, each once.`;
    if (a.op === 'intersection') return `Rows that are in every one of ${quoteList(ins)}.`;
    return `Rows of “${ins[0]}” that are not in ${quoteList(ins.slice(1))}: those inputs are subtracted.`;
  case 'deduplicate': return `One row per value of ${quoteList(a.by)}; of rows that share it, the first by ${a.keep || 'key'} stays.`;
  case 'enrich': return `Adds to every row: ${(a.add || []).map((x) => `${x.name} = ${x.value}`).join('; ')}.`;
  case 'split': {
    const b = (a.branches || []).map((x) => {
      if (x.remainder) return `${x.name}: every row no other branch took`;
      if (a.mode === 'random') return `${x.name}: ${num(x.percent)}% at random`;
      if (a.mode === 'limit') return `${x.name}: the first ${x.limit} rows by ${a.order || 'key'}`;
      return `${x.name}: rows where ${x.filter}`;
    });
    const tail = a.mode === 'random' ? ` The same seed (${a.seed || 0}) draws the same rows.` : a.exclusive ? ' A row goes to the first branch it matches only.' : (a.mode || 'filter') === 'filter' ? ' Branches may overlap.' : '';
    return `Splits ${ins[0]} into ${b.join('; ')}.${tail}`;
  }
  case 'change_dimension': return `One row per ${a.to} linked to each row of ${ins[0]}${a.filter ? `, where ${a.filter}` : ''}; later messages go to each ${a.to} row and reach the profile through its link.`;
  case 'reconcile': return `Matches the lines of ${a.file || 'a CSV file'} to ${a.dimension || 'an entity'}; unmatched lines are reported with their numbers.`;
  case 'wait': return `Waits ${a.duration} before passing the rows on.`;
  case 'and_join': return `Goes on once every one of ${quoteList(ins)} is done, with their rows together.`;
  case 'or_join': return `Goes on with the first of ${quoteList(ins)} to finish.`;
  case 'end': return a.start ? `Ends this branch and starts the campaign “${a.start}”.` : 'Ends this branch.';
  case 'send': return `Sends one message per row of ${ins[0]} on the channel “${a.channel}”${a.subject ? `, subject “${a.subject}”` : ''}. Rows with no address, no consent, suppressed or capped are counted apart and not sent.`;
  case 'alert': return `Sends an alert to ${a.to} on ${a.channel}.`;
  case 'test': return `Goes on to “then” when ${a.when}, to “else” otherwise.`;
  case 'signal': return `Waits for an external signal${a.timeout ? ` (at most ${a.timeout})` : ''}.`;
  default: return `A ${a.type} activity.`;
  }
}

// Journey edges: next / branches / otherwise / on_event / on_timeout / on_error.
export function journeyEdges(nd) {
  const e = [];
  const add = (to, label) => { if (typeof to === 'string') e.push({ to, label }); };
  add(nd.next, nd.type === 'action' ? 'ok' : '');
  (nd.branches || []).forEach((b) => add(b.next, b.when ? fitText(b.when, 18) : b.name ? `${b.name}${b.percent !== undefined ? ` ${num(b.percent)}%` : ''}` : ''));
  add(nd.otherwise, 'otherwise');
  add(nd.on_event, `on ${nd.event || 'event'}`);
  add(nd.on_timeout, `after ${nd.timeout || 'timeout'}`);
  add(nd.on_error, 'on error');
  if (nd.type === 'jump') add(undefined);
  return e;
}

function fitText(s, n) { return s.length > n ? `${s.slice(0, n - 1)}…` : s; }

export function explainNode(nd) {
  switch (nd.type) {
  case 'wait': return nd.duration ? `Waits ${nd.duration}.` : `Waits until ${typeof nd.until === 'object' ? JSON.stringify(nd.until) : nd.until}.`;
  case 'wait_event': return `Waits for a “${nd.event}” event${nd.filter ? ` where ${nd.filter}` : ''}${nd.timeout ? `, at most ${nd.timeout}` : ''}.`;
  case 'condition': return `${(nd.branches || []).map((b) => `If ${b.when}: go to ${b.next}`).join('; ')}; otherwise ${nd.otherwise}. The first true branch wins.`;
  case 'split': return `Sends each profile down one branch by percentage (stable per profile): ${(nd.branches || []).map((b) => `${b.name || b.next} ${num(b.percent)}%`).join(', ')}.`;
  case 'send': return `Sends a message on the channel “${nd.channel}”. On a disabled channel the step is recorded as skipped and the profile goes on.`;
  case 'action': return `Calls the custom action “${nd.action}”${nd.on_error ? `; on error goes to ${nd.on_error}` : ''}.`;
  case 'update_profile': return `Updates the profile: ${(nd.set || []).map((s) => `${s.field} = ${s.value}`).join(', ')}.`;
  case 'jump': return `Moves the profile to the journey “${nd.journey}”.`;
  case 'end': return 'The profile completes the journey.';
  default: return `A ${nd.type} node.`;
  }
}

export function journeyGraph(doc, status) {
  const j = doc.journey || {};
  const nodes = (j.nodes || []).map((nd) => {
    const st = status && status.nodes ? status.nodes[nd.id] : null;
    const parts = [];
    if (st) {
      parts.push(`at ${st.at ?? 0} · thru ${st.through ?? 0}`);
      for (const [k, v] of Object.entries(st)) if (typeof v === 'number' && v && !['at', 'through', 'dead_letters'].includes(k)) parts.push(`${k.replace(/_/g, ' ')} ${v}`);
    }
    const sub = parts.join(' · ');
    // the node's dead letters (profiles that failed at it), apart: they need looking at
    const dead = st && st.dead_letters ? st.dead_letters : 0;
    return { id: nd.id, label: nd.type + (nd.channel ? ` · ${nd.channel}` : nd.action ? ` · ${nd.action}` : ''),
      sub, badge: dead ? `⚠ ${dead}` : '', cls: `t-${{ send: 'send', action: 'send', condition: 'split', split: 'split', wait: 'flow', wait_event: 'combine', end: 'flow' }[nd.type] || 'other'}${dead ? ' dead' : ''}`,
      title: `${nd.id}, ${nd.type}. ${explainNode(nd)}${sub ? ` ${sub}.` : ''}${dead ? ` ${dead} dead letter(s).` : ''}` };
  });
  const ids = new Set(nodes.map((n) => n.id));
  const edges = [];
  const dangling = [];
  for (const nd of j.nodes || []) {
    for (const e of journeyEdges(nd)) {
      if (!ids.has(e.to)) dangling.push({ activity: nd.id, input: e.to });
      else edges.push({ from: nd.id, to: e.to, label: e.label });
    }
  }
  return { nodes, edges, dangling };
}

// Which top-level item (activity or node) a check message's line falls in.
export function itemAtLine(items, line) {
  let best = null;
  for (const it of items || []) if (it.$line <= line && line <= (it.$end || it.$line)) best = it;
  return best;
}

// "path/x.cfg:14: filter: 1:9: unknown field 'tierr' ..." -> parts.
export function parseCheckMessage(m) {
  const text = typeof m === 'string' ? m : m.message;
  const r = /^(?:(.*?):(\d+): )?(?:([a-z_][a-z0-9_.]*): )?(?:(\d+):(\d+): )?(.*)$/i.exec(text) || [];
  return { file: r[1], line: m.line || (r[2] ? Number(r[2]) : 0), key: r[3], exprLine: r[4] ? Number(r[4]) : 0,
    col: r[5] ? Number(r[5]) : 0, text, warning: !!m.warning };
}

// Where a delivery came from, read from its idempotency key:
// "<campaign>/<run>/<activity>/<row>" or "j:<journey>:<instance>:<node>:<step>".
export function deliveryOrigin(d) {
  const k = d.key;
  if (k.startsWith('j:')) { const p = k.split(':'); return `journey ${p[1]}/${p[3] || ''}`; }
  const p = k.split('/');
  if (p.length >= 3) return `campaign ${p[0]}/${p[2]} (run ${p[1]})`;
  return d.source || 'delivery';
}
