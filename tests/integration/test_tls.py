"""wss:// with a certificate generated at test time."""

import asyncio
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import warnings

from conftest import (sub_ack, OP_BINARY, OP_CONT, OP_TEXT, STEP, Raw, build_frame, client_ssl_context,
                      connect, http_get, recv, run, still_serves_echo, tcp_accepts)


def tls_node(node, tls_cert, *extra):
    cert, key = tls_cert
    return node("--echo", "--tls-cert", cert, "--tls-key", key, *extra)


def test_wss_echo_text_and_binary(node, tls_cert):
    n = tls_node(node, tls_cert)
    ctx = client_ssl_context(tls_cert[0])  # verifies the chain against the generated cert

    async def main():
        async with connect(n, "/echo", ssl=ctx) as ws:
            for msg in ["hello over tls", "", "\u00e9\u20ac" * 1000, os.urandom(1 << 20),
                        "t" * (1 << 20), b"", os.urandom(70000)]:
                await ws.send(msg)
                assert await recv(ws, 15) == msg

    run(main())


def test_wss_fragmented_and_ping(node, tls_cert):
    n = tls_node(node, tls_cert)

    async def main():
        async with connect(n, "/echo") as ws:
            await ws.send([b"a" * 20000, b"b" * 20000, b"c"])
            assert await recv(ws) == b"a" * 20000 + b"b" * 20000 + b"c"
            waiter = await ws.ping(b"tls-ping")
            await asyncio.wait_for(waiter, STEP)

    run(main())


def test_wss_pubsub(node, tls_cert):
    n = tls_node(node, tls_cert)

    async def main():
        async with connect(n, "/ws", subprotocols=["ws.json.v1"]) as s, \
                connect(n, "/ws", subprotocols=["ws.json.v1"]) as p:
            assert s.subprotocol == "ws.json.v1"
            for ws in (s, p):
                assert json.loads(await recv(ws))["op"] == "hello"
            await s.send('{"op":"sub","ch":"secure.room","id":1}')
            assert sub_ack(json.loads(await recv(s))) == {"op": "ack", "id": 1}
            await p.send('{"op":"pub","ch":"secure.room","id":2,"data":{"x": [1, 2]}}')
            ack = json.loads(await recv(p))
            assert ack["op"] == "ack" and ack["id"] == 2
            text = await recv(s)
            assert '{"x": [1, 2]}' in text
            m = json.loads(text)
            assert m == {"op": "msg", "ch": "secure.room", "seq": ack["seq"], "data": {"x": [1, 2]}}

    run(main())


def test_wss_frames_in_the_same_record_as_the_request_head(node, tls_cert):
    """Frames that arrive in the same TLS read as the request head are already decrypted
    inside the TLS library: they must be processed without waiting for more input."""
    n = tls_node(node, tls_cert)

    async def main():
        frames = build_frame(OP_TEXT, b"early one") + build_frame(OP_BINARY, b"early two")
        c = await Raw.handshake(n.port, "/echo", extra=frames, ssl_ctx=client_ssl_context())
        assert await c.recv_message() == (OP_TEXT, b"early one")
        assert await c.recv_message() == (OP_BINARY, b"early two")
        await c.aclose()

    run(main())


def test_wss_many_small_frames_in_one_write(node, tls_cert):
    n = tls_node(node, tls_cert)

    async def main():
        c = await Raw.handshake(n.port, "/echo", ssl_ctx=client_ssl_context())
        texts = [f"tls-{i}".encode() for i in range(300)]
        await c.send(b"".join(build_frame(OP_TEXT, t) for t in texts))
        for t in texts:
            assert await c.recv_message() == (OP_TEXT, t)
        await c.aclose()

    run(main())


def test_https_healthz(node, tls_cert):
    n = tls_node(node, tls_cert)
    resp = run(http_get(n.port, "/healthz", ssl_ctx=client_ssl_context()))
    assert resp.status == 200


def test_plain_http_to_tls_port_does_not_crash(node, tls_cert):
    n = tls_node(node, tls_cert, "--handshake-timeout", "2")

    async def main():
        for payload in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n",
                        b"\x16\x03\x01\x00\x05hello",  # a truncated, bogus ClientHello
                        os.urandom(4096)):
            c = await Raw.open(n.port)
            await c.send(payload)
            data = await c.wait_eof(2 + 4)  # the server must give up on it ...
            assert data < 100000, data
            await c.aclose()
        # ... and keep serving TLS clients, with the same workers.
        async with connect(n, "/echo") as ws:
            await ws.send("after plaintext")
            assert await recv(ws) == "after plaintext"
        assert n.workers() == n.initial_workers, "a worker died"

    run(main())


def test_tls_client_that_never_handshakes_is_dropped(node, tls_cert):
    """A TCP client that opens the TLS port and says nothing is closed by the handshake
    timeout and does not block others."""
    n = tls_node(node, tls_cert, "--handshake-timeout", "1")

    async def main():
        idle = await Raw.open(n.port)
        async with connect(n, "/echo") as ws:
            await ws.send("meanwhile")
            assert await recv(ws) == "meanwhile"
        await idle.wait_eof(1 + 4)
        await idle.aclose()

    run(main())
    assert tcp_accepts(n.port)


