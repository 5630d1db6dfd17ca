"""The demo web app in headless Chromium (tests/browser/demo.mjs): two pages on two nodes
show the chat's last lines on join, chat, see each other's presence and live ticks, and the
page whose node is frozen then killed resumes on the other node with since: it reports that
it recovered, gets what it missed, and shows nothing twice; two more pages on that node, one
on Server-Sent Events and one long-polling (?transport=sse|poll), follow the same chat and
ticks across the kill, nothing missing and nothing twice. Saves a screenshot (build dir,
browser/demo.png)."""
import json
import os
import pathlib
import shutil
import subprocess
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BROWSER = ROOT / "tests" / "browser"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def test_two_pages_chat_see_presence_ticks_and_survive_a_node_kill(redis, router, node, tmp_path):
    if not (BROWSER / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is not installed: run scripts/browser-deps.sh")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"chromium not found at {CHROMIUM}: run scripts/deps.sh")
    web = tmp_path / "web"
    shutil.copytree(ROOT / "web", web)
    from conftest import free_port
    ports = [free_port(), free_port()]
    (web / "nodes.json").write_text(json.dumps([f"ws://127.0.0.1:{p}/ws" for p in ports]))
    router(redis)
    key = "browser-test-key"
    # Node ids are random by default; naming them after their ports lets demo.mjs find the
    # process behind the node a page is connected to.
    nodes = [node("--redis", f"127.0.0.1:{redis.port}", "--workers", "1", "--static", web,
                  "--publish-key", key, "--node-id", f"node-{p}", port=p) for p in ports]
    history = [f"earlier line {i}" for i in range(1, 4)]
    for text in history:  # what the pages show on join, from the history op
        req = urllib.request.Request(
            f"http://127.0.0.1:{ports[1]}/publish/chat.lobby", method="POST",
            data=json.dumps({"user": "carol", "text": text}).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 202
    ticker = subprocess.Popen(
        ["/usr/bin/python3", ROOT / "deploy/local/ticker.py", "--key", key, "--rate", "10",
         *[f"http://127.0.0.1:{p}" for p in ports]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shot = pathlib.Path(os.environ.get("WSFAN_BUILD_DIR", tmp_path)) / "browser" / "demo.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    cfg = {"pageA": f"http://127.0.0.1:{ports[0]}/", "pageB": f"http://127.0.0.1:{ports[1]}/",
           "pgids": {str(n.port): n.pid for n in nodes}, "chromium": CHROMIUM,
           "screenshot": str(shot), "history": history}
    try:
        out = subprocess.run(["node", "demo.mjs", json.dumps(cfg)], cwd=BROWSER,
                             capture_output=True, text=True, timeout=180)
    finally:
        ticker.kill()
        ticker.wait()
    print(out.stdout, out.stderr)
    for line in out.stdout.splitlines():
        if line.startswith("KILLED "):
            killed = next(n for n in nodes if n.port == int(line.split()[1]))
            killed.expect_exit = True
            killed.proc.wait(timeout=10)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "KILLED" in out.stdout and out.stdout.rstrip().endswith("ok")
    assert shot.stat().st_size > 10000, "the screenshot is missing or empty"
