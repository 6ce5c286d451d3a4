// The editor of a campaign or journey file: add, remove and connect
// activities or nodes on the canvas, edit their settings in forms made
// from the key maps baton declares (GET /v1/describe, as `plugins
// --describe` prints them), or edit the text. Every change is checked as
// you type (POST .../check: the messages of `baton check`); Save writes the
// file only when the check passes, keeps the previous version in
// data_dir, and the running serve applies it at once. A save that races a
// hand edit is refused with the difference and nothing is lost.
import * as api from '../api.js';
import { h, clear, status, errorBox } from '../dom.js';
import { parse, serialize, hasComments, clone, value as cfgValue, num } from '../libcfg.js';
import { campaignGraph, journeyGraph, inputsOf, outputsOf, itemAtLine, parseCheckMessage } from '../model.js';
import { draw } from '../graph.js';
import { can, onLeave } from '../app.js';

const JOURNEY_TYPES = ['condition', 'split', 'wait', 'wait_event', 'send', 'action', 'update_profile', 'jump', 'end'];

export function lineDiff(a, b) {
  // a small LCS diff, line by line: enough for a file of a few hundred lines
  const x = a.split('\n'), y = b.split('\n');
  const m = x.length, n = y.length;
  const L = Array.from({ length: m + 1 }, () => new Uint16Array(n + 1));
  for (let i = m - 1; i >= 0; i--) for (let j = n - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < m || j < n) {
    if (i < m && j < n && x[i] === y[j]) { out.push([' ', x[i]]); i++; j++; }
    else if (j < n && (i >= m || L[i][j + 1] >= L[i + 1][j])) { out.push(['+', y[j]]); j++; }
    else { out.push(['-', x[i]]); i++; }
  }
  return out;
}

function diffView(a, b, labelA, labelB) {
  const d = lineDiff(a, b);
  return h('div', { class: 'diff', role: 'region', 'aria-label': `Differences: lines starting with - are ${labelA}, + are ${labelB}` },
    h('div', null, `--- ${labelA}`), h('div', null, `+++ ${labelB}`),
    d.filter((l, k) => l[0] !== ' ' || d.slice(Math.max(0, k - 2), k + 3).some((z) => z[0] !== ' '))
      .map(([t, s]) => h('div', { class: t === '+' ? 'add' : t === '-' ? 'del' : '' }, `${t} ${s}`)));
}

