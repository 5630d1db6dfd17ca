"""/ws client protocol v1: hello, sub/unsub/pub, acks, ordered delivery, errors."""

import asyncio
import json
from contextlib import asynccontextmanager

import pytest

from conftest import OP_TEXT, STEP, Raw, build_frame, connect, run, sub_ack


class Client:
    """A /ws client: JSON requests out, JSON frames in. Frames read while waiting for one
    thing are kept for later reads, so acks and msgs may arrive in any interleaving."""

    def __init__(self, ws):
        self.ws = ws
        self.pending = []
        self.hello = None

    async def send(self, obj_or_text):
        text = obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text)
        await self.ws.send(text)

    async def _read(self, timeout):
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(text, str), f"server sent a binary frame: {text!r}"
        return text

    async def next_raw(self, timeout=STEP):
        """(text, parsed) of the next frame."""
        if self.pending:
            return self.pending.pop(0)
        text = await self._read(timeout)
        return text, json.loads(text)

    async def next(self, timeout=STEP):
        return (await self.next_raw(timeout))[1]

    async def until(self, pred, timeout=STEP):
        """The first frame (text, parsed) matching pred, and the parsed frames before it.
        Frames that don't match stay queued for later reads."""
        for i, (text, m) in enumerate(self.pending):
            if pred(m):
                before = [mm for _, mm in self.pending[:i]]
                del self.pending[i]
                return (text, m), before
        before = [m for _, m in self.pending]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no matching frame within {timeout}s; got {before}")
            try:
                text = await self._read(left)
            except asyncio.TimeoutError:
                raise AssertionError(f"no matching frame within {timeout}s; got {before}") \
                    from None
            m = json.loads(text)
            if pred(m):
                return (text, m), before
            self.pending.append((text, m))
            before.append(m)

    async def request(self, obj):
        """Sends a request with an id; returns the ack or err answering it."""
        await self.send(obj)
        (_, reply), _ = await self.until(lambda m: m.get("id") == obj["id"]
                                         and m.get("op") in ("ack", "err"))
        return reply

    async def sub(self, ch, id):
        reply = await self.request({"op": "sub", "ch": ch, "id": id})
        assert sub_ack(reply) == {"op": "ack", "id": id}, reply
        return reply

    async def unsub(self, ch, id):
        reply = await self.request({"op": "unsub", "ch": ch, "id": id})
        assert reply == {"op": "ack", "id": id}, reply

    async def pub(self, ch, data_json, id, need_seq=True):
        """Publishes raw JSON text as data; returns the ack's seq (None when the ack has
        none and need_seq is False)."""
        await self.send(f'{{"op":"pub","ch":{json.dumps(ch)},"id":{id},"data":{data_json}}}')
        (_, reply), _ = await self.until(lambda m: m.get("id") == id
                                         and m.get("op") in ("ack", "err"))
        assert reply.get("op") == "ack", reply
        if need_seq or "seq" in reply:
            assert isinstance(reply.get("seq"), int), f"ack without seq: {reply}"
        return reply.get("seq")

    async def msg(self, ch=None, timeout=STEP):
        """Next msg frame (on ch if given), as (raw text, parsed)."""
        item, _ = await self.until(
            lambda m: m.get("op") == "msg" and (ch is None or m.get("ch") == ch), timeout)
        return item

    async def fence(self, ch="fence", id=999999):
        """Publishes to `ch` (which this client must be subscribed to) and returns every
        msg frame that arrived before that fence message: a way to assert that something
        was NOT delivered without sleeping. Consumes the fence's ack and msg."""
        await self.send(f'{{"op":"pub","ch":"{ch}","id":{id},"data":"fence"}}')
        _, before = await self.until(lambda m: m.get("op") == "msg" and m.get("ch") == ch
                                     and m.get("data") == "fence")
        await self.until(lambda m: m.get("id") == id)
        return [m for m in before if m.get("op") == "msg"]


@asynccontextmanager
async def client(node, protocols=("ws.json.v1",)):
    async with connect(node, "/ws", subprotocols=list(protocols) if protocols else None,
                       max_queue=None) as ws:
        c = Client(ws)
        c.hello = await c.next()
        yield c


def test_hello_is_the_first_frame(node):
    n = node("--node-id", "itest")

    async def main():
        async with client(n) as a, client(n) as b:
            for c in (a, b):
                h = c.hello
                assert h["op"] == "hello", h
                assert isinstance(h["client"], str) and h["client"]
                assert isinstance(h["node"], str) and h["node"].startswith("itest"), h
            assert a.hello["client"] != b.hello["client"]
            assert a.hello["node"] == b.hello["node"]

    run(main())


