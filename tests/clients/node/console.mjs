// The web console (`tenantctl serve` at /console) in headless Chromium, driven by Playwright,
// as an operator uses it: sign in (a wrong token first), look at the overview, find tenants,
// create one and watch it become active, move it to its own database and follow the move,
// suspend it, start a fleet migration run and watch its progress move, halt it and resume it;
// then sign in with a read-only token, which is offered no change. Every page is checked for unlabelled form controls and reached by keyboard.
// Screenshots of the main pages go to SCREENSHOTS. Any failed expectation ends the script
// with a non-zero exit code and what was expected; the Rust test
// (tests/e2e/tests/e2e/console.rs) checks the catalog afterwards.
//
// Environment:
//   CONSOLE_URL      e.g. http://127.0.0.1:8080/console
//   OPERATOR_TOKEN   a token with the operator scope
//   READ_ONLY_TOKEN  a token with the read_only scope
//   PLAN             the plan of the tenant to create
//   NEW_TENANT       its slug
//   RUN_TENANTS      tenants the migration run will migrate
//   SCREENSHOTS      directory for screenshots
//   CHROMIUM         the browser (default /usr/bin/chromium)

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return value;
};
const URL_ = env('CONSOLE_URL');
const OPERATOR = env('OPERATOR_TOKEN');
const READ_ONLY = env('READ_ONLY_TOKEN');
const PLAN = env('PLAN');
const NEW_TENANT = env('NEW_TENANT');
const RUN_TENANTS = Number(env('RUN_TENANTS'));
const SHOTS = env('SCREENSHOTS');
mkdirSync(SHOTS, { recursive: true });

let step = 'launch';
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (error) => pageErrors.push(String(error)));
page.on('console', (message) => {
  if (message.type() === 'error' && !/401|403|Failed to load resource/.test(message.text())) pageErrors.push(message.text());
});
const T = { timeout: 30000 };

