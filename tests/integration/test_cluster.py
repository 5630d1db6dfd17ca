"""Cluster fan-out through a real Redis: several wsnode processes with several workers each act
as one pub/sub server, and survive Redis going away."""
import asyncio
import json
import time

import pytest
import websockets

from conftest import REDIS, STEP, sub_ack



OPEN = []


async def client(port):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=STEP, close_timeout=1)
    OPEN.append(ws)
    hello = json.loads(await asyncio.wait_for(ws.recv(), STEP))
    return ws, hello["node"]


def run(coro):
    """Runs a scenario, then closes every client it opened (instead of waiting for them)."""
    async def wrapped():
        try:
            await coro
        finally:
            await asyncio.gather(*(ws.close() for ws in OPEN), return_exceptions=True)
            OPEN.clear()
    asyncio.run(wrapped())


async def redis_subscription(redis, name, present=True):
    """Waits until Redis does (or no longer does) list the channel as subscribed."""
    deadline = time.time() + STEP
    while (name in redis.cli("PUBSUB", "CHANNELS")) != present:
        assert time.time() < deadline, f"{name} {'not ' if present else 'still '}subscribed in Redis"
        await asyncio.sleep(0.05)


async def request(ws, msg):
    await ws.send(json.dumps(msg))
    return json.loads(await asyncio.wait_for(ws.recv(), STEP))


async def subscribers_on_every_worker(ports, workers_each, ch):
    """Connects until every worker of every node holds at least one subscriber of ch."""
    subs, nodes = [], set()
    for _ in range(200):
        if len(nodes) == len(ports) * workers_each:
            break
        ws, node = await client(ports[len(subs) % len(ports)])
        assert sub_ack(await request(ws, {"op": "sub", "ch": ch, "id": 1})) == {"op": "ack", "id": 1}
        subs.append(ws)
        nodes.add(node)
    assert len(nodes) == len(ports) * workers_each, nodes
    return subs


def test_every_worker_of_every_node_receives_every_message_once_in_one_order(node, redis):
    a = node("--workers", "2", "--redis", f"127.0.0.1:{redis.port}")
    b = node("--workers", "2", "--redis", f"127.0.0.1:{redis.port}")

    async def main():
        subs = await subscribers_on_every_worker([a.port, b.port], 2, "room.1")
        # Publish from several connections on both nodes, interleaved.
        pubs = [(await client(p))[0] for p in (a.port, b.port, a.port, b.port)]
        acked = []
        for i in range(40):
            ack = await request(pubs[i % 4], {"op": "pub", "ch": "room.1", "data": {"i": i}, "id": i})
            assert ack["op"] == "ack" and ack["id"] == i
            acked.append(ack["seq"])
        assert sorted(acked) == list(range(acked[0], acked[0] + 40))
        orders = []
        for ws in subs:
            got = [json.loads(await asyncio.wait_for(ws.recv(), STEP)) for _ in range(40)]
            assert all(m["op"] == "msg" and m["ch"] == "room.1" for m in got)
            orders.append([(m["seq"], m["data"]["i"]) for m in got])
        assert all(o == orders[0] for o in orders), "subscribers disagree on the order"
        assert [s for s, _ in orders[0]] == sorted(acked)
        for ws in subs:  # exactly once: nothing more arrives
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)

    run(main())


def test_unsubscribe_stops_delivery_and_the_redis_subscription(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")

    async def main():
        ws, _ = await client(n.port)
        await request(ws, {"op": "sub", "ch": "solo", "id": 1})
        await redis_subscription(redis, "wsfan:ch:{solo}")
        assert await request(ws, {"op": "unsub", "ch": "solo", "id": 2}) == {"op": "ack", "id": 2}
        await redis_subscription(redis, "wsfan:ch:{solo}", present=False)
        pub, _ = await client(n.port)
        assert (await request(pub, {"op": "pub", "ch": "solo", "data": 1, "id": 3}))["op"] == "ack"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)

    run(main())