# ---- protocol versions and ciphers -----------------------------------------------------------

TLS12_ALLOWED = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
                 "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
                 "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"}


def limited_client(max_version, ciphers=None):
    """A client that offers at most max_version (and, for TLS 1.2 and older, only `ciphers`).
    @SECLEVEL=0 so that the client itself is willing to offer old versions and weak suites:
    a refusal then comes from the server."""
    ctx = client_ssl_context()
    ctx.set_ciphers((ciphers or "DEFAULT") + ":@SECLEVEL=0")
    with warnings.catch_warnings():  # TLSv1 and TLSv1_1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = max_version
    return ctx


async def tls_refused(port, ctx):
    """Asserts the TLS handshake fails; returns the client's error text."""
    try:
        c = await Raw.open(port, ctx)
    except (ssl.SSLError, ConnectionResetError) as e:
        return str(e)
    await c.aclose()
    raise AssertionError(f"TLS handshake succeeded: {c.writer.get_extra_info('ssl_object').version()}")


def test_tls_versions_12_and_13_only(node, tls_cert):
    n = tls_node(node, tls_cert)

    async def main():
        c = await Raw.handshake(n.port, "/echo", ssl_ctx=client_ssl_context())
        assert c.writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        await c.echo_ok()
        await c.aclose()

        c = await Raw.handshake(n.port, "/echo", ssl_ctx=limited_client(ssl.TLSVersion.TLSv1_2))
        so = c.writer.get_extra_info("ssl_object")
        assert so.version() == "TLSv1.2"
        assert so.cipher()[0] in TLS12_ALLOWED, so.cipher()
        await c.echo_ok()
        await c.aclose()

        for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
            err = await tls_refused(n.port, limited_client(old))
            # the server's protocol_version alert: the client did offer the old version
            assert "PROTOCOL_VERSION" in err.upper(), err
        await still_serves_tls(n)

    run(main())


def test_tls12_weak_or_non_ecdhe_ciphers_are_refused(node, tls_cert):
    n = tls_node(node, tls_cert)

    async def main():
        # RSA key exchange (no forward secrecy), CBC with SHA-1 MACs, and ECDHE with CBC
        for weak in ("AES128-SHA", "AES256-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA",
                     "ECDHE-RSA-AES256-SHA384", "DHE-RSA-AES128-GCM-SHA256"):
            err = await tls_refused(n.port, limited_client(ssl.TLSVersion.TLSv1_2, weak))
            assert "HANDSHAKE_FAILURE" in err.upper(), (weak, err)  # no shared cipher
        await still_serves_tls(n)
        assert n.workers() == n.initial_workers

    run(main())


async def still_serves_tls(n):
    c = await Raw.handshake(n.port, "/echo", ssl_ctx=client_ssl_context())
    await c.echo_ok("still serving")
    await c.aclose()


# ---- certificate reload on SIGHUP ------------------------------------------------------------


def make_cert(path_dir, name, key_type="rsa"):
    """A fresh self-signed certificate for CN=localhost; returns (cert_path, key_path)."""
    os.makedirs(path_dir, exist_ok=True)
    cert, key = os.path.join(path_dir, f"{name}.crt"), os.path.join(path_dir, f"{name}.key")
    newkey = ["-newkey", "rsa:2048"] if key_type == "rsa" else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-days", "1",
                    "-subj", f"/CN=localhost/O={name}", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def fingerprint_of_file(cert):
    with open(cert) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def peer_fingerprint(c):
    return hashlib.sha256(c.writer.get_extra_info("ssl_object").getpeercert(True)).hexdigest()


def install(src, dst):
    """Replaces dst with a copy of src atomically (rename), as a certificate manager would."""
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def wait_log(n, text, count, timeout=STEP):
    """Until the node's log holds `count` lines containing text."""
    deadline = time.monotonic() + timeout
    while True:
        found = n.log(tail=100000).count(text)
        if found >= count:
            assert found == count, f"{found} times {text!r}, expected {count}:\n{n.log()}"
            return
        assert time.monotonic() < deadline, f"{text!r} not logged {count} times:\n{n.log()}"
        time.sleep(0.05)


async def fingerprints_of_new_connections(n, k):
    out = set()
    for _ in range(k):
        c = await Raw.handshake(n.port, "/echo", ssl_ctx=client_ssl_context())
        out.add(peer_fingerprint(c))
        await c.echo_ok("new")
        await c.aclose()
    return out


