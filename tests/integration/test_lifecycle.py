"""Processes and timers: command line, worker restart, SIGTERM drain, many connections,
handshake timeout (slowloris), server pings."""

import asyncio
import os
import signal
import subprocess
import time

import pytest

from conftest import (OP_PING, OP_PONG, STEP, WSNODE, Raw, connect, expect_server_close,
                      fd_count, free_port, pid_alive, recv, run, still_serves_echo, tcp_accepts,
                      upgrade_request)

FLAGS = ["--bind", "--port", "--workers", "--echo", "--echo-max-message", "--max-message",
         "--max-data", "--max-subs", "--max-header-size", "--max-headers",
         "--handshake-timeout", "--ping-interval", "--idle-timeout", "--close-timeout",
         "--drain-timeout", "--outbuf-soft", "--outbuf-hard", "--outbuf-soft-seconds",
         "--slow-policy", "--tls-cert", "--tls-key", "--origin", "--max-connections",
         "--node-id", "--log-level", "--help", "--version"]


def wsnode_cli(*args, timeout=10):
    """Runs wsnode to completion (bounded); a node that unexpectedly keeps running is killed
    with its whole process group and fails the test."""
    if not os.access(WSNODE, os.X_OK):
        pytest.fail(f"wsnode binary not found at {WSNODE} (set WSNODE)")
    p = subprocess.Popen([WSNODE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate(timeout=5)
        pytest.fail(f"wsnode {' '.join(args)} still running after {timeout}s")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


# --------------------------------------------------------------------------- command line


def test_help_lists_every_flag_with_default():
    r = wsnode_cli("--help")
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    missing = [f for f in FLAGS if f not in out]
    assert not missing, f"--help does not mention {missing}:\n{out}"
    port_lines = [line for line in out.splitlines() if "--port" in line]
    assert any("8080" in line for line in port_lines), port_lines


def test_version():
    r = wsnode_cli("--version")
    assert r.returncode == 0, r
    assert (r.stdout + r.stderr).strip()


def test_several_workers_without_redis_are_refused():
    r = wsnode_cli("--bind", "127.0.0.1", "--port", str(free_port()), "--workers", "2")
    assert r.returncode == 2, r
    assert r.stderr.strip(), "no message on stderr"


@pytest.mark.parametrize("args", [["--no-such-flag"], ["--max-message", "12x"],
                                  ["--slow-policy", "maybe"], ["--port", "notaport"]])
def test_bad_command_line_is_refused(args):
    r = wsnode_cli("--bind", "127.0.0.1", "--port", str(free_port()), *args)
    assert r.returncode != 0, r
    assert r.stderr.strip(), "no message on stderr"


@pytest.mark.parametrize("limit,size", [("2k", 2048), ("1m", 1 << 20)])
def test_size_suffixes(node, limit, size):
    n = node("--echo", "--echo-max-message", limit)

    async def main():
        async with connect(n) as ws:
            await ws.send(b"k" * size)
            assert await recv(ws, 10) == b"k" * size
            await ws.send(b"k" * (size + 1))
            rcvd = await expect_server_close(ws, 10)
            assert rcvd is not None and rcvd.code == 1009

    run(main())


# --------------------------------------------------------------------------- workers


def wait_for_new_worker(n, old, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = n.workers()
        if now and old not in now:
            try:
                run(still_serves_echo(n), timeout=3)
                return now
            except (AssertionError, OSError, EOFError, asyncio.TimeoutError):
                pass
        time.sleep(0.1)
    raise AssertionError(f"no restarted worker serving within {timeout}s (workers now "
                         f"{n.workers()})")


def test_killed_worker_is_restarted(node):
    n = node("--echo")
    assert len(n.initial_workers) == 1, f"expected one worker process, got {n.initial_workers}"
    for _ in range(2):
        old = n.workers()[0]
        os.kill(old, signal.SIGKILL)
        new = wait_for_new_worker(n, old)
        assert len(new) == 1, new
        assert n.proc.poll() is None, "master died"


# --------------------------------------------------------------------------- drain


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_with_1001_and_exits_0(node, sig):
    n = node("--echo", "--drain-timeout", "3")
    workers = n.workers()

    async def main():
        clients = [await connect(n, "/echo"), await connect(n, "/echo"),
                   await connect(n, "/ws", subprotocols=["ws.json.v1"])]
        assert '"hello"' in await recv(clients[2])
        await clients[0].send("before")
        assert await recv(clients[0]) == "before"
        n.expect_exit = True
        n.signal(sig)
        for ws in clients:
            rcvd = await expect_server_close(ws, 3 + 2)
            assert rcvd is not None, "connection ended without a close frame"
            assert rcvd.code == 1001, rcvd

    run(main())
    assert n.wait_exit(3 + 3) == 0, f"master exit status {n.proc.returncode}"
    assert not [w for w in workers if pid_alive(w)], "workers survived the master"
    assert not tcp_accepts(n.port)


def test_drain_timeout_bounds_exit_with_unresponsive_client(node):
    """A client that never answers the 1001 close does not hold the node beyond
    --drain-timeout, even with a much longer --close-timeout."""
    n = node("--echo", "--drain-timeout", "2", "--close-timeout", "30")

    async def main():
        stuck = await Raw.handshake(n.port, "/echo")
        await stuck.echo_ok()
        n.expect_exit = True
        t0 = time.monotonic()
        n.signal(signal.SIGTERM)
        f = await stuck.expect_close(STEP)
        assert f.close_code == 1001
        # while draining, no new WebSocket is accepted
        try:
            fresh = await Raw.open(n.port, timeout=1)
            await fresh.send(upgrade_request("/echo"))
            resp = await fresh.read_response(timeout=2)
            assert resp.status != 101, "new WebSocket accepted while draining"
            await fresh.aclose()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass  # refused, reset or closed: not accepted
        await stuck.wait_eof(2 + 3)  # no close reply from us: the server cuts the TCP
        await stuck.aclose()
        return t0

    t0 = run(main())
    code = n.wait_exit(max(0.1, t0 + 2 + 3 - time.monotonic()))
    assert code == 0, f"master did not exit 0 within drain timeout + 3s (status {code})"


# --------------------------------------------------------------------------- many connections


def test_1000_connect_close_cycles(node):
    n = node("--echo")
    worker = n.workers()[0]
    baseline = fd_count(worker)

    async def one_worker(k, count):
        for i in range(count):
            async with connect(n, "/echo") as ws:
                await ws.send(f"{k}:{i}")
                assert await recv(ws) == f"{k}:{i}"
            assert ws.close_code == 1000

    async def main():
        await asyncio.gather(*(one_worker(k, 250) for k in range(4)))

    run(main(), timeout=120)
    # no file descriptor leak: the count returns to about where it was
    deadline = time.monotonic() + 5
    while fd_count(worker) > baseline + 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fd_count(worker) <= baseline + 4, f"worker fds {baseline} -> {fd_count(worker)}"
    assert n.workers() == [worker], "the worker was replaced"


# --------------------------------------------------------------------------- handshake timeout


def test_slowloris_half_request_is_dropped(node):
    n = node("--echo", "--handshake-timeout", "1")

    async def main():
        t0 = time.monotonic()
        half = await Raw.open(n.port)
        await half.send(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webso")
        silent = await Raw.open(n.port)  # says nothing at all
        # meanwhile a real client is served
        async with connect(n, "/echo") as ws:
            await ws.send("not blocked")
            assert await recv(ws) == "not blocked"
        await half.wait_eof(1 + 3)
        await silent.wait_eof(1 + 3)
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.5, f"closed after {elapsed:.2f}s, before the 1s handshake timeout"
        await half.aclose()
        await silent.aclose()

    run(main())


def test_slowloris_dripping_bytes_is_dropped(node):
    """The handshake timeout is a deadline for the whole head, not an idle timer: a client
    dripping a byte every 200 ms is still cut off."""
    n = node("--echo", "--handshake-timeout", "1")

    async def main():
        c = await Raw.open(n.port)
        head = upgrade_request("/echo", extra_headers=[("X-Slow", "s" * 200)])

        async def drip():
            try:
                for b in head[:-4]:
                    await c.send(bytes([b]))
                    await asyncio.sleep(0.2)
            except (OSError, asyncio.TimeoutError):
                pass

        dripper = asyncio.ensure_future(drip())
        try:
            await c.wait_eof(1 + 3)
        finally:
            dripper.cancel()
        await c.aclose()
        await still_serves_echo(n)

    run(main())


# --------------------------------------------------------------------------- server pings


PING_FLAGS = ["--echo", "--ping-interval", "1", "--idle-timeout", "1"]


def test_clients_answering_pings_stay_connected(node):
    n = node(*PING_FLAGS)

    async def main():
        ws = await connect(n, "/echo")  # websockets answers pings by itself
        raw = await Raw.handshake(n.port, "/echo")
        pings = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 4
        while loop.time() < end:
            try:
                f = await raw.recv_frame(timeout=max(0.01, end - loop.time()))
            except asyncio.TimeoutError:
                break
            assert f.opcode == OP_PING, f"unexpected {f}"
            pings += 1
            await raw.send_frame(OP_PONG, f.payload)
        assert pings >= 2, f"only {pings} server pings in 4s with --ping-interval 1"
        await raw.echo_ok("raw alive")
        await ws.send("ws alive")
        assert await recv(ws) == "ws alive"
        await ws.close()
        await raw.aclose()

    run(main())


def test_client_ignoring_pings_is_closed(node):
    n = node(*PING_FLAGS)

    async def main():
        raw = await Raw.handshake(n.port, "/echo")
        got_ping = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 6
        while True:
            try:
                f = await raw.recv_frame(timeout=max(0.01, deadline - loop.time()))
            except (asyncio.IncompleteReadError, ConnectionResetError):
                break  # TCP ended
            except asyncio.TimeoutError:
                raise AssertionError("connection ignoring pings still open after 6s") from None
            if f.opcode == OP_PING:
                got_ping = True  # and never answered
            elif f.opcode == 0x8:
                await raw.wait_eof(STEP)
                break
        assert got_ping, "closed without being pinged first"
        await raw.aclose()
        await still_serves_echo(n)

    run(main())


def test_websockets_client_with_own_keepalive(node):
    """A client that pings the server itself (websockets' default keepalive) is fine too."""
    n = node(*PING_FLAGS)

    async def main():
        async with connect(n, "/echo", ping_interval=0.5, ping_timeout=2) as ws:
            await asyncio.sleep(3)
            await ws.send("ok")
            assert await recv(ws) == "ok"

    run(main())