export async function edit(kind, name) {
  const main = document.getElementById('main');
  if (!can('admin')) { clear(main, h('h1', null, `Edit ${name}`), h('p', { class: 'error' }, 'Editing files needs a token with the admin scope.')); return; }
  const base = `/v1/${kind}/${api.enc(name)}`;
  const [file, describe] = await Promise.all([api.get(`${base}/file`), api.get('/v1/describe').catch(() => ({}))]);
  const top = kind === 'campaigns' ? 'campaign' : 'journey';
  const itemsKey = kind === 'campaigns' ? 'activities' : 'nodes';
  const st = { version: file.version, orig: file.text, text: file.text, doc: null, mode: 'form', sel: null, formDirty: false, checked: null, checkSeq: 0, msgs: [] };
  try { st.doc = parse(file.text); } catch (e) { st.mode = 'text'; }
  const items = () => (st.doc && st.doc[top] && st.doc[top][itemsKey]) || [];
  const typeKeys = (t) => {
    const m = kind === 'campaigns' ? describe.activities : describe.nodes;
    return (m && m[t] && m[t].keys) || [];
  };
  const types = kind === 'campaigns' ? Object.keys(describe.activities || {}).sort() : Object.keys(describe.nodes || {}).length ? Object.keys(describe.nodes) : JOURNEY_TYPES;

  const canvas = h('div', { class: 'canvas', id: 'edit-canvas' });
  const form = h('section', { class: 'side panel', id: 'edit-form', 'aria-label': 'Settings of the selected item' });
  const msgs = h('div', { id: 'check-messages', role: 'status', 'aria-live': 'polite' });
  const warn = h('div', { id: 'comment-warning' });
  const saveBtn = h('button', { type: 'button', class: 'primary', id: 'save', disabled: true }, 'Save');
  const textArea = h('textarea', { id: 'file-text', rows: 28, spellcheck: 'false', 'aria-label': `Text of ${file.file}`, 'aria-describedby': 'check-messages' });
  textArea.value = st.text;
  const textPane = h('div', { id: 'text-pane', hidden: true }, textArea);
  const formPane = h('div', { id: 'form-pane', class: 'row' }, h('div', { class: 'grow' }, canvas), form);
  const conflict = h('div', { id: 'conflict' });
  const versions = h('section', { 'aria-labelledby': 'ver-title' });
  const tabForm = h('button', { type: 'button', role: 'tab', 'aria-selected': 'true', id: 'tab-form', 'aria-controls': 'form-pane' }, 'Canvas and forms');
  const tabText = h('button', { type: 'button', role: 'tab', 'aria-selected': 'false', id: 'tab-text', 'aria-controls': 'text-pane' }, 'Text');
  const typeSel = h('select', { id: 'add-type', 'aria-label': `Type of the new ${kind === 'campaigns' ? 'activity' : 'node'}` }, types.map((t) => h('option', { value: t }, t)));
  const addId = h('input', { id: 'add-id', placeholder: 'id', size: 12, 'aria-label': 'Id of the new item' });
  const setMode = (m) => {
    if (m === 'form') {
      try { st.doc = parse(textArea.value); } catch (e) { status(`The text does not parse (${e.message}): fix it in the Text tab first.`, 'error'); return; }
      if (textArea.value !== st.text) st.formDirty = false;
      st.text = textArea.value;
    } else textArea.value = st.text;
    st.mode = m;
    tabForm.setAttribute('aria-selected', String(m === 'form'));
    tabText.setAttribute('aria-selected', String(m === 'text'));
    formPane.hidden = m !== 'form';
    textPane.hidden = m !== 'text';
    render();
  };
  tabForm.addEventListener('click', () => setMode('form'));
  tabText.addEventListener('click', () => setMode('text'));

  clear(main,
    h('h1', null, `Edit ${top} ${name}`),
    h('p', { class: 'help' }, h('code', null, file.file), ' — changes are checked as you type; Save writes the file only when the check passes and keeps the previous version.'),
    h('div', { class: 'toolbar' },
      h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Editing mode' }, tabForm, tabText),
      h('span', { 'aria-hidden': 'true' }, '|'),
      typeSel, addId,
      h('button', { type: 'button', id: 'add', onclick: () => addItem() }, kind === 'campaigns' ? 'Add activity' : 'Add node'),
      h('button', { type: 'button', id: 'remove', class: 'danger', onclick: () => removeItem() }, 'Remove selected'),
      saveBtn,
      h('a', { href: `#/${kind}/${api.enc(name)}` }, 'Back')),
    msgs, warn, conflict, formPane, textPane, versions);

  let timer = null;
  onLeave(() => clearTimeout(timer));
  const changed = () => {
    if (st.mode === 'form') {
      st.text = serialize(st.doc); st.formDirty = true; textArea.value = st.text;
      // the check's messages name lines of this new text: move each item's
      // line range to where the rewrite put it
      try {
        const fresh = parse(st.text)[top][itemsKey] || [];
        items().forEach((it, k) => { if (fresh[k]) for (const m of ['$line', '$end']) Object.defineProperty(it, m, { value: fresh[k][m], configurable: true, writable: true, enumerable: false }); });
      } catch { /* the check will say what is wrong */ }
    }
    st.checked = null;
    saveBtn.disabled = true;
    clearTimeout(timer);
    timer = setTimeout(runCheck, 250);
  };
  textArea.addEventListener('input', () => {
    st.text = textArea.value;
    try { st.doc = parse(st.text); } catch { /* the check will say */ }
    changed();
  });

  const runCheck = async () => {
    const seq = ++st.checkSeq;
    const text = st.text;
    let r;
    try { r = await api.post(`${base}/check`, { text }); } catch (e) { if (seq === st.checkSeq) clear(msgs, errorBox(e)); return; }
    if (seq !== st.checkSeq) return; // an older answer
    st.checked = r.ok ? text : null;
    st.msgs = (r.messages || []).map(parseCheckMessage);
    clear(msgs, r.ok ? h('p', { class: 'ok', id: 'check-ok' }, `check: ok${st.msgs.length ? ` (${st.msgs.length} warning(s))` : ''}`) : null,
      st.msgs.length ? h('ul', { class: 'msgs', id: 'check-list' }, st.msgs.map((m) => h('li', { class: m.warning ? 'warn' : 'msg-error' }, m.text))) : null);
    commentWarning();
    saveBtn.disabled = !r.ok;
    if (st.mode === 'form') { markGraph(); renderForm(); }
  };

  const commentWarning = () => {
    clear(warn);
    if (st.mode === 'form' && st.formDirty && hasComments(st.orig)) {
      const cb = h('input', { type: 'checkbox', id: 'drop-comments' });
      warn.appendChild(h('p', { class: 'warn', role: 'alert' }, 'This file has comments. Saving from the forms rewrites the file without them; edit in the Text tab to keep them. ',
        cb, h('label', { for: 'drop-comments', style: 'display:inline' }, 'Save without the comments')));
    }
  };

  saveBtn.addEventListener('click', async () => {
    if (st.checked !== st.text) return;
    const cb = document.getElementById('drop-comments');
    if (cb && !cb.checked) { status('Tick “Save without the comments”, or edit in the Text tab to keep them.', 'warn'); cb.focus(); return; }
    clear(conflict);
    try {
      const r = await api.put(`${base}/file`, { text: st.text, version: st.version });
      st.version = r.version; st.orig = st.text; st.formDirty = false;
      clear(warn);
      status(`Saved ${r.file || file.file}${r.previous ? ` (previous version kept as ${r.previous})` : ''}; baton serve applied it.`, 'ok');
      loadVersions();
    } catch (e) {
      if (e.status === 409) {
        const theirs = e.details && e.details.current !== undefined ? e.details.current : '';
        clear(conflict, h('div', { class: 'panel', role: 'alert' },
          h('p', { class: 'error' }, `Not saved: ${e.message}. Your text is kept here; below, what changed on disk compared with yours.`),
          diffView(st.text, theirs, 'yours', 'on disk'),
          h('div', { class: 'toolbar' },
            h('button', { type: 'button', onclick: () => { st.version = e.details.version; clear(conflict); status('Your version will replace the one on disk at the next Save.'); } }, 'Keep mine (save over it next)'),
            h('button', { type: 'button', onclick: () => { st.text = st.orig = theirs; textArea.value = theirs; st.version = e.details.version; try { st.doc = parse(theirs); } catch { /* text mode */ } st.formDirty = false; clear(conflict); render(); changed(); } }, 'Load the file from disk'))));
      } else if (e.status === 422 || (e.details && e.details.messages)) {
        clear(msgs, h('ul', { class: 'msgs' }, (e.details.messages || []).map((m) => h('li', { class: 'msg-error' }, parseCheckMessage(m).text))));
      } else clear(conflict, errorBox(e));
    }
  });

  const loadVersions = async () => {
    let v;
    try { v = await api.get(`${base}/versions`); } catch (e) { clear(versions, errorBox(e)); return; }
    clear(versions, h('h2', { id: 'ver-title' }, 'Previous versions'),
      (v.versions || []).length ? h('ul', { id: 'versions' }, v.versions.map((x) => h('li', null, `${x.saved_at} (${x.size} bytes) `,
        h('button', { type: 'button', onclick: async () => {
          if (!confirm(`Restore the version saved at ${x.saved_at}? The current file is kept as a version too.`)) return;
          try { const r = await api.post(`${base}/versions/${api.enc(x.id)}/restore`, {}); status(`Restored; baton serve applied it.`, 'ok'); edit(kind, name); void r; } catch (e) { clear(conflict, errorBox(e)); }
        } }, 'Restore')))) : h('p', { class: 'help' }, 'None yet: each save keeps the version it replaces.'));
  };

  // ---- the canvas and the forms
  let view = null;
  const render = () => {
    if (st.mode !== 'form' || !st.doc) return;
    const g = kind === 'campaigns' ? campaignGraph(st.doc, null) : journeyGraph(st.doc, null);
    g.edges.forEach((e) => { if (kind === 'campaigns') e.label = e.id.includes('.') ? e.id.split('.')[1] : ''; });
    view = draw(canvas, `Editing ${name}`, g.nodes, g.edges, (id) => { st.sel = id; view.select(id); renderForm(); });
    view.mark(g.dangling.map((d) => d.activity), 'bad');
    if (st.sel) view.select(st.sel);
    markGraph();
    renderForm();
  };
  const markGraph = () => {
    if (!view) return;
    const bad = st.msgs.filter((m) => !m.warning).map((m) => itemAtLine(items(), m.line)).filter(Boolean).map((it) => it.id);
    const g = kind === 'campaigns' ? campaignGraph(st.doc, null) : journeyGraph(st.doc, null);
    view.mark(bad.concat(g.dangling.map((d) => d.activity)), 'bad');
  };

  const addItem = () => {
    if (st.mode !== 'form') setMode('form');
    if (!st.doc) return;
    const t = typeSel.value;
    const list = items();
    let id = addId.value.trim() || t;
    if (list.some((a) => a.id === id)) { let k = 2; while (list.some((a) => a.id === `${id}${k}`)) k++; id = `${id}${k}`; }
    const it = { id, type: t };
    for (const k of typeKeys(t)) if (k.required && k.default !== undefined) it[k.name] = k.default;
    const sel = list.find((a) => a.id === st.sel);
    if (kind === 'campaigns' && sel && t !== 'build_audience' && t !== 'read_audience') {
      const outs = outputsOf(sel);
      if (outs.length) { if (t === 'combine' || t === 'and_join' || t === 'or_join') it.inputs = [outs[0]]; else it.input = outs[0]; }
    } else if (kind === 'journeys' && sel && sel.type !== 'end' && !sel.next && ['wait', 'send', 'action', 'update_profile'].includes(sel.type)) sel.next = id;
    if (!st.doc[top][itemsKey]) st.doc[top][itemsKey] = [];
    st.doc[top][itemsKey].push(it);
    st.sel = id;
    addId.value = '';
    changed(); render();
    view && view.focus(id);
    status(`Added ${id} (${t}).`);
  };
  const removeItem = () => {
    if (!st.sel || !st.doc) { status('Select an item first.'); return; }
    st.doc[top][itemsKey] = items().filter((a) => a.id !== st.sel);
    status(`Removed ${st.sel}: whatever read from it now has a dangling input until you connect it again.`);
    st.sel = null;
    changed(); render();
  };

  const fieldFor = (it, k, msgFor) => {
    const id = `f-${k.name}`;
    const has = Object.prototype.hasOwnProperty.call(it, k.name);
    const cur = has ? it[k.name] : undefined;
    const m = msgFor(k.name);
    const desc = h('span', { class: 'help', id: `${id}-help` }, [k.type, k.required ? 'required' : '', k.default !== undefined ? `default ${k.default}` : '', k.choices ? `one of ${k.choices.join(', ')}` : ''].filter(Boolean).join(', '), k.help ? ` — ${k.help}` : '');
    let input;
    // a link (next, otherwise, on_event...) changes the graph: draw it again
    const link = kind === 'journeys' && ['next', 'otherwise', 'on_event', 'on_timeout', 'on_error'].includes(k.name);
    const set = (v) => { if (v === undefined || v === '') delete it[k.name]; else it[k.name] = v; changed(); if (link) render(); };
    if (k.type === 'bool') {
      input = h('select', { id }, h('option', { value: '' }, '(not set)'), h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false'));
      input.value = cur === undefined ? '' : String(cur);
      input.addEventListener('change', () => set(input.value === '' ? undefined : input.value === 'true'));
    } else if (k.type === 'enum' && k.choices) {
      input = h('select', { id }, h('option', { value: '' }, '(not set)'), k.choices.map((c) => h('option', { value: c }, c)));
      input.value = cur === undefined ? '' : String(cur);
      input.addEventListener('change', () => set(input.value || undefined));
    } else if (k.type === 'list' || k.type === 'value' || (cur !== undefined && typeof cur === 'object' && !('$float' in cur))) {
      input = h('textarea', { id, rows: 3 });
      input.value = cur === undefined ? '' : cfgValue(cur);
      const perr = h('span', { class: 'error', id: `${id}-parse` });
      input.addEventListener('input', () => {
        if (!input.value.trim()) { perr.textContent = ''; set(undefined); return; }
        try { const v = parse(`x = ${input.value};`).x; perr.textContent = ''; input.classList.remove('field-bad'); set(v); } catch (e) { perr.textContent = `not a value: ${e.message}`; input.classList.add('field-bad'); }
      });
      return h('div', null, h('label', { for: id }, k.name), desc, input, perr, m);
    } else if (k.type === 'int' || k.type === 'float') {
      input = h('input', { id, inputmode: 'decimal', value: cur === undefined ? '' : String(num(cur)) });
      input.addEventListener('input', () => { const v = input.value.trim(); set(v === '' ? undefined : isNaN(Number(v)) ? v : (k.type === 'float' && Number.isInteger(Number(v)) ? { $float: Number(v) } : Number(v))); });
    } else {
      input = h('input', { id, value: cur === undefined ? '' : String(cur), spellcheck: 'false', size: 40 });
      input.addEventListener('input', () => set(input.value === '' ? undefined : input.value));
    }
    input.setAttribute('aria-describedby', `${id}-help${m ? ` ${id}-msg` : ''}`);
    if (m) { input.classList.add('field-bad'); input.setAttribute('aria-invalid', 'true'); }
    return h('div', null, h('label', { for: id }, k.name), desc, input, m);
  };

  const renderForm = () => {
    const ae = document.activeElement && form.contains(document.activeElement) ? document.activeElement : null;
    const active = ae ? ae.id : null;
    const selr = ae && 'selectionStart' in ae ? [ae.selectionStart, ae.selectionEnd] : null;
    const it = items().find((a) => a.id === st.sel);
    if (!it) {
      clear(form, h('h2', null, 'Nothing selected'), h('p', { class: 'help' }, `Select a ${kind === 'campaigns' ? 'activity' : 'node'} on the canvas to edit it, or add one with the toolbar.`));
      return;
    }
    const mine = st.msgs.filter((m) => itemAtLine(items(), m.line) === it);
    const msgFor = (key) => {
      const m = mine.find((x) => x.key === key || (x.key && x.key.split('.')[0] === key));
      if (!m) return null;
      const cur = typeof it[key] === 'string' ? it[key] : '';
      return h('div', { id: `f-${key}-msg`, class: 'error' },
        m.col && cur ? h('div', { class: 'caret', 'aria-hidden': 'true' }, `${cur.split('\n')[m.exprLine - 1 || 0] || cur}\n${' '.repeat(Math.max(0, m.col - 1))}^`) : null,
        h('span', { class: 'field-msg' }, m.text));
    };
    const keys = typeKeys(it.type).slice();
    const known = new Set(['id', 'type', 'input', 'inputs', ...keys.map((k) => k.name)]);
    const others = Object.keys(it).filter((k) => !known.has(k)).map((k) => ({ name: k, type: 'value', help: 'not in the key map of this type (check will say if it is unknown)' }));
    let conn = null;
    if (kind === 'campaigns' && it.type !== 'build_audience' && it.type !== 'read_audience') {
      const avail = items().filter((a) => a.id !== it.id).flatMap(outputsOf);
      const cur = inputsOf(it);
      const multi = ['combine', 'and_join', 'or_join'].includes(it.type) || Array.isArray(it.inputs);
      if (multi) {
        conn = h('fieldset', null, h('legend', null, 'inputs', h('span', { class: 'help' }, ' (in order; for an exclusion the first minus the others)')),
          avail.concat(cur.filter((c) => !avail.includes(c))).map((t) => {
            const cb = h('input', { type: 'checkbox', id: `in-${t}`, checked: cur.includes(t) });
            cb.addEventListener('change', () => {
              const next = inputsOf(it).filter((x) => x !== t);
              if (cb.checked) next.push(t);
              delete it.input; it.inputs = next; changed(); render();
            });
            return h('div', null, cb, h('label', { for: `in-${t}`, style: 'display:inline;font-weight:400' }, ` ${t}`, avail.includes(t) ? '' : ' (no such transition)'));
          }));
      } else {
        const s = h('select', { id: 'f-input' }, h('option', { value: '' }, '(not connected)'), avail.concat(cur.filter((c) => !avail.includes(c))).map((t) => h('option', { value: t }, avail.includes(t) ? t : `${t} (no such transition)`)));
        s.value = cur[0] || '';
        s.addEventListener('change', () => { if (s.value) it.input = s.value; else delete it.input; changed(); render(); });
        conn = h('div', null, h('label', { for: 'f-input' }, 'input'), s, msgFor('input'));
      }
    }
    if (kind === 'journeys') {
      const ids = items().map((a) => a.id).filter((x) => x !== it.id);
      for (const k of keys) if (['next', 'otherwise', 'on_event', 'on_timeout', 'on_error'].includes(k.name)) k.choices = ids, k.type = 'enum';
    }
    const idIn = h('input', { id: 'f-id', value: it.id, spellcheck: 'false' });
    idIn.addEventListener('change', () => {
      const old = it.id, nu = idIn.value.trim();
      if (!nu || nu === old) return;
      it.id = nu;
      // follow the rename in whatever pointed at it
      for (const a of items()) {
        if (kind === 'campaigns') {
          if (typeof a.input === 'string' && a.input.split('.')[0] === old) a.input = nu + a.input.slice(old.length);
          if (Array.isArray(a.inputs)) a.inputs = a.inputs.map((x) => (x.split('.')[0] === old ? nu + x.slice(old.length) : x));
        } else {
          for (const key of ['next', 'otherwise', 'on_event', 'on_timeout', 'on_error']) if (a[key] === old) a[key] = nu;
          (a.branches || []).forEach((b) => { if (b.next === old) b.next = nu; });
        }
      }
      if (kind === 'journeys' && st.doc.journey.start === old) st.doc.journey.start = nu;
      st.sel = nu; changed(); render();
    });
    clear(form,
      h('h2', null, `${it.id} `, h('span', { class: 'badge' }, it.type)),
      h('label', { for: 'f-id' }, 'id'), idIn,
      conn,
      keys.map((k) => fieldFor(it, k, msgFor)),
      others.map((k) => fieldFor(it, k, msgFor)),
      mine.filter((m) => !m.key || !Object.prototype.hasOwnProperty.call(it, m.key.split('.')[0])).map((m) => h('p', { class: 'error' }, m.text)));
    const back = active && document.getElementById(active);
    if (back) { back.focus(); if (selr && back.setSelectionRange) try { back.setSelectionRange(selr[0], selr[1]); } catch { /* not a text field */ } }
  };

  render();
  loadVersions();
  runCheck();
}