def test_sighup_reloads_the_certificate_without_dropping_connections(node, tmp_path):
    live = str(tmp_path / "live")
    a = make_cert(str(tmp_path / "gen"), "a")
    b = make_cert(str(tmp_path / "gen"), "b", key_type="ec")  # another key type as well
    c = make_cert(str(tmp_path / "gen"), "c")
    os.makedirs(live)
    cert, key = os.path.join(live, "cert.pem"), os.path.join(live, "key.pem")
    install(a[0], cert)
    install(a[1], key)
    n = node("--echo", "--tls-cert", cert, "--tls-key", key)
    fa, fb, fc = (fingerprint_of_file(x[0]) for x in (a, b, c))

    async def main():
        old = await Raw.handshake(n.port, "/echo", ssl_ctx=client_ssl_context())
        assert peer_fingerprint(old) == fa
        await old.echo_ok("before")
        # a client in the middle of a fragmented message keeps its partial message too
        await old.send_frame(OP_TEXT, b"split ", fin=False)

        install(b[1], key)
        install(b[0], cert)
        n.signal(signal.SIGHUP)
        wait_log(n, "TLS: certificate reloaded", 1)
        assert await fingerprints_of_new_connections(n, 3) == {fb}

        await old.send_frame(OP_CONT, b"across the reload", fin=True)
        assert await old.recv_message() == (OP_TEXT, b"split across the reload")
        await old.echo_ok("after")
        assert peer_fingerprint(old) == fa  # still the session it began with

        # Broken files: garbage for a certificate, then a certificate with the wrong key. The
        # old context (b) stays, and so does every connection.
        with open(cert + ".tmp", "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        os.replace(cert + ".tmp", cert)
        n.signal(signal.SIGHUP)
        wait_log(n, "TLS: reload failed", 1)
        assert await fingerprints_of_new_connections(n, 2) == {fb}
        install(c[0], cert)  # key.pem is still b's key
        n.signal(signal.SIGHUP)
        wait_log(n, "TLS: reload failed", 2)
        assert "key does not match" in n.log()
        assert await fingerprints_of_new_connections(n, 2) == {fb}
        os.unlink(key)  # missing file
        n.signal(signal.SIGHUP)
        wait_log(n, "TLS: reload failed", 3)
        assert await fingerprints_of_new_connections(n, 2) == {fb}
        await old.echo_ok("after the failed reloads")

        # Fixed files: the next SIGHUP takes them.
        install(c[1], key)
        n.signal(signal.SIGHUP)
        wait_log(n, "TLS: certificate reloaded", 2)
        assert await fingerprints_of_new_connections(n, 2) == {fc}
        await old.echo_ok("still the first connection")
        await old.aclose()

    run(main())
    assert n.workers() == n.initial_workers, "a worker died"
    assert "SIGHUP: reloading the TLS certificate, forwarded to 1 worker" in n.log(tail=100000)


def test_sighup_reloads_every_worker(node, redis, tmp_path):
    """With several workers, the master forwards SIGHUP to each: wherever the kernel sends a
    new connection, it gets the new certificate, and connections to every worker survive."""
    gen = str(tmp_path / "gen")
    a, b = make_cert(gen, "a"), make_cert(gen, "b")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    install(a[0], cert)
    install(a[1], key)
    n = node("--echo", "--tls-cert", cert, "--tls-key", key, "--redis", f"127.0.0.1:{redis.port}",
             "--workers", "3")
    assert len(n.initial_workers) == 3

    async def main():
        old = [await Raw.handshake(n.port, "/echo", ssl_ctx=client_ssl_context())
               for _ in range(12)]
        install(b[1], key)
        install(b[0], cert)
        n.signal(signal.SIGHUP)
        wait_log(n, "TLS: certificate reloaded", 3)
        assert await fingerprints_of_new_connections(n, 12) == {fingerprint_of_file(b[0])}
        for i, c in enumerate(old):
            await c.echo_ok(f"old {i}")
            await c.aclose()

    run(main())
    assert n.workers() == n.initial_workers, "a worker died"


def test_sighup_without_tls_is_ignored(node):
    n = node("--echo")

    async def main():
        c = await Raw.handshake(n.port, "/echo")
        n.signal(signal.SIGHUP)
        wait_log(n, "SIGHUP: no TLS certificate to reload; ignored", 1)
        os.kill(n.initial_workers[0], signal.SIGHUP)  # straight to the worker as well
        wait_log(n, "SIGHUP: no TLS certificate to reload; ignored", 2)
        await c.echo_ok()
        await c.aclose()
        await still_serves_echo(n)

    run(main())
    assert n.workers() == n.initial_workers, "a worker died"
    assert "killed by signal" not in n.log(tail=100000)


def test_sighup_storm_while_workers_restart(node, tls_cert):
    """A SIGHUP forwarded to a worker the moment it is forked, before its loop runs, must not
    kill it (SIGHUP's default action). The master's log is rate-limited, so worker deaths are
    seen through the pids, not the log."""
    n = tls_node(node, tls_cert)
    for _ in range(3):
        victim = n.workers()
        assert len(victim) == 1
        os.kill(victim[0], signal.SIGKILL)
        seen = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # the master restarts it at once: hammer meanwhile
            for _ in range(200):
                n.signal(signal.SIGHUP)
            now = [p for p in n.workers() if p != victim[0]]
            seen += [p for p in now if p not in seen]
        assert seen, f"no restarted worker stayed up (killed by SIGHUP?):\n{n.log(40)}"
        time.sleep(0.3)
        assert n.workers() == seen[:1], f"the restarted worker died: pids {seen}, now {n.workers()}"
    run(still_serves_tls(n))
