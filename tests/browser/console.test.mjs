// The baton console in Debian's chromium, against a real `baton serve`
// with sample data (harness.mjs). Each test drives the pages as a user
// would (keyboard and clicks) and checks what they show against the CLI
// and the files on disk.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { startServe, launchBrowser, baton, until, TOKENS, SHOTS } from './harness.mjs';

let srv, br, page;
let navs = 0;
// every confirm() the console asks, and the answer the next one gets
const dialogs = [];
let dialogAnswer = true;
// a full load of the console at hash (a goto that only changes the hash does not reload)
const open = (hash) => page.goto(`${srv.base}/ui/?n=${++navs}${hash}`);

const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });

async function login(token = TOKENS.ops) {
  await page.goto(`${srv.base}/ui/`);
  await page.evaluate(() => sessionStorage.clear());
  await open(`#/campaigns`);
  await page.fill('#token', token);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#top:not([hidden])');
}

async function edgeCounts() {
  // every edge label on the canvas: transition -> the number drawn
  return page.$$eval('#canvas g.edge', (gs) => gs.map((g) => [g.getAttribute('data-transition'), g.querySelector('text.count')?.textContent || '']));
}

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  srv = await startServe();
  br = await launchBrowser();
  page = await br.ctx.newPage();
  page.on('dialog', (d) => { dialogs.push(d.message()); return dialogAnswer ? d.accept() : d.dismiss(); });
  page.on('pageerror', (e) => { console.error(`page error: ${e.message}`); });
});

after(async () => {
  if (br) await br.close();
  if (srv) {
    if (process.exitCode) console.error(srv.log().split('\n').slice(-40).join('\n'));
    await srv.stop();
  }
});

test('login: a wrong token is refused, a good one shows the campaigns', async () => {
  await page.goto(`${srv.base}/ui/`);
  await page.fill('#token', 'not-a-token');
  await page.press('#token', 'Enter');
  await page.waitForSelector('#login-error:not(:empty)');
  assert.match(await page.textContent('#login-error'), /not valid/);
  await shot('login');
  await login();
  await page.waitForSelector('table a[href="#/campaigns/winback"]');
  const names = await page.$$eval('main table tbody tr th, main table tbody tr td:first-child', (t) => t.map((x) => x.textContent));
  for (const n of ['winback', 'stores', 'newsletter', 'returns']) assert.ok(names.includes(n), `${n} listed`);
  // the schedule as GET /v1/campaigns gives it ({at, repeat_s, timezone})
  const api = (await srv.api('GET', '/v1/campaigns')).json.campaigns.find((c) => c.name === 'winback');
  const row = await page.textContent('main table tbody tr:has(a[href="#/campaigns/winback"])');
  assert.ok(row.includes(`from ${api.schedule.at} every ${api.schedule.repeat_s / 604800}w (${api.schedule.timezone})`), row);
  assert.ok(row.includes(api.state), row);
  await shot('campaigns');
});

test('campaign canvas: every edge carries the count of plan --json', async () => {
  const plan = JSON.parse(baton(srv.dir, 'campaign', 'plan', 'winback', '--json'));
  await open(`#/campaigns/winback`);
  await page.waitForSelector('#canvas svg g.edge');
  const edges = await edgeCounts();
  assert.equal(edges.length, 7, 'one edge per input');
  for (const [t, label] of edges) {
    const n = Number(label.replace(/^[^:]*: /, '').replace(/[−\s]/g, ''));
    assert.equal(n, plan.counts[t], `edge ${t}: canvas ${label}, plan ${plan.counts[t]}`);
  }
  // the table of transitions says the same
  const table = await page.$$eval('[data-count]', (s) => s.map((x) => [x.dataset.count, x.textContent]));
  for (const [t, c] of table) assert.equal(Number(c.replace(/,/g, '')), plan.counts[t], `row ${t}`);
  // the channel of each send is on its node
  assert.match(await page.textContent('[data-node="letter_a"]'), /on mail/);
  // a node by keyboard: its settings, explanation and last runs
  await page.focus('[data-node="target"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#node-explain');
  assert.match(await page.textContent('#node-explain'), /any of “lapsed”, “vip”/);
  // the last run's counts and milliseconds of the node (the scheduled run of serve's start)
  const done = await until(async () => (await srv.api('GET', '/v1/campaigns/winback/runs')).json.runs.find((r) => r.status === 'done'), 20000, 'the scheduled run');
  const last = done.activities.find((a) => a.id === 'target');
  await open(`#/campaigns/winback`);
  await page.waitForSelector('#canvas svg g.edge');
  await page.click('[data-node="target"]');
  await page.waitForSelector('#node-explain');
  assert.match(await page.textContent('#node-panel'), new RegExp(`target: ${last.counts.target}.*${last.ms}`));
  // the preview: each send's first messages rendered, nothing delivered
  const before = (await srv.api('GET', '/v1/deliveries?limit=1000')).json.deliveries.length;
  await page.click('#preview');
  await page.waitForSelector('#preview-out li');
  const shown = await page.$$eval('#preview-out li', (l) => l.map((x) => x.dataset.activity));
  assert.deepEqual([...new Set(shown)].sort(), ['letter_a', 'letter_b']);
  assert.ok(shown.length <= 6);
  assert.match(await page.textContent('#preview-out'), /first_name/);
  assert.equal((await srv.api('GET', '/v1/deliveries?limit=1000')).json.deliveries.length, before, 'nothing delivered');
  await shot('campaign');
});

