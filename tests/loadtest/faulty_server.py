#!/usr/bin/python3
"""A deliberately faulty wsfan server (client protocol v1, docs/protocol.md) for testing the
load generator: it drops, duplicates or reorders msg deliveries on purpose, so that the
generator's loss/duplicate/reorder detection can be proven against exact counts.

  /usr/bin/python3 tests/loadtest/faulty_server.py --port N [--drop-every K] [--dup-every K]
                                                   [--swap-every K] [--seed S]

Faults are counted per subscriber connection over its msg deliveries (1, 2, 3, ...):
  --drop-every K  the K-th, 2K-th, ... delivery is never sent
  --dup-every K   ... is sent twice (the identical frame)
  --swap-every K  ... is held and sent right after the next delivery (positions i, i+1 swapped);
                  with no next delivery within HOLD_SECONDS it is sent alone (not counted)
A delivery hit by several faults gets the first of drop, dup, swap; the delivery after a held
one is never held itself. hello/ack/err are never touched. --seed seeds the client ids only.
Prints "listening on PORT" when ready and, on SIGTERM/SIGINT, one JSON line of counts.
Needs Debian's python3-websockets 10.4 (asyncio API). Also serves /echo and /healthz.
"""
import argparse
import asyncio
import http
import json
import random
import re
import signal

import websockets

HOLD_SECONDS = 0.5
CHANNEL = re.compile(r"[A-Za-z0-9._:-]{1,200}\Z")
DECODER = json.JSONDecoder()
stats = dict(published=0, deliveries_intended=0, dropped=0, duplicated=0, swapped=0)
channels = {}  # name -> set of Conn
seqs = {}      # name -> last seq


def _skip(s, i):
    while i < len(s) and s[i] in " \t\n\r":
        i += 1
    return i


def parse(text):
    """(object, raw JSON text of its top-level "data" member or None); ValueError if the text
    is not one strict JSON object."""
    def no_constant(name):
        raise ValueError(name)
    obj = json.loads(text, parse_constant=no_constant)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    raw, i = None, _skip(text, 0) + 1  # past "{"; json.loads has validated the layout
    while text[_skip(text, i)] != "}":
        key, i = json.decoder.scanstring(text, _skip(text, i) + 1)
        start = _skip(text, _skip(text, i) + 1)  # past ":"
        _, i = DECODER.raw_decode(text, start)
        if key == "data":
            raw = text[start:i]  # the last duplicate wins, as in json.loads
        i = _skip(text, i)
        i += text[i] == ","
    return obj, raw


def every(k, n):
    return k > 0 and n % k == 0


class Conn:
    def __init__(self, ws, args):
        self.ws, self.args = ws, args
        self.out = asyncio.Queue()  # every outgoing frame, in order
        self.n = 0                  # msg deliveries to this connection so far
        self.held = self.timer = None
        self.chans = set()

    async def writer(self):
        while True:
            await self.ws.send(await self.out.get())

    def deliver(self, frame):
        stats["deliveries_intended"] += 1
        self.n += 1
        a, held = self.args, self.held
        if held is not None:
            self.timer.cancel()
            self.held = self.timer = None
        if every(a.drop_every, self.n):
            stats["dropped"] += 1
        elif every(a.dup_every, self.n):
            stats["duplicated"] += 1
            self.out.put_nowait(frame)
            self.out.put_nowait(frame)
        elif every(a.swap_every, self.n) and held is None:
            self.held = frame
            self.timer = asyncio.get_running_loop().call_later(HOLD_SECONDS, self.release)
            return
        else:
            self.out.put_nowait(frame)
        if held is not None:
            stats["swapped"] += not every(a.drop_every, self.n)  # dropped next: no swap
            self.out.put_nowait(held)

    def release(self):
        self.out.put_nowait(self.held)
        self.held = self.timer = None

    def reply(self, **fields):
        self.out.put_nowait(json.dumps(fields, separators=(",", ":")))

    def err(self, id, code, reason):
        self.reply(op="err", **({} if id is None else {"id": id}), code=code, reason=reason)

    def handle(self, text):
        try:
            req, raw = parse(text)
        except (ValueError, RecursionError):
            return self.err(None, "bad_json", "the text is not one JSON object")
        op, ch, id = req.get("op"), req.get("ch"), req.get("id")
        if id is not None and (isinstance(id, bool) or not isinstance(id, (int, float, str))
                               or isinstance(id, str) and len(id.encode()) > 64):
            return self.err(None, "bad_request", "id must be a number or a string <= 64 bytes")
        if op not in ("sub", "unsub", "pub"):
            return self.err(id, "bad_op", "op must be sub, unsub or pub")
        if not isinstance(ch, str) or not CHANNEL.match(ch):
            return self.err(id, "bad_channel", "ch must be 1-200 bytes of [A-Za-z0-9._:-]")
        ack = {} if id is None else {"id": id}
        if op == "sub":
            self.chans.add(ch)
            channels.setdefault(ch, set()).add(self)
        elif op == "unsub":
            self.chans.discard(ch)
            channels.get(ch, set()).discard(self)
        else:
            if raw is None:
                return self.err(id, "bad_request", "pub needs data")
            seq = seqs[ch] = seqs.get(ch, 0) + 1
            stats["published"] += 1
            frame = '{"op":"msg","ch":%s,"seq":%d,"data":%s}' % (json.dumps(ch), seq, raw)
            for sub in list(channels.get(ch, ())):
                sub.deliver(frame)
            ack["seq"] = seq
        self.reply(op="ack", **ack)

    def close(self):
        if self.timer is not None:
            self.timer.cancel()  # a held frame is lost with its connection
        for ch in self.chans:
            channels[ch].discard(self)


async def handler(ws, path, args, rng):
    conn = Conn(ws, args)
    writer = asyncio.create_task(conn.writer())
    try:
        if path == "/echo":
            async for m in ws:
                await ws.send(m)
            return
        conn.reply(op="hello", client="c%08x" % rng.getrandbits(32), node="faulty")
        async for m in ws:
            if not isinstance(m, str):
                return await ws.close(1003, "ws.json.v1 is text")
            conn.handle(m)
    except websockets.ConnectionClosed:
        pass
    finally:
        conn.close()
        writer.cancel()


async def process_request(path, headers):
    if path == "/healthz":
        return http.HTTPStatus.OK, [], b"ok\n"
    if path not in ("/ws", "/echo"):
        return http.HTTPStatus.NOT_FOUND, [], b"not found\n"


async def main():
    p = argparse.ArgumentParser(description="deliberately faulty wsfan v1 server")
    p.add_argument("--port", type=int, required=True)
    for f in ("drop", "dup", "swap"):
        p.add_argument(f"--{f}-every", type=int, default=0, metavar="K")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    serve = websockets.serve(lambda ws, path: handler(ws, path, args, rng), "127.0.0.1",
                             args.port, process_request=process_request, close_timeout=1,
                             subprotocols=["ws.json.v1"], max_size=16 << 20)
    async with serve as server:
        print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()
        print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
