// The console at /app/ in a real browser, as a person uses it: a new team signs up, makes an API
// key and reads the audit log; a customer rents GPUs from an offer and watches the cluster come
// up live; GraphiQL and the API reference render. Every console page is checked with axe-core
// (a serious or critical violation fails the test) and photographed at a phone's width and a
// desktop's into IOCLOUD_E2E_SCREENSHOTS, for a person to look at.
//
// IOCLOUD_E2E_URL names the server; IOCLOUD_E2E_CUSTOMER_EMAIL and IOCLOUD_E2E_CUSTOMER_PASSWORD
// a customer with credit on a server where 16 H100 SXM GPUs are free in Frankfurt.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = (process.env.IOCLOUD_E2E_URL ?? '').replace(/\/+$/, '');
const shots = process.env.IOCLOUD_E2E_SCREENSHOTS || 'screenshots';
const executablePath = process.env.IOCLOUD_CHROMIUM || '/usr/bin/chromium';
const customer = {
  email: process.env.IOCLOUD_E2E_CUSTOMER_EMAIL,
  password: process.env.IOCLOUD_E2E_CUSTOMER_PASSWORD,
};
const provider = {
  email: process.env.IOCLOUD_E2E_PROVIDER_EMAIL,
  password: process.env.IOCLOUD_E2E_PROVIDER_PASSWORD,
};
const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
// A phone and a desktop: every console page is photographed at both, and checked at both.
const VIEWPORTS = [{ width: 375, height: 800 }, { width: 1440, height: 900 }];
const DEFAULT_VIEWPORT = { width: 1280, height: 800 };
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
  const context = await browser.newContext({ viewport: DEFAULT_VIEWPORT });
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
  return { context, page, external, errors };
}

// The page as it is now, full length, at each viewport (`375-offers.png`, `1440-offers.png`).
// A page wider than the phone's screen is noted in the test's output.
async function shoot(page, name) {
  for (const vp of VIEWPORTS) {
    await page.setViewportSize(vp);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) {
      console.log(`layout: ${name} at ${vp.width} px is ${overflow} px wider than the screen`);
    }
    await page.screenshot({ path: join(shots, `${vp.width}-${name}.png`), fullPage: true });
  }
  await page.setViewportSize(DEFAULT_VIEWPORT);
}