test('campaign canvas: exclusions, change of dimension and excluded counts', async () => {
  const plan = JSON.parse(baton(srv.dir, 'campaign', 'plan', 'stores', '--json'));
  await open(`#/campaigns/stores`);
  await page.waitForSelector('#canvas svg g.edge');
  assert.match(await page.textContent('[data-node="booked"]'), /→ reservations/);
  for (const [t, label] of await edgeCounts()) assert.equal(Number(label.replace(/^[^:]*: /, '')), plan.counts[t], `edge ${t}`);
  await page.click('[data-node="letters"]');
  await page.waitForSelector('#node-title');
  const side = await page.textContent('#node-panel');
  assert.match(side, /no consent/);
  assert.match(side, /no address/);
});

test('editor: a filter typed into an error shows check\'s message; fixed and saved, the file and the counts change', async () => {
  const file = path.join(srv.dir, 'conf/campaigns/winback.cfg');
  const before = fs.readFileSync(file, 'utf8');
  await open(`#/campaigns/winback/edit`);
  await page.waitForSelector('#edit-canvas svg');
  await page.waitForSelector('#check-ok');
  await page.click('#edit-canvas [data-node="vip"]');
  await page.waitForSelector('#f-filter');
  await page.fill('#f-filter', "tierr == 'gold'");
  await page.waitForSelector('#check-list li.msg-error');
  assert.match(await page.textContent('#check-list'), /unknown field 'tierr' in profiles \(did you mean 'tier'\?\)/);
  assert.match(await page.textContent('#check-list'), /winback\.cfg:\d+: filter: 1:1:/);
  assert.equal(await page.getAttribute('#f-filter', 'aria-invalid'), 'true');
  assert.equal(await page.isDisabled('#save'), true);
  await shot('editor-error');
  await page.fill('#f-filter', "tier == 'silver'");
  await page.waitForSelector('#check-ok');
  assert.equal(await page.isDisabled('#save'), false);
  // the file has comments: the form rewrite says so before it drops them
  await page.waitForSelector('#comment-warning [role=alert]');
  await page.check('#drop-comments');
  await page.click('#save');
  await page.waitForSelector('#status.ok');
  const after = fs.readFileSync(file, 'utf8');
  assert.notEqual(after, before);
  assert.match(after, /filter = "tier == 'silver'"/);
  // the previous version is kept and listed
  await page.waitForSelector('#versions li');
  // serve applied it: the plan now counts silver
  const plan = JSON.parse(baton(srv.dir, 'campaign', 'plan', 'winback', '--json'));
  await open(`#/campaigns/winback`);
  await page.waitForSelector('[data-count="vip"]');
  assert.equal(Number((await page.textContent('[data-count="vip"]')).replace(/,/g, '')), plan.counts.vip);
  const api = await srv.api('GET', '/v1/campaigns/winback/plan');
  assert.equal(api.json.counts.vip, plan.counts.vip);
  // restore the first version from the list
  await open(`#/campaigns/winback/edit`);
  await page.waitForSelector('#versions li button');
  await page.click('#versions li button');
  await until(() => fs.readFileSync(file, 'utf8') === before, 5000, 'the restored file');
});

test('editor: an invalid graph (dangling input, cycle) is shown and cannot be saved', async () => {
  await open(`#/campaigns/winback/edit`);
  await page.waitForSelector('#check-ok');
  await page.click('#edit-canvas [data-node="target"]');
  await page.click('#remove');
  await page.waitForSelector('#check-list li.msg-error');
  assert.match(await page.textContent('#check-list'), /target/);
  assert.ok(await page.$('#edit-canvas [data-node="unique"].bad'), 'the activity with a dangling input is marked');
  assert.equal(await page.isDisabled('#save'), true);
  // a cycle, typed in the text
  await open(`#/campaigns/winback/edit`);
  await page.waitForSelector('#check-ok');
  await page.click('#tab-text');
  const text = await page.inputValue('#file-text');
  await page.fill('#file-text', text.replace('inputs = [ "lapsed", "vip" ]', 'inputs = [ "lapsed", "vip", "rich" ]'));
  await page.waitForSelector('#check-list li.msg-error');
  assert.match(await page.textContent('#check-list'), /cycle/);
  assert.equal(await page.isDisabled('#save'), true);
  await shot('editor-invalid');
});

