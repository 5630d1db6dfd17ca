"""Security (issue 7): JWT authentication, permissions and abuse limits, each refusal driven by
a real client and checked against what docs/security.md and docs/configuration.md promise.

In every test a well-behaved client (a Bystander) keeps being served while another one is
refused: it publishes on its own channel and gets its message back (or its echo) round after
round, and the test checks that it went on during and after the abuse, without an error and
without a slow round.

Tokens are made here with hmac/hashlib/base64 (HS*) and with the openssl command line (RS256).
The per-address limits are exercised from their own loopback source addresses (127.0.0.x),
so the bystander, the node's readiness probe and the /metrics requests are other clients.
TLS is covered by test_tls.py.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import signal
import subprocess
import time

import pytest
import websockets

from conftest import (sub_ack, HOST, OP_CLOSE, OP_TEXT, STEP, Raw, build_frame, close_payload, connect,
                      run, upgrade_request, ws_accept, ws_key)

SECRET = b"s3cret-for-tests-only-0123456789"
CALM = "calm"  # the bystander's channel


# --------------------------------------------------------------------------- tokens


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(sub="alice", ttl=300, **more):
    c = {"sub": sub, "exp": int(time.time()) + ttl}
    c.update(more)
    return c


def signing_input(header, payload):
    return (b64u(json.dumps(header, separators=(",", ":")).encode()) + "." +
            b64u(json.dumps(payload, separators=(",", ":")).encode()))


def jwt_hs(payload, secret=SECRET, alg="HS256"):
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    si = signing_input({"alg": alg, "typ": "JWT"}, payload)
    return si + "." + b64u(hmac.new(secret, si.encode(), digest).digest())


def jwt_none(payload):
    return signing_input({"alg": "none", "typ": "JWT"}, payload) + "."


def jwt_rs256(payload, private_key_path):
    si = signing_input({"alg": "RS256", "typ": "JWT"}, payload)
    out = subprocess.run(["openssl", "dgst", "-sha256", "-sign", private_key_path],
                         input=si.encode(), capture_output=True, check=True, timeout=30)
    return si + "." + b64u(out.stdout)


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory):
    """(private PEM path, public PEM path) of a fresh 2048-bit RSA key."""
    d = tmp_path_factory.mktemp("rsa")
    priv, pub = str(d / "private.pem"), str(d / "public.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", priv], check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub],
                   check=True, capture_output=True, timeout=60)
    return priv, pub


def hs_node(node, *args):
    return node("--auth", "required", "--jwt-secret", SECRET.decode(), *args)


GOOD = jwt_hs(claims("bystander", ttl=3600))  # no perm claim: allowed everything


# --------------------------------------------------------------------------- clients


async def open_from(port, src=None, timeout=STEP):
    """A Raw connection to the node, from loopback source address src (None: the default)."""
    kw = {"local_addr": (src, 0)} if src else {}
    r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port, limit=1 << 24, **kw),
                                  timeout)
    return Raw(r, w)


async def upgrade(port, path="/ws", src=None, headers=(), origin=None, expect=101):
    """Sends an upgrade; returns (Raw, Response). With expect=101 the handshake is checked."""
    c = await open_from(port, src)
    key = ws_key()
    await c.send(upgrade_request(path, key=key, extra_headers=headers, origin=origin,
                                 protocol="ws.json.v1" if path.startswith("/ws") else None))
    resp = await c.read_response(STEP)
    if expect is not None:
        assert resp.status == expect, f"expected {expect}, got {resp}"
    if resp.status == 101:
        assert resp.header("sec-websocket-accept") == ws_accept(key), resp
    c.response = resp
    return c, resp


async def refused(port, path="/ws", src=None, headers=(), origin=None):
    """The HTTP answer to an upgrade that must not succeed (connection closed afterwards)."""
    c, resp = await upgrade(port, path, src, headers, origin, expect=None)
    await c.aclose()
    assert resp.status != 101, f"upgrade of {path} was accepted"
    return resp


async def raw_json(c, timeout=STEP):
    f = await c.recv_frame(timeout)
    assert f.opcode == OP_TEXT, f
    return json.loads(f.payload)


async def http_request(port, method, path, headers=(), body=b"", src=None):
    c = await open_from(port, src)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", "Connection: close",
                 *[f"{k}: {v}" for k, v in headers]]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        await c.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return await c.read_response(STEP)
    finally:
        await c.aclose()


async def metrics(node, src="127.0.0.250"):
    """{name: value} of the node's /metrics, asked from its own source address."""
    r = await http_request(node.port, "GET", "/metrics", src=src)
    assert r.status == 200, r
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


async def wait_metric(node, name, at_least, timeout=3.0):
    """Polls /metrics until name >= at_least (counters are shared by the workers); returns it."""
    deadline = time.monotonic() + timeout
    while True:
        v = (await metrics(node)).get(name)
        assert v is not None, f"/metrics has no {name}"
        if v >= at_least or time.monotonic() > deadline:
            assert v >= at_least, f"{name} = {v}, expected at least {at_least}"
            return v
        await asyncio.sleep(0.1)


