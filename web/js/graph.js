// graph.js — a layered layout (longest-path layers, barycentre ordering)
// and an SVG drawing of a directed graph: the campaign and journey
// canvases. Small graphs (tens to a few hundred nodes): plain code beats a
// library here. Nodes are focusable buttons for the keyboard and screen
// readers; every edge label carries data-edge="from->to" and its text.

const SVG = 'http://www.w3.org/2000/svg';
export const NODE_W = 176, NODE_H = 56, GAP_X = 28, GAP_Y = 62, DUMMY_W = 16; // layers go down the page

// nodes: [{id, label, sub, badge, cls, title}], edges: [{from, to, label, cls, id}]
export function layout(nodes, edges) {
  const idx = new Map(nodes.map((n, i) => [n.id, i]));
  const out = nodes.map(() => []), inc = nodes.map(() => []);
  const es = edges.filter((e) => idx.has(e.from) && idx.has(e.to));
  // Break cycles (journeys may loop): an edge to a node on the DFS stack
  // is laid out as if reversed.
  const state = new Array(nodes.length).fill(0);
  const back = new Set();
  const adj = nodes.map(() => []);
  es.forEach((e, k) => adj[idx.get(e.from)].push([idx.get(e.to), k]));
  const visit = (v) => {
    const stack = [[v, 0]];
    state[v] = 1;
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [u, i] = top;
      if (i < adj[u].length) {
        top[1]++;
        const [w, k] = adj[u][i];
        if (state[w] === 1) back.add(k);
        else if (state[w] === 0) { state[w] = 1; stack.push([w, 0]); }
      } else { state[u] = 2; stack.pop(); }
    }
  };
  nodes.forEach((_, v) => { if (!state[v]) visit(v); });
  es.forEach((e, k) => {
    let a = idx.get(e.from), b = idx.get(e.to);
    if (back.has(k)) [a, b] = [b, a];
    if (a !== b) { out[a].push(b); inc[b].push(a); }
  });
  // Longest path layering, in topological order (Kahn).
  const layer = new Array(nodes.length).fill(0);
  const deg = inc.map((l) => l.length);
  const q = [];
  deg.forEach((d, v) => { if (!d) q.push(v); });
  for (let h = 0; h < q.length; h++) {
    const v = q[h];
    for (const w of out[v]) {
      layer[w] = Math.max(layer[w], layer[v] + 1);
      if (--deg[w] === 0) q.push(w);
    }
  }
  // then each node as low as its successors allow (a source sits just
  // above the activity that reads it, not on the first row)
  for (let h = q.length - 1; h >= 0; h--) {
    const v = q[h];
    if (out[v].length) layer[v] = Math.max(layer[v], Math.min(...out[v].map((w) => layer[w])) - 1);
  }
  const nl = Math.max(0, ...layer) + 1;
  // An edge that spans layers goes through a point on each layer between
  // (a "dummy" vertex taking part in the ordering), so it does not cross
  // the nodes on its way.
  const N = nodes.length;
  const eOut = out.map((l) => l.slice()), eInc = inc.map((l) => l.slice());
  const lay = layer.slice();
  const via = es.map(() => []);
  es.forEach((e, k) => {
    const a = idx.get(e.from), b = idx.get(e.to);
    if (back.has(k) || lay[b] - lay[a] < 2) return;
    eOut[a] = eOut[a].filter((w) => w !== b);
    eInc[b] = eInc[b].filter((w) => w !== a);
    let prev = a;
    for (let l = lay[a] + 1; l < lay[b]; l++) {
      const d = lay.length;
      lay.push(l); eOut.push([]); eInc.push([prev]);
      eOut[prev].push(d);
      via[k].push(d);
      prev = d;
    }
    eOut[prev].push(b); eInc[b].push(prev);
  });
  const layers = Array.from({ length: nl }, () => []);
  q.forEach((v) => layers[lay[v]].push(v));
  for (let d = N; d < lay.length; d++) layers[lay[d]].push(d);
  const pos = new Array(lay.length).fill(0);
  layers.forEach((L) => L.forEach((v, i) => { pos[v] = i; }));
  const bary = (v, nb) => (nb[v].length ? nb[v].reduce((t, w) => t + pos[w], 0) / nb[v].length : pos[v]);
  for (let sweep = 0; sweep < 8; sweep++) {
    const down = sweep % 2 === 0;
    const order = down ? layers.slice(1) : layers.slice(0, -1).reverse();
    for (const L of order) {
      const b = new Map(L.map((v) => [v, bary(v, down ? eInc : eOut)]));
      L.sort((x, y) => b.get(x) - b.get(y) || x - y);
      L.forEach((v, i) => { pos[v] = i; });
    }
  }
  const wOf = (v) => (v < N ? NODE_W : DUMMY_W);
  const rowW = (L) => L.reduce((t, v) => t + wOf(v) + GAP_X, GAP_X);
  const width = Math.max(NODE_W + 2 * GAP_X, ...layers.map(rowW));
  const xy = lay.map(() => ({ x: 0, y: 0 }));
  layers.forEach((L, li) => {
    let x = (width - rowW(L)) / 2 + GAP_X;
    for (const v of L) { xy[v] = { x, y: 16 + li * (NODE_H + GAP_Y) }; x += wOf(v) + GAP_X; }
  });
  return { xy, idx, width, height: 32 + nl * (NODE_H + GAP_Y) - GAP_Y + 30, edges: es, layers: layers.map((L) => L.filter((v) => v < N)), via };
}