test('editor: a save that races a hand edit is refused with the difference; nothing is lost', async () => {
  const file = path.join(srv.dir, 'conf/campaigns/returns.cfg');
  await open(`#/campaigns/returns/edit`);
  await page.waitForSelector('#check-ok');
  await page.click('#tab-text');
  const mine = (await page.inputValue('#file-text')).replace(/^campaign: \{/m, '# edited in the console\ncampaign: {');
  await page.fill('#file-text', mine);
  await page.waitForSelector('#check-ok');
  // meanwhile, by hand
  const hand = `${fs.readFileSync(file, 'utf8')}# edited by hand\n`;
  fs.writeFileSync(file, hand);
  await page.click('#save');
  await page.waitForSelector('#conflict .diff');
  const diff = await page.textContent('#conflict .diff');
  assert.match(diff, /# edited by hand/);
  assert.equal(fs.readFileSync(file, 'utf8'), hand, 'the hand edit is still there');
  assert.equal(await page.inputValue('#file-text'), mine, 'the console kept the user\'s text');
  await shot('editor-conflict');
});

test('journey: canvas, journey test on pasted events draws a profile\'s path', async () => {
  // the list: each journey's control and profiles, as GET /v1/journeys says
  const list = (await srv.api('GET', '/v1/journeys')).json.journeys.find((j) => j.journey === 'cart-abandon');
  await open(`#/journeys`);
  await page.waitForSelector('a[href="#/journeys/cart-abandon"]');
  const row = await page.textContent('tr:has(a[href="#/journeys/cart-abandon"])');
  assert.ok(row.startsWith(`cart-abandon${list.control}${list.profiles}`), row);
  await shot('journeys');
  await open(`#/journeys/cart-abandon`);
  await page.waitForSelector('#canvas svg g.node');
  assert.equal(await page.textContent('#control'), list.control);
  const events = fs.readFileSync(path.join(srv.dir, 'conf/events/demo.jsonl'), 'utf8');
  await page.fill('#events', events);
  await page.click('#run-test');
  await page.waitForSelector('#test-result [data-profile="p1"]');
  const cli = JSON.parse(baton(srv.dir, 'journey', 'test', 'cart-abandon', '--events', path.join(srv.dir, 'conf/events/demo.jsonl'), '--json'));
  await page.click('#test-result [data-profile="p1"]');
  const marked = await page.$$eval('#canvas g.node.path', (g) => g.map((x) => x.dataset.node));
  assert.deepEqual(marked.sort(), [...new Set(cli.profiles.p1.path)].sort());
  await shot('journey');
});

test('journey editor: add a node, connect it from a form, save; check\'s warnings shown', async () => {
  const file = path.join(srv.dir, 'conf/journeys/cart-abandon.cfg');
  const before = fs.readFileSync(file, 'utf8');
  await open(`#/journeys/cart-abandon/edit`);
  await page.waitForSelector('#check-ok');
  await page.click('#edit-canvas [data-node="react"]');
  await page.selectOption('#add-type', 'end');
  await page.fill('#add-id', 'bye');
  await page.click('#add');
  await page.waitForSelector('#edit-canvas [data-node="bye"]');
  // connect: the wait's timeout now leads to the new end
  await page.click('#edit-canvas [data-node="react"]');
  await page.selectOption('#f-on_timeout', 'bye');
  // the check of this text (not of the one before): 'points' is now the node left behind
  await page.waitForFunction(() => /node 'points' cannot be reached/.test(document.querySelector('#check-list')?.textContent || ''));
  await page.waitForSelector('#check-ok');
  assert.doesNotMatch(await page.textContent('#check-list'), /'bye' cannot be reached/);
  assert.ok(await page.$('#edit-canvas g.edge[data-edge="react->bye"]'), 'the new edge is drawn');
  await page.check('#drop-comments');
  await page.click('#save');
  await page.waitForSelector('#status.ok');
  const after = fs.readFileSync(file, 'utf8');
  assert.match(after, /\{ id = "bye"; type = "end"; \}/);
  assert.match(after, /on_timeout = "bye"/);
  // serve took the new journey: its status lists the new node
  await until(async () => (await srv.api('GET', '/v1/journeys/cart-abandon')).json?.nodes?.bye, 10000, 'the new node in the status');
  // put the first version back
  await open(`#/journeys/cart-abandon/edit`);
  await page.waitForSelector('#versions li button');
  await page.click('#versions li button');
  await until(() => fs.readFileSync(file, 'utf8') === before, 5000, 'the restored journey');
});

test('journey: paused and resumed from its page, each asked first; the state and the held events shown', async () => {
  const jname = 'cart-abandon', who = 'p9';
  const status = async () => (await srv.api('GET', `/v1/journeys/${jname}`)).json;
  const entered = async () => (await srv.api('GET', `/v1/profiles/${who}`)).json.journeys.some((j) => j.journey === jname);
  assert.equal((await status()).control, 'running');
  assert.equal(await entered(), false, `${who} is not in ${jname} yet`);
  await open(`#/journeys/${jname}`);
  await page.waitForSelector('#pause:not([disabled])');
  assert.equal(await page.textContent('#control'), 'running');
  assert.equal(await page.isDisabled('#resume'), true);
  assert.equal(await page.isHidden('#held'), true);
  // asked first: declined, nothing changes
  const asked = dialogs.length;
  dialogAnswer = false;
  await page.click('#pause');
  dialogAnswer = true;
  assert.equal(dialogs.length, asked + 1, 'a confirmation was asked');
  assert.match(dialogs.at(-1), /^Pause journey cart-abandon\? .*held/);
  assert.equal((await status()).control, 'running');
  assert.equal(await page.textContent('#control'), 'running');
  // accepted: paused in the state store, as the command line reads it
  await page.click('#pause');
  await page.waitForSelector('#control:text("paused")');
  assert.equal(JSON.parse(baton(srv.dir, 'journey', 'status', jname, '--json')).control, 'paused');
  assert.equal(await page.isDisabled('#pause'), true);
  assert.equal(await page.isDisabled('#resume'), false);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'resume', 'the keyboard goes on from Resume');
  assert.match(await page.textContent('#status'), /cart-abandon: paused \(was running\)/);
  // a cart event while paused is held (the profile does not enter), and the page counts it
  const ev = { id: 'ui-cart-held-1', type: 'cart_updated', profile: who, time: new Date().toISOString(), data: { total: 42, items: 1 } };
  const r = await srv.api('POST', '/v1/events', ev, TOKENS.ingest);
  assert.equal(r.status, 202, r.text);
  await until(async () => (await status()).held === 1, 10000, 'the held event');
  assert.equal(await entered(), false, 'not entered while paused');
  assert.match(baton(srv.dir, 'journey', 'status', jname), /^journey cart-abandon \(paused, 1 event\(s\) held\)/);
  await page.waitForSelector('#held:text("1 event(s) held")', { timeout: 10000 });
  await shot('journey-paused');
  // resumed: the held event enters
  await page.click('#resume');
  assert.match(dialogs.at(-1), /^Resume journey cart-abandon\? The events held/);
  await page.waitForSelector('#control:text("running")');
  await until(entered, 10000, `${who} entered after the resume`);
  assert.equal((await status()).held, 0);
  await page.waitForSelector('#held[hidden]', { state: 'attached', timeout: 10000 });
});

test('journey: dead letters per node, counted on the canvas and listed per node (GET .../dead_letters?node=)', async () => {
  const jname = 'reminder', now = new Date().toISOString(), past = '2020-01-01T00:00:00Z';
  const evs = [
    { id: 'rm-1', type: 'appointment_booked', profile: 'p21', time: now, data: {} }, // no first_at: fails at first
    { id: 'rm-2', type: 'appointment_booked', profile: 'p22', time: now, data: {} },
    { id: 'rm-3', type: 'appointment_booked', profile: 'p23', time: now, data: { first_at: past } }, // fails at second
    { id: 'rm-4', type: 'appointment_booked', profile: 'p24', time: now, data: { first_at: past, second_at: '2099-01-01T00:00:00Z' } }, // waits at second
  ];
  const r = await srv.api('POST', '/v1/events', evs, TOKENS.ingest);
  assert.equal(r.status, 202, r.text);
  const st = await until(async () => {
    const s = (await srv.api('GET', `/v1/journeys/${jname}`)).json;
    return s.states.failed === 3 && s.nodes.second.at === 1 ? s : null;
  }, 10000, 'three failed and one waiting');
  assert.deepEqual(Object.fromEntries(Object.entries(st.nodes).map(([k, v]) => [k, v.dead_letters])), { first: 2, second: 1, done: 0 });
  // the list: per node, filtered, bounded; the reason and the event that brought the profile in
  const first = (await srv.api('GET', `/v1/journeys/${jname}/dead_letters?node=first`)).json;
  assert.equal(first.count, 2);
  assert.deepEqual(first.latest.map((d) => d.profile).sort(), ['p21', 'p22']);
  for (const d of first.latest) {
    assert.equal(d.node, 'first');
    assert.match(d.reason, /event\.first_at.*not a timestamp/);
    assert.equal(d.event.type, 'appointment_booked');
  }
  assert.equal((await srv.api('GET', `/v1/journeys/${jname}/dead_letters`)).json.count, 3);
  const one = (await srv.api('GET', `/v1/journeys/${jname}/dead_letters?node=first&limit=1`)).json;
  assert.equal(one.count, 2);
  assert.equal(one.latest.length, 1);
  const nope = await srv.api('GET', `/v1/journeys/${jname}/dead_letters?node=nope`);
  assert.equal(nope.status, 404);
  assert.deepEqual(nope.json.error.details.nodes, ['first', 'second', 'done']);
  assert.equal((await srv.api('GET', `/v1/journeys/${jname}/dead_letters?limit=0`)).status, 400);
  // the canvas: a count on each node that has dead letters, none elsewhere
  await open(`#/journeys/${jname}`);
  await page.waitForSelector('[data-badge="first"]');
  assert.equal(await page.textContent('[data-badge="first"]'), '⚠ 2');
  assert.equal(await page.textContent('[data-badge="second"]'), '⚠ 1');
  assert.equal(await page.$('[data-badge="done"]'), null);
  assert.match(await page.getAttribute('[data-node="first"]', 'aria-label'), /2 dead letter/);
  assert.equal(await page.textContent('[data-node-count="first.dead_letters"]'), '2');
  assert.equal(await page.textContent('#dead-total'), 'dead letters 3');
  // a node's list, by keyboard
  await page.focus('[data-node="second"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#node-dead li');
  assert.deepEqual(await page.$$eval('#node-dead li', (l) => l.map((x) => x.dataset.deadProfile)), ['p23']);
  assert.match(await page.textContent('#node-dead'), /event\.second_at/);
  await page.click('[data-node="first"]');
  await page.waitForFunction(() => document.querySelectorAll('#node-dead li').length === 2);
  assert.deepEqual((await page.$$eval('#node-dead li', (l) => l.map((x) => x.dataset.deadProfile))).sort(), ['p21', 'p22']);
  await shot('journey-dead-letters');
  await page.click('[data-node="done"]');
  await page.waitForSelector('#node-title, #node-panel h2:text("done")');
  assert.equal(await page.$('#node-dead li'), null);
});

test('channels: switched off in the console, written to baton.cfg, and a journey node records skipped', async () => {
  const before = fs.readFileSync(srv.cfgPath, 'utf8');
  await open(`#/channels`);
  await page.waitForSelector('button[data-channel="email"]');
  await page.click('button[data-channel="email"]');
  await until(async () => (await srv.api('GET', '/v1/channels/email')).json?.enabled === false, 10000, 'email off');
  const cfg = fs.readFileSync(srv.cfgPath, 'utf8');
  assert.match(cfg, /email: \{ enabled = false;/);
  assert.equal(cfg.replace('email: { enabled = false;', 'email: { enabled = true;'), before, 'nothing else in the file changed');
  await page.waitForSelector('[data-state="email"]:text("off")');
  // rate and queue as GET /v1/channels gives them
  const sms = (await srv.api('GET', '/v1/channels/sms')).json;
  const mailRow = await page.textContent('tr:has(button[data-channel="mail"])');
  assert.match(mailRow, /no limit/);
  assert.match(await page.textContent('tr:has(button[data-channel="sms"])'), new RegExp(`not running.*${sms.rate}/s`));
  assert.equal(await page.textContent('[data-failures="mail"]'), 'none');
  await shot('channels');
  // a sign-up: the welcome journey's first node sends on email
  const ev = { id: 'ui-signup-1', type: 'signed_up', profile: 'p7', time: new Date().toISOString(), data: {} };
  const r = await srv.api('POST', '/v1/events', ev, TOKENS.ingest);
  assert.equal(r.status, 202, r.text);
  await until(async () => JSON.stringify((await srv.api('GET', '/v1/profiles/p7')).json).includes('skipped'), 10000, 'the skipped step');
  await open(`#/profiles/p7`);
  await page.waitForSelector('#timeline');
  assert.match(await page.textContent('#timeline'), /skipped/);
  // and the journey's canvas counts it on the node
  await open(`#/journeys/welcome`);
  await page.waitForSelector('[data-node-count="hello.skipped"]');
  assert.equal(await page.textContent('[data-node-count="hello.skipped"]'), '1');
  assert.match(await page.textContent('#canvas [data-node="hello"]'), /skipped 1/);
  // and on again
  await open(`#/channels`);
  await page.click('button[data-channel="email"]');
  await until(async () => (await srv.api('GET', '/v1/channels/email')).json?.enabled === true, 10000, 'email on');
});

test('profiles: a campaign run from the console, then the profile it reached', async () => {
  await open(`#/campaigns/stores`);
  await page.waitForSelector('#run');
  await page.click('#run');
  await page.waitForSelector('#run-status [data-status="done"]', { timeout: 90000 });
  const d = await srv.api('GET', '/v1/deliveries?channel=mail');
  const rows = d.json.deliveries;
  assert.ok(rows.length > 0, 'the run delivered');
  const who = rows[0].profile;
  await open(`#/profiles`);
  await page.fill('#profile-q', who);
  await page.press('#profile-q', 'Enter');
  await page.waitForSelector('#timeline');
  assert.match(await page.textContent('#timeline'), /campaign stores\/(letters|others)/);
  // the same profile by its address: the email the profiles table holds
  const email = execFileSync('sqlite3', [path.join(srv.dir, 'conf/var/crm.db'), `SELECT email FROM profiles WHERE id = '${who}'`], { encoding: 'utf8' }).trim();
  assert.ok(email, `${who} has an email`);
  await open(`#/profiles`);
  await page.fill('#profile-q', email);
  await page.press('#profile-q', 'Enter');
  await page.waitForSelector(`#profile-title:text("Profile ${who}")`);
  assert.match(await page.textContent('#timeline'), /campaign stores\/(letters|others)/);
  // its row and, per channel, address, consent and suppression
  const rec = (await srv.api('GET', `/v1/profiles/${who}/record`)).json;
  assert.equal(rec.fields.email, email);
  assert.ok((await page.textContent('#profile-fields')).includes(email));
  const emailRow = await page.textContent('tr:has([data-suppressed="email"])');
  assert.ok(emailRow.includes(email), emailRow);
  assert.equal(await page.textContent('[data-suppressed="email"]'), 'no');
  await shot('profile');
  await open(`#/deliveries`);
  await page.fill('#d-channel', 'mail');
  await page.press('#d-channel', 'Enter');
  await page.waitForSelector('#deliveries-out table');
  await shot('deliveries');
});

test('channels: the rate each channel actually sends at (the dispatcher\'s last minute), beside its limit', async () => {
  // the stores run of the test before sent on mail, moments ago
  const mail = (await srv.api('GET', '/v1/channels/mail')).json;
  assert.ok(mail.sent_last_minute > 0, JSON.stringify(mail));
  assert.ok(mail.sent_last_minute <= mail.counts.sent, 'the last minute is part of everything sent');
  assert.equal(mail.sent_per_s, mail.sent_last_minute / 60);
  const email = (await srv.api('GET', '/v1/channels/email')).json;
  assert.equal(email.sent_last_minute, 0, 'no SMTP server: nothing sent on email');
  assert.equal((await srv.api('GET', '/v1/channels/sms')).json.sent_last_minute, null, 'sms is not running');
  // the page says what the API says (the window moves on: read both until they agree)
  await until(async () => {
    await open('#/channels');
    await page.waitForSelector('[data-sending="mail"]');
    const shown = await page.textContent('[data-sending="mail"]');
    const now = (await srv.api('GET', '/v1/channels/mail')).json;
    return shown === `${now.sent_last_minute.toLocaleString('en-US')} in the last minute (${now.sent_per_s.toFixed(2)}/s)`;
  }, 10000, 'the page and the API agree on mail\'s rate');
  assert.equal(await page.textContent('[data-sending="email"]'), '0 in the last minute (0.00/s)');
  assert.equal(await page.textContent('[data-sending="sms"]'), 'not running');
  assert.match(await page.textContent('tr:has([data-sending="email"])'), /200\/s/, 'the configured limit beside it');
});

test('channels: recent failures: a newsletter run on email with no SMTP server lists them, as the API gives them', async () => {
  assert.deepEqual((await srv.api('GET', '/v1/channels/email')).json.last_errors, [], 'no failure yet');
  const r = await srv.api('POST', '/v1/campaigns/newsletter/runs', { dry_run: false });
  assert.equal(r.status, 202, r.text);
  // every message fails (connection refused, after its retries): the run fails
  const run = await until(async () => { const x = (await srv.api('GET', `/v1/campaigns/newsletter/runs/${r.json.run}`)).json; return x.status !== 'running' ? x : null; }, 60000, 'the newsletter run');
  assert.equal(run.status, 'failed', JSON.stringify(run));
  const email = await until(async () => { const c = (await srv.api('GET', '/v1/channels/email')).json; return c.last_errors.length === 5 && c.queue === 0 ? c : null; }, 20000, 'five failures');
  assert.ok(email.counts.failed > 0);
  assert.equal(email.sent_last_minute, 0);
  await open('#/channels');
  await page.waitForSelector('[data-failures="email"] li');
  const shown = await page.$$eval('[data-failures="email"] li', (l) => l.map((x) => [x.dataset.key, x.querySelector('time').textContent, x.textContent]));
  const api = (await srv.api('GET', '/v1/channels/email')).json.last_errors;
  assert.deepEqual(shown.map(([k, at]) => [k, at]), api.map((e) => [e.key, e.at]));
  for (const [k, , text] of shown) {
    assert.ok(k.startsWith('newsletter/'), k);
    assert.ok(text.includes(api.find((e) => e.key === k).reason), text);
    assert.match(text, /refused|connect/i, text);
  }
  assert.equal(await page.textContent('[data-failures="mail"]'), 'none');
  await shot('channels-failures');
});

test('profiles: linked rows through the source (GET /v1/profiles/ID/links/LINK), bounded, every value shown as text', async () => {
  const db = path.join(srv.dir, 'conf/var/crm.db');
  const sql = (q) => execFileSync('sqlite3', [db, q], { encoding: 'utf8' }).trim();
  // the profile with the most orders (more than the page's 10), and one with few, given a hostile order
  const [busy, nbusy] = sql('SELECT profile_id, count(*) FROM orders GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1').split('|');
  assert.ok(Number(nbusy) > 10, `${busy} has ${nbusy} orders`);
  const few = sql('SELECT profile_id FROM orders GROUP BY 1 ORDER BY count(*), 1 LIMIT 1');
  const evil = `<img src=x onerror="window.__pwned=1">'; DROP TABLE orders; --`;
  sql(`INSERT INTO orders (id, profile_id, store_id, amount, created_at) VALUES ('o0<b>x</b>', '${few}', '${evil.replace(/'/g, "''")}', 1.5, '2026-11-01T10:00:00Z')`);
  const want = sql(`SELECT id FROM orders WHERE profile_id = '${few}' ORDER BY id`).split('\n');
  // the API: the rows in key order, the schema's fields, bounded
  const api = (await srv.api('GET', `/v1/profiles/${few}/links/orders`)).json;
  assert.equal(api.entity, 'orders');
  assert.equal(api.many, true);
  assert.deepEqual(api.fields, ['id', 'profile_id', 'store_id', 'amount', 'created_at']);
  assert.deepEqual(api.rows.map((r) => r.id), want);
  assert.equal(api.rows[0].store_id, evil);
  assert.equal(api.truncated, false);
  const top = (await srv.api('GET', `/v1/profiles/${busy}/links/orders?limit=3`)).json;
  assert.deepEqual(top.rows.map((r) => r.id), sql(`SELECT id FROM orders WHERE profile_id = '${busy}' ORDER BY id LIMIT 3`).split('\n'));
  assert.equal(top.truncated, true);
  const bad = await srv.api('GET', `/v1/profiles/${few}/links/nope`);
  assert.equal(bad.status, 404);
  assert.deepEqual(bad.json.error.details.links, ['orders', 'reservations']);
  assert.equal((await srv.api('GET', `/v1/profiles/${few}/links/orders?limit=0`)).status, 400);
  assert.equal((await srv.api('GET', `/v1/profiles/nobody/links/orders`)).json.rows.length, 0);
  // the page: each link's rows as the API gives them, the hostile value as text
  await open(`#/profiles/${few}`);
  await page.waitForSelector('[data-link="orders"] table');
  await page.waitForSelector('[data-link="reservations"] h4');
  const ids = await page.$$eval('[data-link="orders"] tbody tr td:first-child', (t) => t.map((x) => x.textContent));
  assert.deepEqual(ids, want);
  assert.ok((await page.textContent('[data-link="orders"]')).includes(evil), 'the value is shown as it is');
  assert.equal(await page.$('#profile-links img, #profile-links b'), null, 'no markup from the data');
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(sql('SELECT count(*) FROM orders') > 0, true, 'the orders table is still there');
  await shot('profile-links');
  // a long list: 10 first, then more on request
  await open(`#/profiles/${busy}`);
  await page.waitForSelector('[data-link="orders"] table');
  assert.equal(await page.$$eval('[data-link="orders"] tbody tr', (t) => t.length), 10);
  assert.match(await page.textContent('[data-link="orders"] h4'), /10\+ row/);
  await page.click('[data-more="orders"]');
  await page.waitForFunction((n) => document.querySelectorAll('[data-link="orders"] tbody tr').length === n, Number(nbusy));
  assert.equal(await page.$('[data-more="orders"]'), null);
});

test('campaign canvas: an exclusion draws its subtracted input apart (after stores saved its audience)', async () => {
  // an exclusion: the subtracted input is drawn apart, with its count
  const rplan = JSON.parse(baton(srv.dir, 'campaign', 'plan', 'returns', '--json'));
  await open(`#/campaigns/returns`);
  await page.waitForSelector('#canvas svg g.edge');
  const minus = await page.$$eval('#canvas g.edge.minus', (gs) => gs.map((g) => [g.dataset.transition, g.querySelector('text.count').textContent]));
  assert.deepEqual(minus, [['active', `− ${rplan.counts.active}`]]);
  await page.click('[data-node="gone"]');
  assert.match(await page.textContent('#node-explain'), /not in “active”: those inputs are subtracted/);
});

test('campaign signal: a run held at a signal activity is signaled from its page with a parameter, asked first', async () => {
  const plan = JSON.parse(baton(srv.dir, 'campaign', 'plan', 'launch', '--json'));
  assert.ok(plan.counts.gold > 0);
  assert.equal(plan.counts['pick.big'], 0, 'by default (discount 10) the rows go to small');
  await open(`#/campaigns/launch`);
  await page.waitForSelector('#run');
  await page.click('#run');
  await page.waitForSelector('#run-status [data-status="waiting"]', { timeout: 90000 });
  await page.waitForSelector('#signal');
  assert.equal(await page.textContent('[data-hold="go"]'), 'waiting');
  const id = (await srv.api('GET', '/v1/campaigns/launch/runs')).json.runs[0].id;
  const run = async () => (await srv.api('GET', `/v1/campaigns/launch/runs/${id}`)).json;
  assert.equal((await run()).status, 'waiting');
  // a page opened later follows the waiting run too
  await open(`#/campaigns/launch`);
  await page.waitForSelector('#signal');
  assert.match(await page.textContent('#run-status'), new RegExp(`Run #${id}`));
  await page.fill('#param-discount', '25');
  // declined: nothing sent
  dialogAnswer = false;
  await page.click('#signal');
  dialogAnswer = true;
  assert.equal(dialogs.at(-1), `Signal run #${id} of launch? go lets its rows go on now, with discount = 25.`);
  assert.equal((await run()).status, 'waiting');
  // accepted: the run goes on with the signal's discount
  await page.click('#signal');
  await page.waitForSelector('#run-status [data-status="done"]', { timeout: 90000 });
  const r = await run();
  assert.equal(r.status, 'done');
  assert.equal(r.holds.find((x) => x.activity === 'go').state, 'signaled');
  const pick = r.activities.find((a) => a.id === 'pick').counts;
  assert.equal(pick['pick.big'], plan.counts.gold, JSON.stringify(pick));
  assert.equal(pick['pick.small'], 0);
  await page.waitForSelector('[data-hold="go"]:text("signaled")');
  assert.equal(await page.$('#signal'), null, 'nothing left to signal');
  await shot('campaign-signaled');
});

test('scopes: a read-only token sees no editor and cannot run', async () => {
  await login(TOKENS.viewer);
  await open(`#/campaigns/winback`);
  await page.waitForSelector('#canvas svg');
  assert.equal(await page.$('a[href="#/campaigns/winback/edit"]'), null);
  assert.equal(await page.isDisabled('#run'), true);
  assert.equal(await page.isDisabled('#dry-run'), true);
  await open(`#/journeys/cart-abandon`);
  await page.waitForSelector('#control');
  for (const id of ['#pause', '#resume', '#close']) assert.equal(await page.isDisabled(id), true, `${id} needs campaigns:run`);
});

test('an expired token returns to the login form with a message', async () => {
  await login(TOKENS.revoked);
  await open(`#/campaigns`);
  await page.waitForSelector('table');
  // the operator removes the token and reloads serve
  const cfg = fs.readFileSync(srv.cfgPath, 'utf8');
  fs.writeFileSync(srv.cfgPath, cfg.replace(/,\n\s*\{ name = "revoked";[^}]*\}/, ''));
  const reloads = (srv.log().match(/reload done/g) || []).length;
  process.kill(srv.proc.pid, 'SIGHUP');
  // (polled through the log: failed logins from one address are rate limited)
  await until(() => (srv.log().match(/reload done/g) || []).length > reloads, 10000, 'the reload');
  assert.equal((await srv.api('GET', '/v1/campaigns', undefined, TOKENS.revoked)).status, 401);
  await open(`#/journeys`);
  await page.waitForSelector('#login-error:not(:empty)');
  assert.match(await page.textContent('#login-error'), /Logged out/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('baton.token')), null);
});

