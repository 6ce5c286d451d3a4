// dom.js — building elements without innerHTML (every text from the API
// goes in as text, never as markup).

export function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k in e && typeof v !== 'string') e[k] = v;
      else e.setAttribute(k, v === true ? '' : v);
    }
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    e.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

export function clear(e, ...kids) { e.textContent = ''; for (const k of kids.flat()) if (k) e.appendChild(k); return e; }

export function status(msg, cls) {
  const s = document.getElementById('status');
  s.textContent = msg || '';
  s.className = `status ${cls || ''}`;
}

export function fmtNum(n) { return n === undefined || n === null ? '—' : Number(n).toLocaleString('en-US'); }

export function table(cols, rows, caption) {
  return h('table', null,
    caption ? h('caption', { class: 'sr' }, caption) : null,
    h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    h('tbody', null, rows.map((r) => h('tr', null, cols.map((c) => h('td', { class: c.num ? 'num' : null }, c.get(r)))))));
}

export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, e && e.message ? e.message : String(e));
}

export function kv(obj) {
  return h('dl', { class: 'kv' }, Object.entries(obj).flatMap(([k, v]) => [h('dt', null, k), h('dd', null, typeof v === 'string' ? v : JSON.stringify(v))]));
}
