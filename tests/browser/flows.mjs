// The "must show" browser flows: a real Chromium (Debian's, driven by playwright-core) walks
// Salve's pages as patients and staff would. Every page visited is checked with axe-core
// (no serious or critical violation) and screenshotted (full page) into OUT_DIR.
//
// Started by crates/salve-server/tests/browser.rs, which serves a seeded practice and a
// control server; run it through `cargo nextest run -p salve-server --test browser`.
//
// Environment:
//   BASE_URL     the Salve server (http://127.0.0.1:PORT)
//   CONTROL_URL  the test's control server: POST /advance?seconds=N, GET /totp?user=ROLE,
//                GET /outbox, GET /csp-reports, GET /seed
//   OUT_DIR      where screenshots go
//   CHROMIUM     the browser binary (default /usr/bin/chromium)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';

const requireTools = createRequire(new URL('../../tools/package.json', import.meta.url));
const { chromium } = requireTools('playwright-core');
const axeSource = readFileSync(requireTools.resolve('axe-core/axe.min.js'), 'utf8');

const BASE_URL = required('BASE_URL');
const CONTROL_URL = required('CONTROL_URL');
const OUT_DIR = required('OUT_DIR');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** How long a single wait for something on a page may take (the server is local). */
const WAIT = 30_000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`flows.mjs: ${name} is not set (run through cargo's browser test)`);
    process.exit(2);
  }
  return value;
}

// ---- the control server ---------------------------------------------------------------------

async function control(path, init) {
  const r = await fetch(CONTROL_URL + path, init);
  assert.equal(r.status, 200, `control ${path}: ${r.status}`);
  return r.json();
}
const advance = (seconds) => control(`/advance?seconds=${seconds}`, { method: 'POST' });
const totp = async (user) => (await control(`/totp?user=${user}`)).code;
const outbox = async () => (await control('/outbox')).messages;
const cspReports = async () => (await control('/csp-reports')).count;