def test_hello_without_offered_subprotocol(node):
    """ws.json.v1 is the default when the client offers no subprotocol."""
    n = node()

    async def main():
        async with client(n, protocols=None) as c:
            assert c.hello["op"] == "hello"
            assert c.ws.subprotocol is None
            await c.sub("room.1", 1)

    run(main())


def test_requests_in_the_same_packet_as_the_handshake(node):
    """Frames sent with the request head are processed, after the hello."""
    n = node()

    async def main():
        reqs = b"".join(build_frame(OP_TEXT, json.dumps(r)) for r in [
            {"op": "sub", "ch": "early", "id": 1},
            {"op": "pub", "ch": "early", "id": 2, "data": "first"}])
        c = await Raw.handshake(n.port, "/ws", extra=reqs, protocol="ws.json.v1")
        assert c.response.header("sec-websocket-protocol") == "ws.json.v1"
        assert (await c.recv_json())["op"] == "hello"
        got = [await c.recv_json() for _ in range(3)]
        assert sub_ack(got[0]) == {"op": "ack", "id": 1}
        ack = next(m for m in got if m.get("id") == 2)
        msg = next(m for m in got if m.get("op") == "msg")
        assert msg == {"op": "msg", "ch": "early", "seq": ack["seq"], "data": "first"}
        await c.aclose()

    run(main())


def test_pub_reaches_every_subscriber_and_acks_publisher(node):
    n = node()

    async def main():
        async with client(n) as a, client(n) as b, client(n) as p, client(n) as other:
            await a.sub("room.1", 1)
            await b.sub("room.1", 1)
            await other.sub("room.2", 1)
            await other.sub("fence", 2)
            await p.sub("fence", 7)
            seq = await p.pub("room.1", '{"k":"v"}', 3)
            for c in (a, b):
                text, m = await c.msg("room.1")
                assert m == {"op": "msg", "ch": "room.1", "seq": seq, "data": {"k": "v"}}, m
            # neither the unsubscribed publisher nor a subscriber of another channel got it
            assert await p.fence() == []
            assert await other.fence(id=5) == []

    run(main())


def test_subscribed_publisher_gets_its_own_message(node):
    n = node()

    async def main():
        async with client(n) as p:
            await p.sub("room.1", 1)
            seq = await p.pub("room.1", "[1,2,3]", 2)
            _, m = await p.msg("room.1")
            assert m == {"op": "msg", "ch": "room.1", "seq": seq, "data": [1, 2, 3]}

    run(main())


def test_seq_increments_by_one_and_all_subscribers_see_the_same_order(node):
    n = node()
    per_pub = 60

    async def main():
        async with client(n) as s1, client(n) as s2, client(n) as p1, client(n) as p2:
            await s1.sub("room.1", 1)
            await s2.sub("room.1", 1)

            async def publish(p, tag):
                for i in range(per_pub):  # pipelined: no waiting for acks in between
                    await p.send(f'{{"op":"pub","ch":"room.1","id":{i + 1},'
                                 f'"data":{{"from":"{tag}","i":{i}}}}}')
                acks = {}
                while len(acks) < per_pub:
                    m = await p.next()
                    assert m["op"] == "ack", m
                    acks[m["id"]] = m["seq"]
                return acks

            acks1, acks2 = await asyncio.gather(publish(p1, "p1"), publish(p2, "p2"))
            got1 = [(await s1.msg("room.1"))[1] for _ in range(2 * per_pub)]
            got2 = [(await s2.msg("room.1"))[1] for _ in range(2 * per_pub)]
            assert got1 == got2
            seqs = [m["seq"] for m in got1]
            assert seqs == list(range(seqs[0], seqs[0] + 2 * per_pub))
            for tag, acks in (("p1", acks1), ("p2", acks2)):
                mine = [m for m in got1 if m["data"]["from"] == tag]
                assert [m["data"]["i"] for m in mine] == list(range(per_pub)), \
                    f"{tag}'s messages out of publish order"
                assert [m["seq"] for m in mine] == [acks[i + 1] for i in range(per_pub)], \
                    "ack seq differs from the delivered seq"

    run(main())


