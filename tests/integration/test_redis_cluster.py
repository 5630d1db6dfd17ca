"""wsfan on a real Redis Cluster of three masters (--redis-cluster, sharded pub/sub), with real
processes: channels spread over every master and delivered across nodes exactly once and in
order; slots moved under a publish stream (a live reshard) and a master killed and brought
back, with every message counted (lost, duplicated, reordered); presence and direct messages
through a router on the cluster; seeds that are not a cluster, or not there, said clearly."""
import asyncio
import json
import pathlib
import subprocess
import time

import pytest
import websockets

from conftest import STEP, WSNODE, WSROUTER, node_metrics, run

NODE_ARGS = ("--workers", "2", "--max-msg-rate", "0", "--max-subs", "2000",
             "--router-shards", "0")


async def connect(port):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=STEP,
                                  close_timeout=1, max_queue=None, max_size=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), STEP))
    assert hello["op"] == "hello", hello
    return ws


async def subscribe(ws, channels):
    """Subscribes ws to every channel; returns {channel: position} once all are acked."""
    for i, ch in enumerate(channels):
        await ws.send(json.dumps({"op": "sub", "ch": ch, "id": i}))
    pos = {}
    while len(pos) < len(channels):
        m = json.loads(await asyncio.wait_for(ws.recv(), STEP))
        assert m["op"] == "ack", m
        pos[channels[m["id"]]] = m["seq"]
    return pos


async def collect(ws, got, quiet=1.5):
    """Adds every msg to got[ch] (a list of seqs) until nothing came for `quiet` seconds."""
    try:
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), quiet))
            if m["op"] == "msg":
                got.setdefault(m["ch"], []).append(m["seq"])
            else:
                assert m["op"] in ("reset",), m
    except asyncio.TimeoutError:
        pass


def crc16(data):
    """CRC16/XMODEM, Redis Cluster's key hash."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot_of(ch):
    """The slot of a channel's Redis names (their hash tag is the channel)."""
    return crc16(ch.encode()) % 16384


def masters_serving(cluster, channels):
    """{port: number of the channels whose Redis names are on that master}."""
    owners, counts = cluster.slot_owners(), {p: 0 for p in cluster.ports}
    for ch in channels:
        counts[owners[slot_of(ch)]] += 1
    return counts


def shard_channels(cluster):
    """{port: set of shard channels subscribed on that master}."""
    return {p: set(cluster.cli(p, "PUBSUB", "SHARDCHANNELS").split()) for p in cluster.ports}


def test_channels_spread_over_every_master_and_cross_nodes_once_in_order(node, redis_cluster):
    channels = [f"room.{i}" for i in range(1000)]
    spread = masters_serving(redis_cluster, channels)
    assert all(n > 250 for n in spread.values()), spread  # CRC16 of real names: even
    a = node("--redis-cluster", redis_cluster.seeds, *NODE_ARGS)
    b = node("--redis-cluster", redis_cluster.seeds, *NODE_ARGS)

    async def scenario():
        sub = await connect(b.port)
        await subscribe(sub, channels)
        # Each channel's subscription is on the master that owns its slot, and only there.
        subs, owners = shard_channels(redis_cluster), redis_cluster.slot_owners()
        for ch in channels[:100]:
            name = f"wsfan:ch:{{{ch}}}"
            holders = [p for p, names in subs.items() if name in names]
            assert holders == [owners[slot_of(ch)]], (ch, holders)
        pub = await connect(a.port)
        for r in range(3):
            for i, ch in enumerate(channels):
                await pub.send(json.dumps({"op": "pub", "ch": ch, "data": {"r": r}, "id": i}))
        acks = 0
        while acks < 3 * len(channels):
            m = json.loads(await asyncio.wait_for(pub.recv(), STEP))
            assert m["op"] == "ack", m
            acks += 1
        got = {}
        await collect(sub, got)
        for ch in channels:
            assert got.get(ch) == [1, 2, 3], (ch, got.get(ch))

    run(scenario())
    m = node_metrics(a.port)
    assert m["wsfan_redis_up"] == 2 and m["wsfan_redis_servers_up"] == 6, m


