'use strict';
// wsfan client protocol v1 on Node.js `ws`, one process (see ../README.md).
// /ws: hello, sub, unsub, pub -> msg to every subscriber; /echo: echo; /healthz: 200.

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(arg('--port', 8080));
const host = arg('--host', '127.0.0.1');
const nodeId = arg('--node', `node-ws-${port}`);

const CHANNEL = /^[A-Za-z0-9._:-]{1,200}$/;
const channels = new Map(); // channel -> Set of sockets
const seqs = new Map(); // channel -> last seq (kept when the channel empties)
let clients = 0;

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
  ws.send(JSON.stringify(obj));
}

function subscribe(ws, ch) {
  let subs = channels.get(ch);
  if (!subs) channels.set(ch, (subs = new Set()));
  subs.add(ws);
  ws.channels.add(ch);
}

function unsubscribe(ws, ch) {
  const subs = channels.get(ch);
  if (subs && subs.delete(ws) && subs.size === 0) channels.delete(ch);
  ws.channels.delete(ch);
}

function publish(ch, data) {
  const seq = (seqs.get(ch) || 0) + 1;
  seqs.set(ch, seq);
  const subs = channels.get(ch);
  if (subs) {
    const frame = JSON.stringify({ op: 'msg', ch, seq, data }); // framed once
    for (const c of subs) {
      if (c.readyState === WebSocket.OPEN) c.send(frame);
    }
  }
  return seq;
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
    subscribe(ws, m.ch);
    reply(ws, { op: 'ack', id: m.id });
  } else if (m.op === 'unsub') {
    unsubscribe(ws, m.ch);
    reply(ws, { op: 'ack', id: m.id });
  } else {
    const seq = publish(m.ch, m.data);
    reply(ws, { op: 'ack', id: m.id, seq });
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

server.listen(port, host, () => console.log(`node-ws ${nodeId} listening on ${host}:${port}`));

function shutdown() {
  server.close(() => process.exit(0));
  for (const ws of wsServer.clients) ws.close(1001, 'server going away');
  for (const ws of echoServer.clients) ws.close(1001, 'server going away');
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
