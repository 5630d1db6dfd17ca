// wsfan.js: a small browser client for wsfan client protocol v1 (docs/protocol.md), as one ES
// module with no dependencies. It keeps one WebSocket to one of several nodes, rotates to the
// next node URL on each reconnect (exponential backoff with full jitter), resubscribes every
// channel after a reconnect, resuming where it left off, and matches requests to their answers
// by id.
//
//   import { WsfanClient } from './wsfan.js';
//   const c = new WsfanClient(['ws://a:8080/ws', 'ws://b:8080/ws'], { user: 'alice' });
//   c.on('status', s => console.log(s.state, s.node, s.retryIn));   // connecting|open|closed
//   c.on('message', m => console.log(m.ch, m.seq, m.data));
//   c.connect();
//   await c.subscribe('room.1', { events: true });   // 'join'/'leave'/'presence_overflow' events
//   const { seq } = await c.publish('room.1', { text: 'hi' });
//   const { count, members } = await c.presence('room.1');
//   const { seq, epoch, messages } = await c.history('room.1', 50);   // last lines, oldest first
//
// Recovery (docs/protocol.md, "Positions and epochs" and "Recovery"): per subscribed channel the
// client remembers its position, the last seq it delivered to the app and the channel's epoch
// (from the sub ack, each msg and reset). Every reconnect resubscribes with since/epoch, so the
// server replays what was missed, and 'subscribed' says how it went:
//
//   c.on('subscribed', s => {          // {ch, events, resubscribe, recovered, seq, epoch}
//     if (s.recovered === false) resyncFromElsewhere(s.ch);   // a gap: messages may be missing
//   });                                // true: replayed, nothing missed; null: nothing to resume
//   c.on('reset', r => resyncFromElsewhere(r.ch));            // {ch, epoch, seq}: history lost
//
// A msg whose seq is not above the last one delivered on its channel (same epoch) is dropped,
// so the app never sees a message twice. c.position(ch) is {seq, epoch} (null when unknown).
//
// Requests made while not connected reject with code 'not_connected' (subscribe and unsubscribe
// are remembered instead and take effect on the next connection).

const CHANNEL = /^[A-Za-z0-9._:-]{1,200}$/;

export class WsfanError extends Error {
  constructor(code, reason) {
    super(reason ? `${code}: ${reason}` : code);
    this.name = 'WsfanError';
    this.code = code;
    this.reason = reason || '';
  }
}

export class WsfanClient {
  constructor(urls, opts = {}) {
    this.urls = [].concat(urls);
    if (!this.urls.length) throw new Error('WsfanClient: no node URL');
    this.opts = { backoffBase: 250, backoffCap: 10000, stableAfter: 5000, requestTimeout: 5000,
      connectTimeout: 10000, protocols: ['ws.json.v1'], ...opts };
    this.user = opts.user || null;
    this.state = 'closed';            // connecting | open | closed
    this.node = null;                 // node id from hello
    this.clientId = null;             // our client id from hello
    this.url = null;                  // URL of the current (or last) connection
    this.subs = new Map();            // channel -> { events, seq, epoch } (seq/epoch: position)
    this._ws = null;
    this._index = -1;                 // index into urls of the current attempt
    this._attempt = 0;                // failures since the last stable connection
    this._nextId = 1;
    this._pending = new Map();        // id -> { resolve, reject, timer }
    this._handlers = {};
    this._timer = null;               // reconnect or connect timeout
    this._stable = null;
    this._stopped = true;
  }

  // Registers fn for an event; returns a function that removes it. Events: 'status'
  // {state, node, client, url, retryIn}, 'message' {ch, seq, data}, 'direct' {from, data},
  // 'join' / 'leave' {ch, client, user}, 'presence_overflow' {ch, joins, leaves},
  // 'subscribed' {ch, events, resubscribe, recovered, seq, epoch} after each sub ack (recovered:
  // true when a resubscribe got everything it missed replayed, false when it may have missed
  // messages, null when there was no position to resume from), 'reset' {ch, epoch, seq} when
  // the channel's history was lost (resync), 'error' (WsfanError or frame).
  on(type, fn) {
    (this._handlers[type] ||= new Set()).add(fn);
    return () => this._handlers[type].delete(fn);
  }

  _emit(type, arg) {
    for (const fn of this._handlers[type] || []) {
      try { fn(arg); } catch (e) { console.error(e); }
    }
  }

  _status(state, retryIn = null) {
    this.state = state;
    this._emit('status', { state, node: this.node, client: this.clientId, url: this.url, retryIn });
  }

  connect() {
    this._stopped = false;
    if (!this._ws && !this._timer) this._open();
  }

