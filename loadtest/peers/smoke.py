#!/usr/bin/python3
"""Smoke check of a protocol v1 peer (needs Debian's python3-websockets).

Usage: smoke.py WS_URL [WS_URL2] [--echo ECHO_URL]
Client A connects to WS_URL, client B to WS_URL2 (default WS_URL), so a two-process peer is
checked across its processes. Exits 0 and prints "N passed, 0 failed" when everything holds.
"""
import asyncio
import json
import sys

import websockets

passed = 0


def expect(cond, what):
    global passed
    if not cond:
        raise AssertionError(what)
    passed += 1


async def recv(ws, timeout=3.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def request(ws, obj):
    """Sends obj and returns the replies up to and including the ack or err for its id."""
    await ws.send(json.dumps(obj))
    seen = []
    while True:
        m = await recv(ws)
        seen.append(m)
        if m.get("op") in ("ack", "err") and m.get("id") == obj.get("id"):
            return seen


async def v1(url_a, url_b):
    async with websockets.connect(url_a) as a, websockets.connect(url_b) as b:
        for ws in (a, b):
            hello = await recv(ws)
            expect(hello["op"] == "hello" and "client" in hello and "node" in hello, f"hello {hello}")
        expect(await request(a, {"op": "sub", "ch": "room.1", "id": 1}) == [{"op": "ack", "id": 1}], "sub ack")
        expect(await request(b, {"op": "sub", "ch": "room.1", "id": "b1"}) == [{"op": "ack", "id": "b1"}], "sub ack (string id)")

        data = {"x": [1, "two", None], "y": "h\u00e9"}
        seqs = []
        for n in range(2):
            got = await request(b, {"op": "pub", "ch": "room.1", "data": data, "id": 3 + n})
            ack = got[-1]
            expect(ack["op"] == "ack" and isinstance(ack.get("seq"), int), f"pub ack {ack}")
            msg_b = got[0] if len(got) > 1 else await recv(b)
            msg_a = await recv(a)
            want = {"op": "msg", "ch": "room.1", "seq": ack["seq"], "data": data}
            expect(msg_a == want and msg_b == want, f"msg {msg_a} {msg_b} want {want}")
            seqs.append(ack["seq"])
        expect(seqs[1] == seqs[0] + 1, f"seq counts up {seqs}")

        await a.send("not json")
        expect((await recv(a))["code"] == "bad_json", "bad_json")
        for obj, code in (({"op": "zap", "id": 5}, "bad_op"),
                          ({"ch": "room.1", "id": 6}, "bad_op"),
                          ({"op": "sub", "ch": "bad channel", "id": 7}, "bad_channel"),
                          ({"op": "pub", "id": 8}, "bad_channel"),
                          ({"op": "pub", "ch": "room.1", "id": 9}, "bad_request")):
            err = (await request(a, obj))[-1]
            expect(err["op"] == "err" and err["code"] == code and err["reason"], f"{obj} -> {err}")

        expect(await request(a, {"op": "unsub", "ch": "room.1", "id": 10}) == [{"op": "ack", "id": 10}], "unsub ack")
        got = await request(b, {"op": "pub", "ch": "room.1", "data": "after", "id": 11})
        if len(got) == 1:
            got.append(await recv(b))
        expect(sorted(m["op"] for m in got) == ["ack", "msg"], f"publisher still subscribed {got}")
        try:
            extra = await recv(a, 0.5)
        except asyncio.TimeoutError:
            extra = None
        expect(extra is None, f"no msg after unsub, got {extra}")


async def echo(url):
    async with websockets.connect(url) as ws:
        await ws.send("hello echo")
        expect(await asyncio.wait_for(ws.recv(), 3) == "hello echo", "echo text")
        await ws.send(b"\x00\x01binary")
        expect(await asyncio.wait_for(ws.recv(), 3) == b"\x00\x01binary", "echo binary")


def main():
    args = sys.argv[1:]
    echo_url = None
    if "--echo" in args:
        i = args.index("--echo")
        echo_url = args[i + 1]
        del args[i:i + 2]
    if not args:
        sys.exit(__doc__)
    try:
        asyncio.run(v1(args[0], args[1] if len(args) > 1 else args[0]))
        if echo_url:
            asyncio.run(echo(echo_url))
    except Exception as e:  # report any failure the same way
        print(f"FAIL: {e!r}")
        print(f"{passed} passed, 1 failed")
        sys.exit(1)
    print(f"{passed} passed, 0 failed")


if __name__ == "__main__":
    main()