async def stream(port, channels, stop, sent):
    """Publishes round-robin on channels (about 400 a second) until stop is set; sent[ch]
    gets the seq of every acked publish, and sent[None] (ch, reply) for each refused one."""
    ws = await connect(port)
    i = 0
    pending = {}

    async def reader():
        while True:
            m = json.loads(await ws.recv())
            ch = pending.pop(m["id"])
            if m["op"] == "ack":
                sent.setdefault(ch, []).append(m["seq"])
            else:
                sent.setdefault(None, []).append((ch, m))

    task = asyncio.create_task(reader())
    while not stop.is_set():
        ch = channels[i % len(channels)]
        pending[i] = ch
        await ws.send(json.dumps({"op": "pub", "ch": ch, "data": i, "id": i}))
        i += 1
        if i % 20 == 0:
            await asyncio.sleep(0.05)
    t = time.monotonic()
    while pending and time.monotonic() - t < STEP:
        await asyncio.sleep(0.05)
    task.cancel()
    await ws.close()
    assert not pending, f"{len(pending)} publishes never answered"


async def under_stream(pub_port, sub_port, channels, disrupt):
    """Subscribes channels on the node at sub_port, publishes on them through pub_port, runs
    disrupt() (a coroutine) a second into the stream and stops the stream a second after it;
    returns what was received and what was acked ({ch: [seq...]}, refusals under None)."""
    sub = await connect(sub_port)
    await subscribe(sub, channels)
    got, sent, stop = {}, {}, asyncio.Event()
    collector = asyncio.create_task(collect(sub, got, quiet=8))
    publisher = asyncio.create_task(stream(pub_port, channels, stop, sent))
    await asyncio.sleep(1)
    await disrupt()
    await asyncio.sleep(1)
    stop.set()
    await publisher
    await collector
    return got, sent


def test_a_reshard_under_a_publish_stream_loses_and_duplicates_nothing(node, redis_cluster):
    a = node("--redis-cluster", redis_cluster.seeds, *NODE_ARGS)
    b = node("--redis-cluster", redis_cluster.seeds, *NODE_ARGS)
    src, dst = redis_cluster.ports[0], redis_cluster.ports[1]
    owners = redis_cluster.slot_owners()
    first = owners.index(src)  # a reshard moves the source's lowest slots first
    # Channels on the 100 slots that move, and some that stay where they are.
    moving, staying = [], []
    for i in range(100000):
        ch = f"tick.{i}"
        slot = slot_of(ch)
        if owners[slot] == src and first <= slot < first + 100 and len(moving) < 30:
            moving.append(ch)
        elif owners[slot] != src and len(staying) < 10:
            staying.append(ch)
        if len(moving) == 30 and len(staying) == 10:
            break
    channels = moving + staying

    async def reshard():
        await asyncio.to_thread(redis_cluster.reshard, src, dst, 100)

    got, sent = run(under_stream(a.port, b.port, channels, reshard), timeout=120)
    assert None not in sent, sent.get(None)[:3]  # redirects followed: no publish refused
    for ch in channels:
        assert got.get(ch) == sent[ch] == list(range(1, len(sent[ch]) + 1)), (
            ch, len(got.get(ch, [])), len(sent[ch]))
    owners = redis_cluster.slot_owners()
    assert all(owners[slot_of(ch)] == dst for ch in moving)
    m = node_metrics(b.port)
    assert m["wsfan_redis_moved_total"] >= 1, m  # b's subscriptions did move
    m = node_metrics(a.port)
    assert m["wsfan_redis_redirects_total"] >= 1, m  # a's publishes followed MOVED or ASK


