"""Long-poll (docs/protocol.md, "Long-poll"), on raw sockets: the position at once without
since, an immediate answer when history already holds messages after since, a wait for the
next message otherwise and an empty answer at --poll-timeout, batches capped with the rest
read by the next poll, keep-alive, reset for what cannot be recovered, CORS and tokens, and
resuming on another node after a kill (nothing lost, nothing twice)."""
import json
import os
import signal
import socket
import threading
import time

from conftest import HOST, STEP
from test_security import SECRET, claims, jwt_hs
from test_sse import publish, wait_gauge


class Poller:
    """One keep-alive HTTP connection that polls."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.create_connection((HOST, port), timeout=STEP)
        self.buf = b""

    def get(self, path, headers=(), timeout=STEP):
        """(status, headers, body) of one GET on this connection."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        hdrs = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        length = int(hdrs.get("content-length", 0))
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            assert chunk, "the body was cut"
            self.buf += chunk
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split()[1]), hdrs, body

    def poll(self, query, **kw):
        status, hdrs, body = self.get(f"/poll?{query}", **kw)
        assert status == 200, (status, body)
        assert hdrs["content-type"] == "application/json", hdrs
        return json.loads(body)

    def close(self):
        self.sock.close()


def test_without_since_the_position_comes_at_once(node):
    n = node("--publish-key", "K")
    publish(n.port, "p1", 1)
    p = Poller(n.port)
    t0 = time.monotonic()
    r = p.poll("ch=p1&ch=p2")
    assert time.monotonic() - t0 < 1.0
    assert r["messages"] == [] and r["recovered"] is True, r
    assert r["since"].split("_")[0].startswith("1-") and r["since"].split("_")[1].startswith("0-")
    p.close()


def test_history_answers_at_once_new_messages_end_the_wait_and_silence_times_out(node):
    n = node("--publish-key", "K", "--poll-timeout", "1")
    p = Poller(n.port)
    token = p.poll("ch=w")["since"]
    publish(n.port, "w", {"a": 1})
    publish(n.port, "w", {"a": 2})
    r = p.poll(f"ch=w&since={token}")  # the same connection: keep-alive
    assert [(m["op"], m["seq"], m["data"]) for m in r["messages"]] == \
        [("msg", 1, {"a": 1}), ("msg", 2, {"a": 2})], r
    token = r["since"]
    timer = threading.Timer(0.3, publish, (n.port, "w", "late"))
    timer.start()
    t0 = time.monotonic()
    r = p.poll(f"ch=w&since={token}")
    timer.join()
    assert [m["data"] for m in r["messages"]] == ["late"] and time.monotonic() - t0 < 0.9, r
    token = r["since"]
    t0 = time.monotonic()
    r = p.poll(f"ch=w&since={token}")
    assert r["messages"] == [] and r["since"] == token and time.monotonic() - t0 >= 0.9, r
    p.close()


def test_batches_are_capped_and_the_next_poll_gets_the_rest(node):
    n = node("--publish-key", "K", "--poll-max-batch", "3", "--history-size", "50")
    p = Poller(n.port)
    token = p.poll("ch=b")["since"]
    for i in range(7):
        publish(n.port, "b", i)
    got = []
    while len(got) < 7:
        r = p.poll(f"ch=b&since={token}")
        assert 0 < len(r["messages"]) <= 3, r
        got += [m["seq"] for m in r["messages"]]
        token = r["since"]
    assert got == list(range(1, 8)), got
    p.close()


def test_what_history_no_longer_holds_is_a_reset_and_not_recovered(node):
    n = node("--publish-key", "K", "--history-size", "2")
    p = Poller(n.port)
    token = p.poll("ch=r")["since"]
    for i in range(5):
        publish(n.port, "r", i)
    r = p.poll(f"ch=r&since={token}")
    assert r["recovered"] is False, r
    assert [m["op"] for m in r["messages"]] == ["reset"] and r["messages"][0]["seq"] == 5, r
    assert r["since"].startswith("5-"), r
    r = p.poll("ch=r&since=garbage")
    assert r["recovered"] is False and r["messages"][0]["op"] == "reset", r
    p.close()


def test_cors_tokens_and_bad_requests(node):
    n = node("--auth", "required", "--jwt-secret", SECRET.decode(), "--origin", "https://ok.example")
    tok = jwt_hs(claims(perm={"sub": ["news.*"]}))
    p = Poller(n.port)
    status, hdrs, _ = p.get(f"/poll?ch=news.a&token={tok}", headers=[("Origin", "https://ok.example")])
    assert status == 200 and hdrs["access-control-allow-origin"] == "https://ok.example", hdrs
    for path, want in ((f"/poll?ch=news.a&token={tok}", 403), ("/poll?ch=news.a", 401),
                       (f"/poll?ch=secret&token={tok}", 403), (f"/poll?token={tok}", 400)):
        q = Poller(n.port)
        origin = [("Origin", "https://evil.example")] if want == 403 and "secret" not in path else []
        assert q.get(path, headers=origin)[0] == want, path
        q.close()
    p.close()


def test_a_poller_resumes_on_another_node_after_a_kill(node, redis):
    flags = ("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--publish-key", "K")
    a, b = node(*flags), node(*flags)
    p = Poller(a.port)
    token = p.poll("ch=k")["since"]
    for i in range(3):
        publish(b.port, "k", i)
    r = p.poll(f"ch=k&since={token}")
    seen = [m["seq"] for m in r["messages"]]
    token = r["since"]
    a.expect_exit = True
    os.killpg(a.pid, signal.SIGKILL)
    for i in range(3, 8):
        publish(b.port, "k", i)
    q = Poller(b.port)
    while len(seen) < 8:
        r = q.poll(f"ch=k&since={token}")
        assert r["recovered"] is True, r
        seen += [m["seq"] for m in r["messages"]]
        token = r["since"]
    assert seen == list(range(1, 9)), seen
    q.close()


def test_a_drain_answers_a_waiting_poll_at_once(node):
    n = node("--publish-key", "K", "--poll-timeout", "20", "--drain-timeout", "2")
    p = Poller(n.port)
    token = p.poll("ch=d")["since"]
    p.sock.sendall(f"GET /poll?ch=d&since={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(0.3)
    wait_gauge(n.port, "wsfan_polls_waiting", 1)
    n.expect_exit = True
    n.signal(signal.SIGTERM)
    t0 = time.monotonic()
    data = b""
    p.sock.settimeout(STEP)
    while chunk := p.sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head, head
    assert json.loads(body) == {"messages": [], "since": token, "recovered": True}
    assert time.monotonic() - t0 < 3


def test_wait_0_answers_at_once_with_or_without_news(node):
    n = node("--publish-key", "K", "--poll-timeout", "20")
    p = Poller(n.port)
    token = p.poll("ch=i")["since"]
    t0 = time.monotonic()
    r = p.poll(f"ch=i&since={token}&wait=0")
    assert r == {"messages": [], "since": token, "recovered": True} and time.monotonic() - t0 < 2
    publish(n.port, "i", "x")
    r = p.poll(f"ch=i&since={token}&wait=0")
    assert [m["data"] for m in r["messages"]] == ["x"], r
    p.close()