def test_redis_restart_nodes_survive_resubscribe_and_delivery_resumes(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "2")

    async def main():
        subs = await subscribers_on_every_worker([n.port], 2, "feed")
        pub, _ = await client(n.port)
        assert (await request(pub, {"op": "pub", "ch": "feed", "data": "before", "id": 1}))["op"] == "ack"
        for ws in subs:
            assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["data"] == "before"

        redis.stop()
        # While Redis is away a publish is refused out loud, and clients stay connected.
        reply = await request(pub, {"op": "pub", "ch": "feed", "data": "lost", "id": 2})
        assert reply["op"] == "err" and reply["code"] == "unavailable", reply
        redis.start()

        deadline = time.time() + 15
        while True:
            reply = await request(pub, {"op": "pub", "ch": "feed", "data": "after", "id": 3})
            if reply["op"] == "ack":
                break
            assert reply["code"] == "unavailable", reply
            assert time.time() < deadline, "the bus did not come back"
            await asyncio.sleep(0.2)
        # Resubscribed: every subscriber gets messages again (retry: resubscription is async).
        # Redis came back empty (no persistence): the channel's seq and history are gone, so
        # each subscriber is told so (reset, a new epoch) before the first message after.
        for ws in subs:
            m = json.loads(await asyncio.wait_for(ws.recv(), STEP))
            assert m["op"] == "reset" and m["ch"] == "feed" and m["epoch"], m
            m = json.loads(await asyncio.wait_for(ws.recv(), STEP))
            assert m["data"] == "after", m

    run(main())
    assert "reconnecting" in n.log()


def test_malformed_envelopes_from_redis_are_dropped_and_logged(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")

    async def main():
        ws, _ = await client(n.port)
        await request(ws, {"op": "sub", "ch": "x", "id": 1})
        await redis_subscription(redis, "wsfan:ch:{x}")
        redis.cli("PUBLISH", "wsfan:ch:{x}", "not a protobuf \xff")
        pub, _ = await client(n.port)
        assert (await request(pub, {"op": "pub", "ch": "x", "data": [1], "id": 2}))["op"] == "ack"
        m = json.loads(await asyncio.wait_for(ws.recv(), STEP))
        assert m["op"] == "msg" and m["data"] == [1]  # the garbage never reached the client

    run(main())
    assert "malformed" in n.log()


def test_prefix_separates_clusters_on_one_redis(node, redis):
    a = node("--redis", f"127.0.0.1:{redis.port}", "--redis-prefix", "one:", "--workers", "1")
    b = node("--redis", f"127.0.0.1:{redis.port}", "--redis-prefix", "two:", "--workers", "1")

    async def main():
        wa, _ = await client(a.port)
        wb, _ = await client(b.port)
        await request(wa, {"op": "sub", "ch": "c", "id": 1})
        await request(wb, {"op": "sub", "ch": "c", "id": 1})
        pub, _ = await client(a.port)
        ack = await request(pub, {"op": "pub", "ch": "c", "data": 7, "id": 2})
        assert ack == {"op": "ack", "id": 2, "seq": 1}
        assert json.loads(await asyncio.wait_for(wa.recv(), STEP))["data"] == 7
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(wb.recv(), 0.5)

    run(main())


def metrics(port):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=STEP).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_move_and_sum_over_workers(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "2")

    async def main():
        subs = await subscribers_on_every_worker([n.port], 2, "m")
        before = metrics(n.port)
        pub, _ = await client(n.port)
        for i in range(5):
            assert (await request(pub, {"op": "pub", "ch": "m", "data": i, "id": i}))["op"] == "ack"
        for ws in subs:
            for _ in range(5):
                await asyncio.wait_for(ws.recv(), STEP)
        deadline = time.time() + STEP
        while True:  # the tick copies the bus counters into shared memory
            after = metrics(n.port)
            if (after["wsfan_redis_published_total"] - before["wsfan_redis_published_total"] >= 5
                    and after["wsfan_redis_up"] == 2):
                break
            assert time.time() < deadline, after
            await asyncio.sleep(0.1)
        assert after["wsfan_workers"] == 2
        assert after["wsfan_redis_up"] == 2
        assert after["wsfan_deliveries_total"] - before["wsfan_deliveries_total"] == 5 * len(subs)
        assert after["wsfan_publishes_total"] - before["wsfan_publishes_total"] == 5
        assert after["wsfan_connections"] >= len(subs) + 1
        assert after["wsfan_publish_delivery_seconds_count"] >= 10  # 5 messages x 2 workers
        assert after['wsfan_publish_delivery_seconds_bucket{le="+Inf"}'] == \
            after["wsfan_publish_delivery_seconds_count"]

    run(main())


