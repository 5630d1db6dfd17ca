#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/{frame,handshake,envelope}/.

Input formats are described at the top of each fuzz_<name>.c. Run from anywhere:
    python3 tests/fuzz/make_corpus.py
Files are deterministic; re-running rewrites them unchanged. Crash reproducers added by hand
(crash-*) are left alone.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = b"\x37\xfa\x21\x3d"


def frame(op, payload=b"", fin=True, rsv1=False, mask=KEY, width=None):
    """One frame; width forces the 16- or 64-bit length form."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    m = 0x80 if mask else 0
    n = len(payload)
    if width is None:
        width = 7 if n < 126 else 16 if n <= 0xFFFF else 64
    if width == 7:
        head = bytes([b0, m | n])
    elif width == 16:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        head += mask
    return head + payload


def opts(server=True, rsv1=False, max_frame=None, max_message=None, chunk=3, seed=7):
    """The 4 option bytes of fuzz_frame."""
    b0 = (1 if server else 0) | (2 if rsv1 else 0) | (chunk & 7) << 4
    b1 = b2 = 0
    if max_frame is not None:
        b0 |= 4
        b1 = max_frame - 1
    if max_message is not None:
        b0 |= 8
        b2 = (max_message - 1) // 4
    return bytes([b0, b1, b2, seed])


def close(code, reason=b""):
    return struct.pack(">H", code) + reason


FRAME = {
    "text_hello": opts() + frame(1, b"Hello"),
    "fragmented_ping": opts(chunk=0) + frame(1, b"Hel", fin=False) + frame(9, b"hb")
    + frame(0, b"lo, ", fin=False) + frame(0, b"world"),
    "close_1000": opts(chunk=2) + frame(8, close(1000, b"bye")),
    "binary_len16": opts(chunk=5) + frame(2, bytes(range(256)) + b"x" * 44),
    "binary_len64_short": opts(chunk=4) + frame(2, b"abcde", width=64),
    "binary_len64_truncated": opts(chunk=6) + bytes([0x82, 0xFF]) + struct.pack(">Q", 70000)
    + KEY + b"\x00" * 100,
    "client_side": opts(server=False, chunk=1) + frame(1, b"from server", mask=None)
    + frame(10, b"pong", mask=None) + frame(8, close(1001, b"going away"), mask=None),
    "compressed": opts(rsv1=True) + frame(1, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv1=True)
    + frame(2, b"\x00\x01", fin=False, rsv1=True) + frame(0, b"\x02"),
    "utf8_split": opts(chunk=0) + frame(1, "h\u00e9\u20ac".encode()[:3], fin=False)
    + frame(0, "h\u00e9\u20ac\U0001F600".encode()[3:]),
    "utf8_invalid": opts(chunk=1) + frame(1, b"ok", fin=False) + frame(0, b"\xed\xa0\x80"),
    "max_frame": opts(max_frame=8) + frame(1, b"12345678") + frame(1, b"123456789"),
    "max_message": opts(max_message=9) + frame(2, b"1234", fin=False) + frame(0, b"5678", fin=False)
    + frame(0, b"9A"),
    "reserved_opcode": opts() + frame(1, b"a") + frame(3, b"b"),
    "unmasked_to_server": opts() + frame(1, b"plain", mask=None),
    "bad_close": opts() + frame(8, close(1005)) + frame(8, b"\x03"),
    "ping_too_long": opts() + frame(9, b"p" * 126),
}


def req(*lines, first="GET /chat HTTP/1.1", eol="\r\n", option=0):
    return bytes([option]) + (eol.join((first,) + lines) + eol + eol).encode()


BASE = ("Host: server.example.com", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13")

HANDSHAKE = {
    "rfc6455_example": req(*BASE),
    "protocols_origin": req(*BASE, "Origin: https://example.com",
                            "Sec-WebSocket-Protocol: superchat, chat"),
    "protocols_two_lines": req(*BASE, "Sec-WebSocket-Protocol: x-unknown",
                               "Sec-WebSocket-Protocol: wsfan.v1,chat"),
    "origin_refused": req(*BASE, "Origin: https://evil.example"),
    "version_8": req(*BASE[:4], "Sec-WebSocket-Version: 8"),
    "version_missing": req(*BASE[:4]),
    "post": req(*BASE, first="POST /chat HTTP/1.1"),
    "http10": req(*BASE, first="GET /chat HTTP/1.0"),
    "bad_key": req(*BASE[:3], "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=", BASE[4]),
    "two_hosts": req(*BASE, "Host: other.example"),
    "obs_fold": req(*BASE, "X-Folded: one", " two"),
    "lf_only_query": req("host: a", "upgrade: WebSocket", "connection: keep-alive, upgrade",
                         "sec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==", "sec-websocket-version: 13",
                         first="GET /ws?room=1&x HTTP/1.1", eol="\n"),
    "many_headers": req(*BASE, "A: 1", "B: 2", option=0x04),
    "head_then_frame": req(*BASE) + bytes([0x81, 0x80]) + KEY,
    "body_chunked": req("Host: a", "Transfer-Encoding: chunked", first="POST /up HTTP/1.1")
    + b"5\r\nhello\r\n0\r\n\r\n",
    "http09_empty_values": b"\x00GET /c3j]Q==\r\nSec-WebSocket-Protocol: \nX: \n\r\n",
    "small_limits": req(*BASE, option=0x31),
    "big_response_cap": req(*BASE, "Sec-WebSocket-Protocol: chat", option=0xF0),
}

ENVELOPE = {
    "sub": {"op": "sub", "ch": "room.1", "id": 1},
    "sub_since_events": {"op": "sub", "ch": "room.1", "since": 42, "events": True, "id": "a1"},
    "unsub": {"op": "unsub", "ch": "room.1"},
    "pub_nested": {"op": "pub", "ch": "room.1", "id": 7, "data": {
        "text": "hi", "n": [1, 2.5e3, -0.1, True, False, None], "deep": {"a": {"b": []}}}},
    "presence": {"op": "presence", "ch": "lobby:main"},
    "send": {"op": "send", "to": "c-42", "data": "hello \"quoted\" \u00e9 \n"},
    "bad_channel": {"op": "pub", "ch": "bad channel!", "data": 1},
    "unknown_op": {"op": "nope", "ch": "a"},
    "op_not_string": {"op": 1},
    "too_large": {"op": "pub", "ch": "x", "data": "a string longer than sixteen bytes"},
    "since_negative": {"op": "sub", "ch": "a", "since": -1},
    "id_too_long": {"op": "sub", "ch": "a", "id": "x" * 70},
}
ENVELOPE_RAW = {
    "trailing_comma": b'{"op":"sub","ch":"room.1",}',
    "array": b"[1,2,3]",
    "deep_nesting": b'{"op":"pub","ch":"d","data":' + b"[" * 70 + b"]" * 70 + b"}",
    "whitespace_escapes": b' \n{ "op" : "pub" , "ch" : "a:b-c_d" , "data" : [ "\\u00e9\\t\\/" ,'
    b' 0 , -1E+2 ] }\r\n',
    "nesting_64": b'{"op":"pub","ch":"d","data":' + b"[" * 63 + b"]" * 63 + b"}",
    "truncated": b'{"op":"pub","ch":"room.1","data":{"a":[1,2',
}


def write(name, files):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for fname, data in files.items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)


write("frame", FRAME)
write("handshake", HANDSHAKE)
write("envelope", {**{k: json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()
                      for k, v in ENVELOPE.items()}, **ENVELOPE_RAW})
