"""wsrouter with a real Redis and several wsnode processes: presence across nodes, join/leave
events, direct messages, node crashes, router restarts, two shards, bad input and a join storm.

Nodes heartbeat every --heartbeat seconds; a router drops a node silent for three of them."""
import asyncio
import itertools
import json
import os
import signal
import socket
import time

import websockets

from conftest import HOST, STEP, run

OPEN = []


def fnv_shard(name, shards):
    """The shard wsnode and wsrouter give a channel: FNV-1a 64 of its bytes, mod shards."""
    h = 0xcbf29ce484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % shards


def channel_in_shard(shard, shards, stem="room"):
    return next(f"{stem}.{i}" for i in itertools.count() if fnv_shard(f"{stem}.{i}", shards) == shard)


class Client:
    """A protocol v1 client that keeps the frames it was not waiting for (events, messages)."""
    ids = itertools.count(1)

    def __init__(self, ws, hello):
        self.ws, self.hello, self.frames = ws, hello, []

    @classmethod
    async def open(cls, port, user=None):
        path = f"/ws?user={user}" if user else "/ws"
        ws = await websockets.connect(f"ws://{HOST}:{port}{path}", open_timeout=STEP,
                                      close_timeout=1, ping_interval=None)
        OPEN.append(ws)
        hello = json.loads(await asyncio.wait_for(ws.recv(), STEP))
        assert hello["op"] == "hello", hello
        return cls(ws, hello)

    @property
    def id(self):
        return self.hello["client"]

    @property
    def node(self):
        return self.hello["node"]

    async def req(self, **msg):
        """Sends msg with a fresh id; returns the reply carrying that id."""
        msg["id"] = next(self.ids)
        await self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + STEP + 3
        while True:
            f = json.loads(await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic()))
            if f.get("id") == msg["id"] and f["op"] in ("ack", "err", "presence"):
                return f
            self.frames.append(f)

    async def sub(self, ch, events=False):
        r = await self.req(op="sub", ch=ch, events=events)
        assert r["op"] == "ack", r
        return r

    async def wait_for(self, pred, timeout=STEP):
        """The first kept or arriving frame matching pred (it is taken off the kept list)."""
        deadline = time.monotonic() + timeout
        while True:
            for f in self.frames:
                if pred(f):
                    self.frames.remove(f)
                    return f
            left = deadline - time.monotonic()
            assert left > 0, f"no matching frame in {timeout}s; kept: {self.frames[-5:]}"
            try:
                self.frames.append(json.loads(await asyncio.wait_for(self.ws.recv(), left)))
            except asyncio.TimeoutError:
                pass

    async def quiet(self, for_s=0.5):
        """Collects frames until none has come for for_s seconds."""
        while True:
            try:
                self.frames.append(json.loads(await asyncio.wait_for(self.ws.recv(), for_s)))
            except asyncio.TimeoutError:
                return


def scenario(coro, timeout=90):
    async def wrapped():
        try:
            await coro
        finally:
            await asyncio.gather(*(ws.close() for ws in OPEN), return_exceptions=True)
            OPEN.clear()
    run(wrapped(), timeout)


def members(reply):
    return {(m["client"], m["user"], m["node"]) for m in reply["members"]}


async def presence_until(c, ch, want, timeout=STEP):
    """Asks for presence until the member set is want (bounded); returns the last reply."""
    deadline = time.monotonic() + timeout
    while True:
        r = await c.req(op="presence", ch=ch)
        if r["op"] == "presence" and members(r) == want:
            return r
        assert time.monotonic() < deadline, f"presence never became {want}: {r}"
        await asyncio.sleep(0.05)


def kill_node(n):
    """kill -9 of a whole wsnode (master and workers)."""
    n.expect_exit = True
    os.killpg(n.pid, signal.SIGKILL)
    n.proc.wait(timeout=5)


def node_metric(n, name):
    with socket.create_connection((HOST, n.port), timeout=STEP) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def redis_publish(redis, channel, payload: bytes):
    """PUBLISH raw bytes; returns how many subscribers got them."""
    with socket.create_connection((HOST, redis.port), timeout=STEP) as s:
        ch = channel.encode()
        s.sendall(b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(ch), ch, len(payload), payload))
        return int(s.recv(64)[1:].split(b"\r\n")[0])