def test_a_backend_publishes_by_writing_an_envelope_to_redis(node, redis):
    import pathlib
    import subprocess
    script = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "redis_publish.py"
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")

    async def main():
        ws, _ = await client(n.port)
        await request(ws, {"op": "sub", "ch": "orders", "id": 1})
        await redis_subscription(redis, "wsfan:ch:{orders}")
        pub, _ = await client(n.port)
        first = await request(pub, {"op": "pub", "ch": "orders", "data": "from a client", "id": 2})
        out = subprocess.run(["/usr/bin/python3", str(script), "--redis", f"127.0.0.1:{redis.port}",
                              "orders", '{"from": "a backend"}'],
                             capture_output=True, text=True, timeout=STEP)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["seq"] == first["seq"] + 1
        got = [json.loads(await asyncio.wait_for(ws.recv(), STEP)) for _ in range(2)]
        assert [m["seq"] for m in got] == [first["seq"], first["seq"] + 1]
        assert got[1]["data"] == {"from": "a backend"}

    run(main())


def test_wsload_through_the_bus_counts_every_message_once_in_publisher_order(node, redis, tmp_path):
    """Publishers on one node, subscribers on another, a Redis that has never seen the script,
    full rate: publishes must not overtake each other (they did, when NOSCRIPT was retried)."""
    import os
    import pathlib
    import subprocess
    wsload = os.environ.get("WSLOAD", str(pathlib.Path(__file__).resolve().parents[2] / "build" / "loadtest" / "wsload"))
    a = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--max-msg-rate", "0")
    b = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "2")
    out = tmp_path / "r.json"
    p = subprocess.run([wsload, "fanout", "--subscribers", "4", "--publishers", "4", "--rate", "max",
                        "--duration", "2", "--quiet", "--json", str(out),
                        "--pub-url", f"ws://127.0.0.1:{a.port}/ws", f"ws://127.0.0.1:{b.port}/ws"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    m = json.loads(out.read_text())["messages"]
    assert m["expected"] > 10000
    # At full rate a node that falls behind may lose messages (Redis drops a subscriber link
    # over its output limit, and that is counted as loss); nothing may arrive twice or out of
    # its publisher's order.
    assert m["received"] == m["unique"], m
    assert m["duplicates"] == m["reordered"] == 0, m


def test_redis_over_a_unix_socket_with_a_password(node, tmp_path):
    import subprocess
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen([REDIS, "--port", "0", "--unixsocket", str(sock), "--save", "",
                             "--appendonly", "no", "--requirepass", "pw-123"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while not sock.exists():
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)
        n = node("--redis", str(sock), "--redis-password", "pw-123", "--workers", "1")

        async def main():
            ws, _ = await client(n.port)
            await request(ws, {"op": "sub", "ch": "u", "id": 1})
            pub, _ = await client(n.port)
            deadline = time.time() + 10
            while True:  # the links and the subscription come up asynchronously
                reply = await request(pub, {"op": "pub", "ch": "u", "data": "via unix", "id": 2})
                if reply["op"] == "ack":
                    try:
                        m = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                        assert m["data"] == "via unix"
                        break
                    except asyncio.TimeoutError:
                        pass
                assert time.time() < deadline, reply
                await asyncio.sleep(0.1)

        run(main())
    finally:
        proc.kill()
        proc.wait()


def test_a_sub_ack_means_the_next_publish_anywhere_arrives(node, redis):
    """The ack of a sub waits for Redis to confirm the SUBSCRIBE: a publish on another node
    right after the ack must reach the subscriber, every time."""
    a = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")
    b = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")

    async def main():
        sub, _ = await client(b.port)
        pub, _ = await client(a.port)
        for i in range(30):
            ch = f"fresh.{i}"
            assert sub_ack(await request(sub, {"op": "sub", "ch": ch, "id": i})) == {"op": "ack", "id": i}
            assert (await request(pub, {"op": "pub", "ch": ch, "data": i, "id": i}))["op"] == "ack"
            m = json.loads(await asyncio.wait_for(sub.recv(), STEP))
            assert (m["ch"], m["data"]) == (ch, i)

    run(main())
