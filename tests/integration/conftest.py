"""Shared fixtures and helpers for the wsnode black-box integration tests.

Run with Debian's interpreter only:
    WSNODE=build/node/wsnode /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

Everything talks to 127.0.0.1 only, and every network wait is bounded.
Test modules import the helpers below with `from conftest import ...`.
"""

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass

import pytest
import websockets

WSNODE = os.environ.get("WSNODE") or "/work/main/build/node/wsnode"
HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Default bound for one network step (connect, one frame, one response).
STEP = 5.0

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


# --------------------------------------------------------------------------- processes


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def option_value(tokens, flag):
    """The last value given to --flag in a token list (None if absent)."""
    value = None
    for i, t in enumerate(tokens):
        if t == f"--{flag}" and i + 1 < len(tokens):
            value = tokens[i + 1]
        elif t.startswith(f"--{flag}="):
            value = t.split("=", 1)[1]
    return value


_flags_cache = {}


def program_flags(prog):
    """{flag: (metavar or None, default or None)} as `prog --help` prints them (cached)."""
    if prog not in _flags_cache:
        out = subprocess.run([prog, "--help"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        flags = {}
        for line in out.stdout.splitlines():
            # "  --flag METAVAR   text"; a long METAVAR (--auth off|optional|required) is
            # followed by one space only, while a flag without one is padded to the column.
            m = re.match(r"\s+--([a-z-]+)(?: (\S+))?(?:\s+(.*))?$", line)
            if m:
                default = re.search(r"\(default ([^)]+)\)$", m.group(3) or "")
                flags[m.group(1)] = (m.group(2), default and default.group(1))
        assert len(flags) >= 10, out.stdout
        _flags_cache[prog] = flags
    return _flags_cache[prog]


def haproxy_check(cfg):
    """haproxy -c on the config file cfg must call it valid (skips without haproxy)."""
    exe = shutil.which("haproxy")
    if not exe:
        pytest.skip("haproxy is not installed (apt-get install haproxy; scripts/deps.sh)")
    out = subprocess.run([exe, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    output = out.stdout + out.stderr
    assert out.returncode == 0 and "Configuration file is valid" in output, output


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except FileNotFoundError:
        return False


def child_pids(pid):
    """Live children of pid (the master's workers), found by scanning /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(rest[1]) == pid and rest[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING"}


def server_side_tcp_state(server_port, client_port):
    """State of the server's end of the loopback connection server_port <-> client_port, read
    from /proc/net/tcp (None once the kernel forgot it). Lets a test see that the server
    closed a connection without reading from the client side, which would change the
    outcome (e.g. drain a slow consumer's backlog)."""
    want = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}")
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if (fields[1], fields[2]) == want:
                return TCP_STATES.get(int(fields[3], 16), fields[3])
    return None


def tcp_accepts(port, timeout=0.5):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


class Node:
    """One wsnode master process on 127.0.0.1:<port>."""

    def __init__(self, args, logdir, port=None):
        self.port = port or free_port()
        self.args = list(args)
        self.log_path = os.path.join(logdir, f"wsnode-{self.port}.log")
        self._log = open(self.log_path, "wb")
        self.argv = [WSNODE, "--bind", HOST, "--port", str(self.port), *self.args]
        # Own session: the process group (master + workers) can be cleaned up as one.
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.pid = self.proc.pid
        self.initial_workers = []
        self.expect_exit = False  # a test that stops the master itself sets this

    @property
    def tls(self):
        return "--tls-cert" in self.args

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"wsnode exited with {self.proc.returncode} before listening:\n{self.log()}")
            if tcp_accepts(self.port, 0.2):
                self.initial_workers = self.workers()
                return self
            time.sleep(0.05)
        raise AssertionError(f"wsnode did not accept TCP on {self.port} within {timeout}s:\n"
                             f"{self.log()}")

    def workers(self):
        return child_pids(self.pid)

    def log(self, tail=200):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-tail:])

    def url(self, path="/echo"):
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://{HOST}:{self.port}{path}"

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace=12.0):
        """SIGTERM, then SIGKILL to the whole process group after `grace` seconds."""
        crashed = None
        if self.proc.poll() is not None and not self.expect_exit:
            crashed = self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(grace) is None:
                print(f"wsnode {self.pid} ignored SIGTERM for {grace}s: SIGKILL")
        try:
            os.killpg(self.pid, signal.SIGKILL)  # stray workers of this node only
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=5)
        self._log.close()
        return crashed


