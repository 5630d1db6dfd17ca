"""The close handshake started by the client (RFC 6455 5.5.1, 7.4)."""

import pytest
import websockets

from conftest import (OP_CLOSE, OP_TEXT, Raw, build_frame, close_payload, connect, recv, run,
                      still_serves_echo)


async def close_and_expect(node, sent_payload, path="/echo", before=b""):
    """Sends `before` + a close frame; returns the server's close frame after checking that
    no data frame preceded it and that the server then ends the TCP connection."""
    c = await Raw.handshake(node.port, path)
    if path == "/ws":
        assert (await c.recv_json())["op"] == "hello"
    await c.send(before + build_frame(OP_CLOSE, sent_payload))
    f = await c.recv_frame()
    assert f.opcode == OP_CLOSE, f"expected the close reply first, got {f}"
    assert f.fin and not f.masked
    await c.wait_eof(5)
    await c.aclose()
    return f


@pytest.mark.parametrize("code", [1000, 3000, 4999])
def test_close_code_is_echoed(node, code):
    n = node("--echo")
    f = run(close_and_expect(n, close_payload(code, "bye")))
    assert f.close_code == code


def test_empty_close_is_answered_with_1000(node):
    n = node("--echo")
    f = run(close_and_expect(n, b""))
    assert f.close_code == 1000


def test_close_with_utf8_reason(node):
    n = node("--echo")
    f = run(close_and_expect(n, close_payload(1000, "adi\u00f3s \u2713")))
    assert f.close_code == 1000


def test_close_with_longest_reason(node):
    n = node("--echo")
    f = run(close_and_expect(n, close_payload(1000, "r" * 123)))
    assert f.close_code == 1000


def test_close_in_the_middle_of_a_fragmented_message(node):
    n = node("--echo")
    f = run(close_and_expect(n, close_payload(1000),
                             before=build_frame(OP_TEXT, b"partial", fin=False)))
    assert f.close_code == 1000


def test_data_after_close_is_not_echoed(node):
    """After the client's close frame nothing it sends is processed: the close reply is the
    first frame the server sends."""
    n = node("--echo")

    async def main():
        c = await Raw.handshake(n.port, "/echo")
        await c.send(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, b"late"))
        f = await c.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1000, f
        await c.wait_eof(5)
        await c.aclose()
        await still_serves_echo(n)

    run(main())


def test_close_on_ws_endpoint(node):
    n = node()
    f = run(close_and_expect(n, close_payload(1000), path="/ws"))
    assert f.close_code == 1000


def test_websockets_client_close_is_clean(node):
    n = node("--echo")

    async def main():
        ws = await connect(n)
        await ws.send("x")
        assert await recv(ws) == "x"
        await ws.close(code=1000, reason="done")
        assert ws.close_code == 1000
        with pytest.raises(websockets.ConnectionClosedOK):
            await ws.recv()

    run(main())


def test_abrupt_tcp_close_does_not_hurt_the_server(node):
    """A client that vanishes without a close frame (mid-message even) is cleaned up."""
    n = node("--echo")

    async def main():
        for _ in range(20):
            c = await Raw.handshake(n.port, "/echo")
            await c.send(build_frame(OP_TEXT, b"x" * 1000)[:500])
            await c.aclose()
        await still_serves_echo(n)

    run(main())
