#!/usr/bin/python3
"""Publish to a wsfan cluster from a backend by writing an Envelope to Redis directly: no
WebSocket, no HTTP, nothing but the Redis the nodes already use.

    deploy/redis_publish.py [--redis 127.0.0.1:6379 | --redis-cluster HOST:PORT,...]
                            [--prefix wsfan:] CHANNEL 'JSON DATA'

It runs the same script the nodes run (the channel's next seq in its epoch, the message kept in
its history, the Envelope published with seq and epoch appended), so subscribers on every node
get it with the next seq, in order with everything published through the nodes. The standard library is enough: RESP and the few
protobuf fields of proto/cluster.proto are encoded by hand below.
"""
import argparse
import json
import os
import socket
import sys
import time

# The nodes' script, from the file they embed (node/lua/publish.lua): EVAL caches it under
# the same SHA they load it with.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node", "lua",
                       "publish.lua")) as f:
    SCRIPT = f.read()


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number, wire_type, payload):
    key = varint(number << 3 | wire_type)
    if wire_type == 2:  # length-delimited
        return key + varint(len(payload)) + payload
    return key + payload


def envelope(channel, data, origin="backend"):
    """Envelope{kind: PUBLISH, origin, channel, payload, sent_us}; the script adds seq, epoch."""
    return (field(1, 0, varint(1)) + field(2, 2, origin.encode()) +
            field(3, 2, channel.encode()) + field(7, 2, data) +
            field(10, 0, varint(int(time.time() * 1e6))))


def command(sock, *args):
    """Sends one RESP command and returns the reply (integers, bulk strings, errors)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    sock.sendall(b"".join(parts))
    f = sock.makefile("rb")
    line = f.readline()
    if line.startswith(b"-"):
        raise RuntimeError(line[1:].strip().decode())
    if line.startswith(b":"):
        return int(line[1:])
    if line.startswith(b"$"):
        n = int(line[1:])
        return None if n < 0 else f.read(n + 2)[:-2]
    return line.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis", default="127.0.0.1:6379")
    p.add_argument("--redis-cluster", help="seeds of a Redis Cluster (the nodes' flag): the "
                   "script runs on the master of the channel's slot and publishes with SPUBLISH")
    p.add_argument("--password")
    p.add_argument("--prefix", default="wsfan:")
    p.add_argument("--history-size", type=int, default=100, help="the nodes' --history-size")
    p.add_argument("--history-ttl", type=int, default=600, help="the nodes' --history-ttl")
    p.add_argument("channel")
    p.add_argument("data", help="one JSON value, sent to subscribers byte for byte")
    a = p.parse_args()
    json.loads(a.data)  # refuse what the nodes would drop as malformed
    asking = False
    addr = (a.redis_cluster or a.redis).split(",")[0]
    for _ in range(5):  # on a cluster: to the master a MOVED or ASK names
        host, port = addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            if a.password:
                command(s, "AUTH", a.password)
            try:
                if asking:
                    command(s, "ASKING")
                seq = command(s, "EVAL", SCRIPT, 2, f"{a.prefix}meta:{{{a.channel}}}",
                              f"{a.prefix}hist:{{{a.channel}}}", envelope(a.channel, a.data.encode()),
                              f"{a.prefix}ch:{{{a.channel}}}", a.history_size, a.history_ttl,
                              "SPUBLISH" if a.redis_cluster else "PUBLISH")
            except RuntimeError as e:
                kind, _, rest = str(e).partition(" ")
                if not a.redis_cluster or kind not in ("MOVED", "ASK"):
                    raise
                addr, asking = rest.split()[1], kind == "ASK"
                continue
        print(json.dumps({"channel": a.channel, "seq": seq}))
        return 0
    raise RuntimeError("redirected five times: is the cluster resharding?")


if __name__ == "__main__":
    sys.exit(main())
