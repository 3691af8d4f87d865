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
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const requireTools = createRequire(new URL('../../tools/package.json', import.meta.url));
const { chromium } = requireTools('playwright-core');
const axeSource = readFileSync(requireTools.resolve('axe-core/axe.min.js'), 'utf8');

const BASE_URL = required('BASE_URL');
const CONTROL_URL = required('CONTROL_URL');
const OUT_DIR = required('OUT_DIR');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** How long a single wait for something on a page may take (the server is local). */
const WAIT = 15_000;

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
    if (Date.now() > deadline) assert.fail(`no ${what} in the outbox within ${WAIT} ms`);
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
const patientPerson = (name) =>
  person(name, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });

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

/** The visible text of the main content (or the body). */
async function mainText(page) {
  return page.locator('body').innerText();
}

async function expectText(page, text) {
  await page.getByText(text, { exact: false }).first().waitFor({ state: 'visible' });
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
