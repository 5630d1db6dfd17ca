"""Recovery under the faults it exists for, at the sizes of issue 13, with real processes:
200 subscribers of a 200 msgs/s stream whose node is killed (-9) or drained (SIGTERM)
resume on another node with `since` and end with every seq once; cuts of the node's Redis
subscriber links are mended without the subscribers noticing; a Redis restart without
persistence tells every subscriber (reset) and mends what the late node missed, and an old
position is then not recovered. Every message is counted: lost, duplicated, reordered."""
import asyncio
import json
import os
import signal
import time

import pytest
import websockets

from conftest import STEP, node_metrics, run

SUBSCRIBERS = 200
RATE = 200  # messages a second


async def connect(port):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=STEP,
                                  close_timeout=1, max_queue=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), STEP))
    assert hello["op"] == "hello", hello
    return ws


class Subscriber:
    """A client as web/wsfan.js is one: keeps the channel's position, and on a lost
    connection resubscribes on the next node with since and epoch."""

    def __init__(self, ch):
        self.ch = ch
        self.seqs, self.resets, self.acks = [], [], []
        self.reset_at = []  # how many messages had come before each reset
        self.seq, self.epoch = 0, ""
        self.ws = None

    async def subscribe(self, port, resume):
        self.ws = await connect(port)
        req = {"op": "sub", "ch": self.ch, "id": len(self.acks)}
        if resume:
            req.update(since=self.seq, epoch=self.epoch)
        await self.ws.send(json.dumps(req))

    async def follow(self, ports, until):
        """Reads until a msg with seq `until()` (a callable: known late), moving to the next
        port each time the connection ends."""
        await self.subscribe(ports[0], False)
        for i, port in enumerate(ports):
            if i:
                await self.subscribe(port, True)
            try:
                idle = 0.0
                while True:
                    try:
                        m = json.loads(await asyncio.wait_for(self.ws.recv(), 0.5))
                        idle = 0.0
                    except asyncio.TimeoutError:
                        if until() is not None and self.seq >= until():
                            await self.ws.close()
                            return  # (the end came before anyone knew it was the end)
                        idle += 0.5
                        assert idle < 10, f"nothing for 10 s at seq {self.seq}"
                        continue
                    if m["op"] == "ack":
                        self.acks.append(m)
                        if not self.epoch or m.get("recovered") is False:
                            self.seq, self.epoch = m["seq"], m["epoch"]
                    elif m["op"] == "reset":
                        self.resets.append(m)
                        self.reset_at.append(len(self.seqs))
                        self.seq, self.epoch = m["seq"], m["epoch"]
                    elif m["op"] == "msg":
                        self.seqs.append(m["seq"])
                        self.seq = m["seq"]
                        if m["seq"] == until():
                            await self.ws.close()
                            return
            except websockets.ConnectionClosed:
                continue
        raise AssertionError(f"ran out of nodes at seq {self.seq}")


async def steady(port, ch, stop, rate=RATE):
    """Publishes on ch at `rate` a second through its own connection until stop is set;
    returns the last seq, the one of a final publish after stop."""
    ws = await connect(port)
    i, t0 = 0, time.monotonic()
    while not stop.is_set():
        await ws.send(json.dumps({"op": "pub", "ch": ch, "data": {"i": i}, "id": i}))
        i += 1
        await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
    await ws.send(json.dumps({"op": "pub", "ch": ch, "data": "end", "id": "end"}))
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), STEP))
        if m.get("id") == "end":
            await ws.close()
            return m["seq"]


async def followers(ch, ports_of, until):
    """SUBSCRIBERS Subscribers of ch, subscriber i following the ports ports_of(i), once
    every one is subscribed; and their tasks."""
    subs = [Subscriber(ch) for _ in range(SUBSCRIBERS)]
    tasks = [asyncio.create_task(s.follow(ports_of(i), until)) for i, s in enumerate(subs)]
    while sum(len(s.acks) for s in subs) < SUBSCRIBERS:
        await asyncio.sleep(0.05)
    return subs, tasks


