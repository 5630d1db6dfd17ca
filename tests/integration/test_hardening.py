"""Hardening (issue 11): each defect a fault, overload or abuse run found, reproduced with real
processes. Process and port: orphaned workers, a port shared by accident, retry jitter. Smaller:
Redis prefixes that cannot fit, refused publishes that were not counted, JWT crit headers,
patterns wider than meant, non-minimal frame lengths, the host name in public ids.

The overload, ping-flood, presence and direct-message cases have files of their own
(test_overload.py, test_router_restart.py)."""
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import websockets

from conftest import (HOST, STEP, WSROUTER, Raw, free_port, node_metrics, pid_alive, run,
                      tcp_accepts, upgrade_request)


# --------------------------------------------------------------------------- helpers


def listeners(port):
    """PIDs of the processes listening on TCP port (ss -ltnp, as an operator would look)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=10).stdout
    return sorted({int(p) for p in re.findall(r"pid=(\d+)", out)}), out.count("LISTEN")


async def ws_json(port, path="/ws"):
    ws = await websockets.connect(f"ws://{HOST}:{port}{path}", open_timeout=STEP, close_timeout=1,
                                  ping_interval=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), STEP))
    return ws, hello


async def request(ws, msg, others=None):
    """Sends msg; returns the reply with its id. Other frames go to the list others."""
    await ws.send(json.dumps(msg))
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), STEP))
        if m.get("id") == msg.get("id") and m["op"] != "msg":
            return m
        if others is not None:
            others.append(m)


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# --------------------------------------------------------------------------- 1. orphans


def test_workers_drain_and_exit_when_their_master_is_killed(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "2", "--drain-timeout", "3")
    workers = n.workers()
    assert len(workers) == 2
    pids, count = listeners(n.port)
    assert set(pids) == set(workers) and count == 2, pids

    async def main():
        ws, _ = await ws_json(n.port)
        n.expect_exit = True
        os.kill(n.pid, signal.SIGKILL)  # the master only, as the OOM killer would
        try:  # the worker drains its client: close 1001, not a silent drop
            while True:
                await asyncio.wait_for(ws.recv(), STEP)
        except websockets.ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 1001, e

    run(main())
    time.sleep(1)
    pids, count = listeners(n.port)
    assert count == 0, f"orphaned workers still listen on {n.port}: {pids}"
    wait_until(lambda: not any(pid_alive(w) for w in workers), 5, "workers outlived their master")
    assert not tcp_accepts(n.port)


# --------------------------------------------------------------------------- 2. one port


def test_a_second_node_on_a_served_port_is_refused(node):
    a = node("--echo")
    b = node("--echo", port=a.port, ready=False)
    b.expect_exit = True
    assert b.wait_exit(10) == 2, b.log()
    assert "already served" in b.log() and "--share-port" in b.log()
    pids, count = listeners(a.port)
    assert count == 1 and pids == a.workers(), pids


def test_any_listener_on_the_port_counts_even_one_sharing_it(node):
    """Another program listening with SO_REUSEPORT would silently take a share too."""
    port = free_port()
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind((HOST, port))
    other.listen(16)
    try:
        b = node("--echo", port=port, ready=False)
        b.expect_exit = True
        assert b.wait_exit(10) == 2, b.log()
        assert "already served" in b.log()
    finally:
        other.close()


def test_share_port_hands_a_port_over_and_the_old_node_drains(node):
    # The wait for the old node's exit below blocks this loop, so its clients cannot answer the
    # 1001: the drain lasts its whole timeout (its closes are spread over most of it).
    old = node("--echo", "--drain-timeout", "4")
    new = node("--echo", "--share-port", port=old.port)
    wait_until(lambda: listeners(old.port)[1] == 2, 5, "the new node never listened")
    pids, count = listeners(old.port)
    assert count == 2 and set(pids) == set(old.workers() + new.workers())

    async def main():
        clients = [await websockets.connect(f"ws://{HOST}:{old.port}/echo", open_timeout=STEP,
                                            close_timeout=1, ping_interval=None)
                   for _ in range(10)]
        old.expect_exit = True
        old.signal(signal.SIGTERM)
        assert old.wait_exit(10) == 0
        for ws in clients:  # on the old node: close 1001; on the new one: still served
            try:
                await ws.send("still?")
                assert await asyncio.wait_for(ws.recv(), STEP) == "still?"
            except websockets.ConnectionClosed as e:
                assert e.rcvd is not None and e.rcvd.code == 1001, e
        # Whoever served that client said goodbye with 1001 or is still serving; the port now
        # belongs to the new node alone, and every new client reaches it.
        assert listeners(old.port) == (new.workers(), 1)
        for _ in range(20):
            c = await websockets.connect(f"ws://{HOST}:{old.port}/echo", open_timeout=STEP,
                                         close_timeout=1, ping_interval=None)
            await c.send("x")
            assert await asyncio.wait_for(c.recv(), STEP) == "x"
            await c.close()
        for ws in clients:
            await ws.close()

    run(main())


# --------------------------------------------------------------------------- 3. jitter


def retry_times(log, worker, redis_port):
    """Start times of the Redis connection attempts a worker logged (the two links of one
    attempt log within a few milliseconds of each other)."""
    stamps = []
    for line in log.splitlines():
        m = re.match(r"(\S+)Z \S+ (w\d+) \w+: redis 127\.0\.0\.1:%d: " % redis_port, line)
        if m and m.group(2) == worker and "Connection refused" in line:
            t = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S"))
            stamps.append(t + float("0" + m.group(1)[19:]))
    attempts = []
    for t in stamps:
        if not attempts or t - attempts[-1] > 0.005:
            attempts.append(t)
    return attempts


def test_workers_retry_redis_out_of_step(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "2", "--router-shards", "0")
    wait_until(lambda: node_metrics(n.port)["wsfan_redis_up"] == 2, 10, "bus never up")
    redis.stop()
    time.sleep(4.5)  # five attempts by 3.1 s at the latest, whatever the jitter
    log = n.log(tail=5000)
    w0, w1 = retry_times(log, "w0", redis.port), retry_times(log, "w1", redis.port)
    assert len(w0) >= 5 and len(w1) >= 5, log
    together = sum(abs(a - b) < 0.002 for a, b in zip(w0[:5], w1[:5]))
    # Seeded alike, the two would retry within a millisecond of each other every time.
    assert together <= 2, (w0, w1)


# --------------------------------------------------------------------------- 8. prefixes


def test_a_redis_prefix_that_cannot_fit_is_refused_at_startup(node, redis):
    long = "p" * 121
    b = node("--redis", f"127.0.0.1:{redis.port}", "--redis-prefix", long, ready=False)
    b.expect_exit = True
    assert b.wait_exit(10) == 2
    assert "--redis-prefix" in b.log()
    out = subprocess.run([WSROUTER, "--redis-prefix", long],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "--redis-prefix" in out.stderr


def test_the_longest_prefix_keeps_the_longest_channels_apart(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--redis-prefix", "x" * 64, "--workers", "1")
    a, b = "c" * 199 + "a", "c" * 199 + "b"

    async def main():
        ws, _ = await ws_json(n.port)
        for ch in (a, b):
            assert (await request(ws, {"op": "sub", "ch": ch, "id": 1}))["op"] == "ack"
        seqs, got = [], []
        for i, ch in enumerate((a, a, b)):
            r = await request(ws, {"op": "pub", "ch": ch, "data": i, "id": 10 + i}, got)
            assert r["op"] == "ack", r
            seqs.append(r["seq"])
        while len(got) < 3:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), STEP)))
        assert sorted((m["ch"], m["seq"], m["data"]) for m in got) == \
            sorted([(a, 1, 0), (a, 2, 1), (b, 1, 2)])
        assert seqs == [1, 2, 1]
        await ws.close()

    run(main())


# --------------------------------------------------------------------------- 10. counters


def test_every_refused_publish_is_counted(node, redis):
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--router-shards", "0")
    wait_until(lambda: node_metrics(n.port)["wsfan_redis_up"] == 1, 10, "bus never up")

    async def main():
        ws, _ = await ws_json(n.port)
        before = node_metrics(n.port)["wsfan_redis_publish_failures_total"]
        redis.stop()
        deadline = time.monotonic() + STEP
        while node_metrics(n.port)["wsfan_redis_up"] != 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        refused = 0
        for i in range(30):
            r = await request(ws, {"op": "pub", "ch": "c", "data": i, "id": i})
            assert r["op"] == "err" and r["code"] == "unavailable", r
            refused += 1
        deadline = time.monotonic() + STEP  # the tick copies the bus counters
        while node_metrics(n.port)["wsfan_redis_publish_failures_total"] < before + refused:
            assert time.monotonic() < deadline, node_metrics(n.port)
            await asyncio.sleep(0.1)
        await ws.close()

    run(main())


# --------------------------------------------------------------------------- 11. refusals


def test_a_token_with_a_crit_header_is_refused(node):
    from test_security import SECRET, b64u, claims
    import hashlib
    import hmac

    def token(header):
        si = (b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims()).encode()))
        return si + "." + b64u(hmac.new(SECRET, si.encode(), hashlib.sha256).digest())

    n = node("--auth", "required", "--jwt-secret", SECRET.decode())

    async def status(tok):
        c = await Raw.open(n.port)
        await c.send(upgrade_request(f"/ws?token={tok}"))
        r = await c.read_response()
        await c.aclose()
        return r.status

    async def main():
        assert await status(token({"alg": "HS256", "typ": "JWT"})) == 101
        for crit in (["exp"], ["b64"], [], "x"):
            assert await status(token({"alg": "HS256", "typ": "JWT", "crit": crit})) == 401, crit

    run(main())
    assert "crit header" in n.log()


def test_patterns_wider_than_they_look_are_warned_about(node):
    from test_security import SECRET
    n = node("--auth", "optional", "--jwt-secret", SECRET.decode(), "--anonymous-sub", "a*",
             "--anonymous-sub", "news.*", "--anonymous-pub", "chat:*", "--anonymous-pub", "x-*")
    log = n.log()
    assert "--anonymous-sub 'a*'" in log
    assert "news.*" not in log and "chat:*" not in log and "x-*" not in log


@pytest.mark.parametrize("length_bytes", [
    bytes([0x81, 0xFE, 0x00, 0x05]),                       # 5 in 16 bits
    bytes([0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0x00, 0x05]),     # 5 in 64 bits
    bytes([0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),     # 65535 in 64 bits
])
def test_a_frame_length_not_minimally_encoded_is_closed_1002(node, length_bytes):
    n = node("--echo")

    async def main():
        c = await Raw.handshake(n.port, "/echo")
        await c.send(length_bytes + os.urandom(4) + b"hello")
        f = await c.expect_close()
        assert f.close_code == 1002, f
        await c.aclose()
        c = await Raw.handshake(n.port, "/echo")  # everyone else is still served
        await c.echo_ok()
        await c.aclose()

    run(main())


# --------------------------------------------------------------------------- 12. node ids


def test_public_ids_do_not_name_the_host(node):
    host = socket.gethostname()
    n = node()

    async def main():
        ws, hello = await ws_json(n.port)
        await ws.close()
        return hello

    hello = run(main())
    assert host not in hello["node"] and host not in hello["client"], hello
    assert str(n.port) not in hello["node"].split(".")[0], hello
    assert host in n.log()  # the operator still finds it
    named = node("--node-id", "edge-7")
    hello = run(_hello(named.port))
    assert hello["node"].startswith("edge-7.w0."), hello


async def _hello(port):
    ws, hello = await ws_json(port)
    await ws.close()
    return hello