@pytest.fixture
def node(tmp_path):
    """Factory: node("--echo", ...) starts wsnode on a free loopback port and waits for it.

    On teardown every node gets SIGTERM (SIGKILL after a bound); its log is printed (pytest
    shows it for failed tests only). A master that died during the test, or a log with a
    sanitizer report, fails the test at teardown.
    """
    if not os.access(WSNODE, os.X_OK):
        pytest.fail(f"wsnode binary not found at {WSNODE} (set WSNODE)")
    started = []

    def start(*args, ready=True, port=None):
        for attempt in range(3):
            n = Node([str(a) for a in args], str(tmp_path), port=port)
            started.append(n)
            if not ready:
                return n
            try:
                return n.wait_ready()
            except AssertionError:
                # the free port may have been taken meanwhile: try another one
                if n.proc.poll() is None or attempt == 2:
                    raise
                n.expect_exit = True

    yield start

    problems = []
    for n in started:
        crashed = n.stop()
        print(f"----- wsnode {' '.join(n.argv[1:])} (pid {n.pid}, exit {n.proc.returncode})")
        print(n.log())
        if crashed is not None:
            problems.append(f"wsnode master died during the test (exit {crashed})")
        text = n.log(tail=100000)
        for marker in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
            if marker in text:
                problems.append(f"sanitizer report in wsnode log: {marker}")
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """(cert_path, key_path) of a fresh self-signed certificate for CN=localhost."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=60)
    return cert, key


def client_ssl_context(cert=None):
    if cert:
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False  # we connect to 127.0.0.1, the cert names localhost
        return ctx
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------- frames


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None):
    """One client frame. rsv is the 3-bit RSV1..3 field (4 = RSV1, 2 = RSV2, 1 = RSV3)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + apply_mask(payload, key)


