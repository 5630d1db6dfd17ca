"""wsload against wsnode (loss-free runs must count every delivery exactly once) and against a
deliberately faulty server (its drops, repeats and swaps must be counted exactly)."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from conftest import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
WSLOAD = os.environ.get("WSLOAD", str(ROOT / "build" / "loadtest" / "wsload"))
FAULTY = ROOT / "tests" / "loadtest" / "faulty_server.py"


def wsload(tmp_path, *args, timeout=90):
    out = tmp_path / "result.json"
    p = subprocess.run([WSLOAD, *map(str, args), "--quiet", "--json", str(out)],
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(out.read_text()), p.stdout


def assert_exactly_once(r):
    m = r["messages"]
    assert r["connections"]["failed"] == 0, r["connections"]
    assert m["expected"] > 0
    assert m["received"] == m["expected"] == m["unique"], m
    assert m["lost"] == m["duplicates"] == m["reordered"] == 0, m


def test_fanout_delivers_every_message_once_to_every_subscriber(node, tmp_path):
    n = node()
    r, table = wsload(tmp_path, "fanout", "--subscribers", 60, "--channels", 3, "--publishers", 2,
                      "--rate", 600, "--duration", 2, f"ws://127.0.0.1:{n.port}/ws")
    assert_exactly_once(r)
    # 60 subscribers over 3 channels: each publish reaches 20 of them.
    assert r["messages"]["expected"] == r["messages"]["sent"] * 20
    assert r["latency"]["count"] == r["messages"]["received"]
    assert "0 lost" in table


def test_fanout_over_two_workers_and_source_addresses(node, tmp_path):
    n = node()
    r, _ = wsload(tmp_path, "fanout", "--subscribers", 40, "--publishers", 3, "--rate", 300,
                  "--duration", 1.5, "--workers", 2, "--source-range", "127.0.0.2-127.0.0.4",
                  f"ws://127.0.0.1:{n.port}/ws")
    assert r["workers"] == 2
    assert_exactly_once(r)
    assert r["messages"]["expected"] == r["messages"]["sent"] * 40


def test_template_mode_measures_without_protocol_knowledge(node, tmp_path):
    n = node()
    r, _ = wsload(tmp_path, "fanout", "--proto", "template", "--subscribers", 20, "--publishers", 2,
                  "--rate", 200, "--duration", 1.5,
                  "--sub-template", '{"op":"sub","ch":"{ch}"}',
                  "--pub-template", '{"op":"pub","ch":"{ch}","data":{"ts":{ts},"n":{seq}}}',
                  f"ws://127.0.0.1:{n.port}/ws")
    assert_exactly_once(r)


def test_echo_round_trips_all_come_back(node, tmp_path):
    n = node("--echo")
    r, _ = wsload(tmp_path, "echo", "--connections", 8, "--rate", 50, "--size", 300,
                  "--duration", 1.5, f"ws://127.0.0.1:{n.port}/echo")
    assert_exactly_once(r)
    assert r["messages"]["sent"] >= 8 * 50  # 1.5 s at 50/s each, less start-up jitter


def test_connect_counts_connections_and_server_memory(node, tmp_path):
    # 5,000 connections: the worker's fixed growth (tables doubling, page-sized steps) is then
    # a small part of the figure; at 2,000 it alone put the old and new builds at 1,000-1,030
    # bytes, on either side of the bound below depending on the machine's load.
    conns = 5000
    n = node()
    r, table = wsload(tmp_path, "connect", "--connections", conns, "--hold", 0.5,
                      "--server-pid", n.proc.pid, f"ws://127.0.0.1:{n.port}/ws")
    assert r["connections"]["opened"] == conns
    assert r["connections"]["open_at_start"] == conns
    assert r["handshake"]["count"] == conns
    mem = r["server_memory_kib"]
    per_conn = (mem["rss_after"] - mem["rss_before"]) * 1024 / conns
    assert per_conn > 0, mem
    assert "per connection" in table
    # An idle plain connection owns no buffer; sanitizer builds pad every allocation.
    if os.environ.get("WSFAN_SANITIZE") != "1":
        assert per_conn < 1024, f"an idle connection costs {per_conn:.0f} bytes of wsnode RSS"


def test_connect_failures_are_counted_by_reason(tmp_path):
    port = free_port()  # nothing listens there
    r, _ = wsload(tmp_path, "connect", "--connections", 5, "--hold", 0.1,
                  f"ws://127.0.0.1:{port}/ws")
    assert r["connections"]["opened"] == 0
    assert r["connections"]["failures"]["connect_refused"] == 5


def test_churn_reconnects(node, tmp_path):
    n = node()
    r, _ = wsload(tmp_path, "churn", "--connections", 50, "--rate", 100, "--duration", 1.5,
                  f"ws://127.0.0.1:{n.port}/ws")
    assert r["messages"]["reconnects"] >= 100
    assert r["connections"]["failed"] == 0
    assert r["latency"]["count"] == r["messages"]["reconnects"]


@pytest.fixture
def faulty():
    procs = []

    def start(*flags):
        p = subprocess.Popen(["/usr/bin/python3", str(FAULTY), "--port", "0", *map(str, flags)],
                             stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        assert line.startswith("listening on "), line
        procs.append(p)
        return p, int(line.split()[-1])

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def stop_and_count(p):
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("fault,field,server_field", [
    ("--drop-every", "lost", "dropped"),
    ("--dup-every", "duplicates", "duplicated"),
    ("--swap-every", "reordered", "swapped"),
])
def test_faults_are_detected_exactly(faulty, tmp_path, fault, field, server_field):
    # One publisher: a swap of two adjacent deliveries is then a swap within its sequence.
    p, port = faulty(fault, 7)
    r, _ = wsload(tmp_path, "fanout", "--subscribers", 10, "--publishers", 1, "--rate", 200,
                  "--duration", 1.5, f"ws://127.0.0.1:{port}/ws")
    did = stop_and_count(p)
    m = r["messages"]
    assert did[server_field] > 0
    assert m[field] == did[server_field], (m, did)
    for other in {"lost", "duplicates", "reordered"} - {field}:
        assert m[other] == 0, (other, m, did)
    assert m["expected"] == did["deliveries_intended"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def reconnect_run(node, redis, tmp_path, *flags):
    """20 subscribers on one node, 2 publishers on another (one Redis), all subscribers
    dropping and resuming every second, offline 0.1 s each time (10 messages to recover)."""
    a = node("--redis", f"127.0.0.1:{redis.port}", "--workers", 1, *flags)
    b = node("--redis", f"127.0.0.1:{redis.port}", "--workers", 1, *flags)
    return wsload(tmp_path, "reconnect", "--subscribers", 20, "--publishers", 2, "--rate", 100,
                  "--duration", 3, "--reconnect-every", 1, "--reconnect-delay", 0.1,
                  "--pub-url", f"ws://127.0.0.1:{b.port}/ws", f"ws://127.0.0.1:{a.port}/ws")


def test_reconnect_resumes_recover_every_message_once(node, redis, tmp_path):
    r, table = reconnect_run(node, redis, tmp_path)
    res = r["resumes"]
    assert res["acked"] >= 40, res  # 20 subscribers, at 1 s and 2 s (3 s ends the sending)
    assert res["recovered"] == res["acked"] and res["not_recovered"] == 0, res
    assert res["pending"] == res["gaps"] == res["duplicates"] == res["reordered"] == 0, res
    assert res["declared_gone"] == 0, res
    assert r["recovery"]["count"] == res["acked"]
    assert_exactly_once(r)
    assert r["messages"]["expected"] == r["messages"]["sent"] * 20
    assert "resumes" in table and "0 not" in table


def test_reconnect_without_history_is_not_recovered(node, redis, tmp_path):
    # The same run against nodes that keep no history: each resume missed about 10 messages
    # and must be answered recovered false; what they missed is lost, and exactly that.
    r, _ = reconnect_run(node, redis, tmp_path, "--history-size", 0)
    res = r["resumes"]
    assert res["acked"] >= 40, res
    assert res["recovered"] == 0 and res["not_recovered"] == res["acked"], res
    assert res["gaps"] == res["duplicates"] == res["reordered"] == 0, res
    m = r["messages"]
    assert m["lost"] > 0 and m["lost"] == res["declared_gone"], (m, res)
    assert m["duplicates"] == m["reordered"] == 0, m


def test_reconnect_fails_over_to_another_node_when_its_node_is_killed(node, redis, tmp_path):
    """--reconnect-every 0: subscribers only resume when the server drops them, here by a
    kill -9 of their node, and they resume on --failover-url with nothing lost or doubled."""
    flags = ("--redis", f"127.0.0.1:{redis.port}", "--workers", 1, "--ip-connect-rate", 0)
    a, b = node(*flags), node(*flags)
    out = tmp_path / "result.json"
    args = ["reconnect", "--subscribers", 50, "--publishers", 1, "--rate", 200, "--duration", 3,
            "--reconnect-every", 0, "--failover-url", f"ws://127.0.0.1:{b.port}/ws",
            "--pub-url", f"ws://127.0.0.1:{b.port}/ws", f"ws://127.0.0.1:{a.port}/ws"]
    p = subprocess.Popen([WSLOAD, *map(str, args), "--quiet", "--json", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.5)
    a.expect_exit = True
    os.killpg(a.pid, signal.SIGKILL)
    stdout, _ = p.communicate(timeout=60)
    assert p.returncode == 0, stdout
    r = json.loads(out.read_text())
    res = r["resumes"]
    assert res["acked"] == 50 and res["recovered"] == 50, res
    assert res["pending"] == res["gaps"] == res["duplicates"] == res["reordered"] == 0, res
    assert_exactly_once(r)


@pytest.mark.parametrize("transport,path", [("sse", "/sse/{ch}"), ("poll", "/poll?ch={ch}"),
                                            ("interval", "/poll?ch={ch}")])
def test_fanout_over_sse_and_long_poll_counts_every_message_once(node, tmp_path, transport, path):
    n = node("--ip-connect-rate", 0)
    r, table = wsload(tmp_path, "fanout", "--transport", transport, "--subscribers", 40,
                      "--channels", 2, "--publishers", 2, "--rate", 300, "--duration", 2,
                      "--poll-every", 0.2,
                      "--pub-url", f"ws://127.0.0.1:{n.port}/ws", f"http://127.0.0.1:{n.port}{path}")
    assert_exactly_once(r)
    assert r["messages"]["expected"] == r["messages"]["sent"] * 20
    assert "0 lost" in table


def test_stream_transports_need_an_http_url_and_a_publisher_url(tmp_path):
    for args in (["fanout", "--transport", "sse", "ws://127.0.0.1:1/ws"],
                 ["fanout", "--transport", "sse", "http://127.0.0.1:1/sse/{ch}"],
                 ["echo", "--transport", "poll", "http://127.0.0.1:1/poll"]):
        p = subprocess.run([WSLOAD, *args], capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, (args, p.stderr)


class EtagPollServer:
    """The long-poll of Nchan and nginx's push modules, in a thread: POST /pub/<ch> keeps a
    message (answers 201), GET /lp/<ch> answers the first message after the one named by
    If-None-Match (its number) with Etag and Last-Modified, waiting for it if need be."""

    def __init__(self):
        import http.server
        import threading
        server = self
        self.messages, self.cond = {}, threading.Condition()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with server.cond:
                    server.messages.setdefault(self.path.split("/")[-1], []).append(body)
                    server.cond.notify_all()
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                ch, seen = self.path.split("/")[-1], int(self.headers.get("If-None-Match") or 0)
                with server.cond:
                    ok = server.cond.wait_for(lambda: len(server.messages.get(ch, [])) > seen, 5)
                    body = server.messages[ch][seen] if ok else b""
                self.send_response(200 if ok else 304)
                self.send_header("Etag", str(seen + 1 if ok else seen))
                self.send_header("Last-Modified", "Thu, 03 Dec 2026 00:00:00 GMT")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_etag_long_poll_counts_every_message_once(tmp_path):
    srv = EtagPollServer()
    try:
        r, _ = wsload(tmp_path, "fanout", "--transport", "etag-poll", "--proto", "template",
                      "--pub-template", '{"ts":{ts},"seq":{seq}}', "--subscribers", 20,
                      "--publishers", 1, "--rate", 50, "--duration", 2,
                      "--pub-url", f"http://127.0.0.1:{srv.port}/pub/{{ch}}",
                      f"http://127.0.0.1:{srv.port}/lp/{{ch}}")
        assert_exactly_once(r)
        assert r["messages"]["expected"] == r["messages"]["sent"] * 20
    finally:
        srv.httpd.shutdown()


def test_reconnect_refuses_other_protocols(tmp_path):
    p = subprocess.run([WSLOAD, "reconnect", "--proto", "echo", "ws://127.0.0.1:1/ws"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "needs --proto wsfan" in p.stderr, p.stderr
