#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/{frame,handshake,envelope,jwt,http,http_response}/.

Input formats are described at the top of each fuzz_<name>.c. Run from anywhere:
    python3 tests/fuzz/make_corpus.py
Files are deterministic; re-running rewrites them unchanged. Crash reproducers added by hand
(crash-*) are left alone.
"""
import base64
import hashlib
import hmac
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


# ---- fuzz_jwt: 1 mode byte, then a token (mode 0), header\0payload signed by the target
# (modes 1, 2; bits 2-3 the HMAC, bit 4 no signature, bit 5 padded base64) or patterns (mode 3).
JWT_SECRET = b"fuzz-secret"  # as in fuzz_jwt.c, which checks at "now" = 1700000000


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def jwt_token(header, payload, secret=JWT_SECRET, digest=hashlib.sha256, sig=True):
    def enc(v):
        return v if isinstance(v, bytes) else json.dumps(v, separators=(",", ":")).encode()
    signing = b64url(enc(header)) + b"." + b64url(enc(payload))
    mac = b64url(hmac.new(secret, signing, digest).digest()) if sig else b""
    return signing + b"." + mac


def jwt_pair(mode, header, payload):
    return bytes([mode]) + json.dumps(header, separators=(",", ":")).encode() + b"\0" + (
        payload if isinstance(payload, bytes) else json.dumps(payload).encode())


HS256 = {"alg": "HS256", "typ": "JWT"}
GOOD = {"sub": "alice", "exp": 2000000000, "nbf": 1600000000, "iat": 1600000000}
PERM = {"sub": ["room.*", "lobby"], "pub": ["room.1", "chat.*"], "send": True}

JWT = {
    "hs256_valid": b"\x00" + jwt_token(HS256, GOOD),
    "hs256_perm": b"\x00" + jwt_token(HS256, {**GOOD, "sub": "bob@example.com", "perm": PERM}),
    "hs384_valid": b"\x00" + jwt_token({"alg": "HS384"}, GOOD, digest=hashlib.sha384),
    "hs512_perm_star": b"\x00" + jwt_token({"alg": "HS512"}, {"sub": "c", "perm": {"sub": ["*"]}},
                                           digest=hashlib.sha512),
    "hs256_expired": b"\x00" + jwt_token(HS256, {"sub": "alice", "exp": 1600000000}),
    "hs256_in_leeway": b"\x00" + jwt_token(HS256, {"sub": "alice", "exp": 1699999990,
                                                   "nbf": 1700000020}),
    "hs256_nbf_future": b"\x00" + jwt_token(HS256, {"sub": "alice", "nbf": 1800000000}),
    "hs256_no_sub": b"\x00" + jwt_token(HS256, {"exp": 2000000000}),
    "hs256_sub_too_long": b"\x00" + jwt_token(HS256, {"sub": "u" * 129}),
    "hs256_bad_perm": b"\x00" + jwt_token(HS256, {"sub": "a", "perm": {"sub": ["bad channel"]}}),
    "hs256_wrong_key": b"\x00" + jwt_token(HS256, GOOD, secret=b"other-secret"),
    "alg_none": b"\x00" + jwt_token({"alg": "none"}, GOOD, sig=False),
    "alg_none_signed": b"\x00" + jwt_token({"alg": "none"}, GOOD),
    "alg_rs256_hmac": b"\x00" + jwt_token({"alg": "RS256"}, GOOD),
    "garbage": b"\x00not.a.token",
    "two_parts": b"\x00" + b64url(b'{"alg":"HS256"}') + b"." + b64url(b'{"sub":"a"}'),
    "four_parts": b"\x00" + jwt_token(HS256, GOOD) + b".x",
    "nul_inside": b"\x00" + jwt_token(HS256, GOOD)[:10] + b"\x00" + jwt_token(HS256, GOOD)[11:],
    # mode 1: signed here with HMAC-SHA256; 0x05 / 0x09: -SHA384 / -SHA512; 0x0d: another key;
    # 0x11: no signature; 0x21: padded standard base64.
    "pair_hs256": jwt_pair(0x01, HS256, GOOD),
    "pair_perm": jwt_pair(0x01, HS256, {"sub": "bob", "exp": 1700000100, "perm": PERM}),
    "pair_perm_pub_only": jwt_pair(0x02, HS256, {"sub": "x", "perm": {"pub": ["a*", "b"]}}),
    "pair_exp_string": jwt_pair(0x01, HS256, {"sub": "a", "exp": "2000000000"}),
    "pair_nbf_past": jwt_pair(0x01, HS256, {"sub": "a", "nbf": 1699999000}),
    "pair_exp_fraction": jwt_pair(0x01, HS256, {"sub": "a", "exp": 1800000000.5}),
    "pair_nbf_fraction_future": jwt_pair(0x01, HS256, {"sub": "a", "nbf": 1800000000.5}),
    "pair_nbf_null": jwt_pair(0x01, HS256, {"sub": "a", "nbf": None}),
    "pair_sub_escaped": jwt_pair(0x01, HS256, b'{"sub":"caf\\u00e9 \\"q\\"","exp":1800000000}'),
    "pair_sub_number": jwt_pair(0x01, HS256, {"sub": 42}),
    "pair_hs384": jwt_pair(0x05, {"alg": "HS384"}, GOOD),
    "pair_hs512": jwt_pair(0x09, {"alg": "HS512"}, GOOD),
    "pair_alg_mismatch": jwt_pair(0x09, HS256, GOOD),
    "pair_wrong_key": jwt_pair(0x0D, HS256, GOOD),
    "pair_none": jwt_pair(0x11, {"alg": "none"}, GOOD),
    "pair_rs256": jwt_pair(0x01, {"alg": "RS256", "typ": "JWT"}, GOOD),
    "pair_padded": jwt_pair(0x21, HS256, {"sub": "ab"}),
    "pair_many_patterns": jwt_pair(0x01, HS256, {"sub": "m", "perm": {
        "sub": ["c%d" % i for i in range(65)]}}),
    # mode 3: 0x03 | a << 2 | b << 5: a sub patterns, b pub patterns, then channels.
    "patterns": bytes([0x03 | 2 << 2 | 1 << 5]) + b"room.*\0lobby\0chat.*\0room.1\0lobby\0chat.x\0room",
    "patterns_star": bytes([0x03 | 1 << 2]) + b"*\0anything\0\0a*\0a",
    "patterns_bad": bytes([0x03 | 1 << 2 | 1 << 5]) + b"a**\0b c\0a",
}

# ---- fuzz_http: 1 option byte (bits 0-1 max_head, bits 2-7 the chunking seed), then the request.
UPGRADE = ("Host: a.example", "Upgrade: websocket", "Connection: Upgrade",
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13")


def get(target, *lines, option=0, method="GET", eol="\r\n"):
    return bytes([option]) + (eol.join(("%s %s HTTP/1.1" % (method, target),) + lines)
                              + eol + eol).encode()


HTTP = {
    "ws_token": get("/ws?token=" + jwt_token(HS256, GOOD).decode(), *UPGRADE),
    "ws_user_nodes": get("/ws?user=alice@example.com&nodes=3", *UPGRADE, option=0x14),
    "ws_user_bad": get("/ws?user=bad%20user&user=second", *UPGRADE, option=0x08),
    "ws_query_flags": get("/ws?token&user=&nodes=a&token=x&&=", *UPGRADE, option=0x40),
    "ws_user_long": get("/ws?user=" + "u" * 65, *UPGRADE),
    "root": get("/", "Host: a", option=0x04),
    "index": get("/index.html", "Host: a"),
    "head_app": get("/js/app.js", "Host: a", method="HEAD", option=0x1c),
    "sub_index": get("/sub/", "Host: a"),
    "space_name": get("/a%20b.txt", "Host: a"),
    "percent_name": get("/100%25.txt?x=1", "Host: a"),
    "encoded_slash": get("/%2Fjs%2Fapp.js", "Host: a"),
    "dotdot": get("/../secret.txt", "Host: a"),
    "dotdot_inner": get("/js/../index.html", "Host: a"),
    "dotdot_encoded": get("/%2e%2e/secret.txt", "Host: a", option=0x30),
    "dotdot_mixed": get("/.%2E/%2e./secret.txt", "Host: a"),
    "dotdot_slash_encoded": get("/..%2fsecret.txt", "Host: a"),
    "dotfile": get("/.hidden", "Host: a"),
    "dotdir": get("/.git/config", "Host: a"),
    "dot_segment": get("/./index.html", "Host: a"),
    "symlink": get("/link.html", "Host: a"),
    "nul_escape": get("/index.html%00.txt", "Host: a"),
    "bad_escape": get("/%zz%4", "Host: a"),
    "absolute_form": get("http://a.example/index.html", "Host: a.example"),
    "lf_only": get("/js/app.js?token=abc", "Host: a", eol="\n", option=0xfc),
    "small_head": get("/index.html", "Host: a", option=0x02),
}


def response(status_line, *headers, eol="\r\n", option=0x00, tail=b""):
    """fuzz_http_response input: the option byte, a response head, and what follows it."""
    head = status_line + eol + "".join(h + eol for h in headers) + eol
    return bytes([option]) + head.encode("latin-1") + tail


HTTP_RESPONSE = {
    "upgrade": response("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                        "Connection: Upgrade", "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                        "Sec-WebSocket-Protocol: ws.json.v1", tail=b"\x81\x02{}"),
    "publish_ok": response("HTTP/1.1 202 Accepted", "Content-Type: text/plain",
                           "Content-Length: 3", tail=b"ok\n"),
    "chunked": response("HTTP/1.1 201 Created", "Transfer-Encoding: chunked", option=0x18,
                        tail=b"5\r\nhello\r\n0\r\n\r\n"),
    "lf_only": response("HTTP/1.0 404 Not Found", "X-A:  padded \t", eol="\n", option=0xf8),
    "no_reason": response("HTTP/1.1 204", option=0x08),
    "obs_text": response("HTTP/1.1 500 Erreur \xe9", "X-Obs: \x80\xff"),
    "many_headers": response("HTTP/1.1 200 OK", *[f"X-{i}: v" for i in range(6)], option=0x04),
    "small_head": response("HTTP/1.1 200 OK", "Content-Length: 12345", option=0x02),
    "folded": response("HTTP/1.1 200 OK", "A: b", " c"),
    "two_lengths": response("HTTP/1.1 200 OK", "Content-Length: 1", "Content-Length: 2"),
    "tls_alert": b"\x00\x15\x03\x03\x00\x02\x02\x28",
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
write("jwt", JWT)
write("http", HTTP)
write("http_response", HTTP_RESPONSE)
