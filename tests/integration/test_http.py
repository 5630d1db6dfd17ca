"""Plain HTTP on the WebSocket port, and the upgrade checks of RFC 6455 4.2."""

import asyncio

import pytest
import websockets

from conftest import (OP_TEXT, STEP, Raw, build_frame, connect, http_get, raw_exchange,
                      recv, run, still_serves_echo, upgrade_request, ws_accept, ws_key)


def status_of(node, request):
    return run(raw_exchange(node.port, request)).status


def test_healthz(node):
    n = node()
    resp = run(http_get(n.port, "/healthz"))
    assert resp.status == 200


@pytest.mark.parametrize("version,expected", [
    ("HTTP/1.1", 200), ("HTTP/1.0", 200), ("HTTP/1.2", 200),  # 1.x is read as 1.1 (RFC 9112 2.3)
    ("HTTP/2.0", 505), ("HTTP/3.0", 505), ("HTTP/0.9", 505)])  # RFC 9110 15.6.6
def test_request_line_version(node, version, expected):
    n = node()
    assert status_of(n, f"GET /healthz {version}\r\nHost: x\r\n\r\n".encode()) == expected
    run(still_serves_echo_or_health(n))


async def still_serves_echo_or_health(n):
    assert (await http_get(n.port, "/healthz")).status == 200


def test_unknown_path_is_404(node):
    n = node("--echo")
    assert run(http_get(n.port, "/no/such/thing")).status == 404
    assert status_of(n, upgrade_request("/nope")) == 404


def test_echo_is_404_without_echo_flag(node):
    n = node()
    assert status_of(n, upgrade_request("/echo")) == 404


def test_valid_upgrade_and_accept_value(node):
    n = node("--echo")

    async def main():
        c = await Raw.open(n.port)
        key = "dGhlIHNhbXBsZSBub25jZQ=="  # the RFC 6455 example
        await c.send(upgrade_request("/echo", key=key))
        resp = await c.read_response(body=False)
        assert resp.status == 101
        assert resp.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert resp.header("upgrade").lower() == "websocket"
        assert "upgrade" in resp.header("connection").lower()
        await c.echo_ok()
        await c.aclose()

    run(main())


@pytest.mark.parametrize("path", ["/ws", "/echo"])
@pytest.mark.parametrize("case,request_kw,expected", [
    ("post", dict(method="POST"), 400),
    ("http_1_0", dict(version="HTTP/1.0"), 400),
    ("http_2_0", dict(version="HTTP/2.0"), 505),
    ("http_3_0", dict(version="HTTP/3.0"), 505),
    ("no_host", dict(skip=["Host"]), 400),
    ("no_upgrade", dict(skip=["Upgrade"]), 400),
    ("upgrade_not_websocket", dict(skip=["Upgrade"], extra_headers=[("Upgrade", "h2c")]), 400),
    ("no_connection", dict(skip=["Connection"]), 400),
    ("connection_without_upgrade_token",
     dict(skip=["Connection"], extra_headers=[("Connection", "keep-alive")]), 400),
    ("version_12", dict(skip=["Sec-WebSocket-Version"],
                        extra_headers=[("Sec-WebSocket-Version", "12")]), 426),
    ("version_14", dict(skip=["Sec-WebSocket-Version"],
                        extra_headers=[("Sec-WebSocket-Version", "14")]), 426),
    ("no_key", dict(skip=["Sec-WebSocket-Key"]), 400),
    ("key_not_base64", dict(key="not base64 at all!!"), 400),
    ("key_15_bytes", dict(key="AAAAAAAAAAAAAAAAAAAA"), 400),
    ("key_17_bytes", dict(key="AAAAAAAAAAAAAAAAAAAAAAA="), 400),
])
def test_bad_upgrade_requests(node, path, case, request_kw, expected):
    n = node("--echo")

    async def main():
        resp = await raw_exchange(n.port, upgrade_request(path, **request_kw))
        assert resp.status == expected, f"{case}: got {resp.status} {resp.reason}"
        if expected == 426:
            assert resp.header("sec-websocket-version") == "13", resp.headers
        await still_serves_echo(n)

    run(main())