def test_seq_is_per_channel(node):
    n = node()

    async def main():
        async with client(n) as p:
            await p.sub("chan.a", 10)
            await p.sub("chan.b", 11)
            a1 = await p.pub("chan.a", "1", 1)
            b1 = await p.pub("chan.b", "1", 2)
            b2 = await p.pub("chan.b", "2", 3)
            a2 = await p.pub("chan.a", "2", 4)
            assert a2 == a1 + 1
            assert b2 == b1 + 1

    run(main())


DATA = [
    '{"a": [1, 2.50, "x\\u00e9"] , "b":null}',
    '"plain string with \\"quotes\\" and \\\\ and \\n"',
    '12345678901234567890123',
    '-0.0e+10',
    '1E3',
    'true',
    'false',
    'null',
    '[]',
    '{}',
    '[ 1 ,\t2 ,\n3 ]',
    '{"nested":{"deep":[[[{"x":"\\ud83d\\ude00"}]]]},"utf8":"\u00e9\u20ac\U0001f600"}',
    '"\\u0000\\u001f\\/"',
]


@pytest.mark.parametrize("data", DATA, ids=range(len(DATA)))
def test_data_is_forwarded_byte_for_byte(node, data):
    n = node()

    async def main():
        async with client(n) as s, client(n) as p:
            await s.sub("room.1", 1)
            seq = await p.pub("room.1", data, 2)
            text, m = await s.msg("room.1")
            assert data in text, f"data not forwarded verbatim: sent {data!r}, got {text!r}"
            assert m["seq"] == seq and m["ch"] == "room.1"
            assert m["data"] == json.loads(data)

    run(main())


def test_unsub_stops_delivery(node):
    n = node()

    async def main():
        async with client(n) as s, client(n) as p:
            await s.sub("room.1", 1)
            await s.sub("fence", 2)
            await p.pub("room.1", '"before"', 1)
            _, m = await s.msg("room.1")
            assert m["data"] == "before"
            await s.unsub("room.1", 3)
            await p.pub("room.1", '"after"', 2, need_seq=False)
            assert await s.fence() == [], "message delivered after unsub"
            await s.sub("room.1", 4)  # and resubscribing works again
            await p.pub("room.1", '"again"', 3)
            _, m = await s.msg("room.1")
            assert m["data"] == "again"

    run(main())


def test_double_sub_delivers_once(node):
    n = node()

    async def main():
        async with client(n) as s:
            await s.sub("room.1", 1)
            await s.request({"op": "sub", "ch": "room.1", "id": 2})  # ack or err, not both
            await s.sub("fence", 3)
            await s.pub("room.1", '"once"', 4)
            msgs = await s.fence()
            assert [m["data"] for m in msgs] == ["once"], msgs

    run(main())


ERRORS = [
    # (request text, expected code, expected id or None when it can't be known)
    ('{"op":"pub","ch":"room.1","data":1,"id":7', "bad_json", None),
    ("not json at all", "bad_json", None),
    ("", "bad_json", None),
    ('{"op":"sub","ch":"room.1","id":8}}', "bad_json", None),
    ('{"op":"nope","ch":"room.1","id":5}', "bad_op", 5),
    ('{"ch":"room.1","id":6}', "bad_op", 6),
    ('{"op":"sub","ch":"","id":10}', "bad_channel", 10),
    ('{"op":"sub","ch":"has space","id":11}', "bad_channel", 11),
    ('{"op":"sub","ch":"caf\u00e9","id":12}', "bad_channel", 12),
    ('{"op":"sub","ch":"a/b","id":13}', "bad_channel", 13),
    ('{"op":"sub","ch":"' + "x" * 201 + '","id":14}', "bad_channel", 14),
    ('{"op":"pub","ch":"room 1","data":1,"id":15}', "bad_channel", 15),
    ('{"op":"unsub","ch":"*","id":16}', "bad_channel", 16),
    ('{"op":"pub","ch":"room.1","id":17}', "bad_request", 17),
    ('{"op":"pub","ch":"room.1","id":18,"data":"' + "x" * 2000 + '"}', "too_large", 18),
    ('{"op":"presence","ch":"room 1","id":19}', "bad_channel", 19),
    ('{"op":"send","to":"someone","data":{"x":1},"id":20}', "not_found", 20),
    ('{"op":"send","data":{"x":1},"id":21}', "bad_request", 21),
    ('{"op":"send","to":"x.1","id":22}', "bad_request", 22),
    ('{"op":"presence","ch":"room.1","count":1,"id":23}', "bad_request", 23),
]


@pytest.mark.parametrize("text,code,id", ERRORS, ids=[f"{c}-{i}" for i, (_, c, _i) in
                                                     enumerate(ERRORS)])
