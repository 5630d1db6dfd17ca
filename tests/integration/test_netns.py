"""deploy/netns/run: Redis, two wsnode nodes, wsrouter and wsload, each in its own network
namespace with its own address on a bridge. Every message published on node1 must reach the
subscribers on node2 through Redis across veth interfaces, once and in order. While the run is
on, the test looks into the nodes' and Redis's namespaces itself (ss) to see whose connections
they hold, and afterwards it checks that no namespace, bridge or veth of the run is left."""
import ipaddress
import json
import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest

from conftest import WSNODE

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = ROOT / "deploy" / "netns" / "run"
# The binaries the other tests use: WSNODE=<build>/node/wsnode, so <build> holds all three.
BUILD = pathlib.Path(WSNODE).resolve().parents[1]
SUBSCRIBERS, CHANNELS, PUBLISHERS = 200, 4, 2  # the script's defaults
ROLES = ("redis", "node1", "node2", "router", "load")


def require_netns():
    """Skips unless this process may create network namespaces and bridges."""
    if os.geteuid() != 0:
        pytest.skip("needs root: ip netns add and ip link add (run the tests as root)")
    if not shutil.which("ip"):
        pytest.skip("ip (iproute2) is not installed")
    probe, bridge = f"wsfan-probe-{os.getpid()}", f"wfpr{os.getpid()}"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        pytest.skip(f"ip netns add is not permitted here: {p.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    p = subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], capture_output=True,
                       text=True, timeout=10)
    if p.returncode != 0:
        pytest.skip(f"ip link add (bridge) is not permitted here: {p.stderr.strip()}")
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=10)


def established(tag, role, port):
    """(local, remote) address pairs of the established TCP connections on `port` in a role's
    namespace, as its kernel sees them; [] while the namespace does not exist."""
    p = subprocess.run(["ip", "netns", "exec", f"wsfan-{tag}-{role}", "ss", "-Htn", "state",
                        "established", f"( sport = :{port} )"], capture_output=True, text=True,
                       timeout=10)
    if p.returncode != 0:
        return []
    out = []
    for line in p.stdout.splitlines():
        f = line.split()  # Recv-Q Send-Q Local:Port Peer:Port
        if len(f) >= 4:
            out.append((f[2].rsplit(":", 1)[0], f[3].rsplit(":", 1)[0]))
    return out


def leftovers(tag):
    ns = [line.split()[0] for line in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout.splitlines()
        if line.startswith(f"wsfan-{tag}-")]
    links = re.findall(rf"\b(wfbr{tag}|wf{tag}-[a-z0-9]+)\b", subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10).stdout)
    dirs = [str(d) for d in pathlib.Path("/tmp").glob(f"wsfan-netns-{tag}.*")]
    return ns + links + dirs