# ---- a minimal protobuf writer for hostile envelopes (proto/cluster.proto field numbers) ----

def _varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _field(num, value):
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    if isinstance(value, str):
        value = value.encode()
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def envelope(kind, origin, members=(), **fields):
    numbers = {"seq": 4, "request_id": 8, "last": 11, "heartbeat_ms": 18, "channel": 3}
    out = _field(1, kind) + _field(2, origin)
    for k, v in fields.items():
        out += _field(numbers[k], int(v) if isinstance(v, bool) else v)
    for m in members:
        sub = b"".join(_field(n, m[k]) for k, n in (("client_id", 1), ("user_id", 2), ("channel", 4)) if k in m)
        out += _field(9, sub)
    return out


JOIN = 3
FAST = ("--heartbeat", "0.2")  # nodes that a router drops 0.6 s after they go silent


def cluster(node, router, redis, nodes=2, node_args=(), router_args=(), shards=1):
    routers = [router(redis, "--shard", f"{i}/{shards}", *router_args) for i in range(shards)]
    ns = [node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--router-shards", shards,
               *node_args) for _ in range(nodes)]
    return routers, ns


# ---- presence --------------------------------------------------------------------------------


def test_presence_lists_members_of_every_node_with_their_users(redis, router, node):
    routers, (n1, n2) = cluster(node, router, redis)

    async def main():
        a = await Client.open(n1.port, "alice")
        b = await Client.open(n2.port, "bob")
        c = await Client.open(n2.port)  # no user: anonymous
        for x in (a, b, c):
            await x.sub("room")
        want = {(a.id, "alice", a.node), (b.id, "bob", b.node), (c.id, "anonymous", c.node)}
        r = await presence_until(a, "room", want)
        assert r["ch"] == "room" and r["count"] == 3
        # Counts only, when asked.
        r = await b.req(op="presence", ch="room", count=True)
        assert r["op"] == "presence" and r["count"] == 3 and "members" not in r, r
        # An empty channel, and one only a client on the asking node subscribes.
        r = await a.req(op="presence", ch="nobody.here")
        assert r["count"] == 0 and r["members"] == [], r
        await a.sub("solo")
        r = await a.req(op="presence", ch="solo")  # same node: the join went first
        assert members(r) == {(a.id, "alice", a.node)}, r
        # Leaving is seen too: unsub, and a closed connection.
        await b.req(op="unsub", ch="room")
        await c.ws.close()
        await presence_until(a, "room", {(a.id, "alice", a.node)})
        assert routers[0].metrics()["wsfan_router_members"] == 2  # a on room and solo

    scenario(main())


def test_big_channels_get_a_count_only(redis, router, node):
    _, (n1, n2) = cluster(node, router, redis, router_args=("--presence-max-members", "3"))

    async def main():
        cs = [await Client.open((n1, n2)[i % 2].port) for i in range(5)]
        for c in cs[:3]:
            await c.sub("big")
        r = await presence_until(cs[0], "big", {(c.id, "anonymous", c.node) for c in cs[:3]})
        assert r["count"] == 3 and len(r["members"]) == 3, r
        for c in cs[3:]:
            await c.sub("big")
        deadline = time.monotonic() + STEP
        while (r := await cs[0].req(op="presence", ch="big"))["count"] != 5:
            assert time.monotonic() < deadline, r
        assert "members" not in r, "over --presence-max-members the answer is a count"

    scenario(main())


def test_user_ids_are_checked_at_the_upgrade(redis, router, node):
    _, (n1,) = cluster(node, router, redis, nodes=1)

    async def main():
        for bad in ("", "a%20b", "x" * 65, "<script>"):
            try:
                await websockets.connect(f"ws://{HOST}:{n1.port}/ws?user={bad}", open_timeout=STEP)
                raise AssertionError(f"user {bad!r} was accepted")
            except websockets.exceptions.InvalidStatusCode as e:
                assert e.status_code == 400, (bad, e)
        ok = await Client.open(n1.port, "a.b-c_d:e@f")
        await ok.sub("x")
        r = await ok.req(op="presence", ch="x")
        assert r["members"][0]["user"] == "a.b-c_d:e@f"

    scenario(main())


# ---- events ----------------------------------------------------------------------------------