  // Changes the ?user= of the upgrade; reconnects at once if connected or connecting.
  setUser(user) {
    this.user = user;
    if (!this._stopped) { this._drop(); this._attempt = 0; this._open(); }
  }

  close() {
    this._stopped = true;
    this._drop();
    this._status('closed');
  }

  _drop() {
    clearTimeout(this._timer); clearTimeout(this._stable);
    this._timer = this._stable = null;
    const ws = this._ws;
    this._ws = null;
    if (ws) { ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null; try { ws.close(1000); } catch {} }
    this._failPending('disconnected');
    this.node = this.clientId = null;
  }

  _open() {
    this._timer = null;
    this._index = (this._index + 1) % this.urls.length;
    this.url = this.urls[this._index];
    let ws;
    try {
      const u = new URL(this.url, globalThis.location?.href);
      if (this.user) u.searchParams.set('user', this.user);
      this.url = u.href;
      this._status('connecting');
      ws = new WebSocket(this.url, this.opts.protocols);
    }
    catch (e) { this._emit('error', e); this._closed(); return; }
    this._ws = ws;
    // Browsers follow an error with close; some implementations do not, so either ends it.
    const end = () => {
      if (this._ws !== ws) return;
      ws.onclose = ws.onerror = ws.onmessage = null;
      try { ws.close(); } catch {}
      this._closed();
    };
    ws.onclose = ws.onerror = end;
    ws.onmessage = (ev) => { if (this._ws === ws) this._frame(ev.data); };
    this._timer = setTimeout(end, this.opts.connectTimeout);   // no hello in time
  }

  _closed() {
    clearTimeout(this._timer); clearTimeout(this._stable);
    this._timer = this._stable = null;
    this._ws = null;
    this._failPending('disconnected');
    this.node = this.clientId = null;
    if (this._stopped) { this._status('closed'); return; }
    const { backoffBase, backoffCap } = this.opts;
    const delay = Math.floor(Math.random() * Math.min(backoffCap, backoffBase * 2 ** this._attempt));
    this._attempt = Math.min(this._attempt + 1, 30);
    this._timer = setTimeout(() => this._open(), delay);
    this._status('closed', delay);
  }

  _failPending(code) {
    for (const p of this._pending.values()) { clearTimeout(p.timer); p.reject(new WsfanError(code)); }
    this._pending.clear();
  }

