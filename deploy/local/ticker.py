#!/usr/bin/python3
"""The demo publisher: random-walk price ticks for a few symbols, published on ticks.<SYMBOL>
through POST /publish of whichever node answers (the next one when a node is down).

    deploy/local/ticker.py --key KEY [--rate 4] http://127.0.0.1:8080 [http://127.0.0.1:8081 ...]

--rate is ticks a second per symbol. Standard library only.
"""
import argparse
import http.client
import json
import random
import sys
import time
import urllib.parse

START = {"EURUSD": 1.0841, "GBPUSD": 1.2650, "USDJPY": 151.20, "BTCUSD": 67250.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key", required=True, help="the nodes' --publish-key")
    ap.add_argument("--rate", type=float, default=4, help="ticks a second per symbol")
    ap.add_argument("nodes", nargs="+", help="node base URLs, http://host:port")
    args = ap.parse_args()
    prices = dict(START)
    nodes = [urllib.parse.urlsplit(u) for u in args.nodes]
    current, conn, sent = 0, None, 0
    interval = 1 / (args.rate * len(prices))
    next_at = time.monotonic()
    while True:
        for symbol in prices:
            prices[symbol] *= 1 + random.gauss(0, 0.0004)
            digits = 2 if prices[symbol] > 100 else 5
            body = json.dumps({"symbol": symbol, "price": round(prices[symbol], digits),
                               "ts": int(time.time() * 1000)})
            for _ in range(len(nodes)):  # try each node once
                node = nodes[current]
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(node.hostname, node.port, timeout=2)
                    conn.request("POST", f"/publish/ticks.{symbol}", body,
                                 {"Authorization": f"Bearer {args.key}",
                                  "Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    conn.close()  # wsnode answers with Connection: close
                    conn = None
                    if resp.status == 202:
                        sent += 1
                        break
                    print(f"ticker: {node.netloc} answered {resp.status}", file=sys.stderr)
                except OSError as e:
                    print(f"ticker: {node.netloc}: {e}; trying the next node", file=sys.stderr)
                if conn is not None:
                    conn.close()
                conn = None
                current = (current + 1) % len(nodes)
            next_at += interval
            time.sleep(max(0, next_at - time.monotonic()))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