def test_join_and_leave_events_reach_only_subscribers_that_asked(redis, router, node):
    _, (n1, n2) = cluster(node, router, redis)

    async def main():
        watcher = await Client.open(n1.port, "w")
        plain = await Client.open(n1.port, "p")
        await watcher.sub("lobby", events=True)
        await plain.sub("lobby")
        await watcher.wait_for(lambda f: f["op"] == "join" and f["client"] == plain.id)
        b = await Client.open(n2.port, "bob")
        await b.sub("lobby")
        j = await watcher.wait_for(lambda f: f["op"] == "join" and f["client"] == b.id)
        assert j == {"op": "join", "ch": "lobby", "client": b.id, "user": "bob"}
        await b.req(op="unsub", ch="lobby")
        lv = await watcher.wait_for(lambda f: f["op"] == "leave" and f["client"] == b.id)
        assert lv == {"op": "leave", "ch": "lobby", "client": b.id, "user": "bob"}
        # A subscriber that did not ask for events gets none of them.
        await plain.quiet(0.4)
        assert [f for f in plain.frames if f["op"] in ("join", "leave")] == [], plain.frames
        # Asking again without events turns them off.
        await watcher.sub("lobby", events=False)
        await watcher.quiet(0.3)
        watcher.frames.clear()
        await b.sub("lobby")
        await watcher.quiet(0.5)
        assert [f for f in watcher.frames if f["op"] in ("join", "leave")] == []

    scenario(main())


# ---- crashes and restarts ----------------------------------------------------------------------


def test_a_killed_node_loses_its_members_and_leave_events_go_out(redis, router, node):
    _, (n1, n2) = cluster(node, router, redis, node_args=FAST)

    async def main():
        watcher = await Client.open(n1.port, "w")
        await watcher.sub("room", events=True)
        doomed = [await Client.open(n2.port, f"u{i}") for i in range(3)]
        for d in doomed:
            await d.sub("room")
        everyone = {(watcher.id, "w", watcher.node)} | {(d.id, f"u{i}", d.node)
                                                        for i, d in enumerate(doomed)}
        await presence_until(watcher, "room", everyone)
        kill_node(n2)
        gone = set()
        while gone != {d.id for d in doomed}:  # the timeout is 0.6 s; STEP bounds the wait
            f = await watcher.wait_for(lambda f: f["op"] == "leave")
            gone.add(f["client"])
        await presence_until(watcher, "room", {(watcher.id, "w", watcher.node)}, timeout=1)

    scenario(main())


def test_a_restarted_router_has_the_whole_roster_again_without_replaying_joins(redis, router, node):
    # Nodes heartbeat every 4 s: presence must be whole again within that, and a restarted
    # router must not take them for dead before their next heartbeat.
    routers, (n1, n2) = cluster(node, router, redis, node_args=("--heartbeat", "4"))

    async def main():
        a = await Client.open(n1.port, "alice")
        b = await Client.open(n2.port, "bob")
        await a.sub("room", events=True)
        await b.sub("room")
        await a.wait_for(lambda f: f["op"] == "join" and f["client"] == b.id)
        routers[0].kill()
        r = await a.req(op="presence", ch="room")
        assert r["op"] == "err" and r["code"] == "unavailable", r
        c = await Client.open(n2.port, "carol")  # joins while no router listens
        await c.sub("room")
        a.frames.clear()
        fresh = router(redis, "--shard", "0/1")  # returns once healthy
        want = {(a.id, "alice", a.node), (b.id, "bob", b.node), (c.id, "carol", c.node)}
        await presence_until(a, "room", want, timeout=4)  # one heartbeat interval
        # The restart itself is not news: no joins replayed for members that were there, and
        # no node dropped while its next heartbeat is not yet due.
        await a.quiet(4.5)
        noise = [f for f in a.frames if f["op"] in ("join", "leave") and f["client"] in (a.id, b.id)]
        assert noise == [], noise
        assert fresh.metrics()["wsfan_router_nodes"] == 2

    scenario(main())


def test_a_restarted_node_comes_back_with_a_new_id_and_the_old_one_expires(redis, router, node):
    _, (n1, n2) = cluster(node, router, redis, node_args=FAST)

    async def main():
        a = await Client.open(n1.port, "alice")
        await a.sub("room")
        old = await Client.open(n2.port, "bob")
        await old.sub("room")
        kill_node(n2)
        n3 = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", *FAST)
        new = await Client.open(n3.port, "bob")
        assert new.node != old.node
        await new.sub("room")
        await presence_until(a, "room", {(a.id, "alice", a.node), (new.id, "bob", new.node)})

    scenario(main())


