// What the browser tests share: the browser, pages that record what they should not do, full
// screenshots at a phone's and a desktop's width, signing in, and accessibility checks with
// axe-core.
//
// IOCLOUD_E2E_URL names the server; IOCLOUD_E2E_SCREENSHOTS where screenshots go;
// IOCLOUD_CHROMIUM the browser (Debian's by default).
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const base = (process.env.IOCLOUD_E2E_URL ?? '').replace(/\/+$/, '');
export const shots = process.env.IOCLOUD_E2E_SCREENSHOTS || 'screenshots';
const executablePath = process.env.IOCLOUD_CHROMIUM || '/usr/bin/chromium';
export const customer = {
  email: process.env.IOCLOUD_E2E_CUSTOMER_EMAIL,
  password: process.env.IOCLOUD_E2E_CUSTOMER_PASSWORD,
};
export const provider = {
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

export async function newPage() {
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
    // An empty inline style (its hash is SHA-256 of nothing, 47DEQ…) changes nothing when
    // refused; it is left out, every other refusal counts.
    if (msg.type() === 'error' && /Content Security Policy/i.test(text)
      && !/'https?:\/\/(?!127\.0\.0\.1|localhost)/.test(text)
      && !text.includes("'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='")) {
      errors.push(`CSP: ${text}`);
    }
  });
  return { context, page, external, errors };
}

// The page as it is now, full length, at each viewport (`375-offers.png`, `1440-offers.png`).
// A page wider than the phone's screen is noted in the test's output.
export async function shoot(page, name) {
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
export async function signIn(page, email, password) {
  await page.goto(`${base}/app/login`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  // Home: IO Cloud's, or IO Worker's for an organisation that only provides GPUs.
  await page.waitForURL((url) => ['/app/', '/app/worker'].includes(url.pathname));
}

// Accessibility checks, in a browser context of their own: axe-core is injected as an inline
// script, which the console's CSP rightly refuses, so only this context bypasses the CSP (the
// pages under test keep it). It has a session of its own, signed in like the person's.
export async function accessibility() {
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
export const section = (page, id) => page.locator(`section[aria-labelledby="${id}"]`);

// A mark on the page's window: gone once the browser loads another document.
export const mark = (page) => page.evaluate(() => { window.e2eMark = 'still here'; });
export const marked = (page) => page.evaluate(() => window.e2eMark === 'still here');

// Pays `amount` (`25.00`) into the signed-in organisation with a new card in Stripe.js's form,
// from Billing, and waits on the top-up's page until the webhook has credited it. localstripe's
// stand-in for Stripe.js draws plain inputs where Stripe draws its frames.
export async function payByNewCard(page, amount, shot) {
  await page.goto(`${base}/app/billing`);
  await page.fill('#top-up-amount', amount);
  await page.selectOption('#top-up-card', 'new');
  await page.getByRole('button', { name: 'Pay', exact: true }).click();
  await page.waitForSelector('#card-element input');
  if (shot) await shoot(page, shot);
  const field = (name) => page.locator(`#card-element input[placeholder="${name}"]`);
  await field('number').fill('4242424242424242');
  await field('exp_month').fill('12');
  await field('exp_year').fill('34');
  await field('cvc').fill('123');
  await field('postal_code').fill('10115');
  await page.getByRole('button', { name: `Pay ${amount} USD` }).click();
  await page.waitForURL(/\/app\/billing\/top-ups\/top_/);
  await page.locator('[data-testid=top-up-status] .badge-succeeded').waitFor({ timeout: 30000 });
}
