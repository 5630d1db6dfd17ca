"""A subscriber that stops reading must not hold up the others, nor the server's memory."""

import asyncio
import json

from conftest import (sub_ack, OP_PING, OP_PONG, OP_TEXT, STEP, Raw, connect, run,
                      server_side_tcp_state)

# The publisher bursts faster than a client may by default: these tests are about the readers.
LIMITS = ["--outbuf-soft", "64k", "--outbuf-hard", "256k", "--outbuf-soft-seconds", "1",
          "--max-msg-rate", "0"]
SOFT_SECONDS = 1
# ~6 MiB in total: more than the hard limit plus the socket buffers (the kernel lets a
# loopback send buffer grow to tcp_wmem max, 4 MiB by default)
COUNT = 6000
BATCH = 40    # 40 KiB in flight at most, under the 64 KiB soft limit for the fast reader
PAYLOAD = "x" * 1000


async def slow_subscriber(port, ch):
    """A raw /ws client with a tiny receive buffer that subscribes and then stops reading."""
    c = await Raw.handshake(port, "/ws", protocol="ws.json.v1", rcvbuf=4096, limit=2048)
    assert (await c.recv_json())["op"] == "hello"
    await c.send_frame(OP_TEXT, json.dumps({"op": "sub", "ch": ch, "id": 1}))
    assert sub_ack(await c.recv_json()) == {"op": "ack", "id": 1}
    return c


async def fast_subscriber(node, ch, ready):
    """Reads every msg on ch until COUNT arrived; returns their seqs and data indexes."""
    async with connect(node, "/ws", subprotocols=["ws.json.v1"], max_queue=None) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["op"] == "hello"
        await ws.send(json.dumps({"op": "sub", "ch": ch, "id": 1}))
        assert sub_ack(json.loads(await asyncio.wait_for(ws.recv(), STEP))) == {"op": "ack", "id": 1}
        ready["event"].set()
        got = []
        while len(got) < COUNT:
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert m["op"] == "msg", m
            got.append((m["seq"], m["data"]["i"]))
            ready["received"] = len(got)
        return got


async def publish_all(node, ch, ready):
    """Publishes COUNT ~1 KiB messages in batches; after each batch waits for all acks and for
    the fast subscriber to have caught up, so only the slow subscriber falls behind."""
    async with connect(node, "/ws", subprotocols=["ws.json.v1"], max_queue=None) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["op"] == "hello"
        await asyncio.wait_for(ready["event"].wait(), STEP)
        seqs = []
        for start in range(0, COUNT, BATCH):
            for i in range(start, start + BATCH):
                await ws.send(json.dumps({"op": "pub", "ch": ch, "id": i + 1,
                                          "data": {"i": i, "pad": PAYLOAD}}))
            for _ in range(BATCH):
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert m["op"] == "ack", f"publisher got {m}"
                seqs.append(m["seq"])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while ready.get("received", 0) < start + BATCH:
                assert loop.time() < deadline, "fast subscriber stalled"
                await asyncio.sleep(0.002)
        return seqs


async def scenario(node):
    ready = {"event": asyncio.Event()}
    slow = await slow_subscriber(node.port, "feed")
    fast_task = asyncio.ensure_future(fast_subscriber(node, "feed", ready))
    acked = await publish_all(node, "feed", ready)
    got = await asyncio.wait_for(fast_task, 30)
    assert [i for _, i in got] == list(range(COUNT)), "fast subscriber missed or reordered"
    seqs = [s for s, _ in got]
    assert seqs == list(range(seqs[0], seqs[0] + COUNT))
    assert seqs == acked
    return slow


def test_policy_close_disconnects_the_slow_subscriber(node):
    n = node("--slow-policy", "close", *LIMITS)

    async def main():
        slow = await scenario(n)
        # The slow one must be cut off: reading now yields at most what was buffered, then EOF.
        discarded = await slow.wait_eof(SOFT_SECONDS + 10)
        assert discarded < COUNT * len(PAYLOAD), \
            f"slow subscriber received everything ({discarded} bytes) instead of being closed"
        await slow.aclose()
        async with connect(n, "/ws") as ws:  # the server is fine afterwards
            assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["op"] == "hello"

    run(main(), timeout=120)


async def burst(node, ch):
    """Publishes COUNT messages as fast as possible (pipelined), then stops."""
    async with connect(node, "/ws", subprotocols=["ws.json.v1"], max_queue=None) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["op"] == "hello"

        async def acks():
            for _ in range(COUNT):
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert m["op"] == "ack", m

        reader = asyncio.ensure_future(acks())
        for i in range(COUNT):
            await ws.send(json.dumps({"op": "pub", "ch": ch, "id": i + 1,
                                      "data": {"i": i, "pad": PAYLOAD}}))
        await asyncio.wait_for(reader, 30)


def test_policy_close_after_soft_seconds_without_further_traffic(node):
    """A burst leaves the slow subscriber above the soft limit (far below the hard one), then
    all is quiet: it must still be closed once --outbuf-soft-seconds have passed."""
    soft_seconds, close_timeout = 2, 1
    n = node("--slow-policy", "close", "--outbuf-soft", "64k", "--outbuf-hard", "512m",
             "--outbuf-soft-seconds", soft_seconds, "--close-timeout", close_timeout,
             "--max-msg-rate", "0")

    async def main():
        slow = await slow_subscriber(n.port, "feed")
        assert server_side_tcp_state(n.port, slow.local_port) == "ESTABLISHED"
        await burst(n, "feed")
        # Watch the server's end of the connection without reading: a read would let the
        # backlog drain below the soft limit (and wake the server up).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + soft_seconds + close_timeout + 4
        state = "ESTABLISHED"
        while state == "ESTABLISHED" and loop.time() < deadline:
            await asyncio.sleep(0.1)
            state = server_side_tcp_state(n.port, slow.local_port)
        assert state != "ESTABLISHED", (
            f"slow subscriber above the soft limit still connected "
            f"{soft_seconds + close_timeout + 4}s after the burst")
        discarded = await slow.wait_eof(5)
        assert discarded < COUNT * len(PAYLOAD), \
            f"slow subscriber received everything ({discarded} bytes) instead of being closed"
        await slow.aclose()

    run(main(), timeout=120)


def test_policy_drop_keeps_the_slow_subscriber(node):
    n = node("--slow-policy", "drop", *LIMITS)

    async def main():
        slow = await scenario(n)
        # Still connected: drain what it was sent, then a ping must be answered.
        seqs = []
        while True:
            try:
                f = await slow.recv_frame(timeout=2)
            except asyncio.TimeoutError:
                break
            assert f.opcode != 0x8, f"slow subscriber was closed under drop policy: {f}"
            if f.opcode == OP_TEXT:
                m = json.loads(f.payload)
                assert m["op"] == "msg", m
                seqs.append(m["seq"])
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), \
            "slow subscriber saw messages out of order or twice"
        assert len(seqs) < COUNT, "nothing was dropped: the server queued everything"
        await slow.send_frame(OP_PING, b"still-there")
        while True:
            f = await slow.recv_frame()
            assert f.opcode != 0x8, f"slow subscriber was closed under drop policy: {f}"
            if f.opcode == OP_PONG:
                assert f.payload == b"still-there"
                break
        await slow.aclose()

    run(main(), timeout=120)