/** Waits (polling the control server) until the outbox has a message that `match` accepts. */
async function waitForOutbox(match, what) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const found = (await outbox()).filter(match);
    if (found.length > 0) return found[found.length - 1];
    if (Date.now() > deadline) {
      const recent = (await outbox()).slice(-5).map((m) => `  ${m.channel} to ${m.to}: ${m.body}`);
      assert.fail(`no ${what} in the outbox within ${WAIT} ms; the latest:\n${recent.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---- the browser ----------------------------------------------------------------------------

let browser;
let seed;
let shot = 0;
/** CSP violations and script errors seen in any page's console. */
const consoleProblems = [];
/** Responses from Salve with a server error, or for a missing static file. */
const badResponses = [];

before(async () => {
  mkdirSync(OUT_DIR, { recursive: true });
  // Screenshots of an earlier run would mislead: start empty.
  for (const f of readdirSync(OUT_DIR)) if (/^\d+-.*\.png$/.test(f)) rmSync(join(OUT_DIR, f));
  seed = await control('/seed');
  // launch() gives the browser a fresh temporary profile (user-data-dir), removed on close.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** A new browser context (own cookies) and page: one per person. */
async function person(name, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('console', (msg) => {
    const text = msg.text();
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(text)) {
      consoleProblems.push(`${name}: ${text}`);
    }
  });
  page.on('pageerror', (err) => consoleProblems.push(`${name}: uncaught ${err.message}`));
  page.on('response', (res) => {
    const url = res.url();
    if (!url.startsWith(BASE_URL)) return;
    if (res.status() >= 500 || (url.includes('/static/') && res.status() >= 400)) {
      badResponses.push(`${name}: ${res.status()} ${new URL(url).pathname}`);
    }
  });
  return { context, page };
}

/** A phone-sized context for patients (their pages are mobile-first). */
const patientPerson = (name, locale = 'en-US') =>
  person(name, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, locale });

/**
 * Checks the page as it is now: axe-core finds no serious or critical violation, and a
 * full-page screenshot is saved as NN-name.png.
 */
async function check(page, name) {
  shot += 1;
  const file = join(OUT_DIR, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  // Evaluated through the DevTools protocol: the page's CSP (script-src 'self') does not apply,
  // and no script element is added to the page.
  const hasAxe = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!hasAxe) await page.evaluate(axeSource);
  const results = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ['violations'] }),
  );
  const serious = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const report = serious
    .map(
      (v) =>
        `  ${v.impact}: ${v.id}: ${v.help}\n` +
        v.nodes.map((n) => `    ${n.target.join(' ')}: ${n.failureSummary.replace(/\n/g, ' ')}`).join('\n'),
    )
    .join('\n');
  assert.equal(serious.length, 0, `axe on ${name} (${page.url()}):\n${report}`);
  return file;
}

async function expectText(page, text) {
  await page.getByText(text, { exact: false }).first().waitFor({ state: 'visible' });
}

/** The secure link in a text or email the local outbox "sent". */
function secureLink(message) {
  const m = message.body.match(/https?:\/\/\S+\/p\/[A-Za-z0-9_\-.~]+/);
  assert.ok(m, `a secure link in: ${message.body}`);
  return m[0];
}

// The reviewed OneTimeCode wording in the patient's language (salve-core system_messages):
// "… code is 123456 …" in English, "… clave de acceso es 123456 …" in Spanish.
const CODE = /\b(?:code is|clave de acceso es) (\d{6})\b/;

/** The 6-digit verification code in the newest code message to `to`. */
async function verificationCode(to, after) {
  const msg = await waitForOutbox(
    (m) => m.to === to && CODE.test(m.body) && !after.has(m.id + '.' + m.attempt),
    `verification code to ${to}`,
  );
  return msg.body.match(CODE)[1];
}

const outboxKeys = async () => new Set((await outbox()).map((m) => m.id + '.' + m.attempt));

// A small valid PNG (a 16x16 red square), built here: no fixture file needed.
function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function redSquarePng(size = 16) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(size * 3, Buffer.from([200, 30, 30]))]);
  const raw = Buffer.concat(Array.from({ length: size }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(raw)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---- the flows ------------------------------------------------------------------------------

test('home page: the strict CSP page frame loads its own styles and scripts', async () => {
  const { context, page } = await person('visitor');
  const res = await page.goto(BASE_URL + '/');
  assert.equal(res.status(), 200);
  const csp = res.headers()['content-security-policy'];
  assert.match(csp, /script-src 'self'/);
  await expectText(page, 'Secure messaging between this practice and its patients');
  assert.equal(await page.locator('h1').count(), 1);
  assert.equal(await page.locator('h1').innerText(), 'Salve');
  // The stylesheet applied (salve.css sets the skip link off-screen until focused).
  const styled = await page.evaluate(() => document.styleSheets.length);
  assert.ok(styled >= 1, 'salve.css loaded');
  await check(page, 'home');
  await context.close();
});

/** Shared between flows: the patient's page stays open while staff work. */
const state = {};

test('a link scanner fetching the secure link does not spend it', async () => {
  const ana = seed.patients.ana;
  const notice = await waitForOutbox(
    (m) => m.to === ana.phone && /\/p\//.test(m.body),
    'secure-message notification to Ana',
  );
  // Content-free: nothing of the message is in the text.
  for (const word of ['cholesterol', 'lab', 'results', ana.given, ana.family]) {
    assert.ok(!notice.body.toLowerCase().includes(word.toLowerCase()), `${word} in "${notice.body}"`);
  }
  state.anaLink = secureLink(notice);
  // What a mail or SMS link scanner does: a plain GET, no cookies, not following redirects.
  const scan = await fetch(state.anaLink, { redirect: 'manual' });
  assert.ok([200, 302, 303].includes(scan.status), `scanner got ${scan.status}`);
  assert.equal(scan.headers.get('cache-control'), 'no-store');
  const again = await fetch(state.anaLink, { redirect: 'follow' });
  assert.ok(again.status < 500, `a followed scan got ${again.status}`);
  const text = await again.text();
  assert.ok(!text.includes('cholesterol'), 'no message content without verification');
});

test('patient: secure link, date of birth, code by text, then the practice\'s message', async () => {
  const ana = seed.patients.ana;
  const { context, page } = await patientPerson('patient Ana');
  state.anaContext = context;
  state.anaPage = page;
  await page.goto(state.anaLink);
  assert.match(new URL(page.url()).pathname, /^\/portal\/verify/);
  await page.getByRole('heading', { level: 1, name: "Confirm it's you" }).waitFor();
  await check(page, 'patient-verify');

  // A wrong date first: a clear message on the page, linked to the field.
  await page.getByLabel('Date of birth').fill('1980-01-01');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.locator('[role=alert]').first().waitFor();
  assert.equal(await page.getByLabel('Date of birth').getAttribute('aria-invalid'), 'true');
  await check(page, 'patient-verify-wrong-date');

  const before = await outboxKeys();
  await page.getByLabel('Date of birth').fill(ana.birth_date);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(/\/portal\/code/);
  await expectText(page, 'We sent a 6-digit code by text message to the number ending');
  await check(page, 'patient-code');
  const code = await verificationCode(ana.phone, before);
  await page.getByLabel('Code', { exact: true }).fill(code);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL((u) => u.pathname === '/portal');
  await page.getByRole('heading', { level: 1, name: 'Your messages' }).waitFor();
  await expectText(page, `Hello, ${ana.given}.`);
  await expectText(page, seed.first_message.text);
  await check(page, 'patient-messages');

  // Who has accessed the record so far (the flows below add the clinician's visits).
  await page.getByRole('link', { name: 'Who accessed my record' }).click();
  await page.getByRole('heading', { level: 1, name: 'Who accessed my record' }).waitFor();
  state.accessesBefore = await page.locator('ul.access li').filter({ hasText: seed.staff.clinician.name }).count();
  await check(page, 'patient-access-before');
  await page.getByRole('link', { name: 'Messages' }).click();
  await page.getByRole('heading', { level: 1, name: 'Your messages' }).waitFor();
});

test('patient: Spanish-speaking patient gets the pages in Spanish', async () => {
  const sofia = seed.patients.sofia;
  const notice = await waitForOutbox(
    (m) => m.to === sofia.phone && /\/p\//.test(m.body),
    'secure-message notification to Sofia',
  );
  // Her phone is set to Spanish: the pages before verification follow the browser's language.
  const { context, page } = await patientPerson('patient Sofia', 'es-MX');
  await page.goto(secureLink(notice));
  await page.getByRole('heading', { level: 1, name: 'Confirme quién es' }).waitFor();
  assert.equal(await page.locator('html').getAttribute('lang'), 'es');
  await check(page, 'patient-es-verify');
  const before = await outboxKeys();
  await page.getByLabel('Fecha de nacimiento').fill(sofia.birth_date);
  await page.getByRole('button', { name: 'Continuar' }).click();
  await page.waitForURL(/\/portal\/code/);
  const code = await verificationCode(sofia.phone, before);
  await page.getByLabel('Código', { exact: true }).fill(code);
  await page.getByRole('button', { name: 'Continuar' }).click();
  await page.getByRole('heading', { level: 1, name: 'Sus mensajes' }).waitFor();
  await expectText(page, seed.second_message.text);
  await check(page, 'patient-es-messages');
  await context.close();
});

/** Signs a seeded staff member in: password, authenticator code, guidelines when asked. */
async function staffSignIn(page, who, label, next) {
  const staff = seed.staff[who];
  await page.goto(BASE_URL + '/sign-in' + (next ? `?next=${encodeURIComponent(next)}` : ''));
  await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
  if (label) await check(page, `${label}-sign-in`);
  await page.getByLabel('Email').fill(staff.email);
  await page.getByLabel('Password').fill(seed.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(/\/sign-in\/code/);
  await page.getByRole('heading', { level: 1, name: 'Enter your authentication code' }).waitFor();
  if (label) await check(page, `${label}-sign-in-code`);
  await page.getByRole('textbox', { name: /^Authentication code/ }).fill(await totp(who));
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/sign-in'));
  if (new URL(page.url()).pathname === '/guidelines') {
    await page.getByRole('heading', { level: 1, name: 'Messaging guidelines' }).waitFor();
    await expectText(page, seed.guidelines);
    if (label) await check(page, `${label}-guidelines`);
    await page.getByRole('button', { name: 'I have read and accept these guidelines' }).click();
    await page.waitForURL((u) => u.pathname !== '/guidelines');
  }
  // The page frame names who is signed in.
  await page.locator('header .who').filter({ hasText: staff.name }).waitFor();
}

test('staff: clinician signs in with an authenticator code and accepts the guidelines', async () => {
  const { context, page } = await person('clinician');
  state.clinician = page;
  state.clinicianContext = context;
  await staffSignIn(page, 'clinician', 'clinician');
  if (new URL(page.url()).pathname !== '/inbox') await page.goto(BASE_URL + '/inbox');
  await page.getByRole('heading', { level: 1, name: 'Inbox' }).waitFor();
  await check(page, 'inbox');
});

test('patient replies with a photo; the open staff inbox shows it live, without a reload', async () => {
  const patient = state.anaPage;
  const inbox = state.clinician;
  assert.ok(patient && inbox, 'the patient and the clinician are signed in (earlier flows)');
  const ana = seed.patients.ana;
  // A mark on the staff page's window: a reload would lose it.
  await inbox.evaluate(() => {
    window.stillTheSamePage = true;
  });
  const row = inbox.locator('#inbox-list tr').filter({ hasText: `${ana.given} ${ana.family}` });
  const unreadBefore = await row.locator('.unread-count').count();
  assert.equal(unreadBefore, 0, 'nothing unread from Ana before she replies');

  state.replyText = 'Thank you. Here is a photo of the rash on my arm.';
  await patient.getByLabel('Your message').fill(state.replyText);
  await patient.getByLabel('Attach a photo or PDF').setInputFiles({
    name: 'arm.png',
    mimeType: 'image/png',
    buffer: redSquarePng(),
  });
  await patient.getByRole('button', { name: 'Send' }).click();
  await patient.getByRole('status').filter({ hasText: 'Message sent.' }).waitFor();
  await expectText(patient, state.replyText);
  await patient.locator('.files a').filter({ hasText: 'arm.png' }).waitFor();
  await check(patient, 'patient-replied');

  // The inbox learns of it over its event stream and refreshes the list in place.
  await row.locator('.unread-count').filter({ hasText: '1 unread' }).waitFor();
  assert.equal(await inbox.evaluate(() => window.stillTheSamePage), true, 'the inbox did not reload');
  await inbox.locator('#inbox-status').filter({ hasText: 'New messages' }).waitFor({ state: 'attached' });
  await check(inbox, 'inbox-live-update');
});

test('staff: the composer explains the route; a medication goes by secure link, a reminder by text', async () => {
  const page = state.clinician;
  const ana = seed.patients.ana;
  await page
    .locator('#inbox-list tr')
    .filter({ hasText: `${ana.given} ${ana.family}` })
    .getByRole('link')
    .first()
    .click();
  await page.waitForURL(/\/inbox\/[^/?]+/);
  state.conversationUrl = page.url().split('?')[0];
  await page.getByRole('heading', { level: 1, name: `${ana.given} ${ana.family}` }).waitFor();
  await expectText(page, seed.first_message.text);
  await expectText(page, state.replyText);
  await page.locator('.attachments a').filter({ hasText: 'arm.png' }).waitFor();
  await check(page, 'conversation');

  const decision = page.locator('#route-decision');
  assert.equal(await decision.getAttribute('aria-live'), 'polite');
  state.medication = 'Please start metformin 500 mg twice a day with meals.';
  await page.getByLabel('Message', { exact: true }).fill(state.medication);
  await decision.filter({ hasText: /Will go by secure link: .*medication.*metformin/ }).waitFor();
  await check(page, 'composer-secure-medication');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.getByRole('status').filter({ hasText: 'Message sent.' }).waitFor();
  await page.locator('.thread .msg-text').filter({ hasText: state.medication }).waitFor();

  state.reminder = 'Your appointment is on Monday at 9 AM.';
  await page.getByLabel('Message', { exact: true }).fill(state.reminder);
  await decision.filter({ hasText: 'Will go by text message' }).waitFor();
  await check(page, 'composer-text-reminder');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.getByRole('status').filter({ hasText: 'Message sent.' }).waitFor();
  await page.locator('.thread .msg-text').filter({ hasText: state.reminder }).waitFor();
  await check(page, 'conversation-after-sending');
});

test('admin: the local outbox shows a content-free notice for the secure message and the reminder verbatim', async () => {
  const ana = seed.patients.ana;
  // The worker sends both; wait until the outbox has them before looking at the page.
  await waitForOutbox((m) => m.to === ana.phone && m.body === state.reminder, 'the reminder text');
  const notices = (await outbox()).filter((m) => m.to === ana.phone && /\/p\//.test(m.body));
  assert.ok(notices.length >= 2, 'a second secure-link notification for the medication message');

  const { context, page } = await person('admin');
  state.admin = page;
  state.adminContext = context;
  await staffSignIn(page, 'admin', 'admin');
  await page.goto(BASE_URL + '/admin/outbox');
  await page.getByRole('heading', { level: 1, name: 'Outbox' }).waitFor();
  const bodies = page.locator('blockquote.sent-body');
  await bodies.filter({ hasText: state.reminder }).first().waitFor();
  const all = await page.locator('main').innerText();
  assert.ok(!/metformin/i.test(all), 'the medication is not in any text or email sent');
  assert.ok(!all.includes('rash'), "the patient's words are not in any text either");
  // The secure-link notifications are listed with their links to this server.
  const links = page.locator('blockquote.sent-body a[href*="/p/"]');
  assert.ok((await links.count()) >= 2, 'the secure links are clickable');
  await check(page, 'admin-outbox');
});

test('admin: records consent at intake', async () => {
  const page = state.admin;
  assert.ok(page, 'the admin is signed in (previous flow)');
  const noor = seed.patients.newcomer;
  await page.goto(`${BASE_URL}/admin/patients/${noor.id}/consent`);
  await page.getByRole('heading', { level: 1, name: `Consent: ${noor.given} ${noor.family}` }).waitFor();
  await expectText(page, 'No consent recorded yet.');
  await check(page, 'admin-consent-form');

  // Plain texts without the risk acknowledgment: refused with a clear message.
  await page.locator('#c-sms_plain-appointment_reminders').check();
  await page.locator('#m-intake').check();
  await page.getByRole('button', { name: 'Record consent' }).click();
  await page.locator('#sms-ack-error').waitFor();
  assert.equal(await page.locator('#sms-ack').getAttribute('aria-invalid'), 'true');
  await check(page, 'admin-consent-refused');

  await page.locator('#c-sms_plain-appointment_reminders').check();
  await page.locator('#c-sms_notify-care_messages').check();
  await page.locator('#sms-ack').check();
  await page.locator('#m-intake').check();
  await page.getByRole('textbox', { name: /^Evidence Optional: where/ }).fill('Signed intake form, scanned into the chart.');
  await page.getByRole('button', { name: 'Record consent' }).click();
  await page.locator('.success[role=status]').waitFor();
  const history = page.locator('section[aria-labelledby=history-title] tbody tr');
  assert.ok((await history.count()) >= 2, 'both grants are in the history');
  await check(page, 'admin-consent-recorded');
});

test('admin: every admin page loads under its own heading and passes axe', async () => {
  const page = state.admin;
  assert.ok(page, 'the admin is signed in (previous flow)');
  const pages = [
    ['/admin', 'Admin'],
    ['/admin/practice', 'Practice profile'],
    ['/admin/catalog', 'SMS-safe catalog'],
    ['/admin/carrier', 'Carrier registration'],
    ['/admin/providers', 'Providers'],
    ['/admin/guidelines', 'Messaging guidelines'],
    ['/admin/templates', 'Saved replies'],
    ['/admin/teams', 'Teams'],
    ['/admin/users', 'Staff'],
    ['/admin/systems', 'Connected systems'],
    ['/admin/patients', 'Patients'],
    ['/admin/restricted', 'Restricted patients'],
    ['/admin/ehr', 'EHR connection'],
    ['/admin/ehr/pull', 'Reading from the EHR'],
    ['/account', 'Your account'],
  ];
  for (const [path, heading] of pages) {
    const res = await page.goto(BASE_URL + path);
    assert.equal(res.status(), 200, `${path} answers 200`);
    const h1 = page.locator('main h1');
    await h1.waitFor();
    const text = (await h1.innerText()).trim();
    assert.equal(text, heading, `${path} heading`);
    await check(page, `tour${path.replaceAll('/', '-')}`);
  }

  // A staff member's sessions, reached the way an admin would: from the staff list.
  await page.goto(BASE_URL + '/admin/users');
  const sessions = page.locator('main a[href$="/sessions"]').first();
  await sessions.waitFor();
  await sessions.click();
  await page.waitForURL((u) => /^\/admin\/users\/[^/]+\/sessions$/.test(u.pathname));
  await page.getByRole('heading', { level: 1, name: /^Sessions of / }).waitFor();
  await check(page, 'tour-admin-user-sessions');
});

test("patient: sees who accessed their record, the clinician's name among them", async () => {
  const page = state.anaPage;
  await page.getByRole('link', { name: 'Who accessed my record' }).click();
  await page.getByRole('heading', { level: 1, name: 'Who accessed my record' }).waitFor();
  const mine = page.locator('ul.access li').filter({ hasText: seed.staff.clinician.name });
  await mine.first().waitFor();
  const after = await mine.count();
  assert.ok(after > state.accessesBefore, `the clinician's visits are listed (${state.accessesBefore} before, ${after} now)`);
  await check(page, 'patient-access-report');
});