function el(name, attrs = {}, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function fit(s, n) { return s && s.length > n ? `${s.slice(0, n - 1)}…` : (s || ''); }

// Draw into container; onSelect(id) on click, Enter or Space. Arrow keys
// move the focus along edges. Returns {svg, select(id), mark(ids, cls)}.
export function draw(container, title, nodes, edges, onSelect) {
  const L = layout(nodes, edges);
  container.textContent = '';
  const svg = el('svg', { width: L.width, height: L.height, viewBox: `0 0 ${L.width} ${L.height}`, role: 'group', 'aria-label': title });
  const defs = el('defs', {}, svg);
  const m = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, defs);
  el('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#7d8696' }, m);
  const gEdges = el('g', { 'aria-hidden': 'true' }, svg);
  const gNodes = el('g', {}, svg);
  const nodeEls = new Map(), edgeEls = [];
  // fan-out: spread the ends of edges leaving/entering one node
  const outN = new Map(), inN = new Map();
  for (const e of L.edges) {
    outN.set(e.from, (outN.get(e.from) || []).concat([e]));
    inN.set(e.to, (inN.get(e.to) || []).concat([e]));
  }
  const xAt = (list, e, x) => {
    const k = list.indexOf(e), n = list.length;
    return x + NODE_W * ((k + 1) / (n + 1));
  };
  L.edges.forEach((e, k) => {
    const a = L.xy[L.idx.get(e.from)], b = L.xy[L.idx.get(e.to)];
    const g = el('g', { class: `edge ${e.cls || ''}`, 'data-edge': `${e.from}->${e.to}`, 'data-transition': e.id || '' }, gEdges);
    const x1 = xAt(outN.get(e.from), e, a.x), y1 = a.y + NODE_H, x2 = xAt(inN.get(e.to), e, b.x), y2 = b.y;
    let d, mx, my;
    const curve = (xa, ya, xb, yb) => { const dy = Math.max(24, (yb - ya) / 2); return `C${xa},${ya + dy} ${xb},${yb - dy} ${xb},${yb}`; };
    if (L.via[k].length) {
      // through the points on the layers between, straight down each
      const pts = L.via[k].map((v) => ({ x: L.xy[v].x + DUMMY_W / 2, y: L.xy[v].y }));
      d = `M${x1},${y1} ${curve(x1, y1, pts[0].x, pts[0].y)}`;
      pts.forEach((p, i) => {
        d += ` L${p.x},${p.y + NODE_H}`;
        const nx = i + 1 < pts.length ? pts[i + 1] : { x: x2, y: y2 };
        d += ` ${curve(p.x, p.y + NODE_H, nx.x, nx.y)}`;
      });
      // the label in the gap under the source, where no node is
      mx = (x1 + pts[0].x) / 2; my = (y1 + pts[0].y) / 2;
    } else if (y2 > y1) {
      const dy = Math.max(24, (y2 - y1) / 2);
      d = `M${x1},${y1} C${x1},${y1 + dy} ${x2},${y2 - dy} ${x2},${y2}`;
      const t = 0.5, u = 0.5;
      mx = u * u * u * x1 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t * t * t * x2;
      my = u * u * u * y1 + 3 * u * u * t * (y1 + dy) + 3 * u * t * t * (y2 - dy) + t * t * t * y2;
    } else { // a loop back up: around the right side
      const xr = Math.max(a.x, b.x) + NODE_W + GAP_X / 2;
      d = `M${x1},${y1} C${xr + 40},${y1 + 30} ${xr + 40},${y2 - 30} ${x2},${y2}`;
      mx = xr + 10; my = (y1 + y2) / 2;
    }
    el('path', { d, 'marker-end': 'url(#arrow)' }, g);
    if (e.label !== undefined && e.label !== null && e.label !== '') {
      const lab = el('g', { class: 'elabel' }, g);
      const text = String(e.label);
      const w = Math.max(28, text.length * 7 + 10);
      el('rect', { x: mx - w / 2, y: my - 10, width: w, height: 19, rx: 9 }, lab);
      const t = el('text', { x: mx, y: my + 4, 'text-anchor': 'middle', class: 'count' }, lab);
      t.textContent = text;
    }
    edgeEls.push(g);
  });
  nodes.forEach((n, i) => {
    const p = L.xy[i];
    const g = el('g', { class: `node ${n.cls || ''}`, tabindex: 0, role: 'button', 'data-node': n.id,
      transform: `translate(${p.x},${p.y})`, 'aria-label': n.title || `${n.id}: ${n.label || ''}` }, gNodes);
    el('rect', { width: NODE_W, height: NODE_H }, g);
    const t1 = el('text', { x: 10, y: 18, class: 'nid' }, g); t1.textContent = fit(n.id, n.badge ? 16 : 22);
    // a count that needs looking at (a journey node's dead letters), top right
    if (n.badge) { const b = el('text', { x: NODE_W - 8, y: 18, 'text-anchor': 'end', class: 'nbadge', 'data-badge': n.id }, g); b.textContent = n.badge; }
    const t2 = el('text', { x: 10, y: 34, class: 'ntype' }, g); t2.textContent = fit(n.label, 26);
    if (n.sub) { const t3 = el('text', { x: 10, y: 50, class: 'nsub' }, g); t3.textContent = fit(n.sub, 27); }
    const tt = el('title', {}, g); tt.textContent = n.title || n.id;
    nodeEls.set(n.id, g);
    const pick = () => onSelect && onSelect(n.id);
    g.addEventListener('click', pick);
    g.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); pick(); return; }
      const dir = { ArrowDown: 'out', ArrowUp: 'in', ArrowRight: 'next', ArrowLeft: 'prev' }[ev.key];
      if (!dir) return;
      ev.preventDefault();
      let target;
      if (dir === 'out') target = (outN.get(n.id) || [])[0]?.to;
      else if (dir === 'in') target = (inN.get(n.id) || [])[0]?.from;
      else {
        const li = L.layers.findIndex((layer) => layer.includes(i));
        const layer = L.layers[li], k = layer.indexOf(i) + (dir === 'next' ? 1 : -1);
        if (k >= 0 && k < layer.length) target = nodes[layer[k]].id;
      }
      if (target && nodeEls.get(target)) nodeEls.get(target).focus();
    });
  });
  container.appendChild(svg);
  return {
    svg,
    select(id) { nodeEls.forEach((g, k) => g.classList.toggle('sel', k === id)); },
    mark(ids, cls) {
      const set = new Set(ids || []);
      nodeEls.forEach((g, k) => g.classList.toggle(cls, set.has(k)));
    },
    markEdges(pairs, cls) {
      const set = new Set(pairs || []);
      edgeEls.forEach((g) => g.classList.toggle(cls, set.has(g.getAttribute('data-edge'))));
    },
    focus(id) { nodeEls.get(id)?.focus(); },
  };
}