def test_error_replies(node, text, code, id):
    n = node("--max-data", "1k")

    async def main():
        async with client(n) as s, client(n) as c:
            await s.sub("room.1", 1)
            await s.sub("fence", 2)
            await c.send(text)
            err = await c.next()
            assert err.get("op") == "err", err
            assert err.get("code") == code, err
            assert isinstance(err.get("reason"), str), err
            if id is not None:
                assert err.get("id") == id, err
            # the connection stays usable and nothing reached the subscriber
            await c.sub("room.2", 100)
            assert await s.fence() == [], "a rejected request was forwarded"

    run(main())


def test_non_object_json_is_an_error(node):
    n = node()

    async def main():
        async with client(n) as c:
            for text in ('[1,2]', '"sub"', '42', 'null'):
                await c.send(text)
                err = await c.next()
                assert err.get("op") == "err" and err.get("code") in (
                    "bad_json", "bad_op", "bad_request"), (text, err)
            await c.sub("room.1", 1)

    run(main())


def test_max_data_boundary(node):
    n = node("--max-data", "1k")

    async def main():
        async with client(n) as p:
            exact = '"' + "x" * 1022 + '"'  # 1024 bytes of data
            await p.pub("room.1", exact, 1, need_seq=False)
            await p.send('{"op":"pub","ch":"room.1","id":2,"data":"' + "x" * 1023 + '"}')
            err = await p.next()
            assert err.get("op") == "err" and err.get("code") == "too_large", err
            assert err.get("id") == 2

    run(main())


def test_channel_name_limits(node):
    n = node()

    async def main():
        longest = "c" * 200
        odd = "Az09._:-"
        async with client(n) as s:
            await s.sub(longest, 1)
            await s.sub(odd, 2)
            seq = await s.pub(longest, '"long"', 3)
            _, m = await s.msg(longest)
            assert m["seq"] == seq and m["data"] == "long"
            await s.pub(odd, '"odd"', 4)
            _, m = await s.msg(odd)
            assert m["data"] == "odd"

    run(main())


def test_max_subs(node):
    n = node("--max-subs", "2")

    async def main():
        async with client(n) as s:
            await s.sub("a", 1)
            await s.sub("b", 2)
            reply = await s.request({"op": "sub", "ch": "c", "id": 3})
            assert reply["op"] == "err", f"third sub over --max-subs 2 accepted: {reply}"
            await s.unsub("a", 4)
            await s.sub("c", 5)

    run(main())


def test_pub_without_subscribers_is_acked_with_seq(node):
    """The publisher's ack carries the channel seq whether or not anyone listens."""
    n = node()

    async def main():
        async with client(n) as p:
            s1 = await p.pub("empty.room", '"nobody"', 1)
            s2 = await p.pub("empty.room", '"still nobody"', 2)
            assert s2 == s1 + 1

    run(main())


def test_seq_continues_after_all_subscribers_left(node):
    """seq increases by one per publish on the channel, also across a time without
    subscribers: a resubscribing client must not see seq go back."""
    n = node()

    async def main():
        async with client(n) as s, client(n) as p:
            await s.sub("room.1", 1)
            s1 = await p.pub("room.1", "1", 1)
            await s.unsub("room.1", 2)
            await p.pub("room.1", "2", 2, need_seq=False)
            await s.sub("room.1", 3)
            s3 = await p.pub("room.1", "3", 3)
            assert s3 > s1, f"seq went back from {s1} to {s3}"
            assert s3 == s1 + 2

    run(main())


def test_subscriber_vanishing_does_not_disturb_publishing(node):
    n = node()

    async def main():
        async with client(n) as p:
            await p.sub("room.1", 100)
            # a subscriber that drops its TCP connection without a close handshake
            raw = await Raw.handshake(n.port, "/ws", protocol="ws.json.v1")
            assert (await raw.recv_json())["op"] == "hello"
            await raw.send_frame(OP_TEXT, '{"op":"sub","ch":"room.1","id":1}')
            assert sub_ack(await raw.recv_json()) == {"op": "ack", "id": 1}
            s1 = await p.pub("room.1", "1", 1)
            assert (await p.msg("room.1"))[1]["seq"] == s1
            raw.close()
            for i in range(2, 50):
                assert await p.pub("room.1", str(i), i) == s1 + i - 1
                _, m = await p.msg("room.1")
                assert (m["seq"], m["data"]) == (s1 + i - 1, i)
        async with client(n) as again:
            await again.sub("room.1", 1)

    run(main())