def test_a_redis_outage_neither_drops_nodes_nor_replays_joins(redis, router, node):
    _, (n1, n2) = cluster(node, router, redis, node_args=FAST)

    async def main():
        a = await Client.open(n1.port, "alice")
        b = await Client.open(n2.port, "bob")
        await a.sub("room", events=True)
        await b.sub("room")
        await a.wait_for(lambda f: f["op"] == "join" and f["client"] == b.id)
        await a.quiet(0.3)
        a.frames.clear()
        redis.stop()
        await asyncio.sleep(2)  # more than three of the nodes' heartbeats
        redis.start()
        want = {(a.id, "alice", a.node), (b.id, "bob", b.node)}
        deadline = time.monotonic() + 10
        while True:  # nodes and router reconnect with backoff
            r = await a.req(op="presence", ch="room")
            if r["op"] == "presence" and members(r) == want:
                break
            assert time.monotonic() < deadline, r
            await asyncio.sleep(0.2)
        await a.quiet(1)
        noise = [f for f in a.frames if f["op"] in ("join", "leave")]
        assert noise == [], noise

    scenario(main())


def test_a_client_cannot_flood_presence_or_the_router(redis, router, node):
    # No per-connection message rate here: what is tested is what gets past it.
    (r0,), (n1, n2) = cluster(node, router, redis, node_args=("--max-msg-rate", "0"))

    async def main():
        a = await Client.open(n1.port, "alice")
        b = await Client.open(n2.port, "bob")
        await b.sub("room")
        # Many questions at once: at most 8 in flight per connection, the rest refused. Corked,
        # so they reach the node in one read, as a flood would, however busy this machine is.
        sock = a.ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        for i in range(40):
            await a.ws.send(json.dumps({"op": "presence", "ch": "room", "id": 1000 + i}))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        replies = [json.loads(await asyncio.wait_for(a.ws.recv(), STEP)) for _ in range(40)]
        codes = {r.get("code", r["op"]) for r in replies}
        assert codes <= {"presence", "too_many_requests"} and "too_many_requests" in codes, codes
        assert sum(r["op"] == "presence" for r in replies) >= 8
        # A send carrying a huge unused "ch" is just a send.
        r = await a.req(op="send", to="ghost-1.w0.abcdef.1", ch="A" * 5000, data=1)
        assert r["op"] == "err" and r["code"] == "not_found", r
        # Subscribing and unsubscribing as fast as possible: the node batches what it reports,
        # so the router never sees a flood and the roster ends right.
        for i in range(3000):
            await a.ws.send(json.dumps({"op": "sub" if i % 2 == 0 else "unsub", "ch": "churn"}))
        await a.sub("room")
        await presence_until(b, "room", {(a.id, "alice", a.node), (b.id, "bob", b.node)})
        r = await b.req(op="presence", ch="churn")
        assert r["count"] == 0, r
        assert r0.metrics()["wsfan_router_flood_dropped_total"] == 0

    scenario(main())


# ---- direct messages ---------------------------------------------------------------------------


def test_direct_messages_reach_one_client_on_its_node_only(redis, router, node):
    _, (n1, n2, n3) = cluster(node, router, redis, nodes=3)

    async def main():
        a = await Client.open(n1.port, "alice")
        neighbour = await Client.open(n1.port, "nina")
        b = await Client.open(n2.port, "bob")
        r = await b.req(op="send", to=a.id, data={"text": "hi", "n": [1, 2]})
        assert r["op"] == "ack", r
        m = await a.wait_for(lambda f: f["op"] == "msg")
        assert m == {"op": "msg", "from": b.id, "data": {"text": "hi", "n": [1, 2]}}
        # Same node, and back.
        assert (await neighbour.req(op="send", to=a.id, data="local"))["op"] == "ack"
        assert (await a.wait_for(lambda f: f["op"] == "msg"))["from"] == neighbour.id
        assert (await a.req(op="send", to=b.id, data=1))["op"] == "ack"
        assert (await b.wait_for(lambda f: f["op"] == "msg")) == {"op": "msg", "from": a.id, "data": 1}
        await neighbour.quiet(0.3)
        assert [f for f in neighbour.frames if f["op"] == "msg"] == []
        # Only n1 saw the message from n2; n3 never received a direct message. (Workers copy
        # their counters into /metrics once a second.)
        await asyncio.sleep(1.2)
        assert node_metric(n1, "wsfan_direct_in_total") == 1
        assert node_metric(n3, "wsfan_direct_in_total") == 0
        # Unknown clients: a live node without that client, a node that does not exist, junk.
        for to in (a.node + ".ffff", "ghost-1.w0.abcdef.1", "junk", b.id + "0"):
            r = await b.req(op="send", to=to, data=1)
            assert r["op"] == "err" and r["code"] == "not_found", (to, r)
        # A client that left.
        gone = a.id
        await a.ws.close()
        r = await b.req(op="send", to=gone, data=1)
        assert r["op"] == "err" and r["code"] == "not_found", r

    scenario(main())