def test_a_killed_master_makes_its_channels_unavailable_and_the_rest_flow(node, redis_cluster):
    a = node("--redis-cluster", redis_cluster.seeds, *NODE_ARGS)
    b = node("--redis-cluster", redis_cluster.seeds, *NODE_ARGS)
    victim = redis_cluster.ports[2]
    channels = [f"feed.{i}" for i in range(60)]
    owners = redis_cluster.slot_owners()
    dead = [ch for ch in channels if owners[slot_of(ch)] == victim]
    alive = [ch for ch in channels if ch not in dead]
    assert dead and alive

    async def publish_all(ws, chs, tag):
        """{ch: the reply to a pub of ch}."""
        for i, ch in enumerate(chs):
            await ws.send(json.dumps({"op": "pub", "ch": ch, "data": tag, "id": i}))
        out = {}
        while len(out) < len(chs):
            m = json.loads(await asyncio.wait_for(ws.recv(), STEP))
            out[chs[m["id"]]] = m
        return out

    async def scenario():
        sub = await connect(b.port)
        await subscribe(sub, channels)
        pub = await connect(a.port)
        redis_cluster.kill(2)
        for p in redis_cluster.ports[:2]:  # until the others have marked it failed
            while "cluster_state:ok" not in redis_cluster.cli(p, "CLUSTER", "INFO") or \
                    ",fail" not in redis_cluster.cli(p, "CLUSTER", "NODES"):
                await asyncio.sleep(0.1)
        replies = await publish_all(pub, channels, "during")
        for ch in dead:
            assert replies[ch]["op"] == "err" and replies[ch]["code"] == "unavailable", replies[ch]
        for ch in alive:
            assert replies[ch]["op"] == "ack", replies[ch]
        got = {}
        await collect(sub, got, quiet=1)
        assert sorted(got) == sorted(alive), sorted(set(got) ^ set(alive))
        await asyncio.to_thread(redis_cluster.restart, 2)
        deadline = time.monotonic() + 15
        while True:  # until the node's links to the master are back
            replies = await publish_all(pub, dead, "after")
            if all(r["op"] == "ack" for r in replies.values()):
                break
            assert time.monotonic() < deadline, replies
            await asyncio.sleep(0.3)
        while node_metrics(b.port)["wsfan_redis_servers_up"] < 6:  # b's links back too
            assert time.monotonic() < deadline, node_metrics(b.port)
            await asyncio.sleep(0.2)
        got = {}
        await collect(sub, got, quiet=2)
        for ch in dead:  # subscribed again, and what b missed meanwhile mended from history
            assert got.get(ch), (ch, got)

    run(scenario(), timeout=90)


def test_presence_and_direct_messages_through_a_router_on_the_cluster(node, router,
                                                                      redis_cluster):
    router(redis_cluster)
    args = ("--redis-cluster", redis_cluster.seeds, "--workers", "1", "--router-shards", "1")
    a, b = node(*args), node(*args)

    async def scenario():
        alice = await websockets.connect(f"ws://127.0.0.1:{a.port}/ws", open_timeout=STEP)
        hello_a = json.loads(await alice.recv())
        bob = await websockets.connect(f"ws://127.0.0.1:{b.port}/ws", open_timeout=STEP)
        hello_b = json.loads(await bob.recv())
        await alice.send(json.dumps({"op": "sub", "ch": "lobby", "id": 1}))
        assert json.loads(await alice.recv())["op"] == "ack"
        deadline = time.monotonic() + STEP
        while True:  # presence follows within the router's event interval
            await bob.send(json.dumps({"op": "presence", "ch": "lobby", "id": 2}))
            m = json.loads(await asyncio.wait_for(bob.recv(), STEP))
            if m.get("count") == 1:
                break
            assert time.monotonic() < deadline, m
            await asyncio.sleep(0.2)
        assert [x["client"] for x in m["members"]] == [hello_a["client"]], m
        await bob.send(json.dumps({"op": "send", "to": hello_a["client"], "data": {"hi": 1},
                                   "id": 3}))
        assert json.loads(await asyncio.wait_for(bob.recv(), STEP)) == {"op": "ack", "id": 3}
        m = json.loads(await asyncio.wait_for(alice.recv(), STEP))
        assert m == {"op": "msg", "from": hello_b["client"], "data": {"hi": 1}}, m

    run(scenario())


