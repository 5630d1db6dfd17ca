"""RFC 6455 violations by the client: the server fails the connection with the right close
code, ends the TCP connection, and keeps serving everyone else."""

import pytest

from conftest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Raw,
                      build_frame, close_payload, run, still_serves_echo)

CLOSE_TIMEOUT = 1  # passed as --close-timeout; the TCP end is awaited a bit longer


def frames(*parts):
    return b"".join(parts)


# name -> (bytes sent after a valid handshake to /echo, expected close code)
CASES = {
    "unmasked_text": (build_frame(OP_TEXT, b"hi", mask=False), 1002),
    "unmasked_ping": (build_frame(OP_PING, b"hi", mask=False), 1002),
    "rsv1": (build_frame(OP_TEXT, b"hi", rsv=4), 1002),
    "rsv2": (build_frame(OP_TEXT, b"hi", rsv=2), 1002),
    "rsv3": (build_frame(OP_BINARY, b"hi", rsv=1), 1002),
    "rsv1_on_ping": (build_frame(OP_PING, b"hi", rsv=4), 1002),
    "opcode_3": (build_frame(0x3, b"x"), 1002),
    "opcode_7": (build_frame(0x7, b"x"), 1002),
    "opcode_0xb": (build_frame(0xB, b"x"), 1002),
    "opcode_0xf": (build_frame(0xF, b""), 1002),
    "ping_126_bytes": (build_frame(OP_PING, b"p" * 126), 1002),
    "pong_126_bytes": (build_frame(OP_PONG, b"p" * 126), 1002),
    "close_126_bytes": (build_frame(OP_CLOSE, close_payload(1000, b"r" * 124)), 1002),
    "fragmented_ping": (build_frame(OP_PING, b"x", fin=False), 1002),
    "fragmented_close": (build_frame(OP_CLOSE, close_payload(1000), fin=False), 1002),
    "continuation_without_start": (build_frame(OP_CONT, b"x"), 1002),
    "continuation_without_start_nonfinal": (build_frame(OP_CONT, b"x", fin=False), 1002),
    "text_inside_fragmented_text": (
        frames(build_frame(OP_TEXT, b"a", fin=False), build_frame(OP_TEXT, b"b")), 1002),
    "binary_inside_fragmented_text": (
        frames(build_frame(OP_TEXT, b"a", fin=False), build_frame(OP_BINARY, b"b")), 1002),
    "text_inside_fragmented_binary": (
        frames(build_frame(OP_BINARY, b"a", fin=False), build_frame(OP_TEXT, b"b")), 1002),
    "invalid_utf8_ff": (build_frame(OP_TEXT, b"ok \xff"), 1007),
    "invalid_utf8_overlong": (build_frame(OP_TEXT, b"\xc0\xaf"), 1007),
    "invalid_utf8_surrogate": (build_frame(OP_TEXT, b"\xed\xa0\x80"), 1007),
    "invalid_utf8_above_10ffff": (build_frame(OP_TEXT, b"\xf4\x90\x80\x80"), 1007),
    "invalid_utf8_truncated_at_end": (build_frame(OP_TEXT, b"abc\xe2\x82"), 1007),
    "invalid_utf8_truncated_across_fragments": (
        frames(build_frame(OP_TEXT, b"a\xe2", fin=False), build_frame(OP_CONT, b"\x82")), 1007),
    "close_1_byte_payload": (build_frame(OP_CLOSE, b"\x03"), 1002),
    "close_reason_invalid_utf8": (build_frame(OP_CLOSE, close_payload(1000, b"bad \xff")), 1007),
}
for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535):
    CASES[f"close_code_{code}"] = (build_frame(OP_CLOSE, close_payload(code)), 1002)


async def expect_failure(node, data, code, path="/echo"):
    bystander = await Raw.handshake(node.port, "/echo")
    c = await Raw.handshake(node.port, path)
    if path == "/ws":
        hello = await c.recv_json()
        assert hello["op"] == "hello"
    await c.send(data)
    f = await c.expect_close()
    assert f.close_code == code, f"expected close {code}, got {f}"
    await c.wait_eof(CLOSE_TIMEOUT + 4)
    await c.aclose()
    # The misbehaving client affects nobody else: an existing and a new connection both work.
    await bystander.echo_ok("bystander")
    await bystander.aclose()
    await still_serves_echo(node)


@pytest.mark.parametrize("name", list(CASES))
def test_frame_violation(node, name):
    data, code = CASES[name]
    n = node("--echo", "--close-timeout", CLOSE_TIMEOUT)
    run(expect_failure(n, data, code))


def test_invalid_utf8_fails_fast_in_first_fragment(node):
    """The server closes with 1007 on the first fragment, without waiting for the final one."""
    n = node("--echo", "--close-timeout", CLOSE_TIMEOUT)
    run(expect_failure(n, build_frame(OP_TEXT, b"valid start \xff\xfe", fin=False), 1007))


def test_invalid_utf8_fails_fast_in_middle_fragment(node):
    n = node("--echo", "--close-timeout", CLOSE_TIMEOUT)
    data = frames(build_frame(OP_TEXT, b"abc", fin=False),
                  build_frame(OP_CONT, b"\xe2\x28\xa1", fin=False))
    run(expect_failure(n, data, 1007))


def pub_of_size(size):
    """A valid pub request of exactly `size` bytes."""
    head, tail = '{"op":"pub","ch":"room.1","id":1,"data":"', '"}'
    return (head + "x" * (size - len(head) - len(tail)) + tail).encode()


def test_ws_message_over_max_message(node):
    n = node("--echo", "--max-message", "1k", "--close-timeout", CLOSE_TIMEOUT)
    run(expect_failure(n, build_frame(OP_TEXT, pub_of_size(1025)), 1009, path="/ws"))


def test_ws_fragmented_message_over_max_message(node):
    n = node("--echo", "--max-message", "1k", "--close-timeout", CLOSE_TIMEOUT)
    msg = pub_of_size(1500)
    data = frames(build_frame(OP_TEXT, msg[:600], fin=False),
                  build_frame(OP_CONT, msg[600:1200], fin=False),
                  build_frame(OP_CONT, msg[1200:]))
    run(expect_failure(n, data, 1009, path="/ws"))


def test_ws_message_at_max_message_is_accepted(node):
    n = node("--echo", "--max-message", "1k")

    async def main():
        c = await Raw.handshake(n.port, "/ws")
        assert (await c.recv_json())["op"] == "hello"
        await c.send_frame(OP_TEXT, pub_of_size(1024))
        reply = await c.recv_json()
        assert reply["op"] == "ack" and reply["id"] == 1, reply
        await c.aclose()

    run(main())


def test_ws_binary_frame_is_unsupported(node):
    n = node("--echo", "--close-timeout", CLOSE_TIMEOUT)
    run(expect_failure(n, build_frame(OP_BINARY, b'{"op":"sub","ch":"a","id":1}'), 1003,
                       path="/ws"))


def test_garbage_instead_of_frames_then_server_still_serves(node):
    """Random bytes after the handshake: the server fails the connection, doesn't crash."""
    n = node("--echo", "--close-timeout", CLOSE_TIMEOUT)

    async def main():
        c = await Raw.handshake(n.port, "/echo")
        await c.send(bytes(range(256)) * 4)
        await c.wait_eof(CLOSE_TIMEOUT + 4)
        await c.aclose()
        await still_serves_echo(n)

    run(main())
