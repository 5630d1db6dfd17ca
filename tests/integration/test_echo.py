"""/echo: every text and binary message comes back with the same type and bytes."""

import asyncio
import os

import pytest
import websockets

from conftest import (OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, STEP, Raw, build_frame,
                      connect, expect_server_close, recv, run)

SIZES = [0, 125, 126, 127, 65535, 65536, 1 << 20]
MIB = 1 << 20


def ascii_text(size):
    pattern = "The quick brown fox jumps over the lazy dog 0123456789. "
    return (pattern * (size // len(pattern) + 1))[:size]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_echo_sizes(node, kind, size):
    n = node("--echo")

    async def main():
        async with connect(n) as ws:
            msg = ascii_text(size) if kind == "text" else os.urandom(size)
            await ws.send(msg)
            got = await recv(ws, 10)
            assert type(got) is type(msg)
            assert len(got) == len(msg) and got == msg

    run(main())


def test_echo_multibyte_text(node):
    n = node("--echo")

    async def main():
        async with connect(n) as ws:
            for msg in ["é", "h\u00e9llo w\u00f6rld \u20ac \U0001d11e \u4e2d\u6587", "\U0001f600" * 40000]:
                await ws.send(msg)
                assert await recv(ws) == msg

    run(main())


def test_many_messages_in_order_on_one_connection(node):
    n = node("--echo")

    async def main():
        async with connect(n) as ws:
            sent = [f"message {i}" if i % 2 else f"bin {i}".encode() for i in range(500)]
            for m in sent:
                await ws.send(m)
            got = [await recv(ws) for _ in sent]
            assert got == sent

    run(main())


def test_pipelined_frames_in_one_write(node):
    """Many complete frames in one TCP write are all parsed and echoed, in order."""
    n = node("--echo")

    async def main():
        c = await Raw.handshake(n.port, "/echo")
        texts = [f"frame-{i}".encode() for i in range(200)]
        await c.send(b"".join(build_frame(OP_TEXT, t) for t in texts))
        for t in texts:
            assert await c.recv_message() == (OP_TEXT, t)
        await c.aclose()

    run(main())


def test_frame_split_byte_by_byte(node):
    """A frame that arrives one byte per write is reassembled."""
    n = node("--echo")

    async def main():
        c = await Raw.handshake(n.port, "/echo")
        frame = build_frame(OP_BINARY, bytes(range(256)) * 2)
        for i in range(len(frame)):
            await c.send(frame[i:i + 1])
        assert await c.recv_message() == (OP_BINARY, bytes(range(256)) * 2)
        await c.aclose()

    run(main())


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_fragmented_message(node, kind):
    n = node("--echo")

    async def main():
        async with connect(n) as ws:
            if kind == "text":
                parts = ["frag-one ", "", "fr\u00e4g-two ", ascii_text(70000), " end"]
            else:
                parts = [b"\x00\x01", b"", os.urandom(70000), b"\xff"]
            await ws.send(parts)
            got = await recv(ws, 10)
            assert got == parts[0][:0].join(parts)

    run(main())


def test_text_fragment_boundary_inside_code_point(node):
    """UTF-8 validity is a property of the whole message: fragments may split a code point."""
    n = node("--echo")

    async def main():
        c = await Raw.handshake(n.port, "/echo")
        await c.send(build_frame(OP_TEXT, b"a\xe2", fin=False)
                     + build_frame(OP_CONT, b"\x82", fin=False)
                     + build_frame(OP_CONT, b"\xacz\xf0\x9f", fin=False)
                     + build_frame(OP_CONT, b"\x98\x80", fin=True))
        assert await c.recv_message() == (OP_TEXT, "a\u20acz\U0001f600".encode())
        await c.aclose()

    run(main())


def test_ping_between_fragments(node):
    """Control frames may be interleaved with a fragmented message (RFC 6455 5.4)."""
    n = node("--echo")

    async def main():
        c = await Raw.handshake(n.port, "/echo")
        await c.send(build_frame(OP_TEXT, b"hello ", fin=False))
        await c.send(build_frame(OP_PING, b"mid"))
        f = await c.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"mid")
        await c.send(build_frame(OP_CONT, b"world", fin=True))
        assert await c.recv_message() == (OP_TEXT, b"hello world")
        await c.aclose()

    run(main())


@pytest.mark.parametrize("payload", [b"", b"payload-123", bytes(range(125))])
def test_ping_gets_pong_with_same_payload(node, payload):
    n = node("--echo")

    async def main():
        c = await Raw.handshake(n.port, "/echo")
        await c.send(build_frame(OP_PING, payload))
        f = await c.recv_frame()
        assert f.opcode == OP_PONG and f.fin and not f.masked
        assert f.payload == payload
        await c.aclose()

    run(main())


def test_websockets_ping_pong(node):
    n = node("--echo")

    async def main():
        async with connect(n) as ws:
            waiter = await ws.ping(b"abc\x00\xff")
            await asyncio.wait_for(waiter, STEP)
            await ws.send("after ping")
            assert await recv(ws) == "after ping"

    run(main())


def test_unsolicited_pong_is_ignored(node):
    n = node("--echo")

    async def main():
        c = await Raw.handshake(n.port, "/echo")
        await c.send(build_frame(OP_PONG, b"unsolicited"))
        await c.echo_ok("still fine")
        await c.aclose()

    run(main())


def test_16_mib_binary(node):
    n = node("--echo")

    async def main():
        async with connect(n) as ws:
            msg = os.urandom(16 * MIB)
            await ws.send(msg)
            assert await recv(ws, 30) == msg

    run(main(), timeout=90)


def test_16_mib_text_in_many_fragments(node):
    n = node("--echo")

    async def main():
        async with connect(n) as ws:
            chunk = ascii_text(64 * 1024)
            await ws.send([chunk] * 256)
            got = await recv(ws, 30)
            assert len(got) == 16 * MIB and got == chunk * 256

    run(main(), timeout=90)


def test_echo_max_message_limit(node):
    n = node("--echo", "--echo-max-message", "64k")

    async def main():
        async with connect(n) as ws:
            exact = os.urandom(64 * 1024)
            await ws.send(exact)
            assert await recv(ws) == exact
            await ws.send(os.urandom(64 * 1024 + 1))
            rcvd = await expect_server_close(ws)
            assert rcvd is not None, "connection ended without a close frame"
            assert rcvd.code == 1009

    run(main())


def test_echo_max_message_limit_fragmented(node):
    n = node("--echo", "--echo-max-message", "64k")

    async def main():
        async with connect(n) as ws:
            try:
                await ws.send([b"x" * 40000, b"y" * 40000])
            except websockets.ConnectionClosed:
                pass  # the server may fail the connection while the fragments are written
            rcvd = await expect_server_close(ws)
            assert rcvd is not None and rcvd.code == 1009

    run(main())


def test_echo_not_served_without_flag(node):
    n = node()

    async def main():
        with pytest.raises(websockets.InvalidStatusCode) as e:
            async with connect(n):
                pass
        assert e.value.status_code == 404

    run(main())