  _frame(text) {
    let m;
    try { m = JSON.parse(text); } catch { return this._emit('error', new WsfanError('bad_json', text)); }
    if (!m || typeof m !== 'object') return;
    if (m.op === 'hello') return this._hello(m);
    if (m.id !== undefined && this._pending.has(m.id) && ['ack', 'err', 'presence', 'history'].includes(m.op)) {
      const p = this._pending.get(m.id);
      this._pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.op === 'err') { p.reject(new WsfanError(m.code, m.reason)); return; }
      // Before the next frame: a replay follows a sub ack at once.
      if (p.onAnswer) p.onAnswer(m);
      p.resolve(m);
      return;
    }
    if (m.op === 'msg') {
      if (typeof m.ch !== 'string') return this._emit('direct', m);
      const pos = this.subs.get(m.ch);
      if (pos && typeof m.seq === 'number') {
        if (typeof m.epoch === 'string' && m.epoch !== pos.epoch) pos.epoch = m.epoch;
        else if (pos.seq !== null && m.seq <= pos.seq) return;   // seen already
        pos.seq = m.seq;
      }
      this._emit('message', m);
    } else if (m.op === 'reset') {
      const pos = this.subs.get(m.ch);
      if (!pos) return;
      pos.epoch = typeof m.epoch === 'string' ? m.epoch : null;
      pos.seq = typeof m.seq === 'number' ? m.seq : null;
      this._emit('reset', { ch: m.ch, epoch: pos.epoch, seq: pos.seq });
    } else if (m.op === 'join' || m.op === 'leave' || m.op === 'presence_overflow') {
      this._emit(m.op, m);
    } else if (m.op === 'err') {
      this._emit('error', new WsfanError(m.code, m.reason));
    }
  }

  _hello(m) {
    clearTimeout(this._timer);
    this._timer = null;
    this.node = m.node; this.clientId = m.client;
    // A connection that stays up for stableAfter resets the backoff.
    this._stable = setTimeout(() => { this._attempt = 0; }, this.opts.stableAfter);
    this._status('open');
    for (const ch of this.subs.keys()) this._sub(ch, true).catch((e) => this._emit('error', e));
  }

  // Sends msg with a fresh id; resolves with the ack / presence answer, rejects with a
  // WsfanError (the server's code, or 'not_connected', 'disconnected', 'timeout').
  request(msg, onAnswer) {
    if (this.state !== 'open') return Promise.reject(new WsfanError('not_connected'));
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new WsfanError('timeout'));
      }, this.opts.requestTimeout);
      this._pending.set(id, { resolve, reject, timer, onAnswer });
      this._ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  // Subscribes ch as this.subs says; on a resubscribe with a known position, resumes from it.
  _sub(ch, resubscribe) {
    const o = this.subs.get(ch);
    const req = { op: 'sub', ch };
    if (o.events) req.events = true;
    const resume = resubscribe && o.seq !== null;
    if (resume) {
      req.since = o.seq;
      if (o.epoch) req.epoch = o.epoch;       // '' (nothing ever published) means the current one
    }
    let info = null;
    return this.request(req, (r) => {
      if (this.subs.get(ch) !== o) return;    // unsubscribed meanwhile
      const recovered = resume ? r.recovered === true : null;
      if (typeof r.seq === 'number' && !recovered) {
        // Not replayed: the live stream starts after the ack's position.
        const epoch = typeof r.epoch === 'string' ? r.epoch : o.epoch;
        if (epoch !== o.epoch || o.seq === null || r.seq > o.seq) o.seq = r.seq;
        o.epoch = epoch;
      } else if (typeof r.epoch === 'string') {
        o.epoch = r.epoch;                    // recovered: the replay moves seq up to r.seq
      }
      info = { ch, events: o.events, resubscribe, recovered,
        seq: typeof r.seq === 'number' ? r.seq : null, epoch: o.epoch };
    }).then((r) => {
      if (info) this._emit('subscribed', info);
      return r;
    });
  }

  // Remembered across reconnects; resolves at once when not connected (subscribes on open).
  // Subscribing again (e.g. to turn events on or off) keeps the channel's position.
  subscribe(ch, { events = false } = {}) {
    if (!CHANNEL.test(ch)) return Promise.reject(new WsfanError('bad_channel', ch));
    const o = this.subs.get(ch);
    if (o) o.events = !!events;
    else this.subs.set(ch, { events: !!events, seq: null, epoch: null });
    return this.state === 'open' ? this._sub(ch, false) : Promise.resolve(null);
  }

  // The channel's position as far as this client knows: {seq, epoch} (null when unknown).
  position(ch) {
    const o = this.subs.get(ch);
    return o ? { seq: o.seq, epoch: o.epoch } : null;
  }

  // Resolves with {ch, seq, epoch, messages: [{seq, data}, ...]}: the channel's position and its
  // last limit messages (server default 50 without), oldest first.
  history(ch, limit) {
    if (!CHANNEL.test(ch)) return Promise.reject(new WsfanError('bad_channel', ch));
    return this.request(limit === undefined ? { op: 'history', ch } : { op: 'history', ch, limit });
  }

  unsubscribe(ch) {
    this.subs.delete(ch);
    return this.state === 'open' ? this.request({ op: 'unsub', ch }) : Promise.resolve(null);
  }

  publish(ch, data) { return this.request({ op: 'pub', ch, data }); }

  presence(ch, { count = false } = {}) {
    return this.request(count ? { op: 'presence', ch, count: true } : { op: 'presence', ch });
  }

  send(clientId, data) { return this.request({ op: 'send', to: clientId, data }); }
}

// WsfanStream: the same channels without WebSocket, receive only (docs/protocol.md, "SSE" and
// "Long-poll"): an EventSource on /sse, or fetch() polls on /poll, rotating over the same node
// list (ws:// URLs are turned into http:// ones) and resuming each reconnect from the stream's
// position token, so nothing is missed or shown twice. Events as WsfanClient's: 'status',
// 'message', 'subscribed' (per channel after each (re)connect: recovered null the first time,
// true after a resume; a 'reset' follows for a channel that could not be), 'reset', 'join',
// 'leave'. Channels are given before connect(); publish, presence and history need WebSocket
// or the HTTP API and reject with 'not_supported'.
//
//   const s = new WsfanStream(['ws://a:8080/ws', 'ws://b:8080/ws'], { transport: 'sse' });
//   s.subscribe('ticks.EURUSD'); s.on('message', m => show(m)); s.connect();
export class WsfanStream {
  constructor(urls, opts = {}) {
    this.urls = [].concat(urls);
    if (!this.urls.length) throw new Error('WsfanStream: no node URL');
    this.opts = { transport: 'sse', backoffBase: 250, backoffCap: 10000, ...opts };
    this.user = opts.user || null;
    this.readOnly = true;
    this.state = 'closed';
    this.node = this.clientId = this.url = null;
    this.channels = [];
    this.events = false;
    this.token = null;                  // the stream's position, from the last event or answer
    this._seq = new Map();              // channel -> last seq shown (drops repeats)
    this._handlers = {};
    this._index = -1;
    this._attempt = 0;
    this._opened = false;               // a first connection has been made
    this._gen = 0;                      // bumped on every (re)connect: old loops stop
  }