// Signs in through the form; lands on Home.
async function signIn(page, email, password) {
  await page.goto(`${base}/app/login`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/app/`);
}

// Accessibility checks, in a browser context of their own: axe-core is injected as an inline
// script, which the console's CSP rightly refuses, so only this context bypasses the CSP (the
// pages under test keep it). It has a session of its own, signed in like the person's.
async function accessibility() {
  const context = await browser.newContext({ viewport: DEFAULT_VIEWPORT, bypassCSP: true });
  const page = await context.newPage();
  const found = new Map();
  return {
    signIn: (email, password) => signIn(page, email, password),
    // Runs axe on `url` at each viewport; serious and critical violations are kept.
    async check(url, name) {
      await page.setViewportSize(DEFAULT_VIEWPORT);
      await page.goto(url);
      await page.addScriptTag({ path: axePath });
      for (const vp of VIEWPORTS) {
        await page.setViewportSize(vp);
        const violations = await page.evaluate(async () => {
          const r = await axe.run(document, { resultTypes: ['violations'] });
          return r.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            targets: v.nodes.map((n) => n.target.join(' ')),
          }));
        });
        for (const v of violations.filter((v) => ['serious', 'critical'].includes(v.impact))) {
          for (const target of v.targets) {
            const line = `${name}: ${v.id} (${v.impact}, ${v.help}) at ${target}`;
            if (!found.has(line)) found.set(line, `${line} [${vp.width} px]`);
          }
        }
      }
    },
    // Fails with every violation found, one a line.
    async done() {
      await context.close();
      assert.deepEqual([...found.values()], [], 'axe-core: serious or critical violations');
    },
  };
}

// The section of a page a heading of `id` names.
const section = (page, id) => page.locator(`section[aria-labelledby="${id}"]`);

// A mark on the page's window: gone once the browser loads another document.
const mark = (page) => page.evaluate(() => { window.e2eMark = 'still here'; });
const marked = (page) => page.evaluate(() => window.e2eMark === 'still here');

test('a new team signs up, makes an API key, reads the audit log, signs out', async () => {
  const { page, external, errors } = await newPage();
  const a11y = await accessibility();
  // Unique per run, so the test can run again against a server that keeps its data.
  const run = Date.now().toString(36);
  const email = `grace-${run}@example.com`;
  const password = 'correct horse battery staple';
  await a11y.check(`${base}/app/login`, 'login');
  await a11y.check(`${base}/app/signup`, 'signup');

  await page.goto(`${base}/app/signup`);
  await page.fill('#name', 'Grace Hopper');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.fill('#org_name', 'Compiler Co');
  await shoot(page, 'signup');
  await page.getByRole('button', { name: 'Create account' }).click();

  await page.waitForURL(`${base}/app/`);
  await page.waitForSelector('main h1:text-is("Home")');
  const who = await page.textContent('header .who');
  assert.match(who, new RegExp(`${email}.*Compiler Co.*owner`));
  await shoot(page, 'home');
  await a11y.signIn(email, password);
  await a11y.check(`${base}/app/`, 'home');

  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Team' }).click();
  await page.waitForURL(`${base}/app/team`);
  await page.fill('#key-name', 'ci-deploy');
  await page.check('#key-scope-write');
  await page.getByRole('button', { name: 'Create key' }).click();
  const secret = await (await page.waitForSelector('#new-key-secret')).inputValue();
  assert.match(secret, /^ioc_[0-9A-Za-z]{43}$/);
  await section(page, 'keys-h').locator('tbody th', { hasText: 'ci-deploy' }).waitFor();
  await shoot(page, 'team-new-key');

  // The key works against the API, from outside the browser.
  const me = await fetch(`${base}/v1/me`, { headers: { authorization: `Bearer ${secret}` } });
  assert.equal(me.status, 200);
  assert.equal((await me.json()).api_key.name, 'ci-deploy');

  // Team again: the secret is gone for good, and the audit log has the key's making (written
  // once the answer that showed the secret was sent, so it may take a moment).
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Team' }).click();
  await page.waitForURL(`${base}/app/team`);
  const made = section(page, 'audit-h').locator('td', { hasText: 'POST /app/team/keys' });
  for (let i = 0; await made.count() === 0; i++) {
    assert.ok(i < 20, 'the audit log lists the key being made');
    await page.waitForTimeout(250);
    await page.reload();
  }
  assert.equal(await page.locator('#new-key-secret').count(), 0, 'the secret is shown once');
  await section(page, 'members-h').locator('tbody', { hasText: email }).waitFor();
  await shoot(page, 'team');
  await a11y.check(`${base}/app/team`, 'team');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${base}/app/login`);
  await page.goto(`${base}/app/`);
  await page.waitForURL(`${base}/app/login`);

  // A wrong password: a clear error, still signed out.
  await page.fill('#email', email);
  await page.fill('#password', 'wrong password here');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.match(await alert.textContent(), /email (and|or) password/i);
  assert.equal(await page.locator('header .who').count(), 0, 'no one is signed in');
  await shoot(page, 'login-error');
  await page.goto(`${base}/app/`);
  await page.waitForURL(`${base}/app/login`);

  assert.deepEqual(external, [], 'the console loads nothing from other hosts');
  assert.deepEqual(errors, [], 'no script errors');
  await a11y.done();
});

