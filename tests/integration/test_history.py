"""A channel's position and epoch (docs/protocol.md, "Positions and epochs"): every sub ack
says where the channel is, the same on every node; a channel whose seq and history were lost
(Redis emptied, keys expired) is in a new epoch, and its subscribers are told with a reset
before its next message. Real wsnode processes and a real redis-server."""
import asyncio
import json
import random
import socket
import threading
import time

import pytest
import websockets

from conftest import STEP, http_get, node_metrics, run


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


async def steady_publisher(ws, ch, stop, first_id=0):
    """Publishes on ch every 2 ms until stop is set, without waiting for the acks."""
    i = first_id
    while not stop.is_set():
        await ws.send(json.dumps({"op": "pub", "ch": ch, "data": i, "id": i}))
        i += 1
        await asyncio.sleep(0.002)


class FreezingProxy:
    """A TCP proxy to redis that can freeze the connections that subscribed: what they carry
    in either direction is dropped from then on while both ends stay open, as when a
    middlebox loses a connection without telling anyone."""

    def __init__(self, port):
        self.target = port
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.frozen = set()  # client-side sockets whose traffic is dropped
        self.subscribers = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                r = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # redis is gone (the test is over)
                c.close()
                continue
            threading.Thread(target=self._pipe, args=(c, r, c), daemon=True).start()
            threading.Thread(target=self._pipe, args=(r, c, c), daemon=True).start()

    def _pipe(self, src, dst, key):
        try:
            while data := src.recv(65536):
                with self.lock:
                    if src is key and b"SUBSCRIBE" in data:
                        self.subscribers.add(key)
                    if key in self.frozen:
                        continue
                dst.sendall(data)
        except OSError:
            pass
        for sk in (src, dst):
            try:
                sk.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def freeze_subscribers(self):
        with self.lock:
            assert self.subscribers, "no subscriber link goes through the proxy"
            self.frozen |= self.subscribers

    def close(self):
        self.lsock.close()


async def cut_pubsub_links(redis):
    """Kills every pub/sub connection of redis as soon as there is one (the node reconnects
    its link after a backoff)."""
    deadline = time.monotonic() + STEP
    while time.monotonic() < deadline:
        killed = int(redis.cli("CLIENT", "KILL", "TYPE", "pubsub")[0])
        if killed:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("no pub/sub link to cut")


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
        # Never published, yet the ack names the epoch its first messages will be in, so a
        # client that resumes from them later can be told if that epoch was lost meanwhile.
        assert fresh["seq"] == 0 and fresh["epoch"], fresh
        assert await publish(pub, "pos.redis", 5) == [1, 2, 3, 4, 5]
        got = [await recv_json(s1) for _ in range(5)]
        assert [m["seq"] for m in got] == [1, 2, 3, 4, 5], got
        # A node that does not follow the channel reads its position from Redis; one that
        # does answers from what it received: the same position either way.
        s2, s3 = await client(b.port), await client(a.port)
        on_b, on_a = await sub(s2, "pos.redis", 2), await sub(s3, "pos.redis", 3)
        assert on_b["seq"] == on_a["seq"] == 5, (on_b, on_a)
        assert on_b["epoch"] == on_a["epoch"] == fresh["epoch"], (on_b, on_a, fresh)
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
        assert gone["seq"] == 0 and gone["epoch"] not in ("", first["epoch"]), gone
        assert await publish(pub, "brief", 1, 300) == [1]
        assert (await recv_json(s))["op"] == "msg"
        again = await sub(pub, "brief", 3)
        assert again["seq"] == 1 and again["epoch"] == gone["epoch"], again
        await s.close()
        await pub.close()

    run(main())


# ---- recovery: sub with since (and epoch) ----

async def frames_until(ws, pred, limit=100000):
    """Messages of ws until pred(message) is true (that one included)."""
    got = []
    while len(got) < limit:
        m = await recv_json(ws)
        got.append(m)
        if pred(m):
            return got
    raise AssertionError("never came")


def test_recovery_replays_what_was_missed_then_the_live_stream(node, redis):
    a = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")
    b = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")

    async def main():
        pub = await client(a.port)
        await publish(pub, "rec", 10)
        epoch = (await sub(pub, "rec", 1))["epoch"]
        s = await client(b.port)  # another node, which does not follow the channel yet
        ack = await request(s, {"op": "sub", "ch": "rec", "since": 4, "epoch": epoch, "id": "r"})
        assert ack == {"op": "ack", "id": "r", "seq": 10, "epoch": epoch, "recovered": True}, ack
        replayed = [await recv_json(s) for _ in range(6)]
        assert [(m["op"], m["seq"], m["data"]) for m in replayed] == \
            [("msg", i, i - 1) for i in range(5, 11)], replayed
        await publish(pub, "rec", 1, 50)
        live = await recv_json(s)
        assert live["seq"] == 11, live
        # since = the last seq: nothing missed, recovered, nothing replayed
        s2 = await client(b.port)
        ack = await request(s2, {"op": "sub", "ch": "rec", "since": 11, "id": "q"})
        assert ack["recovered"] is True and ack["seq"] == 11, ack
        await publish(pub, "rec", 1, 60)
        assert (await recv_json(s2))["seq"] == 12
        for ws in (pub, s, s2):
            await ws.close()

    run(main())