def test_netns_run_crosses_real_interfaces_without_loss_and_leaves_nothing(tmp_path):
    require_netns()
    for f in ("node/wsnode", "router/wsrouter", "loadtest/wsload"):
        assert os.access(BUILD / f, os.X_OK), f"{BUILD / f} not built (WSNODE={WSNODE})"
    tag = f"t{os.getpid() % 1000000}"
    assert not leftovers(tag), f"a run with tag {tag} is already there: {leftovers(tag)}"
    out_path, result_path = tmp_path / "run.out", tmp_path / "wsload.json"

    # While the script runs, the connections each namespace's kernel holds, polled.
    seen = {role: set() for role in ("node1", "node2", "redis")}
    most = {"node1": 0, "node2": 0}
    with open(out_path, "w") as out:
        proc = subprocess.Popen([str(RUN), "--duration", "3", "--binaries", str(BUILD),
                                 "--tag", tag, "--json", str(result_path)],
                                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 150
        try:
            while proc.poll() is None:
                assert time.monotonic() < deadline, "deploy/netns/run did not end within 150 s"
                for role, port in (("node1", 8080), ("node2", 8080), ("redis", 6379)):
                    conns = established(tag, role, port)
                    seen[role] |= set(conns)
                    if role in most:
                        most[role] = max(most[role], len(conns))
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.terminate()  # its trap tears everything down
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                subprocess.run([str(RUN), "--down", tag], capture_output=True, timeout=60)
    text = out_path.read_text()
    print(text)
    assert proc.returncode == 0, f"deploy/netns/run exited with {proc.returncode}:\n{text}"

    # Five addresses in one private /24, none of them loopback.
    addr = dict(re.findall(r"^\s+(redis|node1|node2|router|load)\s+(\d+\.\d+\.\d+\.\d+)\s+"
                           rf"wsfan-{tag}-\1$", text, re.M))
    assert sorted(addr) == sorted(ROLES), text
    nets = {ipaddress.ip_interface(f"{a}/24").network for a in addr.values()}
    assert len(nets) == 1 and next(iter(nets)).is_private, addr
    assert not any(ipaddress.ip_address(a).is_loopback for a in addr.values()), addr

    # Every publish (on node1) reached every subscriber (on node2) once, in order.
    r = json.loads(result_path.read_text())
    m, c = r["messages"], r["connections"]
    assert not r["interrupted"] and c["failed"] == 0 and c["opened"] == SUBSCRIBERS + PUBLISHERS, c
    assert m["sent"] > 0, m
    assert m["expected"] == m["sent"] * (SUBSCRIBERS // CHANNELS), m
    assert m["received"] == m["unique"] == m["expected"], m
    assert m["lost"] == m["duplicates"] == m["reordered"] == 0, m
    assert re.search(rf"^result: sent={m['sent']} expected={m['expected']} .* lost=0 "
                     r"duplicated=0 reordered=0 ", text, re.M), text

    # The messages went through Redis: node1 published each one there, node2 delivered them
    # all (its subscribers are the only ones) and node1 delivered none.
    metrics = {role: dict((k, float(v)) for k, v in re.findall(r"(\w+)=([\d.e+]+)", line))
               for role, line in re.findall(r"^(node[12]) metrics: (.*)$", text, re.M)}
    assert metrics["node1"]["wsfan_redis_published_total"] == m["sent"], metrics
    assert metrics["node2"]["wsfan_redis_received_total"] >= m["sent"], metrics
    assert metrics["node2"]["wsfan_deliveries_total"] == m["expected"], metrics
    assert metrics["node1"]["wsfan_deliveries_total"] == 0, metrics
    for role in ("node1", "node2"):
        assert metrics[role]["wsfan_redis_up"] == metrics[role]["wsfan_workers"] == 2, metrics

    # What the kernels saw: the nodes held the load namespace's connections on their own
    # (non-loopback) addresses, and Redis held the nodes' and the router's links.
    assert most["node2"] >= SUBSCRIBERS and most["node1"] >= PUBLISHERS, (most, seen)
    for role in ("node1", "node2"):
        assert {local for local, _ in seen[role]} == {addr[role]}, seen[role]
        assert {peer for _, peer in seen[role]} == {addr["load"]}, seen[role]
    assert {local for local, _ in seen["redis"]} == {addr["redis"]}, seen["redis"]
    assert {peer for _, peer in seen["redis"]} == {addr["node1"], addr["node2"],
                                                   addr["router"]}, seen["redis"]
    # The script's own account of the same agrees.
    assert re.search(rf"^  node2 {re.escape(addr['node2'])}:8080 from: "
                     rf"{re.escape(addr['load'])} x{SUBSCRIBERS}$", text, re.M), text
    assert re.search(r"^node[12] listening sockets \(one per worker\): 0\.0\.0\.0:8080 x2$",
                     text, re.M), text

    # Nothing of the run is left: no namespace, no bridge, no veth, no run folder.
    assert re.search(rf"^teardown: namespaces wsfan-{tag}-\*, bridge wfbr{tag} ", text, re.M), text
    assert leftovers(tag) == [], leftovers(tag)