def each_once(sub, first, last):
    assert sub.seqs == list(range(first, last + 1)), (
        f"lost {sorted(set(range(first, last + 1)) - set(sub.seqs))[:10]}, "
        f"twice {len(sub.seqs) - len(set(sub.seqs))}, in order {sub.seqs == sorted(sub.seqs)}")


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM drain"])
def test_subscribers_of_a_lost_node_resume_on_another_with_nothing_lost(node, redis, how):
    flags = ("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--history-size", "5000",
             "--ip-connect-rate", "0", "--max-msg-rate", "0")
    doomed = node(*flags, "--drain-timeout", "1")
    spare, pubnode = node(*flags), node(*flags)

    async def main():
        last = None
        subs, tasks = await followers("tape", lambda i: [doomed.port, spare.port], lambda: last)
        stop = asyncio.Event()
        publisher = asyncio.create_task(steady(pubnode.port, "tape", stop))
        await asyncio.sleep(1.0)
        doomed.expect_exit = True
        if how == "kill -9":
            os.killpg(doomed.pid, signal.SIGKILL)  # the master and its workers at once
        else:
            doomed.signal(signal.SIGTERM)
        await asyncio.sleep(2.0)
        stop.set()
        last = await publisher
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for s in subs:
            assert len(s.acks) == 2 and s.acks[1]["recovered"] is True, s.acks
            assert not s.resets, s.resets
            each_once(s, 1, last)
        memory, reads = (node_metrics(spare.port)[k] for k in (
            "wsfan_recoveries_from_memory_total", "wsfan_recovery_reads_total"))
        assert memory + reads <= SUBSCRIBERS and reads < SUBSCRIBERS / 4, (memory, reads)

    run(main(), timeout=90)


def test_subscribers_of_a_node_whose_pubsub_link_is_cut_miss_nothing(node, redis):
    """Redis cuts the node's subscriber links (CLIENT KILL TYPE pubsub, as at its output
    buffer limit) three times under 200 subscribers of a 200 msgs/s stream: the node mends
    the gaps from history, and no subscriber notices anything."""
    flags = ("--redis", f"127.0.0.1:{redis.port}", "--workers", "2", "--history-size", "5000",
             "--ip-connect-rate", "0", "--max-msg-rate", "0")
    subnode, pubnode = node(*flags), node(*flags)

    async def main():
        phase = {"last": None}
        subs, tasks = await followers("cut", lambda i: [subnode.port], lambda: phase["last"])
        stop = asyncio.Event()
        publisher = asyncio.create_task(steady(pubnode.port, "cut", stop))
        for _ in range(3):
            await asyncio.sleep(0.7)
            assert int(redis.cli("CLIENT", "KILL", "TYPE", "pubsub")[0]) >= 2
        await asyncio.sleep(1.0)
        stop.set()
        phase["last"] = await publisher
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for s in subs:
            assert len(s.acks) == 1 and not s.resets, (s.acks, s.resets)
            each_once(s, 1, phase["last"])
        assert node_metrics(subnode.port)["wsfan_redis_healed_total"] > 0

    run(main(), timeout=90)


def test_a_redis_restart_resets_every_subscriber_and_the_late_node_misses_nothing(node, redis):
    """Redis restarts empty. Publishing resumes as soon as one node is back; the other node
    may resubscribe later. Every subscriber, on both nodes, gets a reset and then the new
    epoch from seq 1, with nothing missing; a client that resumes from the old epoch is told
    it did not recover."""
    flags = ("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--history-size", "5000",
             "--ip-connect-rate", "0", "--max-msg-rate", "0")
    a, b = node(*flags), node(*flags)

    async def main():
        phase = {"last": None}
        subs, tasks = await followers("feed", lambda i: [(a.port, b.port)[i % 2]],
                                      lambda: phase["last"])
        stop = asyncio.Event()
        before = await steady_for(a.port, "feed", 0.5)
        old_epoch = subs[0].epoch
        redis.stop()
        redis.start()
        pub = await connect(a.port)
        deadline = time.monotonic() + 20
        while True:  # the first publish the bus takes
            await pub.send(json.dumps({"op": "pub", "ch": "feed", "data": "first", "id": "f"}))
            m = json.loads(await asyncio.wait_for(pub.recv(), STEP))
            if m["op"] == "ack":
                break
            assert m["code"] == "unavailable" and time.monotonic() < deadline, m
            await asyncio.sleep(0.05)
        await pub.close()
        publisher = asyncio.create_task(steady(a.port, "feed", stop))
        await asyncio.sleep(1.0)
        stop.set()
        phase["last"] = await publisher
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for s in subs:
            assert len(s.resets) == 1 and s.resets[0]["epoch"] != old_epoch, s.resets
            split = s.seqs.index(before) + 1
            assert s.reset_at == [split], (s.reset_at, split)  # right before the new epoch
            assert s.seqs[:split] == list(range(1, before + 1)), s.seqs[:split]
            assert s.seqs[split:] == list(range(1, phase["last"] + 1)), (
                len(s.seqs[split:]), s.seqs[split:split + 5])
        late = await connect(b.port)
        await late.send(json.dumps({"op": "sub", "ch": "feed", "since": before,
                                    "epoch": old_epoch, "id": 1}))
        ack = json.loads(await asyncio.wait_for(late.recv(), STEP))
        assert ack["recovered"] is False and ack["epoch"] != old_epoch, ack
        await late.close()

    run(main(), timeout=90)


async def steady_for(port, ch, seconds):
    stop = asyncio.Event()
    task = asyncio.create_task(steady(port, ch, stop))
    await asyncio.sleep(seconds)
    stop.set()
    return await task
