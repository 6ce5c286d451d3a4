// harness.mjs — what the browser tests stand on: a copy of conf/ with
// sample data and an http block, a real `baton serve` on a free port of
// 127.0.0.1, and Debian's chromium driven by playwright-core (installed by
// `npm ci` from this folder's lock file into the build folder; no browser
// is ever downloaded).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const SRC = process.env.BATON_SRC || path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const BUILD = process.env.BATON_BUILD || path.join(SRC, 'build');
export const BATON = process.env.BATON_BIN || path.join(BUILD, 'baton');
export const PLUGINS = process.env.BATON_PLUGINS || path.join(BUILD, 'plugins');
export const SHOTS = path.join(BUILD, 'screenshots');
export const TOKENS = {
  ops: 'ops-secret-0123456789abcdef',          // read, campaigns:run, admin
  viewer: 'viewer-secret-0123456789abcdef',    // read
  ingest: 'ingest-secret-0123456789abcdef',    // events:write
  revoked: 'revoked-secret-0123456789abcdef',  // read, taken out of the configuration by a test
};

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export function baton(dir, ...args) {
  return execFileSync(BATON, ['-c', path.join(dir, 'conf/baton.cfg'), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// The 100-activity campaign of the canvas benchmark: audiences, unions,
// enrich and splits in a chain that forks and joins.
export function bigCampaign(n = 100) {
  const acts = [`    { id = "a0"; type = "build_audience"; dimension = "profiles"; filter = "score > 0"; }`];
  let last = 'a0';
  for (let i = 1; i < n; i++) {
    const k = i % 4;
    if (k === 1) acts.push(`    { id = "a${i}"; type = "split"; input = "${last}"; mode = "random"; seed = ${i}; branches = ( { name = "x"; percent = 50; }, { name = "y"; remainder = true; } ); }`), last = `a${i}`;
    else if (k === 2) acts.push(`    { id = "a${i}"; type = "build_audience"; dimension = "profiles"; filter = "tier == 'gold' or score > ${i}"; }`);
    else if (k === 3) acts.push(`    { id = "a${i}"; type = "combine"; op = "union"; inputs = [ "${last}.x", "a${i - 1}" ]; }`), last = `a${i}`;
    else acts.push(`    { id = "a${i}"; type = "deduplicate"; input = "${last}"; by = [ "email" ]; }`), last = `a${i}`;
  }
  return `campaign: {\n  name = "big";\n  activities = (\n${acts.join(',\n')}\n  );\n};\n`;
}

// A journey whose waits read a time from the event: an event without it
// fails the profile at that node (one of the node's dead letters).
export const REMINDER = `journey: {
  name = "reminder";
  entry = { event = "appointment_booked"; };
  start = "first";
  nodes = (
    { id = "first"; type = "wait"; until = "event.first_at"; next = "second"; },
    { id = "second"; type = "wait"; until = "event.second_at"; next = "done"; },
    { id = "done"; type = "end"; }
  );
};
`;

// A campaign whose run waits at a signal; the split after it reads the
// parameter the signal may bring (param.discount, 10 by default).
export const LAUNCH = `campaign: {
  name = "launch";
  parameters = ( { name = "discount"; type = "int"; default = "10"; } );
  activities = (
    { id = "gold"; type = "build_audience"; dimension = "profiles"; filter = "tier == 'gold'"; },
    { id = "go"; type = "signal"; input = "gold"; timeout = "1d"; },
    { id = "pick"; type = "split"; input = "go"; mode = "filter"; exclusive = true;
      branches = ( { name = "big"; filter = "param.discount >= 20"; }, { name = "small"; remainder = true; } ); },
    { id = "big_offer"; type = "send"; channel = "mail"; input = "pick.big"; columns = [ "first_name" ]; },
    { id = "small_offer"; type = "send"; channel = "mail"; input = "pick.small"; columns = [ "first_name" ]; }
  );
};
`;

export async function startServe() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-console-'));
  fs.cpSync(path.join(SRC, 'conf'), path.join(dir, 'conf'), { recursive: true, filter: (p) => !p.includes(`${path.sep}var`) });
  const port = await freePort();
  const cfgPath = path.join(dir, 'conf/baton.cfg');
  let cfg = fs.readFileSync(cfgPath, 'utf8');
  cfg = cfg.replace(/plugin_path = \[[^\]]*\];/, `plugin_path = [ "${PLUGINS}" ];`);
  // no MQTT broker here: events come over HTTP
  cfg = cfg.replace(/\nevents: \{[\s\S]*?\n\};\n/, '\n');
  cfg += `
http = {
  listen = "127.0.0.1:${port}";
  tokens = ( { name = "ops"; secret = "${TOKENS.ops}"; scopes = [ "read", "campaigns:run", "admin" ]; },
             { name = "viewer"; secret = "${TOKENS.viewer}"; scopes = [ "read" ]; },
             { name = "ingest"; secret = "${TOKENS.ingest}"; scopes = [ "events:write" ]; },
             { name = "revoked"; secret = "${TOKENS.revoked}"; scopes = [ "read" ]; } );
};
`;
  fs.writeFileSync(cfgPath, cfg);
  fs.writeFileSync(path.join(dir, 'conf/campaigns/big.cfg'), bigCampaign(100));
  fs.writeFileSync(path.join(dir, 'conf/journeys/reminder.cfg'), REMINDER);
  fs.writeFileSync(path.join(dir, 'conf/campaigns/launch.cfg'), LAUNCH);
  baton(dir, 'sample-data', '--profiles', '300', '--seed', '7');
  const log = fs.openSync(path.join(dir, 'serve.log'), 'w');
  const proc = spawn(BATON, ['-c', cfgPath, 'serve'], { stdio: ['ignore', log, log] });
  const base = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`baton serve exited ${proc.exitCode}:\n${fs.readFileSync(path.join(dir, 'serve.log'), 'utf8')}`);
    try { const r = await fetch(`${base}/readyz`); if (r.ok) break; } catch { /* not yet */ }
    if (Date.now() - t0 > 15000) throw new Error(`baton serve did not get ready:\n${fs.readFileSync(path.join(dir, 'serve.log'), 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    dir, port, base, proc, cfgPath,
    log: () => fs.readFileSync(path.join(dir, 'serve.log'), 'utf8'),
    api: async (method, p, body, token = TOKENS.ops) => {
      const r = await fetch(`${base}${p}`, { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
      const text = await r.text();
      let json = null;
      try { json = JSON.parse(text); } catch { /* not JSON */ }
      return { status: r.status, json, text };
    },
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => { const t = setTimeout(() => { proc.kill('SIGKILL'); r(); }, 10000); proc.on('exit', () => { clearTimeout(t); r(); }); });
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  const pw = await import(path.join(BUILD, 'browser/node_modules/playwright-core/index.mjs'));
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-chromium-'));
  const ctx = await pw.chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return { ctx, async close() { await ctx.close(); fs.rmSync(profile, { recursive: true, force: true }); } };
}

export async function until(fn, ms = 10000, what = 'condition') {
  const t0 = Date.now();
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what} (last: ${last && last.message ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