test('a customer rents GPUs from an offer and watches the cluster come up live', async () => {
  assert.ok(customer.email && customer.password,
    'IOCLOUD_E2E_CUSTOMER_EMAIL and IOCLOUD_E2E_CUSTOMER_PASSWORD name a customer with credit');
  const { page, external, errors } = await newPage();
  const a11y = await accessibility();
  const nav = (name) => page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name });

  await page.goto(`${base}/app/login`);
  await shoot(page, 'login');
  await signIn(page, customer.email, customer.password);
  await a11y.signIn(customer.email, customer.password);

  await nav('Offers').click();
  await page.waitForURL(`${base}/app/offers`);
  const offer = page.locator('[data-testid=offers] tbody tr', { hasText: 'NVIDIA H100 SXM' })
    .filter({ hasText: 'Europe Central (Frankfurt)' });
  await offer.waitFor();
  await shoot(page, 'offers');
  await a11y.check(`${base}/app/offers`, 'offers');

  await offer.getByRole('link', { name: 'Rent NVIDIA H100 SXM in Europe Central (Frankfurt)' }).click();
  await page.waitForURL(/\/app\/clusters\/new\?/);
  assert.equal(await page.inputValue('#c-gpu'), 'h100-sxm');
  assert.deepEqual(await page.$eval('#c-regions', (s) => [...s.selectedOptions].map((o) => o.value)),
    ['eu-central']);

  // The quote follows the form as it is typed in, without leaving the page.
  await mark(page);
  await page.fill('#c-name', 'e2e-train');
  await page.fill('#c-count', '16');
  await page.fill('#c-per-node', '8');
  await page.locator('#quote [data-testid=plans]').waitFor({ timeout: 15000 });
  await page.fill('#c-price', '1.00');
  const nothing = page.locator('#quote [data-testid=quote-nothing]');
  await nothing.waitFor({ timeout: 15000 });
  assert.match(await nothing.textContent(), /Nothing fits/);
  const nearest = page.locator('#quote [data-testid=nearest]');
  await nearest.waitFor();
  assert.ok(await marked(page), 'the quote changed in place');
  await shoot(page, 'create-nothing-fits');
  const tooCheap = new URL(page.url());
  for (const [k, v] of [['name', 'e2e-train'], ['gpu_count', '16'], ['gpus_per_node', '8'],
    ['max_price_per_gpu_hour', '1.00']]) tooCheap.searchParams.set(k, v);
  await a11y.check(tooCheap.href, 'create-nothing-fits');

  // The nearest request that fits: the same form with the price eased. Clicked once no quote
  // is on its way, so the link is not swapped out under the pointer.
  await page.waitForLoadState('networkidle');
  await nearest.click();
  await page.waitForURL(/max_price_per_gpu_hour=/);
  assert.equal(await page.inputValue('#c-name'), 'e2e-train');
  assert.equal(await page.inputValue('#c-count'), '16');
  const eased = await page.inputValue('#c-price');
  assert.ok(Number(eased) > 1, `the nearest eases the price (${eased})`);
  await page.locator('#quote [data-testid=plans]').waitFor();
  await shoot(page, 'create');
  await a11y.check(page.url(), 'create');

  await page.getByRole('button', { name: 'Create cluster' }).click();
  await page.waitForURL(/\/app\/clusters\/(?!new)[^/?#]+$/);
  const clusterUrl = page.url();
  await page.waitForSelector('main h1:text-is("e2e-train")');

  // Its events and status arrive by server-sent events while the page stays.
  await mark(page);
  await page.locator('#timeline li', { has: page.locator('.badge-running') })
    .first().waitFor({ timeout: 60000 });
  await page.locator('#cluster-status', { hasText: 'running' }).waitFor({ timeout: 60000 });
  assert.ok(await marked(page), 'the page was not reloaded');
  await shoot(page, 'cluster-live');

  // The addresses and the forms (with the cluster's version) are drawn when the page loads.
  await page.reload();
  await section(page, 'connect-h').getByText('Ray address').waitFor();
  await shoot(page, 'cluster');
  await a11y.check(clusterUrl, 'cluster');

  // Done, the form sends the browser back to the same address: wait for that page, not the
  // one already shown.
  const posted = page.waitForResponse((r) => r.url().endsWith('/terminate') && r.request().method() === 'POST');
  const back = page.waitForResponse((r) => r.url() === clusterUrl && r.request().method() === 'GET');
  await page.getByRole('button', { name: /^Terminate e2e-train/ }).click();
  const answer = await posted;
  if (answer.status() !== 303) {
    await page.waitForLoadState();
    assert.fail(`terminating was refused (${answer.status()}): ${await page.textContent('main')}`);
  }
  await back;
  await page.waitForLoadState();
  const status = page.locator('#cluster-status');
  for (let i = 0; !/terminated/.test(await status.textContent()); i++) {
    assert.ok(i < 60, `the cluster ends (status ${await status.textContent()})`);
    await page.waitForTimeout(1000);
    await page.reload();
  }
  await shoot(page, 'cluster-terminated');

  await nav('Clusters').click();
  await page.waitForURL(`${base}/app/clusters`);
  const row = page.locator('[data-testid=clusters] tbody tr', { hasText: 'e2e-train' }).first();
  await row.waitFor();
  assert.match(await row.locator('[data-testid=cluster-status]').textContent(), /terminated/);
  await shoot(page, 'clusters');
  await a11y.check(`${base}/app/clusters`, 'clusters');

  await nav('Billing').click();
  await page.waitForURL(`${base}/app/billing`);
  await shoot(page, 'billing');
  await a11y.check(`${base}/app/billing`, 'billing');

  await nav('Team').click();
  await page.waitForURL(`${base}/app/team`);
  await shoot(page, 'team-customer');
  await a11y.check(`${base}/app/team`, 'team-customer');

  await nav('Home').click();
  await page.waitForURL(`${base}/app/`);
  await shoot(page, 'home-customer');

  assert.deepEqual(external, [], 'the console loads nothing from other hosts');
  assert.deepEqual(errors, [], 'no script errors');
  await a11y.done();
});