// every element one can Tab to has a name a screen reader reads (chromium's
// own accessibility tree), and the keyboard alone reaches every node of the
// canvas, the run buttons and the navigation
async function focusableNames() {
  const cdp = await page.context().newCDPSession(page);
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  await cdp.detach();
  return nodes.filter((n) => !n.ignored && (n.properties || []).some((p) => p.name === 'focusable' && p.value.value))
    // the page and its <main> take focus only from script (after a navigation), never from Tab
    .filter((n) => !['RootWebArea', 'main'].includes(n.role?.value))
    .map((n) => ({ role: n.role?.value, name: (n.name?.value || '').trim() }));
}

async function tabStops(max = 300) {
  const stops = [];
  await page.evaluate(() => document.activeElement?.blur());
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const s = await page.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body) return null;
      return e.dataset.node ? `node:${e.dataset.node}` : e.id ? `#${e.id}` : e.dataset.nav ? `nav:${e.dataset.nav}` : `${e.tagName.toLowerCase()}:${e.textContent.trim().slice(0, 30)}`;
    });
    if (s === null || stops[0] === s) break;
    stops.push(s);
  }
  return stops;
}

test('keyboard and screen readers: every Tab stop has an accessible name; Tab reaches every canvas node', async () => {
  await login();
  for (const [hash, ready] of [['#/campaigns/winback', '#canvas svg g.node'], ['#/journeys/welcome', '#canvas svg g.node'],
    ['#/campaigns/winback/edit', '#check-ok'], ['#/channels', 'button[data-channel]'], ['#/profiles/p7', '#profile-title'], ['#/deliveries', '#deliveries-out']]) {
    await open(hash);
    await page.waitForSelector(ready);
    const f = await focusableNames();
    assert.ok(f.length > 3, `${hash}: focusable elements found`);
    const unnamed = f.filter((x) => !x.name);
    assert.deepEqual(unnamed, [], `${hash}: focusable elements without an accessible name`);
  }
  await open('#/campaigns/winback');
  await page.waitForSelector('#canvas svg g.node');
  const stops = await tabStops();
  const nodes = await page.$$eval('#canvas [data-node]', (g) => g.map((x) => `node:${x.dataset.node}`));
  for (const n of nodes) assert.ok(stops.includes(n), `Tab reaches ${n} (stops: ${stops.join(' ')})`);
  for (const id of ['#run', '#dry-run', '#proof']) assert.ok(stops.includes(id), `Tab reaches ${id}`);
  assert.ok(stops.some((s) => s.startsWith('nav:') || /^a:Campaigns/.test(s)), `Tab reaches the navigation (${stops.slice(0, 8).join(' ')})`);
  // and the canvas names its nodes for a screen reader: type, id, channel
  const f = await focusableNames();
  assert.ok(f.some((x) => /letter_a/.test(x.name) && /mail/.test(x.name)), JSON.stringify(f.filter((x) => /letter/.test(x.name))));
});

