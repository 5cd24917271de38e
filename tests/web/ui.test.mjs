// SPDX-License-Identifier: Apache-2.0
// The admin web UI in Debian's headless Chromium, driven by playwright-core, against a real
// `fwdepot serve` on loopback with a data directory made by `fwdepot init`, a device driven by
// the real `fwdepot-device` agent and curl as a device no one here wrote.
//
// Usage: node --test ui.test.mjs, with FWDEPOT_BUILD_DIR set to the CMake build folder.
// Screenshots of every page land in $FWDEPOT_BUILD_DIR/web-screenshots.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const build = process.env.FWDEPOT_BUILD_DIR;
assert.ok(build, 'FWDEPOT_BUILD_DIR must name the build folder');
const fwdepot = join(build, 'cli', 'fwdepot');
const agent = join(build, 'cli', 'fwdepot-device');
const shots = join(build, 'web-screenshots');
const work = mkdtempSync(join(tmpdir(), 'fwdepot-ui-'));
const data = join(work, 'data');
const MODEL = 'ui-board';
const XSS = '<img src=x onerror=alert(1)>';
const WAIT = { timeout: 20000 };  // every wait on the page is bounded

const children = new Set();  // every process started here, killed by pid at the end
let server;
let admin;  // https://127.0.0.1:PORT of the admin listener
let device;  // https://127.0.0.1:PORT of the device listener
let token;
let browser;
let page;
const dialogs = [];
const pageErrors = [];
let loads = 0;

const run = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8', timeout: 60000 });

// Starts a process whose stdout and stderr lines are kept (for failures) and announced.
function start(cmd, args) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.lines = [];
  children.add(child);
  child.on('exit', () => children.delete(child));
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      child.lines.push(line);
      child.emit('line', line);
    });
  }
  return child;
}

// Resolves with the first output line that matches `re`, or rejects when the process exits or
// the bound passes: the server tells us its ports, we never guess or sleep.
function waitForLine(child, re, ms = 20000) {
  return new Promise((resolve, reject) => {
    const found = child.lines.map((l) => l.match(re)).find(Boolean);
    if (found) {
      resolve(found);
      return;
    }
    const done = () => { clearTimeout(timer); child.off('line', onLine); child.off('exit', onExit); };
    const onLine = (line) => {
      const m = line.match(re);
      if (m) {
        done();
        resolve(m);
      }
    };
    const onExit = (code) => {
      done();
      reject(new Error(`${child.spawnargs[0]} exited with ${code}:\n${child.lines.join('\n')}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no line matching ${re}:\n${child.lines.join('\n')}`));
    }, ms);
    child.on('line', onLine);
    child.on('exit', onExit);
  });
}

// A check-in as a device, with curl and the device's own certificate.
// As device ID, with curl: METHOD PATH on the device listener with a JSON body.
function asDevice(id, method, path, body) {
  return run('curl', ['--silent', '--show-error', '--max-time', '20', '--fail-with-body',
    '--cacert', join(data, 'pki/ca.pem'), '--cert', join(work, `${id}.pem`), '--key',
    join(work, `${id}.key`), '-X', method, '-H', 'Content-Type: application/json',
    '--data-binary', JSON.stringify(body), `${device}${path}`]);
}

const checkin = (id, body) => JSON.parse(asDevice(id, 'POST', '/api/v1/device/checkin', body));

const screenshot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

