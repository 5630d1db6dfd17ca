#!/usr/bin/python3
"""wsfan client protocol v1 on Debian's python3-websockets (asyncio), one process.

/ws: hello, sub, unsub, pub -> msg to every subscriber (websockets.broadcast); /echo: echo;
/healthz: 200. See ../README.md.
"""
import argparse
import asyncio
import http
import itertools
import json
import re
import signal

import websockets

CHANNEL = re.compile(r"[A-Za-z0-9._:-]{1,200}")
channels = {}  # channel -> set of connections
seqs = {}  # channel -> last seq (kept when the channel empties)
client_ids = itertools.count(1)


def valid_id(i):
    return (isinstance(i, (int, float)) and not isinstance(i, bool)) or (
        isinstance(i, str) and len(i.encode()) <= 64)


def check(m):
    """Returns (code, reason) for a request that cannot be served, or None."""
    if "id" in m and not valid_id(m["id"]):
        return "bad_request", "id must be a number or a string of at most 64 bytes"
    if "op" not in m:
        return "bad_op", "op is missing"
    if m["op"] not in ("sub", "unsub", "pub"):
        return "bad_op", "unknown op"
    ch = m.get("ch")
    if not isinstance(ch, str) or not CHANNEL.fullmatch(ch):
        return "bad_channel", "ch must be 1-200 bytes of [A-Za-z0-9._:-]"
    if m["op"] == "pub" and "data" not in m:
        return "bad_request", "data is missing"
    return None


def reply(m, op, **fields):
    """The text of an ack or err for request m, carrying m's id when it has a valid one."""
    r = {"op": op}
    if "id" in m and valid_id(m["id"]):
        r["id"] = m["id"]
    r.update(fields)
    return json.dumps(r, separators=(",", ":"), ensure_ascii=False)


def publish(ch, data):
    seq = seqs.get(ch, 0) + 1
    seqs[ch] = seq
    subs = channels.get(ch)
    if subs:
        frame = json.dumps({"op": "msg", "ch": ch, "seq": seq, "data": data},
                           separators=(",", ":"), ensure_ascii=False)
        websockets.broadcast(subs, frame)
    return seq


def unsubscribe(ws, ch, mine):
    mine.discard(ch)
    subs = channels.get(ch)
    if subs is not None:
        subs.discard(ws)
        if not subs:
            del channels[ch]


async def protocol_v1(ws, node_id):
    mine = set()  # this connection's channels
    await ws.send(json.dumps({"op": "hello", "client": f"{node_id}-{next(client_ids)}",
                              "node": node_id}, separators=(",", ":")))
    try:
        async for text in ws:
            if isinstance(text, bytes):
                await ws.close(1003, "text frames only")
                break
            try:
                m = json.loads(text)
            except ValueError:
                m = None
            if not isinstance(m, dict):
                await ws.send('{"op":"err","code":"bad_json","reason":"not a JSON object"}')
                continue
            bad = check(m)
            if bad:
                await ws.send(reply(m, "err", code=bad[0], reason=bad[1]))
            elif m["op"] == "sub":
                channels.setdefault(m["ch"], set()).add(ws)
                mine.add(m["ch"])
                await ws.send(reply(m, "ack"))
            elif m["op"] == "unsub":
                unsubscribe(ws, m["ch"], mine)
                await ws.send(reply(m, "ack"))
            else:
                seq = publish(m["ch"], m["data"])
                await ws.send(reply(m, "ack", seq=seq))
    finally:
        for ch in list(mine):
            unsubscribe(ws, ch, mine)


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--node", help="node id in hello (default python-websockets-PORT)")
    args = p.parse_args()
    node_id = args.node or f"python-websockets-{args.port}"

    async def handler(ws):
        if ws.path == "/ws":
            await protocol_v1(ws, node_id)
        else:
            await echo(ws)

    async def routes(path, headers):
        if path == "/healthz":
            return http.HTTPStatus.OK, [], b"ok\n"
        if path not in ("/ws", "/echo"):
            return http.HTTPStatus.NOT_FOUND, [], b""
        return None

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # No permessage-deflate (the other peers negotiate none); /echo takes 16 MiB messages.
    async with websockets.serve(handler, args.host, args.port, process_request=routes,
                                compression=None, max_size=16 * 1024 * 1024,
                                subprotocols=["ws.json.v1"]):
        print(f"python-websockets {node_id} listening on {args.host}:{args.port}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