def apply_mask(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    masked: bool = False

    @property
    def close_code(self):
        assert self.opcode == OP_CLOSE, self
        if len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self):
        return self.payload[2:]

    @property
    def text(self):
        return self.payload.decode("utf-8")

    def json(self):
        assert self.opcode == OP_TEXT, f"expected a text frame, got {self}"
        return json.loads(self.payload)

    def __repr__(self):
        p = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        return f"Frame(op={self.opcode:#x}, fin={self.fin}, rsv={self.rsv}, {len(self.payload)}B {p!r})"


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def upgrade_request(path="/echo", key=None, host=None, extra_headers=(), method="GET",
                    version="HTTP/1.1", protocol=None, origin=None, skip=()):
    """A WebSocket upgrade request head (bytes). `skip` drops named default headers."""
    key = key or ws_key()
    headers = [
        ("Host", host or f"{HOST}"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    if protocol:
        headers.append(("Sec-WebSocket-Protocol", protocol))
    if origin:
        headers.append(("Origin", origin))
    skip = {s.lower() for s in skip}
    lines = [f"{method} {path} {version}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in skip]
    lines += [f"{k}: {v}" for k, v in extra_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Response:
    status: int
    reason: str
    headers: dict  # lower-cased name -> list of values
    body: bytes

    def header(self, name):
        v = self.headers.get(name.lower())
        return v[0] if v else None


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    version, status, *reason = lines[0].split(" ", 2)
    assert version.startswith("HTTP/1."), f"not an HTTP status line: {lines[0]!r}"
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status), (reason[0] if reason else ""), headers


class Raw:
    """A raw TCP (optionally TLS) connection speaking hand-built HTTP and WebSocket frames."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.response = None

    @classmethod
    async def open(cls, port, ssl_ctx=None, timeout=STEP, rcvbuf=None, limit=1 << 24):
        """rcvbuf: a small SO_RCVBUF set before connecting (a slow reader)."""
        kw = dict(ssl=ssl_ctx, server_hostname="localhost" if ssl_ctx else None, limit=limit)
        if rcvbuf is None:
            conn = asyncio.open_connection(HOST, port, **kw)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (HOST, port)), timeout)
            conn = asyncio.open_connection(sock=sock, **kw)
        r, w = await asyncio.wait_for(conn, timeout)
        return cls(r, w)

    @classmethod
    async def handshake(cls, port, path="/echo", extra=b"", ssl_ctx=None, timeout=STEP,
                        rcvbuf=None, limit=1 << 24, **kw):
        """Connects and upgrades; asserts 101 and a correct Sec-WebSocket-Accept.
        `extra` is sent in the same write as the request head."""
        self = await cls.open(port, ssl_ctx, timeout, rcvbuf=rcvbuf, limit=limit)
        key = ws_key()
        await self.send(upgrade_request(path, key=key, **kw) + extra)
        resp = await self.read_response(timeout, body=False)
        assert resp.status == 101, f"expected 101, got {resp}"
        assert resp.header("sec-websocket-accept") == ws_accept(key), resp
        self.response = resp
        return self

    async def send(self, data, timeout=STEP):
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), timeout)

    async def send_frame(self, opcode, payload=b"", **kw):
        await self.send(build_frame(opcode, payload, **kw))

    async def send_text(self, text):
        await self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    async def read_response(self, timeout=STEP, body=True):
        """Reads one HTTP response head (and a Content-Length body, or to EOF if body and no
        length is given and the server closes)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status, reason, headers = parse_head(head[:-4])
        data = b""
        if body and status != 101:
            length = headers.get("content-length")
            if length:
                data = await asyncio.wait_for(self.reader.readexactly(int(length[0])), timeout)
        return Response(status, reason, headers, data)

    async def recv_frame(self, timeout=STEP):
        hdr = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        b0, b1 = hdr
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await asyncio.wait_for(self.reader.readexactly(2), timeout))[0]
        elif n == 127:
            n = struct.unpack("!Q", await asyncio.wait_for(self.reader.readexactly(8), timeout))[0]
        masked = bool(b1 & 0x80)
        key = await asyncio.wait_for(self.reader.readexactly(4), timeout) if masked else None
        payload = await asyncio.wait_for(self.reader.readexactly(n), timeout) if n else b""
        if masked:
            payload = apply_mask(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, payload, masked)

    async def recv_message(self, timeout=STEP, answer_pings=True):
        """Reassembles one data message, answering pings. Returns (opcode, payload)."""
        opcode, parts = None, []
        while True:
            f = await self.recv_frame(timeout)
            assert not f.masked, f"server frames must not be masked: {f}"
            if f.opcode == OP_PING:
                if answer_pings:
                    await self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                raise AssertionError(f"unexpected close {f.close_code} {f.close_reason!r}")
            if opcode is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), f"message starts with {f}"
                opcode = f.opcode
            else:
                assert f.opcode == OP_CONT, f"expected continuation, got {f}"
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    async def recv_json(self, timeout=STEP):
        op, payload = await self.recv_message(timeout)
        assert op == OP_TEXT, f"expected text, got opcode {op}"
        return json.loads(payload)

    async def expect_close(self, timeout=STEP):
        """Skips data frames until the server's close frame; returns that frame."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                f = await self.recv_frame(max(left, 0.01))
            except asyncio.IncompleteReadError as e:
                raise AssertionError(f"connection ended without a close frame "
                                     f"(partial {e.partial!r})") from None
            except ConnectionResetError:
                raise AssertionError("connection reset without a close frame") from None
            except asyncio.TimeoutError:
                raise AssertionError(f"no close frame within {timeout}s") from None
            if f.opcode == OP_CLOSE:
                assert not f.masked and f.fin and f.rsv == 0, f"malformed server close {f}"
                return f

    async def wait_eof(self, timeout=STEP):
        """Waits until the server ends the TCP connection (EOF or reset); discards any data.
        Returns the number of bytes discarded."""
        n = 0
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"server did not end the TCP connection within {timeout}s")
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except asyncio.TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                return n
            if not chunk:
                return n
            n += len(chunk)

    async def echo_ok(self, text="ping?"):
        await self.send_text(text)
        op, payload = await self.recv_message()
        assert (op, payload) == (OP_TEXT, text.encode())

    @property
    def local_port(self):
        return self.writer.get_extra_info("sockname")[1]

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass

    async def aclose(self):
        self.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except Exception:
            pass


def node_metrics(port):
    """{name: value} of a node's GET /metrics (summed over its workers)."""
    with socket.create_connection((HOST, port), timeout=STEP) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    out = {}
    for line in data.decode().split("\r\n\r\n", 1)[1].splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


async def http_get(port, path, ssl_ctx=None, headers=(), timeout=STEP):
    """A plain HTTP/1.1 request; returns the Response."""
    c = await Raw.open(port, ssl_ctx, timeout)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}", "Connection: close", *
                 [f"{k}: {v}" for k, v in headers]]
        await c.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        return await c.read_response(timeout)
    finally:
        await c.aclose()