class Client:
    """A /ws client on python3-websockets: JSON in and out; frames read while waiting for
    one thing are kept for later."""

    def __init__(self, ws):
        self.ws = ws
        self.pending = []
        self.hello = None

    @classmethod
    async def open(cls, node, token=None, query="", headers=None, src=None):
        path = "/ws"
        params = [p for p in (f"token={token}" if token else "", query) if p]
        if params:
            path += "?" + "&".join(params)
        kw = {"subprotocols": ["ws.json.v1"], "max_queue": None}
        if headers:
            kw["extra_headers"] = headers
        if src:
            kw["local_addr"] = (src, 0)
        ws = await connect(node, path, **kw)
        c = cls(ws)
        c.hello = await c.next()
        assert c.hello.get("op") == "hello", c.hello
        return c

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    async def next(self, timeout=STEP):
        if self.pending:
            return self.pending.pop(0)
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def until(self, pred, timeout=STEP):
        for i, m in enumerate(self.pending):
            if pred(m):
                return self.pending.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no matching frame within {timeout}s; have {self.pending}")
            try:
                m = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            except asyncio.TimeoutError:
                continue
            if pred(m):
                return m
            self.pending.append(m)

    async def request(self, obj):
        """Sends obj (with an id); returns the ack, err or presence answering it."""
        await self.send(obj)
        return await self.until(lambda m: m.get("id") == obj["id"] and
                                m.get("op") in ("ack", "err", "presence"))

    async def close(self):
        await self.ws.close()


def forbidden(reply):
    return reply.get("op") == "err" and reply.get("code") == "forbidden"