test("auditor: finds the patient by name and sees the clinician on her access report", async () => {
  const ana = seed.patients.ana;
  const { context, page } = await person('auditor');
  // Auditors have no inbox: they sign in straight to the audit log.
  await staffSignIn(page, 'auditor', 'auditor', '/audit');
  assert.equal(new URL(page.url()).pathname, '/audit');
  await page.getByRole('heading', { level: 1, name: 'Audit log' }).waitFor();
  await check(page, 'audit-search');
  // The name goes in a POST body, never in the address.
  await page.getByLabel("Patient's name").fill(`${ana.given} ${ana.family}`);
  await page.getByRole('button', { name: 'Find patient' }).click();
  const report = page.getByRole('link', { name: `Access report for ${ana.given} ${ana.family}` });
  await report.waitFor();
  assert.ok(!page.url().includes(ana.family), 'the name is not in the address');
  await check(page, 'audit-find-patient');
  await report.click();
  await page.waitForURL((u) => u.pathname === `/audit/patients/${ana.id}`);
  await page.getByRole('heading', { level: 1, name: 'Patient access report' }).waitFor();
  const rows = page.locator('tbody tr').filter({ hasText: seed.staff.clinician.name });
  await rows.filter({ hasText: 'Viewed conversation' }).first().waitFor();
  const count = await rows.count();
  assert.ok(count > state.accessesBefore, `the clinician's accesses during the flow are listed (${count} rows)`);
  await check(page, 'audit-patient-report');

  // The auditor's other pages pass axe too.
  for (const path of ['/audit/break-glass', '/audit/consent', '/audit/verify']) {
    const res = await page.goto(BASE_URL + path);
    assert.equal(res.status(), 200, `${path} answers 200`);
    await page.locator('main h1').waitFor();
    await check(page, `tour${path.replaceAll('/', '-')}`);
  }
  await context.close();
});

