"""Server-Sent Events (docs/protocol.md, "SSE"), read with a raw socket and a parser written
from the WHATWG spec's event stream rules: the response head, retry and hello first, one event
per message whose data is the WebSocket msg object (a value spanning lines as several data
lines), the position token as id, resume with Last-Event-ID after the stream ended and after
its node was killed (no gap, no duplicate), reset for what cannot be recovered, the keep-alive
comment, CORS, 401/403, the slow-reader policy and presence."""
import json
import os
import signal
import socket
import time

import pytest

from conftest import HOST, STEP, node_metrics
from test_security import SECRET, claims, jwt_hs


class SSE:
    """One GET of an event stream on a raw socket, parsed as the spec's EventSource does."""

    def __init__(self, port, path, headers=(), rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:  # before connecting, so the window the server sees stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(STEP)
        self.sock.connect((HOST, port))
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                          f"{extra}\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        self.last_id, self.retry, self.comments = "", None, 0
        self.data, self.ended = [], False

    def _line(self):
        while True:
            for i, ch in enumerate(self.buf):
                if ch in (10, 13):
                    line = self.buf[:i].decode()
                    skip = 2 if self.buf[i:i + 2] == b"\r\n" else 1
                    self.buf = self.buf[i + skip:]
                    return line
            chunk = self.sock.recv(65536)
            if not chunk:
                self.ended = True
                return None
            self.buf += chunk

    def event(self, timeout=STEP):
        """The next dispatched event as (id, data), or None when the stream ended; raises
        socket.timeout when none came within timeout (comments do not count)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no event")
            self.sock.settimeout(left)
            line = self._line()
            if line is None:
                return None
            if line == "":
                if self.data:
                    data, self.data = "\n".join(self.data), []
                    return self.last_id, data
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                self.data.append(value)
            elif field == "id" and "\0" not in value:
                self.last_id = value
            elif field == "retry" and value.isdigit():
                self.retry = int(value)

    def json(self, timeout=STEP):
        ev = self.event(timeout)
        assert ev is not None, "the stream ended"
        return json.loads(ev[1])

    def close(self):
        self.sock.close()


def publish(port, ch, value, key="K", raw=None):
    """POST /publish of value as JSON (or of the raw JSON text given); returns its seq."""
    s = socket.create_connection((HOST, port), timeout=STEP)
    data = raw.encode() if raw is not None else json.dumps(value).encode()
    s.sendall(f"POST /publish/{ch} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    s.close()
    assert reply.startswith(b"HTTP/1.1 202"), reply
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])["seq"]


def wait_gauge(port, name, want):
    deadline = time.monotonic() + STEP
    while node_metrics(port).get(name) != want:
        assert time.monotonic() < deadline, f"{name} never became {want}"
        time.sleep(0.1)


def opened(stream):
    assert stream.status == 200, stream.status
    hello = stream.json()
    assert hello["op"] == "hello", hello
    return hello


def test_the_stream_frames_every_message_as_an_event(node):
    n = node("--publish-key", "K")
    s = SSE(n.port, "/sse?ch=a&ch=b%3Ax")  # a percent-encoded name, as URLSearchParams sends
    assert s.headers["content-type"] == "text/event-stream; charset=utf-8", s.headers
    assert s.headers["cache-control"] == "no-cache" and s.headers["x-accel-buffering"] == "no"
    opened(s)
    assert s.retry == 2000
    assert publish(n.port, "a", {"n": 1}) == 1
    assert publish(n.port, "b:x", None, raw='{"lines":\r\n[1,\n2]}') == 1
    ev_id, data = s.event()
    assert json.loads(data) == {"op": "msg", "ch": "a", "seq": 1, "data": {"n": 1}}
    first_id = ev_id
    ev_id, data = s.event()
    # The value spanned lines: several data lines, which the parser joins with LF.
    assert data == '{"op":"msg","ch":"b:x","seq":1,"data":{"lines":\n[1,\n2]}}', data
    assert ev_id != first_id and ev_id.split("_")[0] == first_id.split("_")[0], (first_id, ev_id)
    wait_gauge(n.port, "wsfan_sse_streams", 1)  # (gauges follow the worker's tick)
    s.close()
    wait_gauge(n.port, "wsfan_sse_streams", 0)


def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(node):
    n = node("--publish-key", "K", "--history-size", "50")
    s = SSE(n.port, "/sse?ch=t1&ch=t2")
    opened(s)
    for i in range(4):
        publish(n.port, "t1" if i % 2 else "t2", {"i": i})
    got = [s.json() for _ in range(4)]
    assert [(m["ch"], m["seq"]) for m in got] == [("t2", 1), ("t1", 1), ("t2", 2), ("t1", 2)]
    last = s.last_id
    s.close()
    for i in range(4, 9):
        publish(n.port, "t1" if i % 2 else "t2", {"i": i})
    again = SSE(n.port, "/sse?ch=t1&ch=t2", headers=[("Last-Event-ID", last)])
    opened(again)
    got = [again.json() for _ in range(5)]
    assert sorted((m["ch"], m["seq"]) for m in got) == \
        [("t1", 3), ("t1", 4), ("t2", 3), ("t2", 4), ("t2", 5)], got
    publish(n.port, "t1", "live")
    assert again.json()["data"] == "live"
    # ?since= does the same for a client that keeps the token itself.
    third = SSE(n.port, f"/sse?ch=t1&ch=t2&since={again.last_id}")
    opened(third)
    publish(n.port, "t2", "next")
    m = third.json()
    assert (m["ch"], m["seq"], m["data"]) == ("t2", 6, "next"), m
    for st in (again, third):
        st.close()


def test_what_history_no_longer_holds_is_a_reset(node):
    n = node("--publish-key", "K", "--history-size", "3")
    s = SSE(n.port, "/sse/r")
    opened(s)
    publish(n.port, "r", 1)
    s.json()
    token = s.last_id
    s.close()
    for i in range(6):
        publish(n.port, "r", i)
    again = SSE(n.port, "/sse/r", headers=[("Last-Event-ID", token)])
    opened(again)
    reset = again.json()
    assert reset["op"] == "reset" and reset["ch"] == "r" and reset["seq"] == 7, reset
    assert again.last_id.startswith("7-"), again.last_id
    publish(n.port, "r", "after")
    assert again.json()["seq"] == 8
    bad = SSE(n.port, "/sse/r", headers=[("Last-Event-ID", "not a token")])
    opened(bad)
    assert bad.json()["op"] == "reset"
    again.close()
    bad.close()


def test_idle_streams_get_a_comment_and_the_drain_ends_them(node):
    n = node("--publish-key", "K", "--sse-ping", "0.2", "--drain-timeout", "1")
    s = SSE(n.port, "/sse/idle")
    opened(s)
    deadline = time.monotonic() + 3
    while s.comments < 2:
        assert time.monotonic() < deadline, "no keep-alive comment"
        try:
            assert s.event(timeout=0.5) is None, "an event on an idle stream"
        except socket.timeout:
            pass
    n.signal(signal.SIGTERM)
    n.expect_exit = True
    assert s.event(timeout=5) is None and s.ended  # the response ends; the client reconnects


def test_cors_allows_the_listed_origins_only(node):
    n = node("--origin", "https://ok.example")
    ok = SSE(n.port, "/sse/c", headers=[("Origin", "https://ok.example")])
    opened(ok)
    assert ok.headers["access-control-allow-origin"] == "https://ok.example", ok.headers
    assert ok.headers["vary"] == "Origin"
    evil = SSE(n.port, "/sse/c", headers=[("Origin", "https://evil.example")])
    assert evil.status == 403
    plain = SSE(n.port, "/sse/c")  # not a browser across origins: no CORS headers
    opened(plain)
    assert "access-control-allow-origin" not in plain.headers
    for st in (ok, evil, plain):
        st.close()


def test_tokens_are_checked_as_for_websocket(node):
    n = node("--auth", "required", "--jwt-secret", SECRET.decode())
    assert SSE(n.port, "/sse/p").status == 401
    narrow = jwt_hs(claims(perm={"sub": ["news.*"]}))
    assert SSE(n.port, f"/sse?ch=news.a&ch=secret&token={narrow}").status == 403
    ok = SSE(n.port, f"/sse?ch=news.a&token={narrow}")
    assert opened(ok)["client"]
    wide = jwt_hs(claims())
    bearer = SSE(n.port, "/sse/anything", headers=[("Authorization", f"Bearer {wide}")])
    opened(bearer)
    for bad in ("/sse", "/sse?ch=", "/sse?ch=bad%20name", "/sse/" + "x" * 201):
        assert SSE(n.port, bad + ("&" if "?" in bad else "?") + f"token={wide}").status == 400
    ok.close()
    bearer.close()


def test_a_reader_that_stalls_is_closed_by_the_policy_and_others_go_on(node):
    n = node("--publish-key", "K", "--outbuf-soft", "64k", "--outbuf-hard", "256k",
             "--outbuf-soft-seconds", "1")
    stalled = SSE(n.port, "/sse/flood", rcvbuf=4096)
    opened(stalled)
    reader = SSE(n.port, "/sse/flood")
    opened(reader)
    big = "x" * 16000
    for i in range(600):  # beyond what the kernel buffers hold
        publish(n.port, "flood", {"i": i, "pad": big})
        assert reader.json()["data"]["i"] == i
    deadline = time.monotonic() + 10
    while node_metrics(n.port).get("wsfan_slow_consumer_closes_total", 0) < 1:
        assert time.monotonic() < deadline, "the stalled reader was never closed"
        time.sleep(0.2)
    reader.close()
    stalled.close()


def test_sse_clients_count_in_presence_and_see_join_events(redis, router, node):
    router(redis, "--shard", "0/1")
    n = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--router-shards", "1")
    watcher = SSE(n.port, "/sse/room?events=1")
    opened(watcher)
    other = SSE(n.port, "/sse/room?user=bob")
    opened(other)
    ev = watcher.json()
    while ev["op"] == "join" and ev["user"] != "bob":  # the watcher's own join may come first
        ev = watcher.json()
    assert ev["op"] == "join" and ev["ch"] == "room" and ev["user"] == "bob", ev
    other.close()
    ev = watcher.json()
    assert ev["op"] == "leave" and ev["user"] == "bob", ev
    watcher.close()


def test_a_stream_resumes_on_another_node_after_a_kill(node, redis):
    flags = ("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--publish-key", "K")
    a, b = node(*flags), node(*flags)
    s = SSE(a.port, "/sse?ch=k1&ch=k2")
    opened(s)
    seen = []
    for i in range(6):
        publish(b.port, f"k{1 + i % 2}", i)
        m = s.json()
        seen.append((m["ch"], m["seq"]))
    token = s.last_id
    a.expect_exit = True
    os.killpg(a.pid, signal.SIGKILL)
    assert s.event(timeout=5) is None
    for i in range(6, 11):
        publish(b.port, f"k{1 + i % 2}", i)
    again = SSE(b.port, "/sse?ch=k1&ch=k2", headers=[("Last-Event-ID", token)])
    opened(again)
    for _ in range(5):
        m = again.json()
        seen.append((m["ch"], m["seq"]))
    assert [q for c, q in seen if c == "k1"] == [1, 2, 3, 4, 5, 6], seen
    assert [q for c, q in seen if c == "k2"] == [1, 2, 3, 4, 5], seen
    again.close()


@pytest.mark.parametrize("path", ["/sse/x", "/sse?ch=x"])
def test_only_get_is_allowed(node, path):
    n = node()
    s = socket.create_connection((HOST, n.port), timeout=STEP)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    assert s.recv(100).startswith(b"HTTP/1.1 405"), path
    s.close()
