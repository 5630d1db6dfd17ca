// The demo web app in a real browser: Debian's chromium, headless, driven by playwright-core.
// Run by tests/integration/test_browser.py, which starts Redis, a router, two nodes serving
// web/ and the demo ticker, and passes one JSON argument:
//   {"pageA": url, "pageB": url, "pgids": {"<port>": <process group of that node>},
//    "chromium": path, "screenshot": path}
// Page A (alice) opens on one node, page B (bob) on the other. Exits 0 when every step passed;
// prints "KILLED <port>" when it kills the node serving page A.
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
const STEP = 15000;

function step(name) {
  console.log(`step: ${name}`);
}

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const a = await browser.newPage();
  const b = await browser.newPage();
  for (const p of [a, b]) {
    p.setDefaultTimeout(STEP);
    p.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  }
  await a.goto(`${cfg.pageA}?user=alice`);
  await b.goto(`${cfg.pageB}?user=bob`);

  step('both pages connect, to different nodes');
  await a.waitForSelector('#status[data-state="open"]');
  await b.waitForSelector('#status[data-state="open"]');
  const nodeA = await a.getAttribute('#status', 'data-node');
  const nodeB = await b.getAttribute('#status', 'data-node');
  if (!nodeA || nodeA === nodeB) throw new Error(`pages on nodes ${nodeA} and ${nodeB}`);

  step('each sees the other in its presence list');
  await a.waitForSelector('#presence li[data-user="bob"]');
  await b.waitForSelector('#presence li[data-user="alice"]');

  step('a chat line typed in one page appears in the other');
  await a.fill('#chat-input', 'hello from alice');
  await a.click('#chat-send');
  await b.waitForSelector('#messages li:has-text("hello from alice")');

  step('the ticker moves');
  const ticks = (p) => p.$eval('#ticker tr[data-symbol="EURUSD"]', (tr) => +tr.dataset.ticks);
  const price = (p) => p.$eval('#ticker tr[data-symbol="EURUSD"] .price', (e) => e.textContent);
  const t0 = await ticks(a);
  await a.waitForFunction((t) => +document.querySelector('#ticker tr[data-symbol="EURUSD"]').dataset.ticks >= t + 3, t0);
  if (!/^\d+(\.\d+)?$/.test(await price(a))) throw new Error(`price shows ${await price(a)}`);

  step('the node serving page A is killed; the page reconnects to the other node');
  const port = nodeA.match(/-(\d+)\.w\d+\./)[1];
  process.kill(-cfg.pgids[port], 'SIGKILL');
  console.log(`KILLED ${port}`);
  await a.waitForFunction((old) => {
    const s = document.querySelector('#status');
    return s.dataset.state === 'open' && s.dataset.node && s.dataset.node !== old;
  }, nodeA, { timeout: 30000 });

  step('page A receives messages again');
  await b.fill('#chat-input', 'after the crash');
  await b.click('#chat-send');
  await a.waitForSelector('#messages li:has-text("after the crash")');
  const t1 = await ticks(a);
  await a.waitForFunction((t) => +document.querySelector('#ticker tr[data-symbol="EURUSD"]').dataset.ticks >= t + 2, t1);
  await b.waitForSelector('#presence li[data-user="alice"]');

  step("the killed node's alice leaves the presence lists after the router's node timeout");
  for (const p of [a, b])
    await p.waitForFunction(() => document.querySelectorAll('#presence li[data-user="alice"]').length === 1);

  step('screenshot');
  await a.screenshot({ path: cfg.screenshot, fullPage: true });
  console.log('ok');
} finally {
  await browser.close();
}