async def raw_exchange(port, request, timeout=STEP, ssl_ctx=None):
    """Sends a raw request head; returns the parsed Response (head only for 101)."""
    c = await Raw.open(port, ssl_ctx, timeout)
    try:
        await c.send(request)
        return await c.read_response(timeout)
    finally:
        await c.aclose()


def run(coro, timeout=60):
    """asyncio.run with an overall bound, so no test can hang."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def still_serves_echo(node):
    """A fresh connection to /echo completes a handshake and echoes."""
    c = await Raw.handshake(node.port, "/echo")
    try:
        await c.echo_ok("still alive")
    finally:
        await c.aclose()


# --------------------------------------------------------------------------- websockets client


def connect(node, path="/echo", **kw):
    """websockets.connect to the node with bounded handshake/close, no client keepalive pings,
    no compression offer, and room for 16 MiB+ messages (override any of these by keyword)."""
    kw.setdefault("open_timeout", STEP)
    kw.setdefault("close_timeout", 3)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", 32 << 20)
    kw.setdefault("compression", None)
    if node.tls and "ssl" not in kw:
        kw["ssl"] = client_ssl_context()
    return websockets.connect(node.url(path), **kw)


async def recv(ws, timeout=STEP):
    return await asyncio.wait_for(ws.recv(), timeout)


async def expect_server_close(ws, timeout=STEP):
    """Waits for the server to close a websockets connection; returns the received close
    frame (None when the TCP connection ended without one)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as e:
        return e.rcvd


# ---- a real redis-server on a free port (cluster tests) ----

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class Redis:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not tcp_accepts(self.port):
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.split()


@pytest.fixture
def redis():
    r = Redis()
    r.start()
    yield r
    r.stop()


# ---- a real Redis Cluster of masters (scripts/redis-cluster.sh, as CI and deploy/local/up) ----

REDIS_CLUSTER_SH = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "..", "..", "scripts", "redis-cluster.sh"))