test('staff: left idle, the page warns, then signs out (browser and server clocks moved)', async () => {
  const { context, page } = await person('front desk');
  // The page's timers run on a clock the test moves (installed before any page loads).
  await page.clock.install();
  await staffSignIn(page, 'front_desk');
  await page.goto(BASE_URL + '/inbox');
  await page.getByRole('heading', { level: 1, name: 'Inbox' }).waitFor();
  const idle = Number(await page.locator('body').getAttribute('data-idle-seconds'));
  assert.ok(idle > 120, `an idle timeout longer than the 2-minute warning (${idle} s)`);

  // Two minutes before the end: a modal warning, focus on "Stay signed in".
  await page.clock.fastForward((idle - 115) * 1000);
  const dialog = page.getByRole('dialog', { name: 'You will be signed out in 2 minutes for your security' });
  await dialog.waitFor();
  const stay = page.getByRole('button', { name: 'Stay signed in' });
  assert.equal(await stay.evaluate((b) => b === document.activeElement), true, 'focus is on the button');
  await check(page, 'idle-warning');

  // Nobody answers: past the timeout on the server's clock and the page's.
  await advance(idle + 5);
  await page.clock.fastForward(125 * 1000);
  await page.waitForURL(/\/sign-in\?expired=1/);
  await page.getByRole('status').filter({ hasText: 'You were signed out after a period of inactivity.' }).waitFor();
  await check(page, 'idle-signed-out');
  // The server ended the session too: the inbox asks for a sign-in again.
  await page.goto(BASE_URL + '/inbox');
  await page.waitForURL(/\/sign-in/);
  await context.close();
});

