// One story through the console, as the people in it live it, in one browser: a new team signs
// up, pays by card, invites a colleague by email (who joins from the message), rents a
// Kubernetes cluster from an offer, watches it come up, downloads its kubeconfig, extends it,
// ends it and finds the refund in the ledger; then the provider whose machines ran it adds one
// more, starts its agent with the command the console gives, sees it verified and covered by
// stake, and sees what the rental earned.
//
// Besides the server (IOCLOUD_E2E_URL) and its provider (IOCLOUD_E2E_PROVIDER_EMAIL and
// _PASSWORD), with 8 H100 SXM GPUs free in Frankfurt and sign-up credit for new teams:
// - IOCLOUD_E2E_CARDS set when the server takes cards through localstripe;
// - IOCLOUD_E2E_SMTP_PEER_URL the SMTP peer's HTTP side when the server sends email through it
//   (without it the inviter passes the link shown on the Team page on, as a person would);
// - IOCLOUD_E2E_AGENT_FILE a file to write the agent command into: the harness runs it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import {
  base, provider, newPage, shoot, signIn, accessibility, section, mark, marked, payByNewCard,
} from './browser.mjs';

const cards = Boolean(process.env.IOCLOUD_E2E_CARDS);
const mailPeer = (process.env.IOCLOUD_E2E_SMTP_PEER_URL ?? '').replace(/\/+$/, '');
const agentFile = process.env.IOCLOUD_E2E_AGENT_FILE;
const password = 'correct horse battery staple';

// The messages the SMTP peer received for `to`, waiting up to fifteen seconds for one.
async function inbox(to) {
  for (let i = 0; i < 60; i++) {
    const answer = await fetch(`${mailPeer}/messages?to=${encodeURIComponent(to)}`);
    const messages = await answer.json();
    if (messages.length > 0) return messages;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`no email reached ${to}`);
}

// Reloads `page` until `check` holds, for about a minute.
async function until(page, what, check) {
  for (let i = 0; !(await check()); i++) {
    assert.ok(i < 120, `timed out waiting: ${what}`);
    await page.waitForTimeout(500);
    await page.reload();
  }
}