class Bystander:
    """A well-behaved client that, in the background, publishes on its own channel and waits
    for its message to come back (on /ws), or sends and waits for the echo (on /echo), every
    `interval` seconds. Any failure, a round slower than `slow`, or no progress is an error.

        async with Bystander(node, token=GOOD) as b:
            mark = b.rounds
            ...abuse...
            await b.served_since(mark)
    """

    def __init__(self, node, path="/ws", token=None, src="127.0.0.200", interval=0.03,
                 slow=1.0):
        self.node, self.path, self.token, self.src = node, path, token, src
        self.interval, self.slow = interval, slow
        self.rounds = 0
        self.worst = 0.0
        self.error = None
        self._task = None
        self._stop = False

    async def __aenter__(self):
        if self.path == "/ws":
            self.client = await Client.open(self.node, self.token, src=self.src)
            reply = await self.client.request({"op": "sub", "ch": CALM, "id": "b-sub"})
            assert sub_ack(reply) == {"op": "ack", "id": "b-sub"}, reply
            self.ws = self.client.ws
        else:
            self.ws = await connect(self.node, self.path, local_addr=(self.src, 0))
        self._task = asyncio.ensure_future(self._loop())
        await self.served_since(0, 2)
        return self

    async def _round(self, i):
        if self.path == "/ws":
            await self.client.send({"op": "pub", "ch": CALM, "id": i, "data": {"n": i}})
            await self.client.until(lambda m: m.get("id") == i and m.get("op") == "ack")
            await self.client.until(lambda m: m.get("op") == "msg" and m.get("ch") == CALM and
                                    m.get("data") == {"n": i})
        else:
            await self.ws.send(f"round {i}")
            got = await asyncio.wait_for(self.ws.recv(), STEP)
            assert got == f"round {i}", got

    async def _loop(self):
        i = 0
        try:
            while not self._stop:
                i += 1
                t = time.monotonic()
                await self._round(i)
                took = time.monotonic() - t
                self.worst = max(self.worst, took)
                assert took < self.slow, f"bystander round {i} took {took:.3f}s"
                self.rounds += 1
                await asyncio.sleep(self.interval)
        except BaseException as e:  # noqa: BLE001 - reported by served_since and __aexit__
            if not self._stop:
                self.error = e

    async def expect(self, pred, timeout=STEP):
        """A frame matching pred that reached the bystander besides its own rounds (its loop
        does the reading; the frames it did not want wait in client.pending)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.client.pending):
                if pred(m):
                    return self.client.pending.pop(i)
            self.check()
            assert time.monotonic() < deadline, \
                f"the bystander got no matching frame in {timeout}s: {self.client.pending}"
            await asyncio.sleep(0.01)

    def check(self):
        if self.error is not None:
            raise AssertionError(f"the well-behaved client was not served: {self.error!r} "
                                 f"after {self.rounds} rounds") from self.error

    async def served_since(self, mark, n=3, timeout=STEP):
        """Waits until the bystander has completed n more rounds than `mark`."""
        deadline = time.monotonic() + timeout
        while self.rounds < mark + n:
            self.check()
            assert time.monotonic() < deadline, \
                f"bystander made {self.rounds - mark} rounds in {timeout}s, expected {n}"
            await asyncio.sleep(0.01)
        self.check()

    async def __aexit__(self, *exc):
        mark = self.rounds
        if exc[0] is None:
            await self.served_since(mark, 2)
        self._stop = True
        self._task.cancel()
        try:
            await self._task
        except BaseException:  # noqa: BLE001 - cancelled on purpose
            pass
        await self.ws.close()
        if exc[0] is None:
            self.check()


def assert_not_logged(node, *tokens):
    text = open(node.log_path, "rb").read().decode("utf-8", "replace")
    for t in tokens:
        assert t not in text, "a token appears in the node's log"
        # the signature alone is secret enough to matter
        sig = t.rsplit(".", 1)[-1]
        if len(sig) >= 16:
            assert sig not in text, "a token's signature appears in the node's log"


def log_has(node, text, timeout=2.0):
    deadline = time.monotonic() + timeout
    while text not in node.log(tail=100000):
        assert time.monotonic() < deadline, f"the node's log has no {text!r}:\n{node.log()}"
        time.sleep(0.05)


# --------------------------------------------------------------------------- authentication


def test_no_token_with_auth_required_is_401_with_www_authenticate(node):
    n = hs_node(node)

    async def main():
        async with Bystander(n, token=GOOD) as b:
            mark = b.rounds
            for _ in range(5):
                resp = await refused(n.port, "/ws")
                assert resp.status == 401, resp
                assert resp.header("www-authenticate").lower().startswith("bearer"), resp
            # websockets sees the same
            with pytest.raises(websockets.InvalidStatusCode) as e:
                await connect(n, "/ws", subprotocols=["ws.json.v1"])
            assert e.value.status_code == 401
            # an empty ?token= and an Authorization header that is not Bearer are no token
            assert (await refused(n.port, "/ws?token=")).status == 401
            assert (await refused(n.port, "/ws", headers=[("Authorization", "Basic eDp5")]
                                  )).status == 401
            await b.served_since(mark)
            assert await wait_metric(n, "wsfan_auth_failures_total", 8) == 8
    run(main())
    log_has(n, "401: no token")
    assert_not_logged(n, GOOD)


BAD_TOKENS = {
    # case: (token, reason in the log)
    "bad_signature": (lambda: jwt_hs(claims(), b"another secret"),
                      "401: bad signature or malformed token"),
    "tampered_payload": (lambda: (lambda t: t.split(".")[0] + "." +
                                  b64u(json.dumps(claims("root")).encode()) + "." +
                                  t.split(".")[2])(jwt_hs(claims())),
                         "401: bad signature or malformed token"),
    "garbage": (lambda: "not-a-jwt-at-all", "401: bad signature or malformed token"),
    "expired_beyond_leeway": (lambda: jwt_hs(claims(ttl=-120)), "401: expired"),
    "nbf_beyond_leeway": (lambda: jwt_hs(claims(nbf=int(time.time()) + 120)),
                          "401: not valid yet (nbf)"),
    "alg_none": (lambda: jwt_none(claims()), "401: "),
    "alg_none_with_signature": (lambda: jwt_none(claims()) + b64u(b"x" * 32), "401: "),
    "no_sub": (lambda: jwt_hs({"exp": int(time.time()) + 300}), "401: no usable sub claim"),
    "bad_perm_claim": (lambda: jwt_hs(claims(perm={"sub": "room.*"})), "401: bad perm claim"),
    "bad_perm_pattern": (lambda: jwt_hs(claims(perm={"sub": ["room/*"]})),
                         "401: bad perm claim"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_token_is_401_and_never_logged(node, case):
    make, reason = BAD_TOKENS[case]
    token = make()
    n = hs_node(node)

    async def main():
        async with Bystander(n, token=GOOD) as b:
            mark = b.rounds
            resp = await refused(n.port, f"/ws?token={token}")
            assert resp.status == 401, resp
            assert resp.header("www-authenticate") is not None, resp
            resp = await refused(n.port, "/ws", headers=[("Authorization", f"Bearer {token}")])
            assert resp.status == 401, resp
            await b.served_since(mark)
            await wait_metric(n, "wsfan_auth_failures_total", 2)
    run(main())
    log_has(n, reason)
    assert_not_logged(n, token, GOOD)


def test_exp_and_nbf_within_the_leeway_are_accepted(node):
    n = hs_node(node)  # --jwt-leeway defaults to 30 s
    now = int(time.time())
    late = jwt_hs(claims("late", exp=now - 10))
    early = jwt_hs(claims("early", nbf=now + 10))
    strict = jwt_hs(claims("late", exp=now - 10))

    async def main():
        async with Bystander(n, token=GOOD) as b:
            for t, user in ((late, "late"), (early, "early")):
                c = await Client.open(n, t)
                reply = await c.request({"op": "sub", "ch": f"room.{user}", "id": 1})
                assert sub_ack(reply) == {"op": "ack", "id": 1}, reply
                p = await c.request({"op": "presence", "ch": f"room.{user}", "id": 2})
                assert [m["user"] for m in p["members"]] == [user], p
                await c.close()
            await b.served_since(b.rounds)
    run(main())

    n0 = hs_node(node, "--jwt-leeway", "1")  # 0 is refused: every SEC flag must be > 0

    async def strict_main():
        async with Bystander(n0, token=GOOD):
            assert (await refused(n0.port, f"/ws?token={strict}")).status == 401
            assert (await refused(n0.port, f"/ws?token={early}")).status == 401
    run(strict_main())
    log_has(n0, "401: expired")
    log_has(n0, "401: not valid yet (nbf)")
    assert_not_logged(n, late, early)


@pytest.mark.parametrize("nbf", ["fractional", "string"])
def test_non_integer_nbf_in_the_future_is_refused(node, nbf):
    """RFC 7519's NumericDate may have a fraction; a string is no NumericDate at all. Either
    way a token that is not valid yet must not get in (docs: nbf in the future is 401)."""
    n = hs_node(node)
    later = time.time() + 1000.5
    token = jwt_hs(claims("early", nbf=later if nbf == "fractional" else str(int(later))))

    async def main():
        async with Bystander(n, token=GOOD) as b:
            resp = await refused(n.port, f"/ws?token={token}")
            assert resp.status == 401, resp
            await b.served_since(b.rounds)
    run(main())
    assert_not_logged(n, token)


def test_fractional_exp_in_the_future_is_accepted(node):
    """exp 1000.5 s from now (a NumericDate with a fraction, as RFC 7519 allows) is valid."""
    n = hs_node(node)
    token = jwt_hs(claims("fraction", exp=time.time() + 1000.5))

    async def main():
        async with Bystander(n, token=GOOD):
            c = await Client.open(n, token)
            await c.close()
    run(main())


def test_token_in_the_authorization_header(node):
    n = hs_node(node)
    token = jwt_hs(claims("hdr-user"))

    async def main():
        async with Bystander(n, token=GOOD) as b:
            c = await Client.open(n, headers={"Authorization": f"Bearer {token}"})
            reply = await c.request({"op": "sub", "ch": "room.h", "id": 1})
            assert sub_ack(reply) == {"op": "ack", "id": 1}, reply
            p = await c.request({"op": "presence", "ch": "room.h", "id": 2})
            assert [m["user"] for m in p["members"]] == ["hdr-user"], p
            # the scheme is case-insensitive
            c2 = await Client.open(n, headers={"Authorization": f"bearer {token}"})
            await c2.close()
            await c.close()
            await b.served_since(b.rounds)
    run(main())
    assert_not_logged(n, token)


def test_hs384_and_hs512_are_accepted_with_the_same_secret(node):
    n = hs_node(node)

    async def main():
        async with Bystander(n, token=GOOD) as b:
            for alg in ("HS384", "HS512"):
                c = await Client.open(n, jwt_hs(claims(alg), alg=alg))
                await c.close()
                assert (await refused(n.port, "/ws?token=" +
                                      jwt_hs(claims(alg), b"wrong", alg=alg))).status == 401
            await b.served_since(b.rounds)
    run(main())


def test_jwt_secret_file(node, tmp_path):
    path = tmp_path / "jwt.secret"
    path.write_bytes(SECRET + b"\n")  # the trailing newline is not part of the secret
    n = node("--auth", "required", "--jwt-secret-file", str(path))
    good = jwt_hs(claims("filed"))
    wrong = jwt_hs(claims("filed"), SECRET + b"\n")

    async def main():
        async with Bystander(n, token=GOOD) as b:
            c = await Client.open(n, good)
            await c.close()
            assert (await refused(n.port, f"/ws?token={wrong}")).status == 401
            await b.served_since(b.rounds)
    run(main())
    ps = subprocess.run(["ps", "-o", "args=", "-p", str(n.pid)], capture_output=True,
                        text=True).stdout
    assert SECRET.decode() not in ps
    assert_not_logged(n, good, wrong)


def test_hs256_token_signed_with_the_public_key_is_refused(node, rsa_key):
    """Algorithm confusion: a node that verifies RS*/ES* with a public key must not accept an
    HS256 token whose HMAC key is that (public) PEM."""
    priv, pub = rsa_key
    pem = open(pub, "rb").read()
    n = node("--auth", "required", "--jwt-public-key", pub)
    confused = [jwt_hs(claims("mallory"), pem), jwt_hs(claims("mallory"), pem.strip())]
    none = jwt_none(claims("mallory"))
    good = jwt_rs256(claims("rsa-user"), priv)

    async def main():
        async with Bystander(n, token=good) as b:
            mark = b.rounds
            for t in confused:
                resp = await refused(n.port, f"/ws?token={t}")
                assert resp.status == 401, resp
            assert (await refused(n.port, f"/ws?token={none}")).status == 401
            await b.served_since(mark)
    run(main())
    log_has(n, "401: algorithm not allowed")
    assert_not_logged(n, good, none, *confused)


def test_rs256_token_is_accepted_and_its_sub_is_the_user(node, rsa_key):
    priv, pub = rsa_key
    n = node("--auth", "required", "--jwt-public-key", pub)
    token = jwt_rs256(claims("rsa-user"), priv)
    expired = jwt_rs256(claims("rsa-user", ttl=-300), priv)

    async def main():
        async with Bystander(n, token=token) as b:
            c = await Client.open(n, token)
            assert (await c.request({"op": "sub", "ch": "room.r", "id": 1}))["op"] == "ack"
            p = await c.request({"op": "presence", "ch": "room.r", "id": 2})
            assert [m["user"] for m in p["members"]] == ["rsa-user"], p
            await c.close()
            assert (await refused(n.port, f"/ws?token={expired}")).status == 401
            # an HS256 token with the node's usual kind of secret is the wrong family too
            assert (await refused(n.port, f"/ws?token={jwt_hs(claims())}")).status == 401
            await b.served_since(b.rounds)
    run(main())
    assert_not_logged(n, token, expired)


def test_hs_node_refuses_an_rs256_token(node, rsa_key):
    priv, _ = rsa_key
    n = hs_node(node)
    token = jwt_rs256(claims("rsa-user"), priv)

    async def main():
        async with Bystander(n, token=GOOD):
            assert (await refused(n.port, f"/ws?token={token}")).status == 401
    run(main())
    assert_not_logged(n, token)


def test_sub_claim_is_the_user_in_presence_and_user_param_is_ignored(node):
    n = hs_node(node)
    alice = jwt_hs(claims("alice@example.com"))
    bob = jwt_hs(claims("bob"))
    odd = jwt_hs(claims('q"uote\\é'))  # escaped in presence JSON

    async def main():
        async with Bystander(n, token=GOOD) as b:
            a = await Client.open(n, alice, query="user=mallory")
            c = await Client.open(n, bob, query="user=alice@example.com")
            d = await Client.open(n, odd)
            for i, x in enumerate((a, c, d)):
                assert (await x.request({"op": "sub", "ch": "room.p", "id": i}))["op"] == "ack"
            p = await a.request({"op": "presence", "ch": "room.p", "id": 9})
            users = sorted(m["user"] for m in p["members"])
            assert users == sorted(["alice@example.com", "bob", 'q"uote\\é']), p
            clients = {m["client"]: m["user"] for m in p["members"]}
            assert clients[a.hello["client"]] == "alice@example.com", p
            assert clients[c.hello["client"]] == "bob", p
            for x in (a, c, d):
                await x.close()
            await b.served_since(b.rounds)
    run(main())
    assert_not_logged(n, alice, bob, odd)


# --------------------------------------------------------------------------- permissions


def test_perm_claim_patterns(node):
    n = hs_node(node)
    perm = {"sub": ["news.*", "chat.1"], "pub": ["chat.*"]}
    token = jwt_hs(claims("limited", perm=perm))
    sender = jwt_hs(claims("sender", perm={"sub": [], "pub": [], "send": True}))
    everything = jwt_hs(claims("star", perm={"sub": ["*"], "pub": ["*"]}))

    async def main():
        async with Bystander(n, token=GOOD) as b:
            mark = b.rounds
            c = await Client.open(n, token)
            # sub: a prefix and an exact name
            for i, ch in enumerate(("news.sport", "news.", "chat.1"), 1):
                r = await c.request({"op": "sub", "ch": ch, "id": i})
                assert sub_ack(r) == {"op": "ack", "id": i}, (ch, r)
            for i, ch in enumerate(("news", "chat.2", "secret", CALM), 10):
                r = await c.request({"op": "sub", "ch": ch, "id": i})
                assert forbidden(r), (ch, r)
            # pub
            r = await c.request({"op": "pub", "ch": "chat.1", "id": 20, "data": 1})
            assert r["op"] == "ack", r
            msg = await c.until(lambda m: m.get("op") == "msg")
            assert msg["ch"] == "chat.1" and msg["data"] == 1, msg
            for i, ch in enumerate(("news.sport", "chat", CALM), 21):
                r = await c.request({"op": "pub", "ch": ch, "id": i, "data": 1})
                assert forbidden(r), (ch, r)
            # send without "send": true
            r = await c.request({"op": "send", "to": b.client.hello["client"], "data": "hi",
                                 "id": 30})
            assert forbidden(r), r
            # presence needs the right to subscribe
            r = await c.request({"op": "presence", "ch": "secret", "id": 31})
            assert forbidden(r), r
            r = await c.request({"op": "presence", "ch": CALM, "id": 32})
            assert forbidden(r), r
            r = await c.request({"op": "presence", "ch": "news.sport", "id": 33})
            assert r["op"] == "presence" and r["count"] == 1, r
            # unsub is always allowed
            r = await c.request({"op": "unsub", "ch": "secret", "id": 34})
            assert r == {"op": "ack", "id": 34}, r
            # the refusals were replies, not a close
            r = await c.request({"op": "sub", "ch": "news.tv", "id": 35})
            assert sub_ack(r) == {"op": "ack", "id": 35}, r
            await c.close()

            # "send": true allows send (to itself here); its empty lists allow no channel
            s = await Client.open(n, sender)
            r = await s.request({"op": "send", "to": s.hello["client"], "data": "me", "id": 1})
            assert r == {"op": "ack", "id": 1}, r
            m = await s.until(lambda m: m.get("op") == "msg")
            assert m["data"] == "me" and m["from"] == s.hello["client"], m
            assert forbidden(await s.request({"op": "sub", "ch": "x", "id": 2}))
            await s.close()

            # "*" is every channel
            e = await Client.open(n, everything)
            for i, ch in enumerate(("a", "b.c", CALM), 1):
                assert (await e.request({"op": "sub", "ch": ch, "id": i}))["op"] == "ack"
            assert forbidden(await e.request({"op": "send", "to": e.hello["client"],
                                              "data": 1, "id": 9}))
            await e.close()

            # no perm claim: everything (the bystander's token), send included
            g = await Client.open(n, GOOD)
            r = await g.request({"op": "send", "to": g.hello["client"], "data": 2, "id": 1})
            assert r == {"op": "ack", "id": 1}, r
            await g.close()
            await b.served_since(mark)
            assert await wait_metric(n, "wsfan_forbidden_total", 12) == 12
    run(main())
    log_has(n, "forbidden: sub secret")
    assert_not_logged(n, token, sender, everything)


def test_anonymous_clients_with_auth_optional(node):
    n = node("--auth", "optional", "--jwt-secret", SECRET.decode(),
             "--anonymous-sub", "public.*", "--anonymous-sub", "lobby",
             "--anonymous-pub", "public.chat")
    bad = jwt_hs(claims("x"), b"wrong")
    expired = jwt_hs(claims("x", ttl=-300))

    async def main():
        async with Bystander(n, token=GOOD) as b:
            mark = b.rounds
            a = await Client.open(n, query="user=admin")  # no token: anonymous
            for i, ch in enumerate(("public.news", "public.chat", "lobby"), 1):
                assert (await a.request({"op": "sub", "ch": ch, "id": i}))["op"] == "ack", ch
            for i, ch in enumerate(("private", "lobby.x", CALM), 10):
                assert forbidden(await a.request({"op": "sub", "ch": ch, "id": i})), ch
            r = await a.request({"op": "pub", "ch": "public.chat", "id": 20, "data": "hey"})
            assert r["op"] == "ack", r
            for i, ch in enumerate(("public.news", "lobby", CALM), 21):
                r = await a.request({"op": "pub", "ch": ch, "id": i, "data": "x"})
                assert forbidden(r), (ch, r)
            r = await a.request({"op": "send", "to": a.hello["client"], "data": 1, "id": 30})
            assert forbidden(r), r
            p = await a.request({"op": "presence", "ch": "lobby", "id": 31})
            assert [m["user"] for m in p["members"]] == ["anonymous"], p
            assert forbidden(await a.request({"op": "presence", "ch": "private", "id": 32}))
            await a.close()
            # a token that is there but bad is refused even though tokens are optional
            assert (await refused(n.port, f"/ws?token={bad}")).status == 401
            assert (await refused(n.port, f"/ws?token={expired}")).status == 401
            # a good token gets its own rights
            t = await Client.open(n, jwt_hs(claims("known")))
            assert (await t.request({"op": "sub", "ch": "private", "id": 1}))["op"] == "ack"
            await t.close()
            await b.served_since(mark)
    run(main())
    assert_not_logged(n, bad, expired)


# --------------------------------------------------------------------------- POST /publish


def test_post_publish_with_a_jwt(node):
    n = node("--auth", "required", "--jwt-secret", SECRET.decode(), "--publish-key", "backend-key")
    allowed = jwt_hs(claims("backend", perm={"pub": [CALM]}))
    other = jwt_hs(claims("backend", perm={"pub": ["elsewhere.*"]}))
    unsigned = jwt_hs(claims("backend"), b"not the secret")
    expired = jwt_hs(claims("backend", ttl=-300))

    async def post(ch, token, body=b'{"from":"http"}'):
        hdr = [("Authorization", f"Bearer {token}")] if token is not None else []
        return await http_request(n.port, "POST", f"/publish/{ch}", hdr, body)

    async def main():
        async with Bystander(n, token=GOOD) as b:
            mark = b.rounds
            r = await post(CALM, allowed)
            assert r.status == 202, r
            seq = json.loads(r.body)["seq"]
            m = await b.expect(lambda m: m.get("op") == "msg" and
                               m.get("data") == {"from": "http"})
            assert m["seq"] == seq, m
            r = await post(CALM, other)
            assert r.status == 403, r
            r = await post("elsewhere.x", other, b'"ok"')
            assert r.status == 202, r
            for t in (unsigned, expired, "garbage", None):
                r = await post(CALM, t)
                assert r.status == 401, (t, r)
                assert r.header("www-authenticate") is not None, r
            r = await post(CALM, "backend-key", b'{"from":"key"}')
            assert r.status == 202, r
            await b.expect(lambda m: m.get("op") == "msg" and m.get("data") == {"from": "key"})
            # a GET with a good token is still not a publish
            r = await http_request(n.port, "GET", f"/publish/{CALM}",
                                   [("Authorization", f"Bearer {allowed}")])
            assert r.status == 405, r
            await b.served_since(mark)
            await wait_metric(n, "wsfan_forbidden_total", 1)
            await wait_metric(n, "wsfan_auth_failures_total", 4)
    run(main())
    assert_not_logged(n, allowed, other, unsigned, expired, "backend-key")


def test_publish_rate(node):
    n = node("--publish-key", "k", "--publish-rate", "5")
    auth = [("Authorization", "Bearer k")]

    async def main():
        async with Bystander(n) as b:
            mark = b.rounds
            statuses = []
            t0 = time.monotonic()
            for i in range(20):
                r = await http_request(n.port, "POST", f"/publish/{CALM}", auth,
                                       json.dumps({"http": i}).encode())
                statuses.append(r.status)
                if r.status == 429:
                    assert r.header("retry-after") == "1", r
            refill = int((time.monotonic() - t0) * 5)  # what 5/s gave back meanwhile
            ok = statuses.count(202)
            assert set(statuses) == {202, 429}, statuses
            # bursts of one second's worth: 5 (GCRA admits the one due now on top)
            assert 5 <= ok <= 6 + refill, statuses
            assert statuses[:5] == [202] * 5, statuses
            # every accepted publish reached the subscriber, no refused one did
            got = []
            while len(got) < ok:
                m = await b.expect(lambda m: m.get("op") == "msg" and
                                   isinstance(m.get("data"), dict) and "http" in m["data"])
                got.append(m["data"]["http"])
            assert got == [i for i, s in enumerate(statuses) if s == 202], (got, statuses)
            assert await wait_metric(n, "wsfan_publish_limited_total", 20 - ok) == 20 - ok
            await asyncio.sleep(0.5)  # the rate refills
            r = await http_request(n.port, "POST", f"/publish/{CALM}", auth, b'"again"')
            assert r.status == 202, r
            await b.served_since(mark)
    run(main())


# --------------------------------------------------------------------------- limits


def test_message_rate_flood_gets_rate_limited_then_closed_1008(node):
    rate = 50
    n = node("--max-msg-rate", str(rate))

    async def main():
        async with Bystander(n, interval=0.05) as b:  # 20 messages a second: under the rate
            mark = b.rounds
            # a short burst over the rate: some are refused, the connection stays
            c, _ = await upgrade(n.port, "/ws", src="127.0.0.7")
            assert (await raw_json(c))["op"] == "hello"
            frames = b"".join(build_frame(OP_TEXT, json.dumps(
                {"op": "pub", "ch": "burst", "id": i, "data": i})) for i in range(2 * rate + 20))
            await c.send(frames)
            acks = errs = 0
            while acks + errs < 2 * rate + 20:
                m = await raw_json(c)
                if m["op"] == "ack":
                    acks += 1
                else:
                    assert m["op"] == "err" and m["code"] == "rate_limited", m
                    assert "id" not in m or m["id"] in (None, ""), m
                    errs += 1
            assert 2 * rate <= acks <= 2 * rate + 10, (acks, errs)
            assert errs >= 10, (acks, errs)
            await asyncio.sleep(0.5)  # backing off: served again
            await c.send(build_frame(OP_TEXT, '{"op":"pub","ch":"burst","id":"later","data":0}'))
            assert (await raw_json(c)) == {"op": "ack", "id": "later", "seq": acks + 1}

            # a flood: err rate_limited per dropped message, then close 1008
            f, _ = await upgrade(n.port, "/ws", src="127.0.0.8")
            assert (await raw_json(f))["op"] == "hello"
            total = 8 * rate
            await f.send(b"".join(build_frame(OP_TEXT, json.dumps(
                {"op": "pub", "ch": "flood", "id": i, "data": i})) for i in range(total)))
            acks = errs = 0
            while True:
                fr = await f.recv_frame()
                if fr.opcode == OP_CLOSE:
                    break
                m = json.loads(fr.payload)
                if m["op"] == "ack":
                    acks += 1
                else:
                    assert m["code"] == "rate_limited", m
                    errs += 1
            assert fr.close_code == 1008, fr
            await f.send_frame(OP_CLOSE, close_payload(1008))
            assert 2 * rate <= acks <= 2 * rate + 10, (acks, errs)
            # refusals have a budget of the rate's worth in a burst: the flood is closed after
            # about that many (a few more if time moved on meanwhile)
            assert 0.9 * rate <= errs <= 2 * rate, (acks, errs)
            await f.wait_eof()
            await f.aclose()
            await b.served_since(mark)
            await wait_metric(n, "wsfan_abuse_closes_total", 1)
            m = await metrics(n)
            assert m["wsfan_abuse_closes_total"] == 1, m
            assert m["wsfan_rate_limited_total"] >= errs + 15, m
            await c.aclose()
    run(main())
    log_has(n, "keeps sending over --max-msg-rate: closing 1008")


def test_too_many_connections_from_one_address(node):
    n = node("--echo", "--max-conns-per-ip", "5", "--limit-loopback")
    src = "127.0.0.9"

    async def main():
        async with Bystander(n, "/echo") as b:
            mark = b.rounds
            held = [(await upgrade(n.port, "/echo", src=src))[0] for _ in range(5)]
            resp = await refused(n.port, "/echo", src=src)
            assert resp.status == 429, resp
            assert resp.header("retry-after") == "1", resp
            # the refused address gets nothing more, not even HTTP
            r = await http_request(n.port, "GET", "/healthz", src=src)
            assert r.status == 429, r
            # its five connections, and everyone else, are still served
            for c in held:
                await c.echo_ok("held")
            other, _ = await upgrade(n.port, "/echo", src="127.0.0.10")
            await other.echo_ok()
            await b.served_since(mark)
            # one closes: room for one more
            await held.pop().aclose()
            deadline = time.monotonic() + STEP
            while True:
                c, resp = await upgrade(n.port, "/echo", src=src, expect=None)
                if resp.status == 101:
                    break
                await c.aclose()
                assert time.monotonic() < deadline, "the closed connection was not released"
                await asyncio.sleep(0.05)
            held.append(c)
            await c.echo_ok()
            assert (await refused(n.port, "/echo", src=src)).status == 429
            assert await wait_metric(n, "wsfan_ip_refused_total", 3) >= 3
            for c in held + [other]:
                await c.aclose()
    run(main())
    log_has(n, "refusing a connection (429): too many connections from this address")


def test_connect_rate_per_address(node):
    n = node("--echo", "--ip-connect-rate", "2", "--limit-loopback")
    src = "127.0.0.11"

    async def main():
        async with Bystander(n, "/echo") as b:
            mark = b.rounds
            statuses = []
            t0 = time.monotonic()
            for _ in range(30):
                c, resp = await upgrade(n.port, "/echo", src=src, expect=None)
                statuses.append(resp.status)
                await c.aclose()
            refill = int((time.monotonic() - t0) * 2)  # what 2/s gave back meanwhile
            ok = statuses.count(101)
            # bursts of ten seconds' worth: 20 (GCRA admits the one due now on top)
            assert 20 <= ok <= 21 + refill, statuses
            assert statuses[:20] == [101] * 20, statuses
            assert set(statuses[20:]) <= {101, 429} and statuses[-1] == 429, statuses
            # another address connects as usual meanwhile
            fresh, _ = await upgrade(n.port, "/echo", src="127.0.0.12")
            await fresh.echo_ok()
            await fresh.aclose()
            await b.served_since(mark)
            assert await wait_metric(n, "wsfan_ip_refused_total", 30 - ok) == 30 - ok
    run(main())
    log_has(n, "refusing a connection (429): connecting too fast")


def test_loopback_is_not_limited_without_limit_loopback(node):
    n = node("--echo", "--max-conns-per-ip", "2", "--ip-connect-rate", "1")

    async def main():
        async with Bystander(n, "/echo") as b:
            held = []
            for i in range(12):
                c, _ = await upgrade(n.port, "/echo", src="127.0.0.13")  # expects 101
                held.append(c)
            for c in held:
                await c.echo_ok()
                await c.aclose()
            await b.served_since(b.rounds)
            assert (await metrics(n))["wsfan_ip_refused_total"] == 0
    run(main())


def test_max_connections_is_503_at_accept(node):
    n = node("--echo", "--max-connections", "4")

    async def main():
        async with Bystander(n, "/echo") as b:
            held = [(await upgrade(n.port, "/echo"))[0] for _ in range(3)]
            for _ in range(3):
                resp = await refused(n.port, "/echo")
                assert resp.status == 503, resp
                assert resp.header("retry-after") == "1", resp
            for c in held:
                await c.echo_ok()
            await b.served_since(b.rounds)
            for c in held:
                await c.aclose()
            deadline = time.monotonic() + STEP
            while (await http_request(n.port, "GET", "/healthz")).status != 200:
                assert time.monotonic() < deadline, "closed connections were not released"
                await asyncio.sleep(0.05)
            m = await metrics(n)
            assert m["wsfan_connections_rejected_total"] >= 3, m
            # room again
            c, _ = await upgrade(n.port, "/echo")
            await c.echo_ok()
            await c.aclose()
    run(main())
    log_has(n, "connection limit 4 reached: refusing a connection (503)")


def test_foreign_origin_is_403(node):
    n = node("--origin", "https://app.example", "--origin", "https://admin.example")

    async def main():
        async with Bystander(n) as b:
            for origin in ("https://evil.example", "null", "https://app.example.evil.example",
                           "http://app.example"):
                resp = await refused(n.port, "/ws", origin=origin)
                assert resp.status == 403, (origin, resp)
            for origin in ("https://app.example", "HTTPS://ADMIN.EXAMPLE", None):
                c, _ = await upgrade(n.port, "/ws", origin=origin)
                assert (await raw_json(c))["op"] == "hello"
                await c.aclose()
            await b.served_since(b.rounds)
    run(main())


def test_oversized_request_head_is_431(node):
    n = node("--max-header-size", "1k")

    async def main():
        async with Bystander(n) as b:
            resp = await refused(n.port, "/ws", headers=[("X-Padding", "a" * 2000)])
            assert resp.status == 431, resp
            resp = await refused(n.port, "/ws?token=" + "t" * 1500)
            assert resp.status == 431, resp
            c, _ = await upgrade(n.port, "/ws", headers=[("X-Padding", "a" * 500)])
            await c.aclose()
            await b.served_since(b.rounds)
            assert await wait_metric(n, "wsfan_too_large_heads_total", 2) == 2
    run(main())


def test_oversized_message_is_closed_1009_and_large_data_refused(node):
    n = node("--max-message", "1k", "--max-data", "200")

    async def main():
        async with Bystander(n) as b:
            c, _ = await upgrade(n.port, "/ws")
            assert (await raw_json(c))["op"] == "hello"
            data = json.dumps("x" * 300)
            await c.send_text(f'{{"op":"pub","ch":"big","id":1,"data":{data}}}')
            r = await raw_json(c)
            assert r["op"] == "err" and r["code"] == "too_large" and r["id"] == 1, r
            await c.send_text(json.dumps({"op": "pub", "ch": "big", "id": 2, "data": "x" * 2000}))
            f = await c.expect_close()
            assert f.close_code == 1009, f
            await c.send_frame(OP_CLOSE, close_payload(1009))
            await c.wait_eof()
            await c.aclose()
            # fragments count together
            c2, _ = await upgrade(n.port, "/ws")
            await raw_json(c2)
            await c2.send_frame(OP_TEXT, b'{"op":"pub","ch":"big","data":"' + b"y" * 600, fin=False)
            await c2.send_frame(0, b"y" * 600 + b'"}')
            f = await c2.expect_close()
            assert f.close_code == 1009, f
            await c2.send_frame(OP_CLOSE, close_payload(1009))
            await c2.wait_eof()
            await c2.aclose()
            await b.served_since(b.rounds)
            assert await wait_metric(n, "wsfan_too_large_messages_total", 2) == 2
            assert (await metrics(n))["wsfan_too_large_data_total"] == 1
    run(main())


def test_too_many_subscriptions(node):
    n = node("--max-subs", "3")

    async def main():
        async with Bystander(n) as b:  # one subscription of its own
            c = await Client.open(n)
            for i in range(3):
                assert (await c.request({"op": "sub", "ch": f"s.{i}", "id": i}))["op"] == "ack"
            r = await c.request({"op": "sub", "ch": "s.3", "id": 3})
            assert r["op"] == "err" and r["code"] == "too_many_subscriptions", r
            # subscribing again to one it has is not a new subscription
            assert (await c.request({"op": "sub", "ch": "s.0", "id": 4}))["op"] == "ack"
            assert (await c.request({"op": "unsub", "ch": "s.0", "id": 5}))["op"] == "ack"
            assert (await c.request({"op": "sub", "ch": "s.3", "id": 6}))["op"] == "ack"
            # still served for what it has
            r = await c.request({"op": "pub", "ch": "s.3", "id": 7, "data": 7})
            assert r["op"] == "ack", r
            m = await c.until(lambda m: m.get("op") == "msg")
            assert m["ch"] == "s.3", m
            await c.close()
            await b.served_since(b.rounds)
            assert await wait_metric(n, "wsfan_too_many_subscriptions_total", 1) == 1
    run(main())


def test_client_tokens_cannot_use_up_the_backends_publish_budget(node):
    n = hs_node(node, "--publish-key", "k", "--publish-rate", "5")
    user = [("Authorization", "Bearer " + jwt_hs(claims("mallory")))]
    backend = [("Authorization", "Bearer k")]

    async def main():
        statuses = [(await http_request(n.port, "POST", "/publish/news", user, b"1")).status
                    for _ in range(12)]
        assert 429 in statuses and statuses[:5] == [202] * 5, statuses
        # the publish key has its own budget, untouched by the tokens
        for _ in range(5):
            assert (await http_request(n.port, "POST", "/publish/news", backend, b"2")).status == 202
    run(main())


def test_jwt_flags_without_auth_are_refused(tmp_path):
    from conftest import WSNODE
    for args in (["--jwt-secret", "x"], ["--anonymous-sub", "a.*"], ["--jwt-public-key", "k.pem"]):
        out = subprocess.run([WSNODE, *args], capture_output=True, text=True, timeout=10)
        assert out.returncode == 2 and "--auth" in out.stderr, (args, out.stderr)


def test_a_client_still_closing_when_the_worker_exits(node, redis):
    """--auth optional with Redis: an anonymous client ignores the drain's close 1001 and hangs
    up while the worker sends its last presence leaves. The worker must not touch what it
    has already freed (the sanitizer builds check the log at teardown)."""
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--auth", "optional",
             "--jwt-secret", "x", "--anonymous-sub", "*", "--drain-timeout", "0.3",
             "--close-timeout", "5")

    async def main():
        c, _ = await upgrade(n.port, "/ws")
        assert (await raw_json(c))["op"] == "hello"
        await c.send(build_frame(OP_TEXT, '{"op":"sub","ch":"x","id":1}'))
        assert (await raw_json(c))["op"] == "ack"
        n.signal(signal.SIGTERM)
        n.expect_exit = True
        await asyncio.sleep(0.4)  # after the drain timeout, inside the last 0.2 s for Redis
        c.close()
        assert await asyncio.get_running_loop().run_in_executor(None, n.wait_exit, 10) == 0
    run(main())