def test_direct_messages_and_presence_without_redis_stay_on_the_one_node(node):
    n = node("--workers", "1")

    async def main():
        a = await Client.open(n.port, "alice")
        b = await Client.open(n.port, "bob")
        await a.sub("room")
        await b.sub("room")
        r = await a.req(op="presence", ch="room")
        assert members(r) == {(a.id, "alice", a.node), (b.id, "bob", b.node)}, r
        assert (await a.req(op="send", to=b.id, data=[1])) ["op"] == "ack"
        assert (await b.wait_for(lambda f: f["op"] == "msg"))["data"] == [1]
        r = await a.req(op="send", to="other-node.w0.abc.1", data=1)
        assert r["code"] == "not_found", r

    scenario(main())


# ---- shards ------------------------------------------------------------------------------------


def test_two_shards_split_the_channels_and_answer_for_their_own(redis, router, node):
    (r0, r1), (n1, n2) = cluster(node, router, redis, shards=2)
    ch0, ch1 = channel_in_shard(0, 2), channel_in_shard(1, 2)

    async def main():
        a = await Client.open(n1.port, "alice")
        b = await Client.open(n2.port, "bob")
        for c in (a, b):
            await c.sub(ch0)
        await b.sub(ch1)
        await presence_until(a, ch0, {(a.id, "alice", a.node), (b.id, "bob", b.node)})
        await presence_until(a, ch1, {(b.id, "bob", b.node)})
        assert r0.metrics()["wsfan_router_members"] == 2
        assert r1.metrics()["wsfan_router_members"] == 1
        assert r0.metrics()["wsfan_router_misrouted_total"] == 0
        assert r1.metrics()["wsfan_router_misrouted_total"] == 0
        # Each shard hears every node's heartbeat.
        assert r0.metrics()["wsfan_router_nodes"] == r1.metrics()["wsfan_router_nodes"] == 2
        # Without shard 1, its channels have no presence; shard 0's still do.
        r1.kill()
        r = await a.req(op="presence", ch=ch1)
        assert r["op"] == "err" and r["code"] == "unavailable", r
        r = await a.req(op="presence", ch=ch0)
        assert r["op"] == "presence" and r["count"] == 2, r

    scenario(main())


# ---- bad input ---------------------------------------------------------------------------------