def test_seeds_that_do_not_answer_or_are_no_cluster_are_said_clearly(node, redis):
    down = node("--redis-cluster", "127.0.0.1:1,127.0.0.1:2", "--workers", "1", ready=False)
    single = node("--redis-cluster", f"127.0.0.1:{redis.port}", "--workers", "1", ready=False)
    deadline = time.monotonic() + STEP
    while not ("no seed answers" in down.log() and "not a Redis Cluster" in single.log()):
        assert time.monotonic() < deadline, (down.log(), single.log())
        time.sleep(0.1)
    for n in (down, single):
        n.wait_ready()
        m = node_metrics(n.port)
        assert m["wsfan_redis_up"] == 0 and m["wsfan_redis_servers_up"] == 0, m


@pytest.mark.parametrize("binary", [WSNODE, WSROUTER])
@pytest.mark.parametrize("args", [["--redis-prefix", "app{1}:"], ["--redis-cluster", "127.0.0.1:99999,"]])
def test_a_prefix_with_a_hash_tag_or_a_bad_seed_is_refused(binary, args):
    argv = [binary, "--redis-cluster", "127.0.0.1:7000", *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=STEP)
    assert out.returncode == 2, out
    assert ("may not contain '{'" if "{" in args[1] else "bad --redis-cluster seed") in out.stderr


def test_a_backend_publishes_into_the_cluster_by_writing_to_redis(node, redis_cluster):
    """deploy/redis_publish.py --redis-cluster: sent to a master that does not own the
    channel, it follows the MOVED and its SPUBLISH reaches a node's subscriber in order."""
    script = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "redis_publish.py"
    n = node("--redis-cluster", redis_cluster.seeds, *NODE_ARGS)
    ch = "orders"
    owner = redis_cluster.slot_owners()[slot_of(ch)]
    other = next(p for p in redis_cluster.ports if p != owner)

    async def scenario():
        ws = await connect(n.port)
        await subscribe(ws, [ch])
        for i in range(3):
            out = subprocess.run(["/usr/bin/python3", str(script), "--redis-cluster",
                                  f"127.0.0.1:{other}", ch, json.dumps({"n": i})],
                                 capture_output=True, text=True, timeout=STEP)
            assert out.returncode == 0 and json.loads(out.stdout)["seq"] == i + 1, out
        got = []
        while len(got) < 3:
            m = json.loads(await asyncio.wait_for(ws.recv(), STEP))
            got.append((m["seq"], m["data"]))
        assert got == [(1, {"n": 0}), (2, {"n": 1}), (3, {"n": 2})], got

    run(scenario())


def test_a_failover_to_a_replica_under_a_publish_stream(node, redis_cluster_replicas):
    """A master killed under a publish stream: its replica takes over (Redis's own failover),
    the nodes follow the map to it, and every publish acked before and after is delivered once
    and in order; only the killed master's channels answer unavailable meanwhile."""
    cluster = redis_cluster_replicas
    a = node("--redis-cluster", cluster.seeds, *NODE_ARGS)
    b = node("--redis-cluster", cluster.seeds, *NODE_ARGS)
    owners = cluster.slot_owners()
    victim = owners[0]
    channels = [f"fo.{i}" for i in range(40)]
    dead = {ch for ch in channels if owners[slot_of(ch)] == victim}
    assert dead and len(dead) < len(channels)
    watched = slot_of(next(iter(dead)))

    async def fail_over():
        cluster.kill(cluster.ports.index(victim))
        deadline = time.monotonic() + 30
        while cluster.slot_owners()[watched] in (victim, None):  # until a replica serves it
            assert time.monotonic() < deadline, "no failover"
            await asyncio.sleep(0.1)

    got, sent = run(under_stream(a.port, b.port, channels, fail_over), timeout=120)
    refused = sent.pop(None, [])
    assert all(ch in dead and m["code"] == "unavailable" for ch, m in refused), refused[:3]
    for ch in channels:
        assert got.get(ch) == sent[ch] == list(range(1, len(sent[ch]) + 1)), (
            ch, ch in dead, len(got.get(ch, [])), len(sent[ch]))
    assert cluster.slot_owners()[watched] not in (victim, None)

