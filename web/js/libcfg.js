// libcfg.js — libconfig text (the syntax of every baton file) to plain
// values and back, for the editor. parse() keeps where each group starts
// and ends (non-enumerable `$line`, `$end`) so check messages, which name
// a line, can be put on the activity or node they are about. serialize()
// writes the layout baton's own files use; it cannot keep comments, so
// hasComments() lets the editor warn before a rewrite drops them.

export class CfgError extends Error {
  constructor(line, col, msg) { super(`${line}:${col}: ${msg}`); this.line = line; this.col = col; }
}

export function parse(text) {
  let i = 0, line = 1, col = 1;
  const n = text.length;
  const adv = () => { const c = text[i++]; if (c === '\n') { line++; col = 1; } else col++; return c; };
  const fail = (m) => { throw new CfgError(line, col, m); };
  const skip = () => {
    for (;;) {
      const c = text[i];
      if (c === undefined) return;
      if (c === ' ' || c === '\t' || c === '\r' || c === '\n') { adv(); continue; }
      if (c === '#' || (c === '/' && text[i + 1] === '/')) { while (i < n && text[i] !== '\n') adv(); continue; }
      if (c === '/' && text[i + 1] === '*') {
        adv(); adv();
        while (i < n && !(text[i] === '*' && text[i + 1] === '/')) adv();
        if (i >= n) fail('unterminated comment');
        adv(); adv(); continue;
      }
      return;
    }
  };
  const str1 = () => {
    adv();
    let s = '';
    for (;;) {
      if (i >= n) fail('unterminated string');
      const c = adv();
      if (c === '"') break;
      if (c === '\\') {
        const e = adv();
        if (e === 'n') s += '\n'; else if (e === 't') s += '\t'; else if (e === 'r') s += '\r';
        else if (e === 'f') s += '\f'; else if (e === 'x') { s += String.fromCharCode(parseInt(text.substr(i, 2), 16)); adv(); adv(); }
        else s += e;
      } else s += c;
    }
    return s;
  };
  const value = () => {
    skip();
    const c = text[i];
    if (c === '"') {
      let s = str1();
      for (;;) { const save = [i, line, col]; skip(); if (text[i] === '"') s += str1(); else { [i, line, col] = save; break; } }
      return s;
    }
    if (c === '{') return group('}');
    if (c === '[' || c === '(') {
      const close = c === '[' ? ']' : ')';
      const start = line;
      adv();
      const arr = [];
      Object.defineProperty(arr, '$kind', { value: c === '[' ? 'array' : 'list' });
      Object.defineProperty(arr, '$line', { value: start });
      skip();
      if (text[i] === close) { adv(); return arr; }
      for (;;) {
        arr.push(value());
        skip();
        if (text[i] === ',') { adv(); skip(); if (text[i] === close) { adv(); return arr; } continue; }
        if (text[i] === close) { adv(); return arr; }
        fail(`expected ',' or '${close}'`);
      }
    }
    const m = /^(?:0[xX][0-9a-fA-F]+L{0,2}|[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?L{0,2}|true|false)/i.exec(text.slice(i, i + 64));
    if (!m) fail('expected a value');
    for (let k = 0; k < m[0].length; k++) adv();
    const t = m[0].replace(/L+$/, '');
    if (/^true$/i.test(t)) return true;
    if (/^false$/i.test(t)) return false;
    if (/^0x/i.test(t)) return parseInt(t, 16);
    if (/[.eE]/.test(t) && !/^0x/i.test(t)) { const f = new Number(parseFloat(t)); return floatBox(parseFloat(t)); }
    return parseInt(t, 10);
  };
  const group = (close) => {
    const start = line;
    if (close) adv();
    const o = {};
    Object.defineProperty(o, '$line', { value: start, writable: true, configurable: true });
    for (;;) {
      skip();
      if (close && text[i] === close) { adv(); break; }
      if (!close && i >= n) break;
      const m = /^[A-Za-z*][-A-Za-z0-9_*]*/.exec(text.slice(i, i + 256));
      if (!m) fail(close ? `expected a setting name or '${close}'` : 'expected a setting name');
      const name = m[0];
      for (let k = 0; k < name.length; k++) adv();
      skip();
      if (text[i] !== '=' && text[i] !== ':') fail(`expected '=' or ':' after '${name}'`);
      adv();
      o[name] = value();
      skip();
      if (text[i] === ';' || text[i] === ',') adv();
    }
    Object.defineProperty(o, '$end', { value: line, configurable: true, writable: true });
    return o;
  };
  return group(null);
}

// A float written with a point stays a float when written back (50.0).
function floatBox(f) { return Number.isInteger(f) ? { $float: f } : f; }
export function num(v) { return v && typeof v === 'object' && '$float' in v ? v.$float : v; }

function quote(s) {
  return `"${String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\t/g, '\\t').replace(/\r/g, '\\r')}"`;
}

function isList(a) {
  if (a.$kind) return a.$kind === 'list';
  return a.some((v) => v !== null && typeof v === 'object' && !('$float' in v));
}

export function scalar(v) {
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v && typeof v === 'object' && '$float' in v) return v.$float.toFixed(1);
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(v);
  throw new Error(`not a value: ${JSON.stringify(v)}`);
}

export function value(v, indent = '') {
  if (Array.isArray(v)) {
    const list = isList(v);
    const [o, c] = list ? ['(', ')'] : ['[', ']'];
    if (!v.length) return `${o} ${c}`;
    return `${o} ${v.map((x) => value(x, indent)).join(', ')} ${c}`;
  }
  if (v && typeof v === 'object' && !('$float' in v)) {
    const parts = Object.entries(v).map(([k, x]) => `${k} = ${value(x, indent)};`);
    return `{ ${parts.join(' ')} }`;
  }
  return scalar(v);
}

// A campaign or journey document: top group, then its items one per line.
export function serialize(doc) {
  const out = [];
  for (const [top, body] of Object.entries(doc)) {
    if (!body || typeof body !== 'object' || Array.isArray(body)) { out.push(`${top} = ${value(body)};`); continue; }
    out.push(`${top}: {`);
    for (const [k, v] of Object.entries(body)) {
      if (Array.isArray(v) && isList(v) && v.length && v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
        out.push(`  ${k} = (`);
        v.forEach((x, j) => out.push(`    ${value(x, '    ')}${j < v.length - 1 ? ',' : ''}`));
        out.push('  );');
      } else out.push(`  ${k} = ${value(v, '  ')};`);
    }
    out.push('};');
  }
  return `${out.join('\n')}\n`;
}

export function hasComments(text) {
  let inStr = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inStr) { if (c === '\\') i++; else if (c === '"') inStr = false; continue; }
    if (c === '"') inStr = true;
    else if (c === '#' || (c === '/' && (text[i + 1] === '/' || text[i + 1] === '*'))) return true;
  }
  return false;
}

// A deep copy that keeps $kind on arrays and $float boxes.
export function clone(v) {
  if (Array.isArray(v)) {
    const a = v.map(clone);
    if (v.$kind) Object.defineProperty(a, '$kind', { value: v.$kind });
    return a;
  }
  if (v && typeof v === 'object') {
    if ('$float' in v) return { $float: v.$float };
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = clone(x);
    return o;
  }
  return v;
}
