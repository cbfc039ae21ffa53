#!/usr/bin/env node
// Drives the SMART Health Link viewer (sync-server/src/viewer) in Debian's
// headless chromium through playwright-core, and prints ONE JSON line:
//   {"state", "status", "summary", "allergies", "medications", "problems",
//    "requests": [every URL the page requested], "console_errors": [...]}
//
// Usage:
//   node tests/browser/viewer.mjs --url <viewer url with #shlink:/...>
//        [--recipient NAME] [--passcode PC] [--screenshot out.png]
//        [--viewport 390x844] [--timeout-ms 20000]
//        [--locale en-US] [--timezone UTC]
//
// Exit 0 when the page was driven (whatever state it ended in); non-zero on
// a driver error (bad arguments, no browser, the page never reached a final
// state). Needs `scripts/setup-browser.sh` first: playwright-core is loaded
// from <repo>/.cache/browser, so this runs from any working directory.
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cacheDir = resolve(repoRoot, '.cache', 'browser');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const FINAL_STATES = ['expired', 'revoked', 'wrong-passcode', 'locked', 'damaged', 'error', 'ok'];

function die(message, code = 2) {
  process.stderr.write(`viewer.mjs: ${message}\n`);
  process.exit(code);
}

function parseArgs(argv) {
  const opts = { recipient: 'Dr Test', viewport: '390x844', timeoutMs: 20000, locale: 'en-US', timezone: 'UTC' };
  const valued = {
    '--url': 'url', '--recipient': 'recipient', '--passcode': 'passcode',
    '--screenshot': 'screenshot', '--viewport': 'viewport', '--timeout-ms': 'timeoutMs',
    '--locale': 'locale', '--timezone': 'timezone',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node tests/browser/viewer.mjs --url URL [--recipient NAME] [--passcode PC] [--screenshot out.png] [--viewport WxH] [--timeout-ms N] [--locale en-US] [--timezone UTC]\n');
      process.exit(0);
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (!(name in valued)) die(`unknown argument ${a}`);
    let value;
    if (eq > 0) value = a.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) die(`${a} needs a value`);
      value = argv[++i];
    }
    opts[valued[name]] = value;
  }
  if (!opts.url) die('--url is required');
  const m = /^(\d+)x(\d+)$/.exec(String(opts.viewport));
  if (!m) die(`--viewport must be WIDTHxHEIGHT, got ${opts.viewport}`);
  opts.viewport = { width: Number(m[1]), height: Number(m[2]) };
  opts.timeoutMs = Number(opts.timeoutMs);
  if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) die('--timeout-ms must be a positive number');
  return opts;
}

function loadPlaywright() {
  const pkg = resolve(cacheDir, 'package.json');
  const require = createRequire(existsSync(pkg) ? pkg : resolve(cacheDir, 'noop.js'));
  try {
    return require('playwright-core');
  } catch (e) {
    die(`playwright-core not found in ${cacheDir}: run scripts/setup-browser.sh (${e.message})`);
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!existsSync(CHROMIUM)) die(`${CHROMIUM} is missing: run scripts/setup-browser.sh`);
  const { chromium } = loadPlaywright();

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    // Fixed locale and time zone: the page's dates read the same on every machine.
    const context = await browser.newContext({
      viewport: opts.viewport,
      serviceWorkers: 'block',
      locale: opts.locale,
      timezoneId: opts.timezone,
    });
    const page = await context.newPage();
    const requests = [];
    const consoleErrors = [];
    page.on('request', (req) => requests.push(req.url()));
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text().slice(0, 500));
    });
    page.on('pageerror', (err) => consoleErrors.push(String(err && err.message || err).slice(0, 500)));

    const deadline = Date.now() + opts.timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());

    await page.goto(opts.url, { waitUntil: 'load', timeout: left() });
    // The viewer marks <body data-viewer="ready|stopped"> once it has read
    // the link; "stopped" (damaged, expired) means there is nothing to fill.
    await page.waitForSelector('body[data-viewer]', { state: 'attached', timeout: left() });
    const viewerState = await page.getAttribute('body', 'data-viewer');
    if (viewerState === 'ready') {
      await page.fill('#recipient', opts.recipient, { timeout: left() });
      if (opts.passcode !== undefined) {
        if (await page.isVisible('#passcode')) {
          await page.fill('#passcode', opts.passcode, { timeout: left() });
        } else {
          // Not a passcode link: the viewer would not send it anyway.
          await page.$eval('#passcode', (el, v) => { el.value = v; }, opts.passcode);
        }
      }
      await page.click('#open', { timeout: left() });
    }
    await page.waitForFunction(
      (finals) => {
        const s = document.getElementById('status');
        return !!s && finals.includes(s.getAttribute('data-state'));
      },
      FINAL_STATES,
      { timeout: left(), polling: 100 },
    );

    if (opts.screenshot) {
      await page.screenshot({ path: resolve(process.cwd(), opts.screenshot), fullPage: true });
    }

    const result = await page.evaluate(() => {
      const text = (id) => {
        const el = document.getElementById(id);
        return el ? el.innerText.trim() : '';
      };
      const status = document.getElementById('status');
      return {
        state: status.getAttribute('data-state'),
        status: status.innerText.trim(),
        summary: text('summary'),
        allergies: text('allergies'),
        medications: text('medications'),
        problems: text('problems'),
      };
    });
    result.requests = requests;
    result.console_errors = consoleErrors;
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => die(`driver error: ${e && e.stack ? e.stack : e}`, 1));