  on(type, fn) { return WsfanClient.prototype.on.call(this, type, fn); }
  _emit(type, arg) { WsfanClient.prototype._emit.call(this, type, arg); }
  _status(state, retryIn = null) { WsfanClient.prototype._status.call(this, state, retryIn); }

  subscribe(ch, { events = false } = {}) {
    if (!CHANNEL.test(ch)) return Promise.reject(new WsfanError('bad_channel', ch));
    if (!this.channels.includes(ch)) this.channels.push(ch);
    this.events ||= events;
    return Promise.resolve(null);
  }

  position(ch) { return this._seq.has(ch) ? { seq: this._seq.get(ch), epoch: null } : null; }
  publish() { return Promise.reject(new WsfanError('not_supported', 'receive only: use WebSocket')); }
  presence() { return this.publish(); }
  history() { return this.publish(); }
  setUser(user) { this.user = user; }

  connect() { if (this.state === 'closed' && !this._timer) this._open(); }

  close() {
    this._gen++;
    clearTimeout(this._timer);
    this._timer = null;
    this._es?.close();
    this._es = null;
    this._status('closed');
  }

  // The next node's URL for this transport, with the channels and the position to resume from.
  _next() {
    this._index = (this._index + 1) % this.urls.length;
    const u = new URL(this.urls[this._index], globalThis.location?.href);
    u.protocol = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
    u.pathname = this.opts.transport === 'poll' ? '/poll' : '/sse';
    u.search = '';
    for (const ch of this.channels) u.searchParams.append('ch', ch);
    if (this.user) u.searchParams.set('user', this.user);
    if (this.events && this.opts.transport === 'sse') u.searchParams.set('events', '1');
    return u;
  }

  _open() {
    this._timer = null;
    const gen = ++this._gen;
    const u = this._next();
    // The first connection starts from seq 0 of the current epoch: history, as far as it goes.
    u.searchParams.set('since', this.token || this.channels.map(() => '0-').join('_'));
    this.url = u.href;
    this._status('connecting');
    if (this.opts.transport === 'poll') this._poll(gen, u);
    else this._sse(gen, u);
  }

  _sse(gen, u) {
    const es = new EventSource(u.href);
    this._es = es;
    es.onmessage = (e) => {
      if (gen !== this._gen) return;
      if (e.lastEventId) this.token = e.lastEventId;
      let m;
      try { m = JSON.parse(e.data); } catch { return this._emit('error', new WsfanError('bad_json', e.data)); }
      this._handle(m);
    };
    es.onerror = () => {                // EventSource would retry the same node: rotate instead
      if (gen !== this._gen) return;
      es.close();
      this._es = null;
      this._retry();
    };
  }

  async _poll(gen, u) {
    let first = true;
    while (gen === this._gen) {
      let r;
      try {
        const res = await fetch(u.href, { cache: 'no-store' });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        r = await res.json();
      } catch {
        if (gen === this._gen) this._retry();
        return;
      }
      if (gen !== this._gen) return;
      if (first) this._handle({ op: 'hello', node: u.host, client: null });
      first = false;
      for (const m of r.messages || []) this._handle(m);
      this.token = r.since;
      u.searchParams.set('since', r.since);
    }
  }

  _handle(m) {
    if (m.op === 'hello') {
      this.node = m.node;
      this.clientId = m.client;
      this._attempt = 0;
      this._status('open');
      for (const ch of this.channels)
        this._emit('subscribed', { ch, events: this.events, resubscribe: this._opened,
          recovered: this._opened ? true : null, seq: this._seq.get(ch) ?? null, epoch: null });
      this._opened = true;
    } else if (m.op === 'msg' && typeof m.seq === 'number') {
      const last = this._seq.get(m.ch);
      if (last !== undefined && m.seq <= last) return;      // shown already
      this._seq.set(m.ch, m.seq);
      this._emit('message', m);
    } else if (m.op === 'reset') {
      this._seq.delete(m.ch);
      this._emit('reset', { ch: m.ch, epoch: m.epoch, seq: m.seq });
    } else if (m.op === 'join' || m.op === 'leave' || m.op === 'presence_overflow') {
      this._emit(m.op, m);
    }
  }

  _retry() {
    const delay = Math.random() * Math.min(this.opts.backoffCap, this.opts.backoffBase * 2 ** this._attempt++);
    this._status('closed', delay);
    this._timer = setTimeout(() => this._open(), delay);
  }
}