def test_missing_version_is_rejected(node):
    n = node("--echo")
    status = status_of(n, upgrade_request("/echo", skip=["Sec-WebSocket-Version"]))
    assert status in (400, 426)


@pytest.mark.parametrize("connection", ["keep-alive, Upgrade", "UPGRADE", "upgrade",
                                        "Upgrade,keep-alive", "foo,  upgrade , bar"])
def test_connection_token_list_is_accepted(node, connection):
    n = node("--echo")
    req = upgrade_request("/echo", skip=["Connection"], extra_headers=[("Connection", connection)])
    assert status_of(n, req) == 101


def test_upgrade_value_is_case_insensitive(node):
    n = node("--echo")
    req = upgrade_request("/echo", skip=["Upgrade"], extra_headers=[("Upgrade", "WebSocket")])
    assert status_of(n, req) == 101


def test_origin_allowlist(node):
    n = node("--echo", "--origin", "http://good.example", "--origin", "https://also.example")
    assert status_of(n, upgrade_request("/echo", origin="http://evil.example")) == 403
    assert status_of(n, upgrade_request("/echo", origin="http://good.example.evil")) == 403
    assert status_of(n, upgrade_request("/echo", origin="http://good.example")) == 101
    assert status_of(n, upgrade_request("/echo", origin="https://also.example")) == 101
    assert status_of(n, upgrade_request("/echo")) == 101  # no Origin: allowed


def test_origin_not_checked_without_allowlist(node):
    n = node("--echo")
    assert status_of(n, upgrade_request("/echo", origin="http://anything.example")) == 101


def test_header_too_large_is_431(node):
    n = node("--echo", "--max-header-size", "1k")
    big = upgrade_request("/echo", extra_headers=[("X-Filler", "f" * 2048)])
    assert status_of(n, big) == 431
    small = upgrade_request("/echo", extra_headers=[("X-Filler", "f" * 300)])
    assert status_of(n, small) == 101


def test_too_many_headers_is_431(node):
    n = node("--echo", "--max-headers", "10")
    many = upgrade_request("/echo", extra_headers=[(f"X-H{i}", "v") for i in range(20)])
    assert status_of(n, many) == 431
    few = upgrade_request("/echo", extra_headers=[(f"X-H{i}", "v") for i in range(3)])
    assert status_of(n, few) == 101


def test_default_header_size_limit_is_8k(node):
    n = node("--echo")
    big = upgrade_request("/echo", extra_headers=[("X-Filler", "f" * (9 * 1024))])
    assert status_of(n, big) == 431
    ok = upgrade_request("/echo", extra_headers=[("X-Filler", "f" * (6 * 1024))])
    assert status_of(n, ok) == 101


def raw_protocol_response(node, offered):
    req = upgrade_request("/ws", extra_headers=[("Sec-WebSocket-Protocol", p) for p in offered])
    return run(raw_exchange(node.port, req))


def test_subprotocol_selected_when_offered(node):
    n = node()
    resp = raw_protocol_response(n, ["ws.json.v1"])
    assert resp.status == 101
    assert resp.header("sec-websocket-protocol") == "ws.json.v1"
    resp = raw_protocol_response(n, ["chat, ws.json.v1"])
    assert resp.status == 101 and resp.header("sec-websocket-protocol") == "ws.json.v1"
    resp = raw_protocol_response(n, ["chat", "ws.json.v1"])  # two header lines
    assert resp.status == 101 and resp.header("sec-websocket-protocol") == "ws.json.v1"


def test_unknown_subprotocol_is_never_selected(node):
    n = node()
    resp = raw_protocol_response(n, ["chat, superchat"])
    assert resp.status == 101
    assert "sec-websocket-protocol" not in resp.headers, resp.headers