class RedisCluster:
    """n redis-server masters on 127.0.0.1 (and `replicas` replicas of each), one Redis Cluster
    (all 16384 slots, no persistence), started and stopped by scripts/redis-cluster.sh in dir:
    dir/<port>/ holds each server's nodes.conf and redis.log, dir/pids its pid. ports[i] is
    server i (masters first, as created); seeds is what --redis-cluster takes
    ("127.0.0.1:P1,127.0.0.1:P2,...")."""

    def __init__(self, dir, n=3, replicas=0):
        self.dir, self.n, self.replicas = str(dir), n, replicas
        self.ports, self.seeds = [], ""

    def _sh(self, *args, timeout=90):
        args = [str(a) for a in args]
        out = subprocess.run([REDIS_CLUSTER_SH, *args], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"redis-cluster.sh {' '.join(args)} exited with "
                                 f"{out.returncode}:\n{out.stderr}")
        return out.stdout.strip()

    def start(self, attempts=3):
        """On a base port free now (and its bus ports, +10000): another test run may take
        them before the masters bind, so a failed start is tried again on another base."""
        for attempt in range(attempts):
            base = self._sh("free-base", self.n * (1 + self.replicas))
            try:
                self.seeds = self._sh("start", self.dir, base, self.n, self.replicas)
                break
            except AssertionError:
                if attempt == attempts - 1:
                    raise
        self.ports = [int(s.rsplit(":", 1)[1]) for s in self.seeds.split(",")]
        return self

    def stop(self):
        self._sh("stop", self.dir)

    def pids(self):
        """{port: pid} of the masters as last started."""
        with open(os.path.join(self.dir, "pids")) as f:
            return {int(port): int(pid) for port, pid in (line.split() for line in f)}

    def alive(self, i):
        return pid_alive(self.pids()[self.ports[i]])

    def _run(self, port, *args):
        out = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), *[str(a) for a in args]],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        return out.stdout

    def cli(self, port, *args):
        """redis-cli -p port args...: its stdout (an error reply is text too, e.g. "MOVED ...")."""
        return self._run(port, *args)

    def cli_json(self, port, *args):
        """A command's reply through redis-cli --json (RESP3), decoded."""
        return json.loads(self._run(port, "--json", *args))

    def _ok(self, port, *args):
        reply = self.cli(port, *args).strip()
        assert reply == "OK", f"{' '.join(map(str, args))} on {port}: {reply}"

    def _any_port(self):
        """A live master to ask."""
        pids = self.pids()
        for port in self.ports:
            if pid_alive(pids[port]):
                return port
        raise AssertionError("every master of the cluster is down")

    def log(self, i, tail=50):
        with open(os.path.join(self.dir, str(self.ports[i]), "redis.log"), "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-tail:])

    def node_id(self, port):
        return self.cli(port, "CLUSTER", "MYID").strip()

    def slot_owners(self, ask=None):
        """[port of the online master serving slot i, or None, for i in 0..16383], as the
        server on port ask (else a live one) sees it (one CLUSTER SHARDS)."""
        owners = [None] * 16384
        for shard in self.cli_json(ask or self._any_port(), "CLUSTER", "SHARDS"):
            masters = [n["port"] for n in shard["nodes"]
                       if n["role"] == "master" and n["health"] == "online"]
            ranges = shard["slots"]
            for lo, hi in zip(ranges[::2], ranges[1::2]):
                owners[lo:hi + 1] = [masters[0] if masters else None] * (hi - lo + 1)
        return owners

    def slot_owner(self, slot, ask=None):
        """Port of the master serving slot, as the server on port ask (else a live one) sees it."""
        owner = self.slot_owners(ask)[slot]
        assert owner is not None, f"no master serves slot {slot}"
        return owner

    def kill(self, i):
        """SIGKILL master i (no replicas: its slots are down until restart(i))."""
        pid = self.pids()[self.ports[i]]
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) or tcp_accepts(self.ports[i], timeout=0.2):
            assert time.monotonic() < deadline, f"master {i} (pid {pid}) did not die"
            time.sleep(0.05)

    def restart(self, i):
        """Starts master i again in its folder: it rejoins with its nodes.conf (its slots, not
        its keys: no persistence); returns when every master says cluster_state:ok."""
        self._sh("restart", self.dir, self.ports[i])

    def wait_ok(self):
        """Until every master says cluster_state:ok and knows all the others."""
        self._sh("wait-ok", self.dir)

    # A live migration of one slot in the steps redis-cli --cluster reshard takes; a test may
    # stop between them to see ASK redirections (keys moved) and TRYAGAIN (multi-key, split).

    def begin_migration(self, slot, to_port):
        """slot IMPORTING on to_port, MIGRATING on its owner; returns the owner's port."""
        src = self.slot_owner(slot)
        assert src != to_port, f"slot {slot} is already on {to_port}"
        self._ok(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(src))
        self._ok(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(to_port))
        return src

    def migrate_keys(self, slot, src, to_port, count=None, batch=100):
        """MIGRATEs up to count (default all) of slot's keys from src to to_port, batch at a
        time; returns how many moved."""
        moved = 0
        while count is None or moved < count:
            n = batch if count is None else min(batch, count - moved)
            keys = self.cli_json(src, "CLUSTER", "GETKEYSINSLOT", slot, n)
            if not keys:
                break
            self._ok(src, "MIGRATE", HOST, to_port, "", 0, 10000, "REPLACE", "KEYS", *keys)
            moved += len(keys)
        return moved

    def finish_migration(self, slot, to_port, src=None):
        """SETSLOT NODE on every live master, the target first, then the source (as redis-cli
        does); returns when they all say to_port serves slot."""
        dst = self.node_id(to_port)
        pids = self.pids()
        order = [to_port] + ([src] if src else []) + [p for p in self.ports if p not in (to_port, src)]
        live = [p for p in order if pid_alive(pids[p])]
        for port in live:
            self._ok(port, "CLUSTER", "SETSLOT", slot, "NODE", dst)
        deadline = time.monotonic() + 10
        while any(self.slot_owner(slot, ask=p) != to_port for p in live):
            assert time.monotonic() < deadline, f"the masters do not agree on slot {slot}"
            time.sleep(0.05)

    def move_slot(self, slot, to_port, batch=100):
        """Migrates slot, with its keys, to the master on to_port while the cluster serves it;
        returns how many keys moved."""
        src = self.begin_migration(slot, to_port)
        moved = self.migrate_keys(slot, src, to_port, batch=batch)
        self.finish_migration(slot, to_port, src)
        return moved

    def reshard(self, from_port, to_port, nslots):
        """redis-cli --cluster reshard: nslots of from_port's slots (with their keys) to to_port;
        returns its output once the cluster is ok again."""
        out = subprocess.run(
            ["redis-cli", "--cluster", "reshard", f"{HOST}:{from_port}",
             "--cluster-from", self.node_id(from_port), "--cluster-to", self.node_id(to_port),
             "--cluster-slots", str(nslots), "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"redis-cli --cluster reshard failed:\n{out.stdout}{out.stderr}"
        self.wait_ok()
        return out.stdout


@pytest.fixture
def redis_cluster(request, tmp_path):
    """A RedisCluster of three masters on free ports, up (cluster_state:ok everywhere), stopped
    at teardown. Another count: @pytest.mark.parametrize("redis_cluster", [1], indirect=True)."""
    c = RedisCluster(tmp_path / "redis-cluster", getattr(request, "param", 3))
    c.start()
    yield c
    c.stop()


@pytest.fixture
def redis_cluster_replicas(tmp_path):
    """A RedisCluster of three masters with a replica each (ports: masters first), so a killed
    master fails over to its replica."""
    c = RedisCluster(tmp_path / "redis-cluster", 3, replicas=1)
    c.start()
    yield c
    c.stop()


# ---- wsrouter processes (presence tests) ----

WSROUTER = os.environ.get("WSROUTER") or os.path.join(os.path.dirname(WSNODE), "..", "router",
                                                      "wsrouter")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


class Router:
    """One wsrouter on a Redis (or a Redis Cluster: a RedisCluster), with its /healthz and
    /metrics on a free loopback port."""

    def __init__(self, redis, args, logdir):
        self.port = free_port()
        self.args = [str(a) for a in args]
        self.log_path = os.path.join(logdir, f"wsrouter-{self.port}.log")
        self._log = open(self.log_path, "ab")
        target = (["--redis-cluster", redis.seeds] if hasattr(redis, "seeds")
                  else ["--redis", f"127.0.0.1:{redis.port}"])
        self.argv = [WSROUTER, *target, "--bind", HOST,
                     "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def healthy(self):
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def wait_ready(self, timeout=10.0):
        """Until /healthz says Redis is reachable and the shard's channel subscribed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"wsrouter exited with {self.proc.returncode}:\n{self.log()}")
            if self.healthy():
                return self
            time.sleep(0.05)
        raise AssertionError(f"wsrouter not healthy within {timeout}s:\n{self.log()}")

    def metrics(self):
        """{name: value} from GET /metrics."""
        with socket.create_connection((HOST, self.port), timeout=STEP) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        body = data.split(b"\r\n\r\n", 1)[1].decode()
        return {k: float(v) for k, v in (line.split() for line in body.splitlines()
                                         if line and not line.startswith("#"))}

    def log(self, tail=200):
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-tail:])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        """SIGTERM; returns the exit code if the router had died on its own."""
        crashed = self.proc.returncode if self.proc.poll() is not None else None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return crashed


@pytest.fixture
def router(tmp_path):
    """Factory: router(redis, "--shard", "0/2", ...) starts wsrouter and waits until healthy.
    Teardown stops them, prints their logs and fails on a crash or a sanitizer report."""
    if not os.access(WSROUTER, os.X_OK):
        pytest.fail(f"wsrouter binary not found at {WSROUTER} (set WSROUTER)")
    started = []

    def start(redis, *args, ready=True):
        r = Router(redis, args, str(tmp_path))
        started.append(r)
        return r.wait_ready() if ready else r

    yield start

    problems = []
    for r in started:
        crashed = r.stop()
        print(f"----- wsrouter {' '.join(r.argv[1:])} (exit {r.proc.returncode})")
        print(r.log())
        if crashed not in (None, -9):
            problems.append(f"wsrouter died during the test (exit {crashed})")
        text = r.log(tail=100000)
        problems += [f"sanitizer report in wsrouter log: {m}" for m in SANITIZER_MARKERS if m in text]
    if problems:
        pytest.fail("; ".join(problems))


def sub_ack(reply):
    """A sub's ack with its position checked and taken out: the channel's last seq (an
    integer) and epoch (a string) are in every sub ack; what is left compares with
    {"op": "ack", "id": N}."""
    assert isinstance(reply.get("seq"), int) and reply["seq"] >= 0, reply
    assert isinstance(reply.get("epoch"), str), reply
    return {k: v for k, v in reply.items() if k not in ("seq", "epoch")}