test('benchmark: a 100-activity campaign canvas', async () => {
  await login();
  await open(`#/campaigns/big`);
  await page.waitForSelector('#canvas svg g.node');
  assert.equal(await page.$$eval('#canvas g.node', (g) => g.length), 100);
  const ms = await page.evaluate(async () => {
    const { draw } = await import('./js/graph.js');
    const { parse } = await import('./js/libcfg.js');
    const { campaignGraph } = await import('./js/model.js');
    const r = await fetch('/v1/campaigns/big/file', { headers: { Authorization: `Bearer ${sessionStorage.getItem('baton.token')}` } });
    const text = (await r.json()).text;
    const box = document.createElement('div');
    document.body.appendChild(box);
    const runs = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const g = campaignGraph(parse(text), null);
      draw(box, 'bench', g.nodes, g.edges, () => {});
      box.getBoundingClientRect();
      runs.push(performance.now() - t0);
    }
    box.remove();
    return runs;
  });
  ms.sort((a, b) => a - b);
  console.log(`bench: 100-activity campaign canvas: parse + layout + SVG, median ${ms[2].toFixed(1)} ms, min ${ms[0].toFixed(1)} ms, max ${ms[4].toFixed(1)} ms (5 runs; target < 300 ms)`);
  await shot('big-campaign');
});
