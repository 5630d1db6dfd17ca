"""--slow-policy conflate: a subscriber that stops reading keeps only the newest unsent message
of each channel once it is over --outbuf-soft, and ends with every channel's newest value."""

import asyncio
import json

from conftest import OP_PING, OP_PONG, OP_TEXT, STEP, Raw, connect, node_metrics, run, sub_ack

LIMITS = ["--slow-policy", "conflate", "--outbuf-soft", "64k", "--outbuf-hard", "256k",
          "--max-msg-rate", "0"]
CHANNELS = [f"tick.{k}" for k in range(4)]
# ~8 MiB in all: more than the kernel holds for the stalled reader (a loopback send buffer
# grows to tcp_wmem max, 4 MiB by default) plus the soft limit, so the node's own queue for
# it goes over the soft limit and conflates.
PER_CHANNEL = 2000
BATCH = 40  # 40 KiB in flight, under the soft limit for the reader that keeps up
PAYLOAD = "x" * 1000


async def stalled_subscriber(port):
    """A raw /ws client with a tiny receive buffer, subscribed to every channel, not reading."""
    c = await Raw.handshake(port, "/ws", protocol="ws.json.v1", rcvbuf=4096, limit=2048)
    assert (await c.recv_json())["op"] == "hello"
    for i, ch in enumerate(CHANNELS):
        await c.send_frame(OP_TEXT, json.dumps({"op": "sub", "ch": ch, "id": i}))
        assert sub_ack(await c.recv_json()) == {"op": "ack", "id": i}
    return c


async def reader(node, state, total):
    """Subscribes to every channel and reads total messages; returns their seqs by channel."""
    async with connect(node, "/ws", subprotocols=["ws.json.v1"], max_queue=None) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["op"] == "hello"
        for i, ch in enumerate(CHANNELS):
            await ws.send(json.dumps({"op": "sub", "ch": ch, "id": i}))
            assert sub_ack(json.loads(await asyncio.wait_for(ws.recv(), STEP))) == {"op": "ack", "id": i}
        state["ready"].set()
        got = {ch: [] for ch in CHANNELS}
        while state["received"] < total:
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert m["op"] == "msg", m
            got[m["ch"]].append(m["seq"])
            state["received"] += 1
        return got


async def publish(node, state, count, first_i=0):
    """Publishes count messages per channel, round-robin, in batches whose acks it waits for,
    then waits for the reader to have them all: only the stalled subscriber falls behind.
    Returns {channel: {seq: i}} from the acks."""
    async with connect(node, "/ws", subprotocols=["ws.json.v1"], max_queue=None) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["op"] == "hello"
        acked = {ch: {} for ch in CHANNELS}
        sent = [(first_i + i, CHANNELS[k]) for i in range(count) for k in range(len(CHANNELS))]
        loop = asyncio.get_running_loop()
        for start in range(0, len(sent), BATCH):
            batch = sent[start:start + BATCH]
            for n, (i, ch) in enumerate(batch):
                await ws.send(json.dumps({"op": "pub", "ch": ch, "id": n,
                                          "data": {"i": i, "pad": PAYLOAD}}))
            for n, (i, ch) in enumerate(batch):
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert m["op"] == "ack" and m["id"] == n, f"publisher got {m}"
                acked[ch][m["seq"]] = i
            deadline = loop.time() + 10
            while state["received"] < start + len(batch):
                assert loop.time() < deadline, "the reader that keeps up stalled"
                await asyncio.sleep(0.002)
        return acked


async def drain(c, idle=1.0):
    """Reads the stalled subscriber's messages until none came for `idle` seconds (answering
    pings); returns [(channel, seq, i)] in the order received."""
    out = []
    while True:
        try:
            op, payload = await c.recv_message(timeout=idle)
        except asyncio.TimeoutError:
            return out
        assert op == OP_TEXT
        m = json.loads(payload)
        assert m["op"] == "msg", f"the stalled subscriber got {m}"
        out.append((m["ch"], m["seq"], m["data"]["i"]))


def check_order(msgs, acked):
    """Per channel: seqs strictly increasing, each with the data its publish had."""
    seqs = {ch: [] for ch in CHANNELS}
    for ch, seq, i in msgs:
        assert acked[ch].get(seq) == i, f"{ch} seq {seq} carries the data of another message"
        seqs[ch].append(seq)
    for ch, s in seqs.items():
        bad = [(a, b) for a, b in zip(s, s[1:]) if a >= b]
        assert not bad, f"{ch}: seqs not increasing: {bad[:5]}"
    return seqs