before(async () => {
  mkdirSync(shots, { recursive: true });
  run(fwdepot, ['init', '--data', data]);
  for (const id of ['dev-ui-1', 'dev-xss']) {
    run(fwdepot, ['certs', 'issue-device', '--data', data, '--id', id, '--model', MODEL, '--out',
      join(work, id)]);
  }
  token = run(fwdepot, ['token', 'create', '--data', data, '--name', 'ui-test']).trim();
  // Large enough that the browser reports upload progress on the way.
  writeFileSync(join(work, 'fw.bin'), Buffer.alloc(8 * 1024 * 1024, 0xa5));
  run(fwdepot, ['sign', '--key', join(data, 'keys/signing.key'), '--name', 'ui-firmware',
    '--version', '1.1.0', '--model', MODEL, '--out', join(work, 'fw.dsse'), join(work, 'fw.bin')]);

  server = start(fwdepot, ['serve', '--data', data, '--device-listen', '127.0.0.1:0',
    '--admin-listen', '127.0.0.1:0', '--coaps-listen', '127.0.0.1:0', '--threads', '2']);
  const [, dev, adm] = await waitForLine(server, / listening .*device=(\S+) admin=(\S+)/);
  device = `https://${dev}`;
  admin = `https://${adm}`;

  // Chromium trusts exactly this server's key (its SPKI pin), nothing else.
  const cert = new X509Certificate(readFileSync(join(data, 'pki/server.pem')));
  const spki = createHash('sha256')
    .update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${spki}`],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('dialog', async (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    await (d.type() === 'confirm' ? d.accept() : d.dismiss());
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  // Failed requests (the refusals tested here) are logged by Chromium too; anything else is not.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      pageErrors.push(m.text());
    }
  });
  page.on('load', () => { loads += 1; });
});

after(async () => {
  await browser?.close();
  for (const child of children) child.kill('SIGTERM');
  await Promise.all([...children].map((c) => new Promise((r) => c.once('exit', r))));
  rmSync(work, { recursive: true, force: true });
});

test('a wrong token is refused and the app stays hidden', async () => {
  await page.goto(`${admin}/`);
  await page.fill('#token', 'not-a-token');
  await page.click('#sign-in-form button[type=submit]');
  await page.locator('#sign-in-error').filter({ hasText: 'Token refused.' }).waitFor(WAIT);
  assert.equal(await page.isHidden('#nav'), true);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await screenshot('sign-in-refused');
});

test('an admin signs in with the keyboard; the token stays in sessionStorage only', async () => {
  // A device that reported a failure with markup in its message, before anyone looks.
  checkin('dev-xss', { model: MODEL, version: '1.0.0', state: 'idle', result: 'update_failed',
    message: XSS });
  // What a hawkBit DDI agent reports about itself is shown on its page, as text.
  asDevice('dev-xss', 'PUT', '/DEFAULT/controller/v1/dev-xss/configData',
    { mode: 'merge', data: { hw: 'rev-2', [XSS]: XSS } });
  // The refused token is selected, so typing replaces it.
  await page.focus('#token');
  await page.keyboard.type(token);
  await page.keyboard.press('Enter');
  await page.locator('#device-count').filter({ hasText: '1' }).waitFor(WAIT);
  assert.equal(await page.isVisible('#nav'), true);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('fwdepot.token')), token);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.ok(!page.url().includes(token));
  // The overview lists the failure, its message as text.
  await page.locator('main td', { hasText: XSS }).waitFor(WAIT);
  await screenshot('overview');
});

test('an upload shows its progress bar reach 100% and the image is listed', async () => {
  await page.click('nav a[href="#/images"]');
  await page.locator('#upload-form').waitFor(WAIT);
  // Every progress value the page shows, recorded in the page as it happens.
  await page.evaluate(() => {
    window.progressSeen = [];
    const bar = document.getElementById('upload-progress');
    const proto = Object.getPrototypeOf(bar);
    const desc = Object.getOwnPropertyDescriptor(proto, 'value');
    Object.defineProperty(bar, 'value', {
      get() { return desc.get.call(this); },
      set(v) { window.progressSeen.push(v); desc.set.call(this, v); },
    });
  });
  await page.setInputFiles('#manifest-file', join(work, 'fw.dsse'));
  await page.setInputFiles('#image-file', join(work, 'fw.bin'));
  await page.click('#upload-form button[type=submit]');
  await page.locator('#upload-status').filter({ hasText: 'Stored ui-firmware 1.1.0' }).waitFor(WAIT);
  assert.equal(await page.$eval('#upload-progress', (p) => p.value), 1);
  const seen = await page.evaluate(() => window.progressSeen);
  assert.equal(seen.at(-1), 1, `progress values: ${seen}`);
  const digest = createHash('sha256').update(readFileSync(join(work, 'fw.bin'))).digest('hex');
  await page.locator('tr[data-image="1"] td', { hasText: digest }).waitFor(WAIT);
  await page.locator('tr[data-image="1"] td', { hasText: 'fw.bin' }).waitFor(WAIT);
  await screenshot('images');
});

test('a refused upload says why and stores nothing', async () => {
  const bad = join(work, 'bad.bin');
  writeFileSync(bad, Buffer.alloc(1024, 0x5a));  // not the payload the manifest signs
  await page.setInputFiles('#manifest-file', join(work, 'fw.dsse'));
  await page.setInputFiles('#image-file', bad);
  await page.click('#upload-form button[type=submit]');
  await page.locator('#upload-status.error').filter({ hasText: 'Refused:' }).waitFor(WAIT);
  assert.equal(await page.locator('tr[data-image]').count(), 1);
});

test('a device driven by fwdepot-device moves to the new version on screen', async () => {
  const loadsBefore = loads;
  const deviceAgent = start(agent, ['--server', device, '--cert', join(work, 'dev-ui-1.pem'),
    '--key', join(work, 'dev-ui-1.key'), '--cacert', join(data, 'pki/ca.pem'), '--trusted-key',
    join(data, 'keys/signing.pub'), '--model', MODEL, '--state-dir', join(work, 'agent'),
    '--initial-version', '1.0.0', '--poll-interval', '1']);
  const updated = waitForLine(deviceAgent, /updated to 1\.1\.0/, 60000);
  updated.catch(() => {});  // awaited below; a rejection before then is not unhandled

  // The device appears in the table at 1.0.0 by itself: the page polls.
  await page.click('nav a[href="#/devices"]');
  await page.locator('tr[data-device="dev-ui-1"] td.version', { hasText: '1.0.0' }).waitFor(WAIT);
  await screenshot('devices');
  await page.click('tr[data-device="dev-ui-1"] a');
  await page.locator('#device-version', { hasText: '1.0.0' }).waitFor(WAIT);

  // Deploy to the model through the form.
  await page.click('nav a[href="#/deployments"]');
  await page.locator('#deploy-image option[value="1"]').waitFor({ ...WAIT, state: 'attached' });
  await page.selectOption('#deploy-image', '1');
  await page.fill('#deploy-models', MODEL);
  await page.selectOption('#deploy-action', 'soft');
  await page.click('#deploy-form button[type=submit]');
  await page.locator('#deploy-status', { hasText: 'Deployment 1 created.' }).waitFor(WAIT);
  await page.locator('tr[data-deployment="1"] td.progress', { hasText: '/2 at version' })
    .waitFor(WAIT);
  await page.locator('tr[data-deployment="1"] td', { hasText: 'soft' }).waitFor(WAIT);

  // Back on the device page (a hash change, not a reload) the version changes by itself.
  await page.goBack();
  await page.locator('#device-version', { hasText: '1.1.0' }).waitFor({ timeout: 60000 });
  await updated;
  await page.locator('#timeline .pill.good', { hasText: 'success' }).first().waitFor(WAIT);
  await screenshot('device');
  await page.click('nav a[href="#/deployments"]');
  await page.locator('tr[data-deployment="1"] td.progress', { hasText: '1/2 at version' })
    .waitFor(WAIT);
  await page.locator('tr[data-deployment="1"] td.progress', { hasText: '1 failed' }).waitFor(WAIT);
  await screenshot('deployments');
  assert.equal(loads, loadsBefore, 'the page was reloaded');
  deviceAgent.kill('SIGTERM');
});

test('what a device reports is shown as text, never as markup', async () => {
  await page.goto(`${admin}/#/device/dev-xss`);
  await page.locator('#device-message').waitFor(WAIT);
  assert.equal(await page.textContent('#device-message'), XSS);
  await page.locator('#timeline .message', { hasText: XSS }).waitFor(WAIT);
  await page.locator('#device-attributes dd', { hasText: 'rev-2' }).waitFor(WAIT);
  assert.equal(await page.locator('#device-attributes dt', { hasText: XSS }).count(), 1);
  assert.equal(await page.locator('img[src="x"]').count(), 0);
  assert.deepEqual(dialogs, []);
  await screenshot('device-xss');
});