async function shot(name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

// axe-core (Deque's accessibility engine), evaluated in the page through the driver, which the
// page's Content-Security-Policy does not apply to.
const AXE = readFileSync(new URL('./node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');

// Every input, select and textarea of the page has an accessible name, axe-core finds no WCAG
// 2 A or AA violation (labels, contrast, landmarks, ARIA), and no value was rendered as a
// JavaScript placeholder (`null`, `undefined`, `[object …]`, `NaN`) outside code.
async function everyControlLabelled(where) {
  await page.evaluate(AXE);
  const audit = await page.evaluate(() => window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  const violations = audit.violations.map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  assert.deepEqual(violations, [], `${where}: accessibility (axe-core)`);
  assert.ok(audit.passes.length > 10, `${where}: axe-core checked the page (${audit.passes.length} rules passed)`);
  const slips = await page.evaluate(() => {
    const copy = document.body.cloneNode(true);
    copy.querySelectorAll('pre, code, script').forEach((el) => el.remove());
    return copy.textContent.match(/null|undefined|\[object |\bNaN\b/g) || [];
  });
  assert.deepEqual(slips, [], `${where}: placeholders rendered as text`);
  const unlabelled = await page.$$eval('input, select, textarea', (controls) => controls
    .filter((c) => c.type !== 'hidden' && !c.labels?.length && !c.getAttribute('aria-label') && !c.getAttribute('aria-labelledby'))
    .map((c) => c.outerHTML));
  assert.deepEqual(unlabelled, [], `${where}: form controls without a label`);
}

async function badge(text, timeout = T.timeout) {
  await page.locator('h1 .badge', { hasText: text }).waitFor({ timeout });
}

async function stat(name) {
  return Number(await page.locator(`[data-stat="${name}"] b`).innerText());
}

try {
  step = 'the sign-in page';
  await page.goto(URL_);
  await page.getByLabel('Operator token').waitFor(T);
  await everyControlLabelled('sign-in');
  await shot('sign-in');

  step = 'a wrong token is refused';
  await page.getByLabel('Operator token').fill('tct_not-a-real-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'unknown or revoked token' }).waitFor(T);
  assert.equal(await page.locator('#nav').isVisible(), false, 'nothing but the sign-in form before signing in');

  step = 'signing in with the keyboard';
  await page.getByLabel('Operator token').fill(OPERATOR);
  await page.getByLabel('Operator token').press('Enter');
  await page.getByRole('heading', { name: 'Overview' }).waitFor(T);
  await page.getByText('console-operator · operator').waitFor(T);

  step = 'the overview';
  await page.getByRole('heading', { name: 'Tenants by schema version' }).waitFor(T);
  const versions = page.locator('section[aria-labelledby="h-versions"] .bar-row');
  assert.ok(await versions.count() >= 1, 'tenants by schema version has bars');
  await page.locator('section[aria-labelledby="h-clusters"] .bar-row').first().waitFor(T);
  await page.locator('[aria-label="Tenants by status over time"]').waitFor(T);
  await page.locator('section.router').first().waitFor(T);
  assert.match(await page.locator('section.router').first().innerText(), /connections/);
  await page.locator('section.router td', { hasText: 'fleet-00' }).first().waitFor(T);
  await everyControlLabelled('overview');
  await shot('overview');

  step = 'keyboard: the skip link and the main navigation';
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Overview');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Tenants', exact: true }).waitFor(T);

  step = 'the tenants list, searched';
  await page.locator('tbody tr').first().waitFor(T);
  await everyControlLabelled('tenants');
  const listed = await page.locator('tbody tr').count();
  assert.ok(listed >= RUN_TENANTS, `the list shows the fleet (${listed} rows)`);
  await page.getByLabel('Search slug or name').fill('fleet-0');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForFunction(() => document.querySelectorAll('tbody tr').length > 0
    && [...document.querySelectorAll('tbody tr td:first-child')].every((td) => td.textContent.includes('fleet-0')), null, T);
  await page.getByLabel('Status').selectOption('deleted');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.getByText('No tenants found.').waitFor(T);
  await page.goto(`${URL_}#/tenants`);
  await page.locator('tbody tr').first().waitFor(T);
  await shot('tenants');

  step = 'creating a tenant and watching it become active';
  const create = page.getByRole('form', { name: 'Create a tenant' });
  await create.getByLabel('Slug').fill(NEW_TENANT);
  await create.getByLabel('Plan').fill(PLAN);
  await create.getByLabel('Name (optional)').fill('Made in the console');
  await create.getByRole('button', { name: 'Create tenant' }).click();
  await page.getByRole('heading', { name: /Made in the console/ }).waitFor(T);
  await badge('active');
  await page.getByText(`${NEW_TENANT}.`, { exact: false }).first().waitFor(T);
  await everyControlLabelled('tenant');
  assert.equal(await page.locator('body').innerText().then((t) => /password/i.test(t)), false, 'no password on the page');
  await page.locator('td', { hasText: 'tenant.create' }).first().waitFor(T);
  await shot('tenant');

  step = 'moving it to its own database and following the move on the page';
  const moves = page.locator('section[aria-labelledby="h-moves"]');
  await moves.getByText('Never moved.').waitFor(T);
  await page.getByLabel('Isolation').selectOption('database');
  await page.getByRole('button', { name: 'Move', exact: true }).click();
  await moves.locator('tbody tr').first().waitFor(T);
  const movedTo = await page.waitForFunction(() => {
    const row = document.querySelector('section[aria-labelledby="h-moves"] tbody tr');
    const state = row && row.querySelector('.badge').textContent;
    return ['done', 'failed'].includes(state) && row.innerText;
  }, null, T);
  const moveRow = await movedTo.jsonValue();
  assert.match(moveRow, /done/, `the move ended well: ${moveRow}`);
  assert.match(moveRow, /\(schema\)[\s\S]*\(database\)/, `from the schema to its own database: ${moveRow}`);
  const bar = moves.getByRole('progressbar').first();
  assert.equal(await bar.getAttribute('aria-valuenow'), await bar.getAttribute('aria-valuemax'), 'every step done');
  await page.locator('dd', { hasText: /^database$/ }).waitFor(T);
  await everyControlLabelled('tenant after its move');
  await shot('tenant-moved');

  step = 'suspending it';
  await page.getByRole('button', { name: 'Suspend' }).click();
  await badge('suspended');
  await page.getByRole('button', { name: 'Resume' }).waitFor(T);
  await page.locator('td', { hasText: 'tenant.suspend' }).first().waitFor(T);

  step = 'a dangerous change asks to type the slug';
  await page.getByRole('button', { name: 'Delete…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor(T);
  assert.equal(await dialog.getByRole('button', { name: 'Delete tenant' }).isDisabled(), true, 'disabled until the slug is typed');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'detached', ...T });
  await badge('suspended');

  step = 'starting a fleet migration run';
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Migrations' }).click();
  await page.getByRole('heading', { name: 'Fleet migrations' }).waitFor(T);
  await everyControlLabelled('migrations');
  await page.getByLabel('Concurrency').fill('1');
  await page.getByRole('button', { name: 'Start migration run' }).click();
  await page.getByRole('heading', { name: /^Run / }).waitFor(T);

  step = 'watching the run progress';
  const seen = new Set();
  const deadline = Date.now() + 60000;
  while (seen.size < 2 && Date.now() < deadline) {
    const done = await stat('done');
    if (done > 0 && done < RUN_TENANTS) seen.add(done);
    await page.waitForTimeout(200);
  }
  assert.ok(seen.size >= 2, `the done count moved on the page without a reload (saw ${[...seen]})`);
  await page.locator('[data-stat="rate"] b', { hasText: '/s' }).waitFor(T);
  await everyControlLabelled('migration run');
  await shot('migration-run');

  step = 'halting the run';
  await page.getByRole('button', { name: 'Halt run' }).click();
  await badge('halted');
  await page.getByText(/halted by console-operator/).waitFor(T);
  const left = await stat('remaining');
  assert.ok(left > 0, `the halted run left tenants (${left})`);

  step = 'resuming it to the end';
  await page.getByRole('button', { name: 'Resume run' }).click();
  await badge('completed', 120000);
  assert.equal(await stat('remaining'), 0);
  assert.equal(await stat('failed'), 0);
  await page.getByText('No failures.').waitFor(T);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Migrations' }).click();
  await page.locator('tbody tr').first().waitFor(T);
  await shot('migrations');

  step = 'a read-only token sees everything and is offered no change';
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Operator token').fill(READ_ONLY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('console-viewer · read-only').waitFor(T);
  await page.goto(`${URL_}#/tenants`);
  await page.locator('tbody tr').first().waitFor(T);
  assert.equal(await page.getByRole('button', { name: 'Create tenant' }).count(), 0);
  await page.goto(`${URL_}#/tenants/${NEW_TENANT}`);
  await badge('suspended');
  assert.equal(await page.getByRole('button', { name: 'Resume' }).count(), 0);
  await page.goto(`${URL_}#/migrations`);
  await page.locator('tbody tr').first().waitFor(T);
  assert.equal(await page.getByRole('button', { name: 'Start migration run' }).count(), 0);
  assert.equal(await page.getByRole('link', { name: 'Tokens' }).isVisible(), false);

  step = 'no script errors';
  assert.deepEqual(pageErrors, []);
  console.log(JSON.stringify({ ok: true, progress_seen: [...seen] }));
} catch (error) {
  await shot('failure').catch(() => {});
  console.error(`console test failed at "${step}": ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