def test_no_subprotocol_header_when_none_offered(node):
    n = node()
    resp = raw_protocol_response(n, [])
    assert resp.status == 101
    assert "sec-websocket-protocol" not in resp.headers


def test_websockets_client_negotiates_subprotocol(node):
    n = node()

    async def main():
        async with connect(n, "/ws", subprotocols=["ws.json.v1"]) as ws:
            assert ws.subprotocol == "ws.json.v1"

    run(main())


def test_no_extension_is_accepted(node):
    n = node("--echo")

    async def main():
        # websockets offers permessage-deflate by default
        async with connect(n, "/echo", compression="deflate") as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response_headers
            await ws.send("uncompressed " * 100)
            assert await recv(ws) == "uncompressed " * 100
        req = upgrade_request("/echo", extra_headers=[
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits, x-foo")])
        resp = await raw_exchange(n.port, req)
        assert resp.status == 101 and "sec-websocket-extensions" not in resp.headers

    run(main())


def test_frame_in_same_packet_as_request_head(node):
    n = node("--echo")

    async def main():
        frames = build_frame(OP_TEXT, b"early bird") + build_frame(OP_TEXT, b"second")
        c = await Raw.handshake(n.port, "/echo", extra=frames)
        assert await c.recv_message() == (OP_TEXT, b"early bird")
        assert await c.recv_message() == (OP_TEXT, b"second")
        await c.aclose()

    run(main())


def test_request_head_sent_byte_by_byte(node):
    n = node("--echo")

    async def main():
        c = await Raw.open(n.port)
        key = ws_key()
        for b in upgrade_request("/echo", key=key):
            await c.send(bytes([b]))
        resp = await c.read_response(body=False)
        assert resp.status == 101 and resp.header("sec-websocket-accept") == ws_accept(key)
        await c.echo_ok()
        await c.aclose()

    run(main())


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
                                     b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"\x00" * 64
                                     + b"\r\n\r\n", b"\r\n\r\n"])
def test_garbage_request_does_not_hurt(node, garbage):
    """An error response, or the connection closed (at the latest by the handshake timeout
    when the garbage never ends a head); the server keeps serving."""
    n = node("--echo", "--handshake-timeout", "1")

    async def main():
        c = await Raw.open(n.port)
        await c.send(garbage)
        try:
            resp = await c.read_response()
            assert resp.status >= 400
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass  # closing without a response is fine too
        await c.aclose()
        await still_serves_echo(n)
        assert (await http_get(n.port, "/healthz")).status == 200

    run(main())


def test_max_connections(node):
    n = node("--echo", "--max-connections", "3")

    async def main():
        held = [await connect(n) for _ in range(3)]
        try:
            # A fourth connection is not served while three are open ...
            with pytest.raises((websockets.InvalidHandshake, websockets.ConnectionClosed,
                                OSError, asyncio.TimeoutError)):
                async with connect(n, open_timeout=3) as ws:
                    await ws.send("over the limit")
                    await recv(ws, 3)
            # ... and is again once one of them is gone.
            await held.pop().close()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + STEP
            while True:
                try:
                    async with connect(n, open_timeout=2) as ws:
                        await ws.send("fits again")
                        assert await recv(ws) == "fits again"
                    break
                except (websockets.InvalidHandshake, websockets.ConnectionClosed, OSError,
                        asyncio.TimeoutError):
                    assert loop.time() < deadline, "no connection accepted after one closed"
                    await asyncio.sleep(0.1)
        finally:
            for ws in held:
                await ws.close()

    run(main())


def test_healthz_while_websockets_are_open(node):
    n = node("--echo")

    async def main():
        async with connect(n) as ws:
            assert (await http_get(n.port, "/healthz")).status == 200
            await ws.send("x")
            assert await recv(ws) == "x"

    run(main())