test('the pages fit a phone', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${admin}/#/`);
  await page.locator('#device-count').waitFor(WAIT);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  await screenshot('overview-phone');
  await page.setViewportSize({ width: 1280, height: 900 });
});

test('cancel and delete ask first; an image in use is kept; signing out forgets the token', async () => {
  await page.goto(`${admin}/#/images`);
  await page.locator('tr[data-image="1"]').waitFor(WAIT);
  // The image is in an active deployment: the server refuses and the page says so.
  await page.click('tr[data-image="1"] button.danger');
  await page.locator('#upload-status.error', { hasText: 'deployment' }).waitFor(WAIT);
  assert.match(dialogs.pop() ?? '', /^confirm: Delete ui-firmware 1\.1\.0\?/);
  await page.click('nav a[href="#/deployments"]');
  await page.click('tr[data-deployment="1"] button.danger');
  await page.locator('tr[data-deployment="1"] td.progress', { hasText: 'cancelled' }).waitFor(WAIT);
  assert.match(dialogs.pop() ?? '', /^confirm: Cancel deployment 1\?/);
  await page.click('nav a[href="#/images"]');
  await page.click('tr[data-image="1"] button.danger');
  await page.locator('tr[data-image="1"]').waitFor({ ...WAIT, state: 'detached' });
  assert.match(dialogs.pop() ?? '', /^confirm: Delete ui-firmware 1\.1\.0\?/);
  await screenshot('images-after-delete');
  await page.click('#sign-out');
  await page.locator('#sign-in').waitFor(WAIT);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  // Signed out, the API answers nothing.
  await page.goto(`${admin}/#/devices`);
  await page.locator('#sign-in').waitFor(WAIT);
  assert.equal(await page.isHidden('#nav'), true);
});

test('no script error and no CSP violation on any page', () => {
  assert.deepEqual(pageErrors, []);
});