test('staff: the front desk adds a passkey on the account page, then signs in with it alone', async () => {
  const { context, page } = await person('front desk with a passkey');
  // A virtual authenticator (Chromium's DevTools protocol) stands in for the device's own.
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  await staffSignIn(page, 'front_desk');
  await page.goto(BASE_URL + '/account');
  await page.getByRole('heading', { level: 1, name: 'Your account' }).waitFor();
  await page.getByText('You have no passkeys yet.').waitFor();
  await check(page, 'account');
  await page.getByRole('button', { name: 'Add a passkey' }).click();
  // Registered through the API's ceremony: the page comes back listing it.
  await page.getByRole('button', { name: /^Remove/ }).waitFor();
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1, 'the authenticator holds one credential for Salve');
  await check(page, 'account-with-passkey');

  // Signed out, the passkey alone signs the front desk in: no password, no code.
  await context.clearCookies();
  await page.goto(BASE_URL + '/sign-in');
  await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
  await page.getByLabel('Email').fill(seed.staff.front_desk.email);
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/sign-in'));
  await page.locator('header .who').filter({ hasText: seed.staff.front_desk.name }).waitFor();
  await context.close();
});

test('axe-core finds a violation when there is one (self-check of the checker)', async () => {
  const { context, page } = await person('self-check');
  await page.goto(BASE_URL + '/');
  // A text field without a label, added through DevTools (not a page script).
  await page.evaluate(() => {
    const input = document.createElement('input');
    input.type = 'text';
    document.querySelector('main').append(input);
  });
  await page.evaluate(axeSource);
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const ids = results.violations.map((v) => v.id);
  assert.ok(ids.includes('label'), `axe saw the unlabelled field: ${ids.join(', ')}`);
  await context.close();
});

test('CSP: no page reported a violation, and no console showed one', async () => {
  // Reports are sent asynchronously by the browser: give them a moment to arrive.
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(consoleProblems, [], 'console errors');
  assert.deepEqual(badResponses, [], 'failed responses');
  assert.equal(await cspReports(), 0, 'CSP reports received by the server');

  // And the reporting works: an inline script (refused by the page CSP) is reported by the
  // browser to /csp-report, and the server counts it.
  const { context, page } = await person('csp-check');
  await page.goto(BASE_URL + '/');
  await page.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.inlineRan = true;';
    document.head.append(s);
  });
  assert.equal(await page.evaluate(() => window.inlineRan === true), false, 'inline script blocked');
  const deadline = Date.now() + WAIT;
  while ((await cspReports()) === 0) {
    if (Date.now() > deadline) assert.fail('the browser\'s CSP report never reached the server');
    await new Promise((r) => setTimeout(r, 100));
  }
  await context.close();
});
