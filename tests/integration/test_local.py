"""deploy/local/up and down, as a user runs them: a cluster with the demo comes up, says so
when asked twice, serves the web app, ticks flow, and down stops every process."""
import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
UP, DOWN, RUN = ROOT / "deploy/local/up", ROOT / "deploy/local/down", ROOT / "deploy/local/run"


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def cluster():
    if (RUN / "pids").exists() and any(
            alive(int(line.split()[1])) for line in (RUN / "pids").read_text().splitlines()):
        pytest.skip("a local cluster is already up on this machine (deploy/local/down stops it)")
    port = 18080 + os.getpid() % 1000  # away from a developer's 8080
    env = dict(os.environ, PORT=str(port))
    yield env
    subprocess.run([DOWN, "--quiet"], timeout=60)


def test_up_serves_the_demo_and_down_stops_everything(cluster):
    out = subprocess.run([UP, "--nodes", "2", "--workers", "1", "--rate", "20", "--detach"],
                         env=cluster, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "wsfan is up" in out.stdout and "deploy/local/down" in out.stdout
    pids = dict(line.split() for line in (RUN / "pids").read_text().splitlines())
    assert set(pids) == {"redis", "router", "node-1", "node-2", "ticker"}
    assert all(alive(int(p)) for p in pids.values())
    urls = [line.split()[0] for line in out.stdout.splitlines() if line.strip().startswith("http://")]
    assert len(urls) == 2
    for u in urls:
        with urllib.request.urlopen(u, timeout=5) as r:
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
        with urllib.request.urlopen(u + "nodes.json", timeout=5) as r:
            assert len(json.load(r)) == 2
    # The ticker publishes through the nodes.
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(urls[0] + "metrics", timeout=5) as r:
            m = r.read().decode()
        pubs = sum(float(l.split()[1]) for l in m.splitlines() if l.startswith("wsfan_publishes_total "))
        if pubs >= 5:
            break
        assert time.monotonic() < deadline, "no ticks published"
        time.sleep(0.2)
    # A second up says so instead of failing obscurely.
    again = subprocess.run([UP, "--detach"], env=cluster, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "already up" in again.stderr, again.stderr
    assert all(alive(int(p)) for p in pids.values())
    # down stops every process, the nodes by draining.
    out = subprocess.run([DOWN], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Stopped" in out.stdout
    assert not any(alive(int(p)) for p in pids.values())
    for i in (1, 2):
        assert "all workers stopped" in (RUN / f"logs/node-{i}.log").read_text()
    assert subprocess.run([DOWN], capture_output=True, text=True, timeout=60).stdout.startswith(
        "No local cluster")


def test_ctrl_c_stops_a_foreground_cluster(cluster):
    p = subprocess.Popen([UP, "--workers", "1"], env=cluster, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        for line in p.stdout:
            if "Ctrl-C" in line:
                break
            assert time.monotonic() < deadline
        pids = [int(line.split()[1]) for line in (RUN / "pids").read_text().splitlines()]
        assert all(alive(pid) for pid in pids)
        os.killpg(p.pid, 2)  # Ctrl-C reaches the whole foreground group
        assert p.wait(timeout=60) is not None
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "processes left after Ctrl-C"
            time.sleep(0.1)
    finally:
        if p.poll() is None:
            p.kill()
