#!/usr/bin/python3
"""A two-client tour of client protocol v1 against a running wsnode.

    /usr/bin/python3 deploy/demo.py [ws://127.0.0.1:8080/ws]
"""
import asyncio
import json
import sys

import websockets


async def main(url):
    async with websockets.connect(url, subprotocols=["ws.json.v1"]) as alice, \
               websockets.connect(url, subprotocols=["ws.json.v1"]) as bob:
        nodes = []
        for name, ws in (("alice", alice), ("bob", bob)):
            hello = await ws.recv()
            nodes.append(json.loads(hello)["node"])
            print(f"{name} <- {hello}")
        alice_node, bob_node = nodes

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
    print("demo done: both clients saw the same messages in the same seq order"
          + (" (on two different workers, joined through Redis)" if alice_node != bob_node else ""))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/ws"))