def test_conflate_keeps_the_newest_of_every_channel(node):
    n = node(*LIMITS)

    async def main():
        state = {"ready": asyncio.Event(), "received": 0}
        slow = await stalled_subscriber(n.port)
        fast = asyncio.ensure_future(reader(n, state, PER_CHANNEL * len(CHANNELS)))
        await asyncio.wait_for(state["ready"].wait(), STEP)
        acked = await publish(n, state, PER_CHANNEL)
        fast_got = await asyncio.wait_for(fast, 30)
        # The reader that kept up got everything, in order: conflation is per connection.
        for ch in CHANNELS:
            assert sorted(acked[ch]) == list(range(1, PER_CHANNEL + 1)), ch
            assert fast_got[ch] == list(range(1, PER_CHANNEL + 1)), f"{ch}: the reader missed some"
        before = node_metrics(n.port)
        assert before["wsfan_conflated_total"] > 0, "nothing was conflated: the test proves nothing"

        msgs = await drain(slow)
        seqs = check_order(msgs, acked)
        for ch, s in seqs.items():
            assert s and s[-1] == PER_CHANNEL, f"{ch}: ended at {s[-1:]} instead of the newest"
            assert len(s) < PER_CHANNEL, f"{ch}: nothing conflated on this channel"
        # Nothing is dropped: every message was either received or replaced by a newer one.
        missed = sum(PER_CHANNEL - len(s) for s in seqs.values())
        print(f"stalled subscriber: {len(msgs)} of {PER_CHANNEL * len(CHANNELS)} messages, "
              f"per channel {[len(s) for s in seqs.values()]}")
        after = node_metrics(n.port)
        assert after["wsfan_conflated_total"] == missed, (after["wsfan_conflated_total"], missed)
        assert after["wsfan_drops_total"] == 0
        assert after["wsfan_slow_consumer_closes_total"] == 0
        assert after["wsfan_overloaded"] == 0

        # Below the soft limit again: every message arrives, none conflated.
        state = {"ready": asyncio.Event(), "received": 0}
        fast = asyncio.ensure_future(reader(n, state, 20 * len(CHANNELS)))
        await asyncio.wait_for(state["ready"].wait(), STEP)
        more = await publish(n, state, 20, first_i=PER_CHANNEL)
        await asyncio.wait_for(fast, 30)
        acked = {ch: {**acked[ch], **more[ch]} for ch in CHANNELS}
        seqs = check_order(await drain(slow), acked)
        for ch, s in seqs.items():
            assert s == list(range(PER_CHANNEL + 1, PER_CHANNEL + 21)), f"{ch}: {s}"
        assert node_metrics(n.port)["wsfan_conflated_total"] == missed

        # And it is still an ordinary connection.
        await slow.send_frame(OP_PING, b"still-there")
        f = await slow.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"still-there")
        await slow.aclose()

    run(main(), timeout=180)


STALLED = 16  # the least number of clients behind that can make a worker overloaded


async def publish_batch(ws, items):
    """Publishes [(i, ch, pad)] pipelined; returns how many were refused err overloaded (the
    others are acked)."""
    for n, (i, ch, pad) in enumerate(items):
        await ws.send(json.dumps({"op": "pub", "ch": ch, "id": n, "data": {"i": i, "pad": pad}}))
    refused = 0
    for _ in items:
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert m["op"] == "ack" or m.get("code") == "overloaded", f"publisher got {m}"
        refused += m["op"] != "ack"
    return refused


def test_stalled_conflating_readers_do_not_overload_the_node(node):
    """Readers that stopped reading and only conflate are not getting more than they take,
    even when every newer message is larger than the one it replaces: they must not count
    toward overload, which would refuse every publish on the node for as long as they stay."""
    n = node(*LIMITS)

    async def main():
        slows = [await stalled_subscriber(n.port) for _ in range(STALLED)]
        async with connect(n, "/ws", subprotocols=["ws.json.v1"], max_queue=None) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["op"] == "hello"
            # Fill every stalled reader past the soft limit. On their way there their queues
            # grow, which may refuse publishes for a moment: those are sent again.
            todo = [(i, CHANNELS[k], PAYLOAD) for i in range(PER_CHANNEL)
                    for k in range(len(CHANNELS))]
            while todo:
                if await publish_batch(ws, todo[:BATCH]):
                    await asyncio.sleep(0.05)
                else:
                    todo = todo[BATCH:]
            conflated = node_metrics(n.port)["wsfan_conflated_total"]
            assert conflated > STALLED * 100, f"only {conflated} conflated: not all are over"
            # Now for a while, each message a little larger than the last: none may be refused.
            loop = asyncio.get_running_loop()
            end, i, refused = loop.time() + 2, 0, 0
            while loop.time() < end:
                batch = [(i + k, CHANNELS[k % len(CHANNELS)], "y" * (1000 + i + k))
                         for k in range(BATCH)]
                refused += await publish_batch(ws, batch)
                i += BATCH
                await asyncio.sleep(0.01)
            m = node_metrics(n.port)
            assert refused == 0 and m["wsfan_overloaded"] == 0, \
                f"{refused} of {i} publishes refused: stalled conflating readers made it overloaded"
            assert m["wsfan_conflated_total"] > conflated + STALLED * i // 2
            assert m["wsfan_slow_consumer_closes_total"] == 0
        for c in slows:
            await c.aclose()

    run(main(), timeout=180)