def test_malformed_envelopes_and_floods_are_counted_and_the_router_keeps_serving(redis, router, node):
    (r0,), (n1,) = cluster(node, router, redis, nodes=1, router_args=("--node-rate", "200"))

    async def main():
        a = await Client.open(n1.port, "alice")
        await a.sub("room")
        before = r0.metrics()["wsfan_router_malformed_total"]
        hostile = [
            b"\xff\xff\xff not protobuf",
            envelope(99, "evil-1"),                                    # unknown kind
            envelope(JOIN, "bad origin!"),                             # origin not a node id
            envelope(JOIN, "evil-1", [{"client_id": a.id, "user_id": "x", "channel": "room"}]),
            envelope(JOIN, "evil-1", [{"client_id": "evil-1.1", "user_id": "x", "channel": "no spaces"}]),
            envelope(JOIN, "evil-1", [{"client_id": "evil-1.1", "channel": "room"}]),  # no user
        ]
        for h in hostile:
            assert redis_publish(redis, "wsfan:router:0", h) == 1
        deadline = time.monotonic() + STEP
        while r0.metrics()["wsfan_router_malformed_total"] - before < len(hostile):
            assert time.monotonic() < deadline, r0.metrics()
            await asyncio.sleep(0.05)
        # The spoofed join (evil-1 claiming alice's client) changed nothing.
        r = await a.req(op="presence", ch="room")
        assert members(r) == {(a.id, "alice", a.node)}, r
        # A flood from one node: over --node-rate membership envelopes a second are dropped and
        # counted (heartbeats and snapshots never are).
        beat = envelope(JOIN, "flooder-1", heartbeat_ms=1000)
        with socket.create_connection((HOST, redis.port), timeout=STEP) as s:
            cmd = b"*3\r\n$7\r\nPUBLISH\r\n$14\r\nwsfan:router:0\r\n$%d\r\n%s\r\n" % (len(beat), beat)
            s.sendall(cmd * 2000)
            got = b""
            while got.count(b"\r\n") < 2000:
                got += s.recv(65536)
        deadline = time.monotonic() + STEP
        while r0.metrics()["wsfan_router_flood_dropped_total"] < 1000:
            assert time.monotonic() < deadline, r0.metrics()
            await asyncio.sleep(0.05)
        assert "flooder-1 sends more than 200 envelopes a second" in r0.log()
        r = await a.req(op="presence", ch="room")
        assert r["op"] == "presence" and r["count"] == 1, r

    scenario(main())


# ---- a join storm ------------------------------------------------------------------------------


async def raw_join(port, ch, sem):
    """One minimal client: upgrade, sub with events, and then only hold the socket (it reads
    nothing more: its kernel buffer takes what it is sent)."""
    async with sem:
        r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), STEP * 4)
        w.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), STEP * 4)
        payload = json.dumps({"op": "sub", "ch": ch, "events": True}).encode()
        w.write(bytes([0x81, 0x80 | len(payload), 0, 0, 0, 0]) + payload)  # zero mask key
        await w.drain()
        return w


def test_a_10000_client_join_storm_gives_bounded_exactly_counted_events(redis, router, node):
    N, INTERVAL, EVENT_MAX = 10000, 0.1, 20
    (r0,), (n1,) = cluster(node, router, redis, nodes=1, node_args=("--workers", "2"),
                           router_args=("--event-interval", INTERVAL, "--event-max", EVENT_MAX))

    async def main():
        watchers = [await Client.open(n1.port, f"w{i}") for i in range(2)]
        for w in watchers:
            await w.sub("storm", events=True)
        for w in watchers:
            await w.quiet(0.3)
            w.frames.clear()
        out_before = node_metric(n1, "wsfan_messages_out_total")
        started = time.monotonic()
        sem = asyncio.Semaphore(500)
        writers = await asyncio.gather(*(raw_join(n1.port, "storm", sem) for _ in range(N)))
        try:
            deadline = time.monotonic() + 60
            while (await watchers[0].req(op="presence", ch="storm", count=True))["count"] < N + 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            for w in watchers:
                await w.quiet(0.5)
            elapsed = time.monotonic() - started
            batches = elapsed / INTERVAL + 2
            for w in watchers:
                events = [f for f in w.frames if f["op"] in ("join", "leave", "presence_overflow")]
                listed = sum(f["op"] == "join" for f in events)
                counted = sum(f.get("joins", 0) for f in events if f["op"] == "presence_overflow")
                # Every join is accounted for exactly: listed, or counted in an overflow frame.
                assert listed + counted == N, (listed, counted)
                assert not any(f["op"] == "leave" or f.get("leaves") for f in events)
                # The cap did its work: frames per subscriber are bounded by the batches (one
                # per --event-interval, at most --event-max joins and one overflow frame each),
                # not by N, and the joins beyond it were counted, not listed.
                assert len(events) <= batches * (EVENT_MAX + 1), (len(events), elapsed)
                assert listed <= batches * EVENT_MAX and counted > 0, (listed, counted)
            # The node framed each batch once and gave it to its N + 2 subscribers: bounded too.
            out = node_metric(n1, "wsfan_messages_out_total") - out_before
            assert out <= (N + 2) * batches * (EVENT_MAX + 1) + 3 * N, out
        finally:
            for w in writers:
                w.close()

    scenario(main(), timeout=120)
