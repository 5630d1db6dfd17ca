"""SIGTERM drain without a stampede: the node spreads its closes 1001 over --drain-timeout, so
the other nodes see a ramp of reconnections rather than a spike, and a client not closed yet is
served as usual until its own close comes."""

import asyncio
import json
import signal
import time

import websockets

from conftest import STEP, connect, run

N = 200
DRAIN = 4  # --drain-timeout; with the default --close-timeout 3 the ramp takes 2 s (its half)
RAMP = 2.0


class Client:
    """One /ws client and what happened to it after the drain began."""

    def __init__(self, ws):
        self.ws = ws
        self.closed_at = None
        self.code = None
        self.late_ack = False  # the ack of a sub sent after the drain began
        self.late_msg = False  # a message published after the drain began

    async def request(self, obj):
        await self.ws.send(json.dumps(obj))
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), STEP))
            if m.get("id") == obj["id"]:
                assert m["op"] == "ack", m
                return m

    async def read_until_closed(self):
        try:
            while True:
                m = json.loads(await asyncio.wait_for(self.ws.recv(), DRAIN + 3))
                if m.get("op") == "ack" and m.get("id") == 2:
                    self.late_ack = True
                elif m.get("op") == "msg" and m.get("data") == "late":
                    self.late_msg = True
        except websockets.ConnectionClosed as e:
            self.closed_at = time.monotonic()
            self.code = e.rcvd.code if e.rcvd else None


async def open_clients(n):
    async def one():
        ws = await connect(n, "/ws", subprotocols=["ws.json.v1"])
        c = Client(ws)
        assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["op"] == "hello"
        await c.request({"op": "sub", "ch": "drain.news", "id": 1})
        return c

    clients = []
    for _ in range(N // 50):  # in groups: 200 handshakes at once would test the backlog
        clients += await asyncio.gather(*(one() for _ in range(50)))
    return clients


async def ask_while_draining(clients):
    """Once the first client is closed (the drain has begun), every client still open
    subscribes again and one of them publishes: the answers must come all the same."""
    while not any(c.closed_at for c in clients):
        await asyncio.sleep(0.005)
    still = [c for c in clients if not c.closed_at]
    for c in still:
        try:
            await c.ws.send(json.dumps({"op": "sub", "ch": "drain.late", "id": 2}))
        except websockets.ConnectionClosed:
            pass
    for c in still:
        try:
            await c.ws.send(json.dumps({"op": "pub", "ch": "drain.news", "data": "late", "id": 3}))
            return
        except websockets.ConnectionClosed:
            pass


def test_sigterm_spreads_the_closes_and_serves_until_each_one(node):
    n = node("--drain-timeout", DRAIN)

    async def main():
        clients = await open_clients(n)
        readers = [asyncio.ensure_future(c.read_until_closed()) for c in clients]
        n.expect_exit = True
        t0 = time.monotonic()
        n.signal(signal.SIGTERM)
        await asyncio.wait_for(ask_while_draining(clients), DRAIN + 3)
        await asyncio.gather(*readers)
        return clients, t0

    clients, t0 = run(main(), timeout=60)
    code = n.wait_exit(max(0.1, t0 + DRAIN + 3 - time.monotonic()))
    assert code == 0, f"node did not exit 0 within --drain-timeout + 3 s (status {code})"

    codes = [c.code for c in clients]
    assert codes == [1001] * N, f"close codes other than 1001: {[k for k in codes if k != 1001]}"
    times = sorted(c.closed_at - t0 for c in clients)
    first, last = times[0], times[-1]
    early = sum(1 for t in times if t - first < RAMP / 10)
    spread = f"first close {first:.2f} s after SIGTERM, last {last:.2f} s; {early} in the first " \
             f"{RAMP / 10:.1f} s"
    # All at once (the old drain) puts every close within milliseconds: both fail.
    assert last - first >= RAMP / 2, f"closes not spread: {spread}"
    assert early <= N // 2, f"half the clients closed at once: {spread}"
    assert last <= DRAIN + 2, f"closes came after the drain timeout: {spread}"

    late_acks = sum(c.late_ack for c in clients)
    late_msgs = sum(c.late_msg for c in clients)
    assert late_acks >= N // 4, f"only {late_acks} of {N} clients got a sub answered during " \
                                f"the drain ({spread})"
    assert late_msgs >= N // 4, f"a publish during the drain reached only {late_msgs} of {N}"
    log = n.log()
    assert f"draining {N} connections over {RAMP:.1f} s" in log, log
    assert "drained: every connection closed" in log, log


def test_fewer_clients_than_steps_still_span_the_ramp(node):
    """20 clients over a 2 s ramp of 50 ms steps: one close every 100 ms, not one per step
    (which would be over in half the window)."""
    n = node("--echo", "--drain-timeout", DRAIN)

    async def main():
        clients = [await connect(n, "/echo") for _ in range(20)]

        async def closed_at(ws):
            try:
                await asyncio.wait_for(ws.recv(), DRAIN + 3)
            except websockets.ConnectionClosed:
                return time.monotonic(), ws.close_code

        n.expect_exit = True
        n.signal(signal.SIGTERM)
        return await asyncio.gather(*(closed_at(ws) for ws in clients))

    got = run(main())
    assert [code for _, code in got] == [1001] * 20, got
    times = sorted(t for t, _ in got)
    assert times[-1] - times[0] >= 0.7 * RAMP, \
        f"20 closes over {times[-1] - times[0]:.2f} s, not the {RAMP} s ramp"
    assert n.wait_exit(DRAIN + 3) == 0