def recovery_counters(port):
    m = node_metrics(port)
    return m["wsfan_recoveries_from_memory_total"], m["wsfan_recovery_reads_total"]


@pytest.mark.parametrize("memory", [100, 0])
def test_a_followed_channel_recovers_from_memory_without_redis(node, redis, memory):
    """A worker keeps the last --history-memory messages of every channel it follows: a
    recovery within them is answered from memory (no Redis read); with 0, from Redis. The
    answer is the same either way."""
    flags = ("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")
    a, b = node(*flags), node(*flags, "--history-memory", str(memory))

    async def main():
        pub, watcher = await client(a.port), await client(b.port)
        await sub(watcher, "mem", 1)  # b follows the channel from here
        await publish(pub, "mem", 30)
        epoch = (await sub(pub, "mem", 1))["epoch"]
        for seq in range(1, 31):
            assert (await recv_json(watcher))["seq"] == seq
        s = await client(b.port)
        ack = await request(s, {"op": "sub", "ch": "mem", "since": 12, "epoch": epoch, "id": 1})
        assert ack == {"op": "ack", "id": 1, "seq": 30, "epoch": epoch, "recovered": True}, ack
        got = [await recv_json(s) for _ in range(18)]
        assert [(m["seq"], m["data"]) for m in got] == [(i, i - 1) for i in range(13, 31)]
        assert recovery_counters(b.port) == ((1, 0) if memory else (0, 1))
        h = await request(s, {"op": "history", "ch": "mem", "limit": 5, "id": 2})
        assert [m["seq"] for m in h["messages"]] == [26, 27, 28, 29, 30], h
        for ws in (pub, watcher, s):
            await ws.close()

    run(main())


def test_a_reconnect_storm_costs_a_few_reads_not_one_per_client(node, redis):
    """200 clients resume on a node that does not follow their channel yet, each from its own
    seq: every one gets exactly what it missed, and the node reads Redis once or twice (a
    read answers every recovery that came while it was under way and fills the memory that
    answers the later ones), not 200 times."""
    flags = ("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")
    a, b = node(*flags), node(*flags, "--max-conns-per-ip", "0", "--ip-connect-rate", "0")

    async def main():
        pub = await client(a.port)
        await publish(pub, "storm", 100)
        epoch = (await sub(pub, "storm", 1))["epoch"]
        rnd = random.Random(7)
        clients = [(await client(b.port), rnd.randrange(40, 100)) for _ in range(200)]
        for i, (ws, since) in enumerate(clients):
            await ws.send(json.dumps({"op": "sub", "ch": "storm", "since": since,
                                      "epoch": epoch, "id": i}))
        for i, (ws, since) in enumerate(clients):
            got = await frames_until(ws, lambda m: m.get("seq") == 100 and m["op"] == "msg"
                                     if since < 100 else m["op"] == "ack")
            assert got[0] == {"op": "ack", "id": i, "seq": 100, "epoch": epoch,
                              "recovered": True}, got[0]
            assert [m["seq"] for m in got[1:]] == list(range(since + 1, 101)), since
        memory, reads = recovery_counters(b.port)
        assert memory + reads <= 200 and reads <= 3, (memory, reads)
        for ws, _ in clients:
            await ws.close()
        await pub.close()

    run(main(), timeout=60)


