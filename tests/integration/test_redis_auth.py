"""Redis 6+ ACL users: wsnode and wsrouter log in with --redis-user/--redis-password (AUTH user
password) on a Redis whose `default` user is switched off, so nothing works without the login.
The ACL user gets only what wsfan needs: its key and channel prefix, SCRIPT LOAD/EVALSHA with
INCR and PUBLISH inside the script, SUBSCRIBE."""
import asyncio
import json
import subprocess
import time

import pytest
import websockets

from conftest import HOST, REDIS, STEP, free_port, run, tcp_accepts, sub_ack

USER, PASSWORD = "wsfan", "acl-pw-123"
ACL = [f"{USER}", "on", f">{PASSWORD}", "~wsfan:*", "&wsfan:*", "+script|load", "+evalsha",
       "+publish", "+subscribe", "+unsubscribe",
       # what the publish and read scripts run (docs/security.md)
       "+hincrby", "+hget", "+hset", "+hmget", "+del", "+time", "+expire", "+xadd", "+xrange",
       "+xrevrange"]


class AclRedis:
    """redis-server with `default` off, the wsfan user above, and an admin for the test."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--user", "default", "off", "--user", *ACL,
             "--user", "admin", "on", ">admin-pw", "~*", "&*", "+@all"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not tcp_accepts(self.port):
            assert self.proc.poll() is None, "redis-server exited (ACL options refused?)"
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def cli(self, *args, user="admin", password="admin-pw"):
        """stdout of one redis-cli command (redis-cli puts a refused AUTH on stderr, which
        comes after it)."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--no-auth-warning", "--user",
                              user, "--pass", password, *args],
                             capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def acl_redis():
    r = AclRedis()
    yield r
    r.stop()


OPEN = []


async def client(port):
    ws = await websockets.connect(f"ws://{HOST}:{port}/ws", open_timeout=STEP, close_timeout=1,
                                  ping_interval=None)
    OPEN.append(ws)
    hello = json.loads(await asyncio.wait_for(ws.recv(), STEP))
    assert hello["op"] == "hello", hello
    return ws


async def request(ws, msg):
    await ws.send(json.dumps(msg))
    return json.loads(await asyncio.wait_for(ws.recv(), STEP))


def scenario(coro):
    async def wrapped():
        try:
            await coro
        finally:
            await asyncio.gather(*(ws.close() for ws in OPEN), return_exceptions=True)
            OPEN.clear()
    run(wrapped())


def redis_args(redis, password=PASSWORD, user=USER):
    return ("--redis", f"127.0.0.1:{redis.port}", "--redis-user", user, "--redis-password",
            password)


def test_the_acl_redis_refuses_anonymous_clients(acl_redis):
    """The premise of the tests below: without AUTH, or with the wrong password, nothing runs."""
    out = subprocess.run(["redis-cli", "-p", str(acl_redis.port), "PUBLISH", "wsfan:ch:x", "1"],
                         capture_output=True, text=True, timeout=10).stdout
    assert "NOAUTH" in out, out
    wrong = acl_redis.cli("PUBLISH", "wsfan:ch:x", "1", user=USER, password="nope")
    assert "WRONGPASS" in wrong and "NOAUTH" in wrong, wrong
    assert acl_redis.cli("PUBLISH", "wsfan:ch:x", "1", user=USER, password=PASSWORD) == "0"


def test_nodes_with_an_acl_user_publish_and_receive(node, acl_redis):
    a = node(*redis_args(acl_redis), "--workers", "1")
    b = node(*redis_args(acl_redis), "--workers", "1")

    async def main():
        sub = await client(a.port)
        assert sub_ack(await request(sub, {"op": "sub", "ch": "acl.room", "id": 1})) == {"op": "ack", "id": 1}
        pub = await client(b.port)
        deadline = time.time() + 10
        while True:  # the links and the subscription come up asynchronously
            reply = await request(pub, {"op": "pub", "ch": "acl.room", "data": {"via": "acl"},
                                        "id": 2})
            if reply["op"] == "ack":
                try:
                    m = json.loads(await asyncio.wait_for(sub.recv(), 1))
                except asyncio.TimeoutError:
                    m = None
                if m is not None:
                    assert m["op"] == "msg" and m["data"] == {"via": "acl"}, m
                    assert m["seq"] == reply["seq"], (m, reply)
                    break
            assert time.time() < deadline, reply
            await asyncio.sleep(0.1)
        # the seq really is in this Redis, under the prefix the ACL allows
        assert acl_redis.cli("HGET", "wsfan:meta:{acl.room}", "seq") == str(reply["seq"])

    scenario(main())
    assert "WRONGPASS" not in a.log(tail=100000) + b.log(tail=100000)
    assert "NOAUTH" not in a.log(tail=100000) + b.log(tail=100000)


