'use strict';
// wsfan client protocol v1 on Node.js `ws`, pub/sub through Redis (see ../README.md).
// Every process started against the same Redis is part of one system: a pub on any process
// reaches the subscribers on all of them, with one seq per channel for everyone.
// /ws: hello, sub, unsub, pub; /echo: echo; /healthz: 200.

const http = require('http');
const Redis = require('ioredis');
const { WebSocketServer, WebSocket } = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(arg('--port', 8080));
const host = arg('--host', '127.0.0.1');
const nodeId = arg('--node', `node-ws-redis-${port}`);
const [redisHost, redisPort] = arg('--redis', '127.0.0.1:6379').split(':');
const prefix = arg('--prefix', 'nodews:'); // Redis names: <prefix>ch:<ch>, <prefix>seq:<ch>
const chPrefix = prefix + 'ch:';
const seqPrefix = prefix + 'seq:';

const CHANNEL = /^[A-Za-z0-9._:-]{1,200}$/;
const channels = new Map(); // channel -> { subs: Set of sockets, ready: Promise of SUBSCRIBE }
let clients = 0;

const redis = new Redis({ host: redisHost, port: Number(redisPort) }); // commands
const bus = new Redis({ host: redisHost, port: Number(redisPort) }); // subscriber mode
redis.on('error', (e) => console.error(`redis: ${e.message}`));
bus.on('error', (e) => console.error(`redis (subscriber): ${e.message}`));

// One round trip per pub: count the channel's seq and publish the finished msg frame, atomically,
// so every process forwards the same bytes with the same seq.
redis.defineCommand('publishMsg', {
  numberOfKeys: 2, // KEYS[1] seq counter, KEYS[2] pub/sub channel
  lua: `local seq = redis.call('INCR', KEYS[1])
        redis.call('PUBLISH', KEYS[2], ARGV[1] .. seq .. ARGV[2])
        return seq`,
});

bus.on('message', (redisChannel, frame) => {
  const entry = channels.get(redisChannel.slice(chPrefix.length));
  if (!entry) return;
  for (const c of entry.subs) {
    if (c.readyState === WebSocket.OPEN) c.send(frame);
  }
});

function validId(id) {
  return typeof id === 'number' || (typeof id === 'string' && Buffer.byteLength(id) <= 64);
}

// Returns [code, reason] for a request that cannot be served, or null.
function check(m) {
  if (m.id !== undefined && !validId(m.id)) {
    return ['bad_request', 'id must be a number or a string of at most 64 bytes'];
  }
  if (m.op === undefined) return ['bad_op', 'op is missing'];
  if (m.op !== 'sub' && m.op !== 'unsub' && m.op !== 'pub') return ['bad_op', 'unknown op'];
  if (typeof m.ch !== 'string' || !CHANNEL.test(m.ch)) {
    return ['bad_channel', 'ch must be 1-200 bytes of [A-Za-z0-9._:-]'];
  }
  if (m.op === 'pub' && m.data === undefined) return ['bad_request', 'data is missing'];
  return null;
}

function reply(ws, obj) {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
}

// Resolves once this process receives the channel's messages from Redis.
function subscribe(ws, ch) {
  let entry = channels.get(ch);
  if (!entry) {
    entry = { subs: new Set(), ready: bus.subscribe(chPrefix + ch) };
    channels.set(ch, entry);
  }
  entry.subs.add(ws);
  ws.channels.add(ch);
  return entry.ready;
}

function unsubscribe(ws, ch) {
  const entry = channels.get(ch);
  ws.channels.delete(ch);
  if (entry && entry.subs.delete(ws) && entry.subs.size === 0) {
    channels.delete(ch);
    bus.unsubscribe(chPrefix + ch).catch(() => {});
  }
}

function publish(ch, data) {
  const head = `{"op":"msg","ch":"${ch}","seq":`; // ch needs no escaping: [A-Za-z0-9._:-]
  const tail = `,"data":${JSON.stringify(data)}}`;
  return redis.publishMsg(seqPrefix + ch, chPrefix + ch, head, tail);
}

function fail(ws, id, e) {
  reply(ws, { op: 'err', id, code: 'unavailable', reason: `redis: ${e.message}` });
}

function onMessage(ws, text, isBinary) {
  if (isBinary) return ws.close(1003, 'text frames only');
  let m;
  try {
    m = JSON.parse(text);
  } catch (e) {
    m = null;
  }
  if (m === null || typeof m !== 'object' || Array.isArray(m)) {
    return reply(ws, { op: 'err', code: 'bad_json', reason: 'not a JSON object' });
  }
  const bad = check(m);
  if (bad) {
    const id = validId(m.id) ? m.id : undefined; // undefined members are left out
    return reply(ws, { op: 'err', id, code: bad[0], reason: bad[1] });
  }
  if (m.op === 'sub') {
    subscribe(ws, m.ch).then(
      () => reply(ws, { op: 'ack', id: m.id }),
      (e) => {
        unsubscribe(ws, m.ch); // so a later sub tries Redis again
        fail(ws, m.id, e);
      });
  } else if (m.op === 'unsub') {
    unsubscribe(ws, m.ch);
    reply(ws, { op: 'ack', id: m.id });
  } else {
    publish(m.ch, m.data).then((seq) => reply(ws, { op: 'ack', id: m.id, seq }), (e) => fail(ws, m.id, e));
  }
}

const wsServer = new WebSocketServer({
  noServer: true,
  maxPayload: 64 * 1024,
  handleProtocols: (offered) => (offered.has('ws.json.v1') ? 'ws.json.v1' : false),
});
wsServer.on('connection', (ws) => {
  ws.channels = new Set();
  reply(ws, { op: 'hello', client: `${nodeId}-${++clients}`, node: nodeId });
  ws.on('message', (data, isBinary) => onMessage(ws, data.toString(), isBinary));
  ws.on('close', () => {
    for (const ch of ws.channels) unsubscribe(ws, ch);
  });
});

const echoServer = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
echoServer.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    return res.end('ok\n');
  }
  res.writeHead(404);
  res.end();
});
server.on('upgrade', (req, socket, head) => {
  const target = req.url === '/ws' ? wsServer : req.url === '/echo' ? echoServer : null;
  if (!target) return socket.destroy();
  target.handleUpgrade(req, socket, head, (ws) => target.emit('connection', ws, req));
});

server.listen(port, host, () => {
  console.log(`node-ws-redis ${nodeId} listening on ${host}:${port}, Redis ${redisHost}:${redisPort}`);
});

function shutdown() {
  server.close(() => process.exit(0));
  for (const ws of wsServer.clients) ws.close(1001, 'server going away');
  for (const ws of echoServer.clients) ws.close(1001, 'server going away');
  redis.disconnect();
  bus.disconnect();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
