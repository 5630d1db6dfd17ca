// The demo web app in a real browser: Debian's chromium, headless, driven by playwright-core.
// Run by tests/integration/test_browser.py, which starts Redis, a router, two nodes serving
// web/ and the demo ticker, and passes one JSON argument:
//   {"pageA": url, "pageB": url, "pgids": {"<port>": <process group of that node>},
//    "chromium": path, "screenshot": path, "history": [chat lines published before]}
// Page A (alice) opens on one node, page B (bob) on the other; pages C and D open on page A's
// node with ?transport=sse and ?transport=poll (EventSource and fetch, receive only) and must
// follow the same chat and ticks across the kill. Exits 0 when every step passed;
// prints "KILLED <port>" when it kills the node serving page A (frozen with SIGSTOP first, so
// that page A misses messages it must get back by resubscribing with since).
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
  // Every WebSocket frame page A sends and receives, per connection, parsed.
  const sockets = [];
  a.on('websocket', (ws) => {
    const s = { url: ws.url(), sent: [], received: [] };
    sockets.push(s);
    const parse = (f) => { try { return JSON.parse(f.payload); } catch { return null; } };
    ws.on('framesent', (f) => s.sent.push(parse(f)));
    ws.on('framereceived', (f) => s.received.push(parse(f)));
  });
  const streams = { sse: await browser.newPage(), poll: await browser.newPage() };
  for (const p of [a, b, ...Object.values(streams)]) {
    p.setDefaultTimeout(STEP);
    p.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  }
  await a.goto(`${cfg.pageA}?user=alice`);
  await b.goto(`${cfg.pageB}?user=bob`);
  for (const [t, p] of Object.entries(streams)) await p.goto(`${cfg.pageA}?user=${t}-reader&transport=${t}`);

  step('both pages connect, to different nodes');
  await a.waitForSelector('#status[data-state="open"]');
  await b.waitForSelector('#status[data-state="open"]');
  const nodeA = await a.getAttribute('#status', 'data-node');
  const nodeB = await b.getAttribute('#status', 'data-node');
  if (!nodeA || nodeA === nodeB) throw new Error(`pages on nodes ${nodeA} and ${nodeB}`);

  step("page A shows the chat's last lines on join, in order, once");
  await a.waitForFunction((n) => document.querySelectorAll('#messages li.history').length >= n,
    cfg.history.length);
  const shown = await a.$$eval('#messages li.history .text', (l) => l.map((e) => e.textContent));
  if (JSON.stringify(shown) !== JSON.stringify(cfg.history)) throw new Error(`history shows ${shown}`);

  step('the SSE and long-poll pages connect to the same node as page A');
  const streamNode = {};
  for (const [t, p] of Object.entries(streams)) {
    await p.waitForSelector('#status[data-state="open"]');
    streamNode[t] = await p.getAttribute('#status', 'data-node');
    if (await p.$eval('#chat-send', (e) => !e.disabled)) throw new Error(`${t}: the page can send`);
  }

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
  for (const [t, p] of Object.entries(streams)) {
    step(`the ${t} page shows the chat line and moving ticks`);
    await p.waitForSelector('#messages li:has-text("hello from alice")');
    const s0 = await ticks(p);
    await p.waitForFunction((t) => +document.querySelector('#ticker tr[data-symbol="EURUSD"]').dataset.ticks >= t + 3, s0);
  }

  step('the node serving page A freezes; page B chats on while page A hears nothing');
  const port = nodeA.match(/-(\d+)\.w\d+\./)[1];
  const first = sockets.length;
  process.kill(-cfg.pgids[port], 'SIGSTOP');
  try {
    await b.fill('#chat-input', 'while alice was away');
    await b.click('#chat-send');
    await b.waitForSelector('#messages li:has-text("while alice was away")');
    await a.waitForTimeout(1500);           // ticks published meanwhile, ten a second
    if (await a.$('#messages li:has-text("while alice was away")')) throw new Error('the frozen node delivered');
  } finally {
    step('then it is killed; the page reconnects to the other node');
    process.kill(-cfg.pgids[port], 'SIGKILL');
    console.log(`KILLED ${port}`);
  }
  await a.waitForFunction((old) => {
    const s = document.querySelector('#status');
    return s.dataset.state === 'open' && s.dataset.node && s.dataset.node !== old;
  }, nodeA, { timeout: 30000 });

  step('page A resubscribed with since and epoch, and every channel recovered');
  await a.waitForSelector('#messages li.note:has-text("nothing missed")');
  const resumed = sockets.slice(first).find((s) => s.received.some((m) => m?.op === 'hello'));
  const before = sockets[first - 1];
  const subs = resumed.sent.filter((m) => m?.op === 'sub');
  for (const ch of ['chat.lobby', 'ticks.EURUSD']) {
    const sub = subs.find((m) => m.ch === ch);
    if (!sub || typeof sub.since !== 'number' || !sub.epoch) throw new Error(`resubscribed ${JSON.stringify(sub)}`);
    const ack = resumed.received.find((m) => m?.op === 'ack' && m.id === sub.id);
    if (ack?.recovered !== true) throw new Error(`${ch}: ${JSON.stringify(sub)} answered ${JSON.stringify(ack)}`);
    // since is the last seq the page got before the freeze: the replay starts right after it.
    const last = Math.max(0, ...before.received.filter((m) => m?.op === 'msg' && m.ch === ch).map((m) => m.seq));
    if (sub.since !== last) throw new Error(`${ch}: since ${sub.since}, last seen ${last}`);
  }
  await a.waitForSelector('#messages li:has-text("while alice was away")');
  if (await a.$('#messages li.note.gap')) throw new Error('a gap was reported');

  step('page A receives messages again');
  await b.fill('#chat-input', 'after the crash');
  await b.click('#chat-send');
  await a.waitForSelector('#messages li:has-text("after the crash")');
  const t1 = await ticks(a);
  await a.waitForFunction((t) => +document.querySelector('#ticker tr[data-symbol="EURUSD"]').dataset.ticks >= t + 2, t1);
  await b.waitForSelector('#presence li[data-user="alice"]');

  step('page A shows no message twice and no tick is missing');
  const seqs = await a.$$eval('#messages li[data-seq]', (l) => l.map((e) => +e.dataset.seq));
  if (new Set(seqs).size !== seqs.length) throw new Error(`chat lines by seq: ${seqs}`);
  for (const text of ['hello from alice', 'while alice was away', 'after the crash']) {
    const n = await a.$$eval('#messages li .text', (l, t) => l.filter((e) => e.textContent === t).length, text);
    if (n !== 1) throw new Error(`"${text}" shown ${n} times`);
  }
  const rowsOff = await a.$$eval('#ticker tr[data-symbol]', (l) => l
    .filter((tr) => tr.dataset.gaps || tr.dataset.repeats)
    .map((tr) => `${tr.dataset.symbol}: gaps ${tr.dataset.gaps || 0}, repeats ${tr.dataset.repeats || 0}`));
  if (rowsOff.length) throw new Error(rowsOff.join('; '));

  for (const [t, p] of Object.entries(streams)) {
    step(`the ${t} page moved to the other node and missed nothing, twice nothing`);
    await p.waitForFunction((old) => {
      const s = document.querySelector('#status');
      return s.dataset.state === 'open' && s.dataset.node && s.dataset.node !== old;
    }, streamNode[t], { timeout: 30000 });
    for (const text of ['while alice was away', 'after the crash'])
      await p.waitForSelector(`#messages li:has-text("${text}")`);
    const s1 = await ticks(p);
    await p.waitForFunction((t) => +document.querySelector('#ticker tr[data-symbol="EURUSD"]').dataset.ticks >= t + 2, s1);
    for (const text of ['hello from alice', 'while alice was away', 'after the crash']) {
      const n = await p.$$eval('#messages li .text', (l, x) => l.filter((e) => e.textContent === x).length, text);
      if (n !== 1) throw new Error(`${t}: "${text}" shown ${n} times`);
    }
    const off = await p.$$eval('#ticker tr[data-symbol]', (l) => l
      .filter((tr) => tr.dataset.gaps || tr.dataset.repeats)
      .map((tr) => `${tr.dataset.symbol}: gaps ${tr.dataset.gaps || 0}, repeats ${tr.dataset.repeats || 0}`));
    if (off.length) throw new Error(`${t}: ${off.join('; ')}`);
  }

  step("the killed node's alice leaves the presence lists after the router's node timeout");
  for (const p of [a, b])
    await p.waitForFunction(() => document.querySelectorAll('#presence li[data-user="alice"]').length === 1);

  step('screenshot');
  await a.screenshot({ path: cfg.screenshot, fullPage: true });
  console.log('ok');
} finally {
  await browser.close();
}
