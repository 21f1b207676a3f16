// The console at /app/ in a real browser, as a person uses it: a new team signs up, makes an API
// key and reads the audit log; a customer rents GPUs from an offer and watches the cluster come
// up live; anyone reads IO Explorer; GraphiQL and the API reference render. Every console page is checked with axe-core
// (a serious or critical violation fails the test) and photographed at a phone's width and a
// desktop's into IOCLOUD_E2E_SCREENSHOTS, for a person to look at.
//
// IOCLOUD_E2E_URL names the server; IOCLOUD_E2E_CUSTOMER_EMAIL and IOCLOUD_E2E_CUSTOMER_PASSWORD
// a customer with credit on a server where 16 H100 SXM GPUs are free in Frankfurt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  base, shots, customer, provider, newPage, shoot, signIn, accessibility, section, mark, marked,
  payByNewCard,
} from './browser.mjs';

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

test('a provider sees its devices, one device, payouts, stake, rewards, co-staking and cases', async () => {
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

  const section = (name) => page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name });
  await section('Rewards').click();
  await page.waitForURL(`${base}/app/worker/rewards`);
  await page.getByRole('heading', { level: 1 }).waitFor();
  await shoot(page, 'worker-rewards');
  await a11y.check(`${base}/app/worker/rewards`, 'worker-rewards');

  for (const [name, path, shot] of [['Co-staking', 'costaking', 'worker-costaking'], ['Cases', 'cases', 'worker-cases']]) {
    await section(name).click();
    await page.waitForURL(`${base}/app/worker/${path}`);
    await page.getByRole('heading', { level: 1 }).waitFor();
    await shoot(page, shot);
    await a11y.check(`${base}/app/worker/${path}`, shot);
  }

  assert.deepEqual(external, [], 'the console loads nothing from other hosts');
  assert.deepEqual(errors, [], 'no script errors');
  await a11y.done();
});

test('a customer pays by card in Stripe.js\'s form and sees it credited', { skip: !process.env.IOCLOUD_E2E_CARDS && 'no localstripe (IOCLOUD_TEST_STRIPE_URL unset)' }, async () => {
  const { page, external, errors } = await newPage();
  const a11y = await accessibility();
  await signIn(page, customer.email, customer.password);
  await a11y.signIn(customer.email, customer.password);
  await payByNewCard(page, '25.00', 'card-form');
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

test('anyone reads IO Explorer without signing in: the network, devices, a device, blocks, staking, bookings, governance', async () => {
  const { page, external, errors } = await newPage();
  const a11y = await accessibility();
  const sections = (name) => page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name });
  await page.goto(`${base}/explorer`);
  await page.getByRole('heading', { level: 1, name: 'The IO network' }).waitFor();
  assert.ok(await page.locator('svg[aria-labelledby=map-title] circle').count() >= 1, 'regions on the map');
  await shoot(page, 'explorer-network');
  await a11y.check(`${base}/explorer`, 'explorer-network');

  await sections('Devices').click();
  await page.waitForURL(`${base}/explorer/devices`);
  const rows = page.locator('tbody tr');
  await rows.first().waitFor();
  await page.getByLabel('Model').selectOption('h100-sxm');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/gpu_model=h100-sxm/);
  await shoot(page, 'explorer-devices');
  await a11y.check(page.url(), 'explorer-devices');
  await rows.first().getByRole('link').click();
  await page.waitForURL(/\/explorer\/devices\/dev_/);
  await page.getByRole('heading', { level: 1 }).waitFor();
  await shoot(page, 'explorer-device');
  await a11y.check(page.url(), 'explorer-device');
  await page.getByRole('link', { name: 'Every hourly proof' }).click();
  await page.waitForURL(/\/explorer\/devices\/dev_[^/]+\/proofs/);
  await page.getByRole('heading', { level: 1 }).waitFor();
  await a11y.check(page.url(), 'explorer-proofs');

  await sections('Blocks').click();
  await page.waitForURL(`${base}/explorer/blocks`);
  await page.getByRole('heading', { level: 1, name: 'Hourly blocks' }).waitFor();
  await page.getByRole('heading', { level: 2, name: 'The emission schedule' }).waitFor();
  assert.ok(await page.locator('svg[aria-labelledby=emission-title] rect').count() >= 20, 'a bar per year to the cap');
  await shoot(page, 'explorer-blocks');
  await a11y.check(`${base}/explorer/blocks`, 'explorer-blocks');

  await sections('Staking').click();
  await page.waitForURL(`${base}/explorer/staking`);
  await page.getByRole('heading', { level: 1, name: 'Staking and slashing' }).waitFor();
  await page.getByRole('heading', { level: 2, name: 'Bonded by model' }).waitFor();
  await shoot(page, 'explorer-staking');
  await a11y.check(`${base}/explorer/staking`, 'explorer-staking');

  await sections('Bookings').click();
  await page.waitForURL(`${base}/explorer/bookings`);
  await page.getByRole('heading', { level: 1, name: 'Bookings ledger' }).waitFor();
  await shoot(page, 'explorer-bookings');
  await a11y.check(`${base}/explorer/bookings`, 'explorer-bookings');

  await sections('Governance').click();
  await page.waitForURL(`${base}/explorer/governance`);
  await page.getByRole('heading', { level: 2, name: 'Parameters' }).waitFor();
  await shoot(page, 'explorer-governance');
  await a11y.check(`${base}/explorer/governance`, 'explorer-governance');

  assert.deepEqual(external, [], 'the explorer loads nothing from other hosts');
  assert.deepEqual(errors, [], 'no script errors');
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
