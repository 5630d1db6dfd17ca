// The wsfan demo page: a price ticker on ticks.* and a chat room with presence on chat.lobby.
// The chat shows its last lines on join (history) and, after a reconnect, whether it resumed
// without missing anything; wsfan.js resumes both with since, so nothing shows twice.
import { WsfanClient, WsfanStream } from './wsfan.js';

const SYMBOLS = ['EURUSD', 'GBPUSD', 'USDJPY', 'BTCUSD'];
const LOBBY = 'chat.lobby';
const USER = /^[A-Za-z0-9._:@-]{1,64}$/;
const MAX_MESSAGES = 200;
const HISTORY_LINES = 20;

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

// Node URLs: ?nodes=a,b, else nodes.json beside the page, else this host's /ws; the node that
// served the page first.
async function nodeUrls() {
  let list = null;
  const q = new URLSearchParams(location.search).get('nodes');
  if (q) list = q.split(',').map((s) => s.trim()).filter(Boolean);
  if (!list?.length) {
    try {
      const r = await fetch('nodes.json', { cache: 'no-store' });
      const j = r.ok ? await r.json() : null;
      if (Array.isArray(j) && j.length && j.every((s) => typeof s === 'string')) list = j;
    } catch { /* no nodes.json */ }
  }
  if (!list?.length) list = [`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`];
  const here = list.findIndex((u) => { try { return new URL(u).host === location.host; } catch { return false; } });
  return here > 0 ? [...list.slice(here), ...list.slice(0, here)] : list;
}

function initialName() {
  const q = new URLSearchParams(location.search).get('user');
  if (q && USER.test(q)) return q;
  return 'guest-' + Math.random().toString(16).slice(2, 6).padEnd(4, '0');
}

// Ticker
const rows = new Map();
for (const sym of SYMBOLS) {
  const tr = el('tr');
  tr.dataset.symbol = sym;
  tr.dataset.ticks = '0';
  tr.append(el('td', 'symbol', sym), el('td', 'price', '–'), el('td', 'arrow', ''), el('td', 'ticks', '0'));
  $('ticker').tBodies[0].append(tr);
  rows.set(sym, { tr, last: null, n: 0, seq: null });
}

function onTick(sym, data, seq) {
  const row = rows.get(sym);
  if (!row) return;
  const price = data && typeof data === 'object' ? data.price : data;
  row.n += 1;
  row.tr.dataset.ticks = String(row.n);
  // Seq jumps (a gap the resubscribe could not fill) and repeats (never, wsfan.js drops them).
  if (typeof seq === 'number' && row.seq !== null && seq !== row.seq + 1) {
    const k = seq <= row.seq ? 'repeats' : 'gaps';
    row.tr.dataset[k] = String(+(row.tr.dataset[k] || 0) + 1);
  }
  if (typeof seq === 'number') row.seq = seq;
  row.tr.querySelector('.ticks').textContent = String(row.n);
  row.tr.querySelector('.price').textContent = String(price);
  if (typeof price === 'number' && typeof row.last === 'number' && price !== row.last) {
    const up = price > row.last;
    row.tr.classList.toggle('up', up);
    row.tr.classList.toggle('down', !up);
    row.tr.querySelector('.arrow').textContent = up ? '▲' : '▼';
    row.tr.classList.remove('flash');
    void row.tr.offsetWidth;            // restart the flash animation
    row.tr.classList.add('flash');
  }
  row.last = price;
}

// Chat
const members = new Map();              // client id -> user
let presenceBusy = false, presenceAgain = false;

function renderPresence() {
  const ul = $('presence');
  ul.replaceChildren(...[...members].sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0]))
    .map(([client, user]) => {
      const li = el('li', client === conn.clientId ? 'me' : '', user);
      li.dataset.user = user;
      li.dataset.client = client;
      li.title = client;
      return li;
    }));
  $('presence-count').textContent = String(members.size);
}

async function refreshPresence() {
  if (presenceBusy) { presenceAgain = true; return; }
  presenceBusy = true;
  try {
    do {
      presenceAgain = false;
      const r = await conn.presence(LOBBY);
      members.clear();
      for (const m of r.members || []) members.set(m.client, m.user);
      $('presence').classList.remove('stale');
      renderPresence();
      if (!r.members) $('presence-count').textContent = String(r.count);
    } while (presenceAgain);
  } catch (e) {
    if (e.code !== 'disconnected' && e.code !== 'not_connected') showError(`presence: ${e.code || e.message}`);
  } finally {
    presenceBusy = false;
  }
}

function chatLine(data, seq) {
  const o = data && typeof data === 'object' ? data : {};
  const user = typeof o.user === 'string' ? o.user : '?';
  const text = 'text' in o ? String(o.text) : JSON.stringify(data);
  const at = typeof o.ts === 'number' ? new Date(o.ts) : new Date();
  const li = el('li');
  li.dataset.user = user;
  if (typeof seq === 'number') li.dataset.seq = String(seq);
  li.append(el('time', '', at.toLocaleTimeString()), el('b', '', user), el('span', 'text', text));
  return li;
}

function appendLine(li) {
  const ul = $('messages');
  const atBottom = ul.scrollHeight - ul.scrollTop - ul.clientHeight < 40;
  ul.append(li);
  while (ul.children.length > MAX_MESSAGES) ul.firstElementChild.remove();
  if (atBottom) ul.scrollTop = ul.scrollHeight;
}

