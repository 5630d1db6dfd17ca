"""A channel's position and epoch (docs/protocol.md, "Positions and epochs"): every sub ack
says where the channel is, the same on every node; a channel whose seq and history were lost
(Redis emptied, keys expired) is in a new epoch, and its subscribers are told with a reset
before its next message. Real wsnode processes and a real redis-server."""
import asyncio
import json
import time

import websockets

from conftest import STEP, run


async def client(port):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=STEP, close_timeout=1)
    hello = json.loads(await asyncio.wait_for(ws.recv(), STEP))
    assert hello["op"] == "hello"
    return ws


async def request(ws, msg):
    await ws.send(json.dumps(msg))
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), STEP))
        if m.get("id") == msg["id"]:
            return m


async def sub(ws, ch, id=1):
    ack = await request(ws, {"op": "sub", "ch": ch, "id": id})
    assert ack["op"] == "ack" and isinstance(ack["seq"], int) and isinstance(ack["epoch"], str), ack
    return ack


async def publish(ws, ch, n, first_id=100):
    seqs = []
    for i in range(n):
        ack = await request(ws, {"op": "pub", "ch": ch, "data": i, "id": first_id + i})
        assert ack["op"] == "ack", ack
        seqs.append(ack["seq"])
    return seqs


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), STEP))


def test_without_redis_the_ack_says_the_position_in_a_node_epoch(node):
    n = node()

    async def main():
        a, b = await client(n.port), await client(n.port)
        first = await sub(a, "pos.local")
        assert first["seq"] == 0 and first["epoch"], first
        assert await publish(b, "pos.local", 3) == [1, 2, 3]
        for seq in (1, 2, 3):
            assert (await recv_json(a))["seq"] == seq
        later = await sub(b, "pos.local", 2)
        assert later["seq"] == 3 and later["epoch"] == first["epoch"], (first, later)
        other = await sub(b, "pos.other", 3)  # another channel, another epoch
        assert other["seq"] == 0 and other["epoch"] != first["epoch"], other
        await a.close()
        await b.close()

    run(main())


def test_every_node_acks_the_same_position_from_redis(node, redis):
    a = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")
    b = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")

    async def main():
        pub, s1 = await client(a.port), await client(a.port)
        fresh = await sub(s1, "pos.redis")
        assert fresh["seq"] == 0 and fresh["epoch"] == "", fresh  # never published
        assert await publish(pub, "pos.redis", 5) == [1, 2, 3, 4, 5]
        got = [await recv_json(s1) for _ in range(5)]
        assert [m["seq"] for m in got] == [1, 2, 3, 4, 5], got
        # A node that does not follow the channel reads its position from Redis; one that
        # does answers from what it received: the same position either way.
        s2, s3 = await client(b.port), await client(a.port)
        on_b, on_a = await sub(s2, "pos.redis", 2), await sub(s3, "pos.redis", 3)
        assert on_b["seq"] == on_a["seq"] == 5, (on_b, on_a)
        assert on_b["epoch"] == on_a["epoch"] != "", (on_b, on_a)
        assert redis.cli("HGET", "wsfan:meta:{pos.redis}", "epoch") == [on_a["epoch"]]
        for ws in (pub, s1, s2, s3):
            await ws.close()

    run(main())


def test_history_is_capped_and_every_key_expires(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--history-size", "10",
             "--history-ttl", "30")

    async def main():
        pub = await client(n.port)
        await publish(pub, "capped", 250)
        kept = int(redis.cli("XLEN", "wsfan:hist:{capped}")[0])
        assert 10 <= kept < 250, kept  # MAXLEN ~ trims whole stream nodes: at least 10 kept
        for key in ("wsfan:meta:{capped}", "wsfan:hist:{capped}"):
            ttl = int(redis.cli("TTL", key)[0])
            assert 0 < ttl <= 30, (key, ttl)
        assert redis.cli("KEYS", "*capped*") != [] and redis.cli("KEYS", "wsfan:seq:*") == []
        await pub.close()

    run(main())


def test_lost_history_is_a_new_epoch_and_subscribers_get_reset(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")

    async def main():
        s, pub = await client(n.port), await client(n.port)
        await sub(s, "lost")
        await publish(pub, "lost", 2)
        before = [await recv_json(s) for _ in range(2)]
        old = (await sub(pub, "lost", 7))["epoch"]
        assert [m["seq"] for m in before] == [1, 2] and old
        redis.cli("FLUSHALL")  # as a restart without persistence leaves it
        assert await publish(pub, "lost", 1, 200) == [1]
        reset = await recv_json(s)
        assert reset["op"] == "reset" and reset["ch"] == "lost", reset
        assert reset["epoch"] not in ("", old) and reset["seq"] == 0, reset
        m = await recv_json(s)
        assert m["op"] == "msg" and m["seq"] == 1, m
        assert (await sub(pub, "lost", 8))["epoch"] == reset["epoch"]
        await s.close()
        await pub.close()

    run(main())


def test_an_expired_channel_starts_a_new_epoch(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--history-ttl", "1")

    async def main():
        pub = await client(n.port)
        await publish(pub, "brief", 3)
        s = await client(n.port)
        first = await sub(s, "brief")
        assert first["seq"] == 3 and first["epoch"], first
        await s.close()  # nobody follows it now: the node forgets what it knew
        deadline = time.time() + 10
        while redis.cli("EXISTS", "wsfan:meta:{brief}") != ["0"]:
            assert time.time() < deadline, "the channel's keys never expired"
            await asyncio.sleep(0.2)
        s = await client(n.port)
        gone = await sub(s, "brief", 2)
        assert gone["seq"] == 0 and gone["epoch"] == "", gone
        assert await publish(pub, "brief", 1, 300) == [1]
        assert (await recv_json(s))["op"] == "msg"
        again = await sub(pub, "brief", 3)
        assert again["seq"] == 1 and again["epoch"] not in ("", first["epoch"]), again
        await s.close()
        await pub.close()

    run(main())
