"""wss:// with a certificate generated at test time."""

import asyncio
import json
import os

from conftest import (OP_BINARY, OP_TEXT, STEP, Raw, build_frame, client_ssl_context, connect,
                      http_get, recv, run, tcp_accepts)


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
            assert json.loads(await recv(s)) == {"op": "ack", "id": 1}
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