def test_a_wrong_password_fails_publishes_and_the_node_keeps_serving(node, acl_redis):
    n = node(*redis_args(acl_redis, password="not-the-password"), "--workers", "1", "--echo")

    async def main():
        ws = await client(n.port)
        t0 = time.time()
        while time.time() - t0 < 1.5:  # it stays unavailable: AUTH never succeeds
            reply = await request(ws, {"op": "pub", "ch": "acl.room", "data": 1, "id": 3})
            assert reply["op"] == "err" and reply["code"] == "unavailable", reply
            await asyncio.sleep(0.1)
        # still serving: new /ws clients, /echo, and the same client keeps its connection
        other = await client(n.port)
        reply = await request(other, {"op": "pub", "ch": "acl.room", "data": 2, "id": 4})
        assert reply["op"] == "err" and reply["code"] == "unavailable", reply
        echo = await websockets.connect(f"ws://{HOST}:{n.port}/echo", open_timeout=STEP,
                                        close_timeout=1)
        OPEN.append(echo)
        await echo.send("still here")
        assert await asyncio.wait_for(echo.recv(), STEP) == "still here"
        assert (await request(ws, {"op": "pub", "ch": "acl.room", "data": 3, "id": 5}))["code"] \
            == "unavailable"

    scenario(main())
    assert "WRONGPASS" in n.log(tail=100000)
    assert n.workers() == n.initial_workers, "a worker died"
    assert acl_redis.cli("EXISTS", "wsfan:meta:{acl.room}") == "0"  # nothing was published

    # The refused links are retried with backoff (at most 5 s apart): once Redis accepts the
    # password, the node publishes without a restart.
    assert acl_redis.cli("ACL", "SETUSER", USER, ">not-the-password") == "OK"

    async def recovers():
        ws = await client(n.port)
        deadline = time.time() + 12
        while True:
            reply = await request(ws, {"op": "pub", "ch": "acl.room", "data": 4, "id": 6})
            if reply["op"] == "ack":
                return
            assert reply["code"] == "unavailable" and time.time() < deadline, reply
            await asyncio.sleep(0.2)

    scenario(recovers())
    assert n.workers() == n.initial_workers, "a worker died"


def test_router_with_an_acl_user_is_healthy_and_answers_presence(node, router, acl_redis):
    r = router(acl_redis, "--redis-user", USER, "--redis-password", PASSWORD)  # waits for 200
    n = node(*redis_args(acl_redis), "--workers", "1", "--router-shards", "1")

    async def main():
        ws = await client(n.port)
        assert (await request(ws, {"op": "sub", "ch": "acl.presence", "id": 1}))["op"] == "ack"
        deadline = time.time() + 10
        while True:  # the router answers once it has the node's join
            reply = await request(ws, {"op": "presence", "ch": "acl.presence", "id": 2})
            if reply["op"] == "presence" and reply.get("count") == 1:
                assert len(reply["members"]) == 1, reply
                break
            assert time.time() < deadline, reply
            await asyncio.sleep(0.1)

    scenario(main())
    assert r.healthy()
    assert "WRONGPASS" not in r.log(tail=100000)


def test_router_with_a_wrong_password_is_unhealthy_until_the_login_is_fixed(router, acl_redis):
    r = router(acl_redis, "--redis-user", USER, "--redis-password", "wrong", ready=False)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert r.proc.poll() is None, f"wsrouter exited:\n{r.log()}"
        assert not r.healthy(), "healthy without a valid Redis login"
        time.sleep(0.1)
    assert "WRONGPASS" in r.log(tail=100000)
    # the refused links are retried (backoff up to 5 s): a password added in Redis is taken
    assert acl_redis.cli("ACL", "SETUSER", USER, ">wrong") == "OK"
    r.wait_ready(timeout=12)
