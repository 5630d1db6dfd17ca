"""POST /publish/<channel>: backends publish without a WebSocket, with a key."""
import asyncio
import json
import socket

import websockets


KEY = "s3cret-key"


def post(port, path, body=b"", key=KEY, headers=()):
    """Sends one raw HTTP request; returns (status, body)."""
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *headers]
    if key is not None:
        head.append(f"Authorization: Bearer {key}")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


async def subscribe(port, ch):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", close_timeout=1)
    await ws.recv()
    await ws.send(json.dumps({"op": "sub", "ch": ch, "id": 1}))
    await ws.recv()
    return ws


def check_publish(port):
    async def main():
        ws = await subscribe(port, "news")
        body = b'{"headline": "caf\xc3\xa9", "n": [1, 2.5]}'
        status, reply = await asyncio.get_running_loop().run_in_executor(None, post, port, "/publish/news", body)
        assert status == 202, reply
        seq = json.loads(reply)["seq"]
        msg = await asyncio.wait_for(ws.recv(), 5)
        assert msg == '{"op":"msg","ch":"news","seq":%d,"data":%s}' % (seq, body.decode())
        await ws.close()
    asyncio.run(main())


def test_publish_without_redis(node):
    check_publish(node("--publish-key", KEY).port)


def test_publish_through_redis_reaches_other_nodes(node, redis):
    a = node("--publish-key", KEY, "--redis", f"127.0.0.1:{redis.port}", "--workers", "1")
    b = node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1")

    async def main():
        ws = await subscribe(b.port, "x")
        status, reply = await asyncio.get_running_loop().run_in_executor(None, post, a.port, "/publish/x", b"42")
        assert status == 202, reply
        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert m["data"] == 42 and m["seq"] == json.loads(reply)["seq"]
        await ws.close()
    asyncio.run(main())


def test_publish_is_refused_with_the_right_status(node):
    n = node("--publish-key", KEY, "--max-data", "100")
    assert post(n.port, "/publish/news", b"1", key=None)[0] == 401
    assert post(n.port, "/publish/news", b"1", key="wrong")[0] == 401
    assert post(n.port, "/publish/bad%20name", b"1")[0] == 400
    assert post(n.port, "/publish/news", b"{not json")[0] == 400
    assert post(n.port, "/publish/news", b"")[0] == 400
    assert post(n.port, "/publish/news", b"[" + b"1," * 100 + b"1]")[0] == 413
    with socket.create_connection(("127.0.0.1", n.port), timeout=5) as s:  # no length
        s.sendall(f"POST /publish/news HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n1\r\n1\r\n0\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 411")
    check_publish(n.port)  # and it still serves


def test_publish_is_off_without_a_key(node):
    n = node()
    assert post(n.port, "/publish/news", b"1")[0] == 403


def test_publish_while_redis_is_down_is_503(node, redis):
    n = node("--publish-key", KEY, "--redis", f"127.0.0.1:{redis.port}", "--workers", "1")
    redis.stop()
    assert post(n.port, "/publish/news", b"1")[0] == 503