test('a team pays, invites, rents and is refunded; the provider adds a machine and earns', async () => {
  assert.ok(provider.email && provider.password, 'IOCLOUD_E2E_PROVIDER_EMAIL names the provider');
  assert.ok(agentFile, 'IOCLOUD_E2E_AGENT_FILE names where the agent command goes');
  const { page, external, errors } = await newPage();
  const a11y = await accessibility();
  const nav = (name) => page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name });
  const run = Date.now().toString(36);
  const email = `lin-${run}@example.com`;

  // A new team.
  await page.goto(`${base}/app/signup`);
  await page.fill('#name', 'Lin Wei');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.fill('#org_name', `Vision Lab ${run}`);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL(`${base}/app/`);
  await a11y.signIn(email, password);

  // Pays by card in Stripe.js's form (localstripe's stand-in) and sees the money arrive.
  if (cards) {
    await payByNewCard(page, '40.00');
    await shoot(page, 'journey-paid');
  } else {
    console.log('journey: no localstripe, so the team rents on its sign-up credit alone');
  }

  // Invites a colleague; the colleague joins from the email (or the link passed on).
  const colleague = `sam-${run}@example.com`;
  await nav('Team').click();
  await page.waitForURL(`${base}/app/team`);
  await page.fill('#invite-email', colleague);
  await page.getByRole('button', { name: 'Send invitation' }).click();
  await page.waitForURL(/\/app\/team/);
  let link;
  if (mailPeer) {
    const [mail] = await inbox(colleague);
    assert.match(mail.subject, /Vision Lab/);
    link = mail.body.match(/https?:\/\/\S+\/app\/invitations\/accept\?token=\S+/)?.[0];
    assert.ok(link, `the email holds a link to open: ${mail.body}`);
  } else {
    console.log('journey: no SMTP peer, so the inviter passes the link shown on');
    link = await page.inputValue('#invite-link');
  }
  assert.ok(link.startsWith(base), `the link leads to this server: ${link}`);
  {
    const invitee = await newPage();
    await invitee.page.goto(link);
    await shoot(invitee.page, 'journey-invited');
    await a11y.check(link, 'invitation');
    await invitee.page.getByRole('link', { name: 'Sign up with this invitation' }).click();
    await invitee.page.waitForURL(/\/app\/signup\?invitation=/);
    await invitee.page.fill('#name', 'Sam Okafor');
    await invitee.page.fill('#email', colleague);
    await invitee.page.fill('#password', password);
    assert.equal(await invitee.page.locator('#org_name').count(), 0,
      'an invitee makes no organisation of their own');
    await shoot(invitee.page, 'journey-invitee');
    await invitee.page.getByRole('button', { name: 'Create account' }).click();
    await invitee.page.waitForURL(`${base}/app/`);
    assert.match(await invitee.page.textContent('header .who'), new RegExp(`${colleague}.*Vision Lab`));
    assert.deepEqual(invitee.errors, []);
    await invitee.context.close();
  }
  await page.reload();
  await section(page, 'members-h').locator('tbody', { hasText: colleague }).waitFor();

  // Rents a Kubernetes cluster of one machine from the offers.
  await nav('Offers').click();
  await page.waitForURL(`${base}/app/offers`);
  await page.locator('[data-testid=offers] tbody tr', { hasText: 'NVIDIA H100 SXM' })
    .filter({ hasText: 'Europe Central (Frankfurt)' })
    .getByRole('link', { name: /^Rent NVIDIA H100 SXM/ }).click();
  await page.waitForURL(/\/app\/clusters\/new\?/);
  await page.selectOption('#c-kind', 'kubernetes');
  await page.fill('#c-name', 'vision-k8s');
  await page.fill('#c-count', '8');
  await page.fill('#c-per-node', '8');
  await page.fill('#c-hours', '4');
  await page.locator('#quote [data-testid=plans]').waitFor({ timeout: 15000 });
  await page.waitForLoadState('networkidle');
  await page.getByRole('button', { name: 'Create cluster' }).click();
  await page.waitForURL(/\/app\/clusters\/(?!new)[^/?#]+$/);
  const clusterUrl = page.url();
  await mark(page);
  await page.locator('#cluster-status', { hasText: 'running' }).waitFor({ timeout: 60000 });
  assert.ok(await marked(page), 'it came up while the page stayed');
  await page.reload();
  await section(page, 'connect-h').getByText('Kubernetes API server').waitFor();
  await shoot(page, 'journey-cluster');
  await a11y.check(clusterUrl, 'journey-cluster');

  // The kubeconfig trusts the cluster's own certificate authority.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Download kubeconfig' }).click(),
  ]);
  const kubeconfig = readFileSync(await download.path(), 'utf8');
  assert.match(kubeconfig, /certificate-authority-data: /);
  assert.match(kubeconfig, /server: https:\/\//);
  assert.doesNotMatch(kubeconfig, /insecure-skip-tls-verify/);

  // Four more hours: the end moves.
  const ends = async () => (await page.locator('dt:text-is("Ends") + dd time').getAttribute('datetime'));
  const before = await ends();
  await page.fill('#extend-hours', '4');
  await page.getByRole('button', { name: 'Extend' }).click();
  await page.waitForURL(clusterUrl);
  await until(page, 'the end moves', async () => (await ends()) !== before);
  const hours = (Date.parse(await ends()) - Date.parse(before)) / 3.6e6;
  assert.equal(hours, 4, `extended by four hours (${before} → ${await ends()})`);

  // Ends it: the unused hold comes back, and the ledger says so beside the cluster's name.
  const refund = await page.locator('[data-testid=refund-now]').textContent();
  assert.match(refund, /goes back to your balance/);
  await page.getByRole('button', { name: /^Terminate vision-k8s/ }).click();
  await page.waitForURL(clusterUrl);
  await until(page, 'the cluster ends', async () =>
    /terminated/.test(await page.locator('#cluster-status').textContent()));
  await shoot(page, 'journey-ended');
  await nav('Billing').click();
  await page.waitForURL(`${base}/app/billing`);
  const released = section(page, 'ledger-h').locator('tbody tr', { hasText: 'vision-k8s' })
    .filter({ hasText: /release|refund/i });
  await until(page, 'the refund is in the ledger', async () => (await released.count()) > 0);
  // This month's spend by cluster, as bars by name.
  assert.match(await page.locator('[data-testid=by-cluster-USD]').textContent(), /vision-k8s/);
  await shoot(page, 'journey-ledger');

  // The month's statement names the cluster; refunds say what card credit could go back.
  await section(page, 'statements-h').getByRole('link', { name: 'Invoices' }).click();
  await page.waitForURL(`${base}/app/billing/invoices`);
  await shoot(page, 'journey-invoices');
  await a11y.check(page.url(), 'invoices');
  await page.locator('main a[href^="/app/billing/invoices/20"]').first().click();
  await page.waitForURL(/\/app\/billing\/invoices\/\d{4}-\d{2}$/);
  await page.locator('main', { hasText: 'vision-k8s' }).waitFor();
  await shoot(page, 'journey-invoice');
  await a11y.check(page.url(), 'invoice');
  await page.goto(`${base}/app/billing/refunds`);
  await shoot(page, 'journey-refunds');
  await a11y.check(page.url(), 'refunds');
  await page.goto(`${base}/app/keys`);
  await shoot(page, 'journey-keys');
  await a11y.check(page.url(), 'keys');
  assert.deepEqual(external, [], 'the console loads nothing from other hosts');
  assert.deepEqual(errors, [], 'no script errors');

  // The provider whose machines ran it adds one more.
  const p = await newPage();
  await signIn(p.page, provider.email, provider.password);
  await a11y.signIn(provider.email, provider.password);
  await p.page.goto(`${base}/app/worker`);
  const form = p.page.locator('[data-testid=add-device]');
  await form.locator('#d-name').fill(`fra-new-${run}`);
  await form.locator('#d-model').selectOption('h100-sxm');
  await form.locator('#d-gpus').fill('8');
  await form.locator('#d-region').selectOption('eu-central');
  await form.locator('#d-country').fill('DE');
  await form.locator('#d-cpus').fill('64');
  await form.locator('#d-ram').fill('512');
  await form.locator('#d-price').fill('2.00');
  await form.getByRole('button', { name: 'Add device' }).click();
  const added = p.page.locator('[data-testid=agent-command], [data-testid=worker-error]').first();
  await added.waitFor();
  assert.equal(await p.page.locator('[data-testid=worker-error]').count(), 0,
    `the device is added: ${await added.textContent()}`);
  const command = (await p.page.locator('[data-testid=agent-command]').textContent()).trim();
  assert.match(command, /^iocloud agent run --server http\S+ --device dev_\S+ --gpus 8 --token \S+$/);
  await shoot(p.page, 'journey-device-added');
  // The machine's owner runs it there; here the harness does.
  writeFileSync(agentFile, command);
  const device = command.match(/--device (dev_\S+)/)[1];

  await p.page.goto(`${base}/app/worker/devices/${device}`);
  const facts = p.page.locator('[data-testid=device-facts]');
  await until(p.page, 'the device is verified and listed', async () =>
    /available/.test(await facts.textContent()));
  assert.match(await p.page.locator('[data-testid=stake-covered]').textContent(), /covered/i);
  await shoot(p.page, 'journey-device');
  await a11y.check(p.page.url(), 'journey-device');

  // The rental on the provider's other machines earned something.
  await p.page.goto(`${base}/app/worker`);
  const earned = p.page.locator('[data-testid=worker-tiles] .tile', { hasText: 'Earnings to pay out' });
  await until(p.page, 'earnings from the rental', async () =>
    /[1-9]/.test(await earned.locator('.tile-value').first().textContent()));
  await shoot(p.page, 'journey-earnings');
  assert.deepEqual(p.external, [], 'the console loads nothing from other hosts');
  assert.deepEqual(p.errors, [], 'no script errors');
  await a11y.done();
});
