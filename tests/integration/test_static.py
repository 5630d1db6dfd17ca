"""--static DIR: files from memory with their content types; nothing outside DIR, no dotfiles,
no symlinks, whatever the request path says."""
import os
import subprocess

import pytest

from conftest import WSNODE, Raw, http_get, raw_exchange, run


@pytest.fixture
def site(tmp_path):
    d = tmp_path / "site"
    (d / "js").mkdir(parents=True)
    (d / "index.html").write_text("<!doctype html><title>demo</title>")
    (d / "js" / "app.js").write_text("export const x = 1;\n")
    (d / "style.css").write_text("body{}")
    (d / "data.json").write_text("[1]")
    (d / "logo.svg").write_text("<svg/>")
    (d / "blob.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB, every byte value
    (d / ".env").write_text("SECRET=1")
    (tmp_path / "outside.txt").write_text("not for you")
    os.symlink(tmp_path / "outside.txt", d / "link.txt")
    return d


def test_files_are_served_with_their_types(node, site):
    n = node("--static", site)

    async def main():
        for path, ctype, body in [
                ("/", "text/html; charset=utf-8", (site / "index.html").read_bytes()),
                ("/index.html", "text/html; charset=utf-8", (site / "index.html").read_bytes()),
                ("/js/app.js", "text/javascript; charset=utf-8", b"export const x = 1;\n"),
                ("/style.css", "text/css; charset=utf-8", b"body{}"),
                ("/data.json", "application/json", b"[1]"),
                ("/logo.svg", "image/svg+xml", b"<svg/>"),
                ("/blob.bin", "application/octet-stream", (site / "blob.bin").read_bytes()),
                ("/js/%61pp.js?v=3", "text/javascript; charset=utf-8", b"export const x = 1;\n")]:
            r = await http_get(n.port, path)
            assert r.status == 200, (path, r)
            assert r.header("content-type") == ctype, (path, r.headers)
            assert r.body == body, path
            assert r.header("x-content-type-options") == "nosniff"

    run(main())


@pytest.mark.parametrize("path", [
    "/../outside.txt", "/js/../../outside.txt", "/%2e%2e/outside.txt", "/%2E%2E%2Foutside.txt",
    "/.env", "/js/../.env", "/link.txt", "/etc/passwd", "//etc/passwd", "/index.html%00.js",
    "/js/", "/nope", "/%zz", "/%", "index.html"])
def test_nothing_outside_the_folder(node, site, path):
    n = node("--static", site)

    async def main():
        resp = await raw_exchange(n.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert b"not for you" not in resp.body and b"SECRET" not in resp.body
        assert resp.status in (400, 404), resp

    run(main())


def test_head_and_other_methods(node, site):
    n = node("--static", site)

    async def main():
        c = await Raw.open(n.port)
        await c.send(b"HEAD /style.css HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = await c.read_response(body=False)
        assert resp.status == 200 and resp.header("content-length") == "6", resp
        assert await c.reader.read() == b"", "HEAD has no body"
        await c.aclose()
        resp = await raw_exchange(n.port, b"DELETE /style.css HTTP/1.1\r\nHost: x\r\n\r\n")
        assert resp.status == 405 and resp.header("allow") == "GET, HEAD", resp
        # The WebSocket and health endpoints still win over files.
        assert (await http_get(n.port, "/healthz")).status == 200

    run(main())


def test_without_static_there_are_no_files(node):
    n = node()
    assert run(http_get(n.port, "/")).status == 404


def test_a_bad_folder_stops_the_start(tmp_path):
    out = subprocess.run([WSNODE, "--port", "1", "--static", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "--static" in out.stderr