test('a provider sees its devices, one device, payouts and stake', async () => {
  assert.ok(provider.email && provider.password,
    'IOCLOUD_E2E_PROVIDER_EMAIL and IOCLOUD_E2E_PROVIDER_PASSWORD name a provider with devices');
  const { page, external, errors } = await newPage();
  const a11y = await accessibility();
  const worker = (name) => page.getByRole('navigation', { name: 'Worker' }).getByRole('link', { name });
  await signIn(page, provider.email, provider.password);
  await a11y.signIn(provider.email, provider.password);

  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Worker' }).click();
  await page.waitForURL(`${base}/app/worker`);
  const devices = page.locator('[data-testid=devices] tbody tr');
  await devices.first().waitFor();
  assert.equal(await devices.count(), 2, 'both machines are listed');
  await shoot(page, 'worker');
  await a11y.check(`${base}/app/worker`, 'worker');

  await devices.first().getByRole('link').first().click();
  await page.waitForURL(/\/app\/worker\/devices\/dev_/);
  await page.getByRole('heading', { level: 1 }).waitFor();
  await shoot(page, 'device');
  await a11y.check(page.url(), 'device');

  await page.goto(`${base}/app/worker`);
  await worker('Payouts').click();
  await page.waitForURL(`${base}/app/worker/payouts`);
  await shoot(page, 'worker-payouts');
  await a11y.check(`${base}/app/worker/payouts`, 'worker-payouts');

  await worker('Stake').click();
  await page.waitForURL(`${base}/app/worker/stake`);
  await shoot(page, 'worker-stake');
  await a11y.check(`${base}/app/worker/stake`, 'worker-stake');

  assert.deepEqual(external, [], 'the console loads nothing from other hosts');
  assert.deepEqual(errors, [], 'no script errors');
  await a11y.done();
});

test('a customer pays by card in Stripe.js\'s form and sees it credited', { skip: !process.env.IOCLOUD_E2E_CARDS && 'no localstripe (IOCLOUD_TEST_STRIPE_URL unset)' }, async () => {
  const { page, external, errors } = await newPage();
  const a11y = await accessibility();
  await signIn(page, customer.email, customer.password);
  await a11y.signIn(customer.email, customer.password);
  await page.goto(`${base}/app/billing`);
  await page.fill('#top-up-amount', '25.00');
  await page.selectOption('#top-up-card', 'new');
  await page.getByRole('button', { name: 'Pay', exact: true }).click();
  await page.waitForSelector('#card-element input');
  await shoot(page, 'card-form');
  // localstripe's stand-in for Stripe.js draws plain inputs where Stripe draws its frames.
  const field = (name) => page.locator(`#card-element input[placeholder="${name}"]`);
  await field('number').fill('4242424242424242');
  await field('exp_month').fill('12');
  await field('exp_year').fill('34');
  await field('cvc').fill('123');
  await field('postal_code').fill('10115');
  await page.getByRole('button', { name: 'Pay 25.00 USD' }).click();
  await page.waitForURL(/\/app\/billing\/top-ups\/top_/);
  // The page follows the payment until the webhook has credited it.
  await page.locator('[data-testid=top-up-status] .badge-succeeded').waitFor({ timeout: 30000 });
  await shoot(page, 'card-paid');
  await a11y.check(page.url(), 'card-paid');
  await page.goto(`${base}/app/billing`);
  await page.locator('[data-testid=top-ups] tbody tr', { hasText: 'succeeded' }).first().waitFor();
  await shoot(page, 'billing-cards');
  await a11y.check(`${base}/app/billing`, 'billing-cards');
  // Stripe.js's stand-in is served by localstripe on loopback: nothing went further.
  assert.deepEqual(external, [], 'the card page loads nothing from other hosts');
  assert.deepEqual(errors, [], 'no script errors, no refusals by the card page\'s policy');
  await a11y.done();
});

test('GraphiQL and the API reference render from vendored assets', async () => {
  const { page, external, errors } = await newPage();
  // GraphiQL introspects the schema on load; the server's limits must let that through.
  const schema = page.waitForResponse((r) => r.url().endsWith('/graphql') && r.request().method() === 'POST');
  await page.goto(`${base}/graphql`);
  await page.waitForSelector('.graphiql-container', { timeout: 15000 });
  const introspection = await (await schema).json();
  assert.ok(introspection.data?.__schema, JSON.stringify(introspection).slice(0, 300));
  await page.screenshot({ path: join(shots, 'graphiql.png') });
  await page.goto(`${base}/docs`);
  await page.waitForSelector('text=IO Cloud API', { timeout: 15000 });
  await page.screenshot({ path: join(shots, 'reference.png') });
  assert.deepEqual(external, [], 'nothing loads from other hosts');
  assert.deepEqual(errors, []);
});