def test_recovery_under_live_traffic_has_no_gap_and_no_duplicate(node, redis):
    """A publisher never stops while subscribers on two nodes resume from an old seq: every
    one of them ends with since+1..N, each once, in order (live messages that arrive during
    the read are held back and merged by seq)."""
    flags = ("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--history-size", "5000")
    a = node(*flags, "--max-msg-rate", "0")
    b = node(*flags)

    async def main():
        pub = await client(a.port)
        await publish(pub, "flow", 20)
        epoch = (await sub(pub, "flow", 1))["epoch"]
        stop = asyncio.Event()
        task = asyncio.create_task(steady_publisher(pub, "flow", stop, 1000))
        await asyncio.sleep(0.2)
        subs = []
        for port in (a.port, b.port, b.port, a.port):
            ws = await client(port)
            since = 5 + 7 * len(subs)  # some of what they missed is older than the traffic
            await ws.send(json.dumps({"op": "sub", "ch": "flow", "since": since, "epoch": epoch,
                                      "id": "r"}))
            subs.append((ws, since))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        stop.set()
        await task
        last = (await request(pub, {"op": "pub", "ch": "flow", "data": "end", "id": "end"}))["seq"]
        for ws, since in subs:
            got = await frames_until(ws, lambda m: m.get("seq") == last)
            ack = got[0]
            assert ack["op"] == "ack" and ack["recovered"] is True, ack
            seqs = [m["seq"] for m in got[1:]]
            assert seqs == list(range(since + 1, last + 1)), (since, seqs[:10], len(seqs))
        for ws, _ in subs:
            await ws.close()
        await pub.close()

    run(main(), timeout=60)


def test_recovery_past_the_window_or_in_another_epoch_is_not_recovered(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--history-size", "10",
             "--max-msg-rate", "0")

    async def main():
        pub = await client(n.port)
        await publish(pub, "far", 400)
        kept = int(redis.cli("XLEN", "wsfan:hist:{far}")[0])
        assert kept < 399, kept  # the stream no longer holds seq 2
        epoch = (await sub(pub, "far", 1))["epoch"]
        s = await client(n.port)
        ack = await request(s, {"op": "sub", "ch": "far", "since": 1, "epoch": epoch, "id": "x"})
        assert ack["recovered"] is False and ack["seq"] == 400, ack
        ack = await request(s, {"op": "sub", "ch": "far", "since": 399, "epoch": "old", "id": "y"})
        assert ack["recovered"] is False, ack
        await publish(pub, "far", 1, 900)
        m = await recv_json(s)  # no replay: the next frame is the live one
        assert m["op"] == "msg" and m["seq"] == 401, m
        await s.close()
        await pub.close()

    run(main())


def test_without_redis_the_node_memory_is_the_history(node):
    """One worker without Redis keeps each channel's last --history-size messages: a
    recovery within them replays them, one past them is not recovered, and the history op
    answers from them, also for a channel nobody subscribes."""
    n = node("--history-size", "5")

    async def main():
        pub = await client(n.port)
        epoch = (await sub(pub, "loc", 1))["epoch"]
        await publish(pub, "loc", 3)
        s = await client(n.port)
        ack = await request(s, {"op": "sub", "ch": "loc", "since": 3, "epoch": epoch, "id": 1})
        assert ack["recovered"] is True and ack["seq"] == 3, ack
        ack = await request(s, {"op": "sub", "ch": "loc", "since": 1, "epoch": epoch, "id": 2})
        assert ack["recovered"] is True and ack["seq"] == 3, ack
        assert [(await recv_json(s))["seq"] for _ in range(2)] == [2, 3]
        await publish(pub, "loc", 7, first_id=200)  # seq 4..10: the node keeps 6..10
        for seq in range(4, 11):
            assert (await recv_json(s))["seq"] == seq
        late = await client(n.port)
        ack = await request(late, {"op": "sub", "ch": "loc", "since": 4, "epoch": epoch, "id": 3})
        assert ack["recovered"] is False and ack["seq"] == 10, ack
        ack = await request(late, {"op": "sub", "ch": "loc", "since": 6, "epoch": "other",
                                   "id": 4})
        assert ack["recovered"] is False, ack
        ack = await request(late, {"op": "sub", "ch": "loc", "since": 5, "epoch": epoch, "id": 5})
        assert ack["recovered"] is True, ack
        assert [(await recv_json(late))["seq"] for _ in range(5)] == [6, 7, 8, 9, 10]
        await publish(pub, "nobody", 8, first_id=300)
        h = await request(late, {"op": "history", "ch": "nobody", "limit": 3, "id": "h"})
        assert [(m["seq"], m["data"]) for m in h["messages"]] == [(6, 5), (7, 6), (8, 7)], h
        h = await request(late, {"op": "history", "ch": "nobody", "id": "all"})
        assert [m["seq"] for m in h["messages"]] == [4, 5, 6, 7, 8], h
        for ws in (s, late, pub):
            await ws.close()

    run(main())


# ---- history: the op and GET /history ----

