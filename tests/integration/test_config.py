"""wsnode's and wsrouter's command lines: --help, docs/configuration.md and refusals agree."""
import os
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
WSNODE = os.environ.get("WSNODE", str(ROOT / "build" / "node" / "wsnode"))
WSROUTER = os.environ.get("WSROUTER", str(ROOT / "build" / "router" / "wsrouter"))


def run(*args, prog=WSNODE):
    return subprocess.run([prog, *args], capture_output=True, text=True, timeout=10)


def help_flags(prog=WSNODE):
    """{flag: default or None} as --help prints them."""
    out = run("--help", prog=prog)
    assert out.returncode == 0
    flags = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\s+--([a-z-]+)", line)
        if m:
            d = re.search(r"\(default ([^)]*)\)\s*$", line)
            flags[m.group(1)] = d.group(1) if d else None
    return flags


def doc_flags(section="wsnode"):
    """{flag: default cell} from the section's table in docs/configuration.md."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    flags = {}
    for m in re.finditer(r"^\| `--([a-z-]+)[^`]*` \|\s*([^|]*?)\s*\|", text, re.M):
        flags[m.group(1)] = m.group(2).strip()
    return flags


def test_every_flag_is_documented_with_its_default():
    helped, documented = help_flags(), doc_flags()
    assert len(helped) > 20
    assert set(helped) == set(documented)
    for flag, default in helped.items():
        if default is not None and not default.startswith(("hostname",)):
            assert documented[flag] == default, flag


def test_every_router_flag_is_documented_with_its_default():
    helped, documented = help_flags(WSROUTER), doc_flags("wsrouter")
    assert len(helped) >= 10
    assert set(helped) == set(documented)
    for flag, default in helped.items():
        if default is not None:
            assert documented[flag] == default, flag


def test_router_refuses_bad_values():
    for args in (["--shard", "2/2"], ["--shard", "1"], ["--shard", "0/0"], ["--event-max", "0"],
                 ["--port", "70000"], ["--nonsense"]):
        out = run(*args, prog=WSROUTER)
        assert out.returncode == 2, args
        assert out.stderr.strip(), args


def test_several_workers_without_a_bus_are_refused_clearly():
    out = run("--workers", "2")
    assert out.returncode == 2
    assert "split channels" in out.stderr


def test_bad_values_are_refused():
    for args in (["--port", "0"], ["--max-message", "12q"], ["--slow-policy", "maybe"],
                 ["--tls-cert", "x.pem"], ["--idle-timeout", "-1"], ["--nonsense"]):
        out = run(*args)
        assert out.returncode == 2, args
        assert out.stderr.strip(), args


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("wsnode ")