const addMessage = (data, seq) => appendLine(chatLine(data, seq));
const note = (text, cls = '') => appendLine(el('li', `note ${cls}`.trim(), text));

// The lobby's last lines up to seq (the sub ack's position; later ones come live), above
// whatever arrived meanwhile.
async function showHistory(seq) {
  let h;
  try { h = await conn.history(LOBBY, HISTORY_LINES); }
  catch (e) { if (e.code !== 'disconnected') showError(`history: ${e.code || e.message}`); return; }
  if (h.epoch !== conn.position(LOBBY)?.epoch) return;        // reset meanwhile
  const ul = $('messages');
  const first = ul.firstElementChild;
  for (const m of h.messages || []) {
    if (m.seq > seq || ul.querySelector(`li[data-seq="${m.seq}"]`)) continue;
    const li = chatLine(m.data, m.seq);
    li.classList.add('history');
    ul.insertBefore(li, first);
  }
  ul.scrollTop = ul.scrollHeight;
}

function onLobbySubscribed(s) {
  if (conn.readOnly) {                 // history came as the stream's replay; no presence query
    if (s.recovered === true) note(`resumed on node ${conn.node}, nothing missed`, 'ok');
    return;
  }
  refreshPresence();
  if (s.recovered === null && !$('messages').querySelector('li[data-seq]')) showHistory(s.seq ?? 0);
  else if (s.recovered === true) note(`resumed on node ${conn.node}, nothing missed`, 'ok');
  else if (s.recovered === false) note('reconnected: some messages may be missing', 'gap');
}

let errorTimer = null;
function showError(text) {
  $('chat-error').textContent = text;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { $('chat-error').textContent = ''; }, 5000);
}

// Status
let countdown = null;
function setStatus(s) {
  const st = $('status');
  clearInterval(countdown);
  st.dataset.state = s.state;
  st.dataset.node = s.state === 'open' ? s.node : '';
  $('chat-send').disabled = s.state !== 'open' || !!conn.readOnly;
  if (s.state === 'open') {
    st.textContent = `connected to node ${s.node}${conn.readOnly ? ` (${TRANSPORT})` : ''}`;
  } else if (s.state === 'connecting') {
    st.textContent = `connecting to ${s.url.replace(/\?.*/, '')}…`;
  } else if (s.retryIn != null) {
    const at = Date.now() + s.retryIn;
    const tick = () => { st.textContent = `reconnecting in ${Math.max(0, Math.ceil((at - Date.now()) / 1000))} s`; };
    tick();
    countdown = setInterval(tick, 250);
  } else {
    st.textContent = 'closed';
  }
  if (s.state !== 'open') $('presence').classList.add('stale');
}

// Wiring
const nameInput = $('name');
nameInput.value = initialName();
// ?transport=sse or poll: the same page over Server-Sent Events or long-polling, receive only.
const TRANSPORT = new URLSearchParams(location.search).get('transport');
const conn = TRANSPORT === 'sse' || TRANSPORT === 'poll'
  ? new WsfanStream(await nodeUrls(), { user: nameInput.value, transport: TRANSPORT })
  : new WsfanClient(await nodeUrls(), { user: nameInput.value });
if (conn.readOnly) {
  document.body.dataset.transport = TRANSPORT;
  nameInput.disabled = true;
  $('chat-input').placeholder = `receive only over ${TRANSPORT === 'sse' ? 'Server-Sent Events' : 'long-polling'}`;
}
conn.on('status', setStatus);
conn.on('message', (m) => {
  if (m.ch === LOBBY) addMessage(m.data, m.seq);
  else if (m.ch.startsWith('ticks.')) onTick(m.ch.slice(6), m.data, m.seq);
});
conn.on('subscribed', (s) => { if (s.ch === LOBBY) onLobbySubscribed(s); });
conn.on('reset', (r) => {
  if (r.ch === LOBBY) {
    for (const li of $('messages').querySelectorAll('li[data-seq]')) delete li.dataset.seq;
    note('the chat history was lost on the server: earlier lines may be missing', 'gap');
  } else if (rows.has(r.ch.slice(6))) {
    rows.get(r.ch.slice(6)).seq = null;                    // a new numbering
  }
});
conn.on('join', (e) => { if (e.ch === LOBBY) { members.set(e.client, e.user); renderPresence(); } });
conn.on('leave', (e) => { if (e.ch === LOBBY) { members.delete(e.client); renderPresence(); } });
conn.on('presence_overflow', (e) => { if (e.ch === LOBBY) refreshPresence(); });
conn.on('error', (e) => showError(String(e.message || e)));

for (const sym of SYMBOLS) conn.subscribe(`ticks.${sym}`).catch((e) => showError(`ticks.${sym}: ${e.code}`));
conn.subscribe(LOBBY, { events: true }).catch((e) => showError(`${LOBBY}: ${e.code}`));
conn.connect();

nameInput.addEventListener('change', () => {
  const name = nameInput.value.trim();
  if (!USER.test(name)) {
    nameInput.classList.add('invalid');
    showError('name: 1-64 characters of A-Z a-z 0-9 . _ : @ -');
    return;
  }
  nameInput.classList.remove('invalid');
  if (name !== conn.user) conn.setUser(name);
});

$('chat-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('chat-input');
  const text = input.value.trim();
  if (!text) return;
  try {
    await conn.publish(LOBBY, { user: conn.user, text, ts: Date.now() });
    input.value = '';
  } catch (e) {
    showError(`send: ${e.code || e.message}`);
  }
  input.focus();
});
