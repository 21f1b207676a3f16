// The console in a real browser: sign up, see the overview, create an API key (its secret shown
// once), see the audit log, sign out, and get a clear error for a wrong password. Screenshots go
// to IOCLOUD_E2E_SCREENSHOTS for a person to look at.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.IOCLOUD_E2E_URL;
const shots = process.env.IOCLOUD_E2E_SCREENSHOTS || 'screenshots';
const executablePath = process.env.IOCLOUD_CHROMIUM || '/usr/bin/chromium';
let browser;

before(async () => {
  assert.ok(base, 'IOCLOUD_E2E_URL names the server under test');
  mkdirSync(shots, { recursive: true });
  browser = await chromium.launch({
    executablePath,
    headless: true,
    // Offline machine: no background networking, no component updates, no sandbox as root.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  // Requests to other hosts that got out of the browser. Redoc's footer logo is requested from
  // Redocly's CDN whatever its options; our page's Content-Security-Policy blocks it before it
  // leaves, which counts as staying home.
  const external = [];
  const isExternal = (req) => {
    const url = new URL(req.url());
    return url.protocol.startsWith('http') && !['127.0.0.1', 'localhost'].includes(url.hostname);
  };
  page.on('requestfinished', (req) => { if (isExternal(req)) external.push(req.url()); });
  page.on('requestfailed', (req) => {
    if (isExternal(req) && !/BLOCKED_BY_CSP|csp/i.test(req.failure()?.errorText ?? '')) {
      external.push(`${req.url()} (${req.failure()?.errorText})`);
    }
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The pages' Content-Security-Policy must let everything of ours run: a refusal of anything
  // but another host's file means the policy and the page disagree.
  page.on('console', (msg) => {
    const text = msg.text();
    if (msg.type() === 'error' && /Content Security Policy/i.test(text)
      && !/'https?:\/\/(?!127\.0\.0\.1|localhost)/.test(text)) {
      errors.push(`CSP: ${text}`);
    }
  });
  return { page, external, errors };
}

test('sign up, create an API key, read the audit log, sign out', async () => {
  const { page, external, errors } = await newPage();
  await page.goto(`${base}/console/`);
  await page.click('#tab-signup');
  await page.fill('#signup-name', 'Grace Hopper');
  await page.fill('#signup-email', 'grace@example.com');
  await page.fill('#signup-password', 'correct horse battery staple');
  await page.fill('#signup-org', 'Compiler Co');
  await page.screenshot({ path: join(shots, '01-signup.png') });
  await page.click('#signup-submit');

  await page.waitForSelector('#user-email:has-text("grace@example.com")');
  await page.waitForSelector('#org-name-text:has-text("Compiler Co")');
  assert.equal(await page.textContent('#my-role'), 'owner');
  await page.screenshot({ path: join(shots, '02-overview.png') });

  await page.click('a[data-nav=keys]');
  await page.fill('#key-name', 'ci-deploy');
  await page.check('#key-scope-write');
  await page.click('#key-create');
  const secret = (await page.waitForSelector('#key-secret')).textContent();
  assert.match(await secret, /^ioc_[0-9A-Za-z]{43}$/);
  await page.waitForSelector('#keys-table >> text=ci-deploy');
  await page.screenshot({ path: join(shots, '03-api-key-created.png') });

  // The key works against the API, from outside the browser.
  const me = await fetch(`${base}/v1/me`, { headers: { authorization: `Bearer ${await secret}` } });
  assert.equal(me.status, 200);
  assert.equal((await me.json()).api_key.name, 'ci-deploy');

  await page.click('a[data-nav=audit]');
  await page.waitForSelector('#audit-table >> text=POST /v1/api-keys');
  await page.screenshot({ path: join(shots, '04-audit-log.png') });

  await page.click('a[data-nav=members]');
  await page.waitForSelector('#members-table >> text=grace@example.com');
  await page.screenshot({ path: join(shots, '05-members.png') });

  await page.click('#signout');
  await page.waitForSelector('#auth-view', { state: 'visible' });
  assert.equal(await page.isVisible('#topbar'), false);
  assert.deepEqual(external, [], 'the console loads nothing from other hosts');
  assert.deepEqual(errors, [], 'no script errors');
});

test('a wrong password shows a clear error and keeps you signed out', async () => {
  const { page, errors } = await newPage();
  await page.goto(`${base}/console/`);
  await page.fill('#signin-email', 'nobody@example.com');
  await page.fill('#signin-password', 'wrong password here');
  await page.click('#signin-submit');
  const banner = await page.waitForSelector('#error-banner:not(:empty)');
  assert.match(await banner.textContent(), /email or password/i);
  assert.equal(await page.isVisible('#topbar'), false);
  await page.screenshot({ path: join(shots, '06-wrong-password.png') });
  assert.deepEqual(errors, []);
});

test('GraphiQL and the API reference render from vendored assets', async () => {
  const { page, external, errors } = await newPage();
  // GraphiQL introspects the schema on load; the server's limits must let that through.
  const schema = page.waitForResponse((r) => r.url().endsWith('/graphql') && r.request().method() === 'POST');
  await page.goto(`${base}/graphql`);
  await page.waitForSelector('.graphiql-container', { timeout: 15000 });
  const introspection = await (await schema).json();
  assert.ok(introspection.data?.__schema, JSON.stringify(introspection).slice(0, 300));
  await page.screenshot({ path: join(shots, '07-graphiql.png') });
  await page.goto(`${base}/docs`);
  await page.waitForSelector('text=IO Cloud API', { timeout: 15000 });
  await page.screenshot({ path: join(shots, '08-reference.png') });
  assert.deepEqual(external, [], 'nothing loads from other hosts');
  assert.deepEqual(errors, []);
});
