#!/usr/bin/python3
"""A two-client tour of client protocol v1 against a running wsnode (and wsrouter): pub/sub,
an error, presence with a join event, and a direct message.

    /usr/bin/python3 deploy/demo.py [ws://127.0.0.1:8080/ws]
"""
import asyncio
import json
import sys

import websockets


async def main(url):
    async with websockets.connect(url + "?user=alice", subprotocols=["ws.json.v1"]) as alice, \
               websockets.connect(url + "?user=bob", subprotocols=["ws.json.v1"]) as bob:
        hellos = []
        for name, ws in (("alice", alice), ("bob", bob)):
            hello = await ws.recv()
            hellos.append(json.loads(hello))
            print(f"{name} <- {hello}")
        alice_node, bob_node = (h["node"] for h in hellos)
        bob_client = hellos[1]["client"]

        async def say(name, ws, msg):
            text = json.dumps(msg)
            print(f"{name} -> {text}")
            await ws.send(text)

        async def hear(name, ws):
            print(f"{name} <- {await asyncio.wait_for(ws.recv(), 5)}")

        await say("alice", alice, {"op": "sub", "ch": "demo.room", "id": 1})
        await hear("alice", alice)
        await say("bob", bob, {"op": "sub", "ch": "demo.room", "id": 1})
        await hear("bob", bob)
        for i in range(3):
            await say("bob", bob, {"op": "pub", "ch": "demo.room", "id": 2 + i,
                                   "data": {"text": f"hello #{i + 1}", "from": "bob"}})
            await hear("bob", bob)    # the msg (bob is subscribed too) or the ack
            await hear("bob", bob)
            await hear("alice", alice)
        await say("alice", alice, {"op": "pub", "ch": "no spaces allowed", "data": 1, "id": 9})
        await hear("alice", alice)

        async def until(name, ws, op):
            while True:
                text = await asyncio.wait_for(ws.recv(), 5)
                print(f"{name} <- {text}")
                if json.loads(text)["op"] == op:
                    return json.loads(text)

        # Presence (through wsrouter), join events and a direct message.
        await say("alice", alice, {"op": "sub", "ch": "demo.chat", "events": True, "id": 10})
        await until("alice", alice, "ack")
        await say("bob", bob, {"op": "sub", "ch": "demo.chat", "id": 11})
        await until("bob", bob, "ack")
        await until("alice", alice, "join")
        await say("alice", alice, {"op": "presence", "ch": "demo.chat", "id": 12})
        await until("alice", alice, "presence")
        await say("alice", alice, {"op": "send", "to": bob_client, "data": "psst", "id": 13})
        await until("alice", alice, "ack")
        await until("bob", bob, "msg")
    print("demo done: both clients saw the same messages in the same seq order"
          + (" (on two different workers, joined through Redis)" if alice_node != bob_node else ""))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/ws"))