def test_history_op_and_http_answer_the_last_messages_oldest_first(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--publish-key", "K",
             "--history-size", "20")

    async def main():
        ws = await client(n.port)
        for i in range(30):
            await request(ws, {"op": "pub", "ch": "chat", "data": {"line": i}, "id": i})
        h = await request(ws, {"op": "history", "ch": "chat", "limit": 3, "id": "h"})
        epoch = h["epoch"]
        assert h == {"op": "history", "id": "h", "ch": "chat", "seq": 30, "epoch": epoch,
                     "messages": [{"seq": s, "data": {"line": s - 1}} for s in (28, 29, 30)]}, h
        h = await request(ws, {"op": "history", "ch": "chat", "id": "all"})  # capped: 20
        assert [m["seq"] for m in h["messages"]] == list(range(11, 31)), h
        h = await request(ws, {"op": "history", "ch": "never", "id": "n"})
        assert (h["seq"], h["epoch"], h["messages"]) == (0, "", []), h
        bad = await request(ws, {"op": "history", "ch": "chat", "limit": "x", "id": "b"})
        assert bad["op"] == "err" and bad["code"] == "bad_request", bad
        r = await http_get(n.port, "/history/chat?limit=2", headers=[("Authorization", "Bearer K")])
        assert r.status == 200, r.status
        assert json.loads(r.body) == {"ch": "chat", "seq": 30, "epoch": epoch, "messages": [
            {"seq": 29, "data": {"line": 28}}, {"seq": 30, "data": {"line": 29}}]}, r.body
        assert (await http_get(n.port, "/history/chat")).status == 401
        r = await http_get(n.port, "/history/chat?limit=-1", headers=[("Authorization", "Bearer K")])
        assert r.status == 400, r.status
        await ws.close()

    run(main())


# ---- a worker mends its subscribers after its Redis subscriber link came back ----

@pytest.mark.parametrize("gaps", [(0.3, 0.3, 0.3), (0.2, 0.01, 0.01, 0.01)],
                         ids=["apart", "back-to-back"])
def test_a_cut_subscriber_link_loses_nothing(node, redis, gaps):
    """Redis drops the subscribing node's pub/sub link (as it does at its output-buffer limit)
    while another node keeps publishing: once the link is back, the node reads what it missed
    and delivers it before the live messages, so every subscriber gets every seq once, in
    order; also when the link is cut again as soon as it is back, maybe while the last gap
    is still being read."""
    flags = ("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--history-size", "5000")
    pub_node, sub_node = node(*flags, "--max-msg-rate", "0"), node(*flags)

    async def main():
        pub = await client(pub_node.port)
        subs = [await client(sub_node.port) for _ in range(5)]
        for i, ws in enumerate(subs):
            await sub(ws, "tape", i)
        stop = asyncio.Event()
        task = asyncio.create_task(steady_publisher(pub, "tape", stop))
        for pause in gaps:
            await asyncio.sleep(pause)
            await cut_pubsub_links(redis)
        await asyncio.sleep(0.5)
        stop.set()
        await task
        last = (await request(pub, {"op": "pub", "ch": "tape", "data": "end", "id": "end"}))["seq"]
        for ws in subs:
            got = await frames_until(ws, lambda m: m.get("seq") == last)
            assert [m["op"] for m in got] == ["msg"] * len(got), [m for m in got if m["op"] != "msg"]
            assert [m["seq"] for m in got] == list(range(1, last + 1)), len(got)
            await ws.close()
        await pub.close()

    run(main(), timeout=60)


def test_a_silently_dead_subscriber_link_is_noticed_and_mended(node, redis):
    """The subscribing node's pub/sub link stops carrying anything, with no error and no
    close: the node notices (no traffic, then no answer to its probe), drops the link, comes
    back and mends the gap, so its subscribers get every seq once."""
    proxy = FreezingProxy(redis.port)
    flags = ("--workers", "1", "--history-size", "5000")
    pub_node = node("--redis", f"127.0.0.1:{redis.port}", *flags, "--max-msg-rate", "0")
    sub_node = node("--redis", f"127.0.0.1:{proxy.port}", *flags)

    async def main():
        pub, s = await client(pub_node.port), await client(sub_node.port)
        await sub(s, "quiet")
        stop = asyncio.Event()
        task = asyncio.create_task(steady_publisher(pub, "quiet", stop))
        await asyncio.sleep(0.3)
        proxy.freeze_subscribers()
        deadline = time.monotonic() + 15
        while node_metrics(sub_node.port).get("wsfan_redis_silent_links_total", 0) < 1:
            assert time.monotonic() < deadline, "the dead link was never noticed"
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        stop.set()
        await task
        last = (await request(pub, {"op": "pub", "ch": "quiet", "data": "end", "id": "end"}))["seq"]
        got = await frames_until(s, lambda m: m.get("seq") == last)
        assert [m["seq"] for m in got] == list(range(1, last + 1)), len(got)
        await s.close()
        await pub.close()

    try:
        run(main(), timeout=60)
    finally:
        proxy.close()
