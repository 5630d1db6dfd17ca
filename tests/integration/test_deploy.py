"""The deployment files: deploy/systemd/{wsnode,wsrouter}.service, deploy/systemd/wsfan.env and
deploy/haproxy/haproxy.cfg (docs/deploy.md).

- systemd-analyze verify accepts both units (ExecStart pointed at the built binaries);
- the units keep what docs/deploy.md promises (drain on stop, restarts, Wants= on Redis,
  hardening) and agree with the env file (TimeoutStopSec above the drain);
- every option in WSNODE_OPTS / WSROUTER_OPTS is a real flag of its binary with a valid
  value, and the node's --router-shards matches the router's --shard i/N;
- haproxy -c accepts the HAProxy example.

Skipped, with the reason, where systemd-analyze or haproxy is missing or cannot run.
"""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import haproxy_check, option_value, program_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]
SYSTEMD_DIR = ROOT / "deploy" / "systemd"
ENV_FILE = SYSTEMD_DIR / "wsfan.env"
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
INSTALLED_ENV_FILE = "/etc/default/wsfan"


def binary(var, default):
    """Absolute path of a binary from $var (relative to the cwd, else to the repo root)."""
    p = pathlib.Path(os.environ.get(var) or default)
    if not p.is_absolute():
        p = (pathlib.Path.cwd() / p) if (pathlib.Path.cwd() / p).exists() else ROOT / p
    return p.resolve()


WSNODE = binary("WSNODE", "build/node/wsnode")
WSROUTER = binary("WSROUTER", "build/router/wsrouter")
# unit -> (built binary, installed path in ExecStart, its variable in the env file)
UNITS = {
    "wsnode.service": (WSNODE, "/usr/local/bin/wsnode", "WSNODE_OPTS"),
    "wsrouter.service": (WSROUTER, "/usr/local/bin/wsrouter", "WSROUTER_OPTS"),
}


def need(path):
    if not os.access(path, os.X_OK):
        pytest.fail(f"binary not found at {path} (set WSNODE / WSROUTER)")
    return str(path)


# --------------------------------------------------------------------------- parsing


def read_env_file(path=ENV_FILE):
    """{KEY: value} of a systemd EnvironmentFile (KEY=value or KEY="value", # comments)."""
    env = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.fullmatch(r'([A-Za-z_][A-Za-z0-9_]*)=(.*)', line)
        assert m, f"{path}:{n}: not KEY=value: {line!r}"
        key, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key] = value
    return env


def read_unit(path):
    """{(section, key): [values]} of a unit file (keys may repeat)."""
    unit, section = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        unit.setdefault((section, key.strip()), []).append(value.strip())
    return unit


def one(unit, section, key):
    values = unit.get((section, key))
    assert values, f"[{section}] {key}= missing"
    return values[-1]


def seconds(value):
    """systemd time span ("20", "20s", "1min 30s") in seconds."""
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)\s*(ms|s|sec|min|m|h)?", value):
        total += float(num) * {"ms": 0.001, "min": 60, "m": 60, "h": 3600}.get(unit, 1)
    return total


def help_flags(prog):
    """{flag: metavar or None} as `prog --help` prints them (None: the flag takes no value)."""
    return {flag: metavar for flag, (metavar, _) in program_flags(prog).items()}


# --------------------------------------------------------------------------- systemd-analyze


@pytest.fixture(scope="module")
def verify_cmd(tmp_path_factory):
    """The systemd-analyze verify command line that works here, or a skip with the reason."""
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    d = tmp_path_factory.mktemp("probe")
    (d / "probe.service").write_text("[Unit]\nDescription=probe\n[Service]\nExecStart=/bin/true\n")
    tried = []
    # --recursive-errors=no (systemd 250+): problems in units ours only point at (the host's
    # redis-server.service) are not ours; older versions don't know the flag.
    for extra in (["--recursive-errors=no"], []):
        cmd = [exe, "verify", *extra]
        out = subprocess.run([*cmd, str(d / "probe.service")], capture_output=True, text=True,
                             timeout=60, cwd=d)
        if out.returncode == 0 and "probe.service" not in out.stdout + out.stderr:
            return cmd
        tried.append(f"{' '.join(cmd)}: exit {out.returncode}: {(out.stdout + out.stderr).strip()}")
    pytest.skip("systemd-analyze verify cannot run in this environment; a trivial unit gave:\n"
                + "\n".join(tried))


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_analyze_verify_accepts_the_unit(name, verify_cmd, tmp_path):
    built, installed, _ = UNITS[name]
    need(built)
    text = (SYSTEMD_DIR / name).read_text()
    assert re.search(rf"^ExecStart={re.escape(installed)} ", text, re.M), \
        f"{name}: ExecStart does not run {installed}"
    text = re.sub(rf"^(ExecStart=){re.escape(installed)}\b", rf"\g<1>{built}", text, flags=re.M)
    text = text.replace(INSTALLED_ENV_FILE, str(ENV_FILE))
    unit = tmp_path / name
    unit.write_text(text)
    out = subprocess.run([*verify_cmd, str(unit)], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    output = out.stdout + out.stderr
    mentions = [line for line in output.splitlines() if name in line or str(tmp_path) in line]
    assert out.returncode == 0 and not mentions, \
        f"systemd-analyze verify {name}: exit {out.returncode}\n{output}"


# --------------------------------------------------------------------------- unit contents


def test_the_units_drain_restart_and_are_hardened():
    env = read_env_file()
    drain = float(option_value(env["WSNODE_OPTS"].split(), "drain-timeout") or 10)
    node, router = (read_unit(SYSTEMD_DIR / n) for n in ("wsnode.service", "wsrouter.service"))

    # wsnode: SIGTERM to the master only, which drains and SIGKILLs its workers at drain + 2 s;
    # systemd must not kill the cgroup before that.
    assert one(node, "Service", "KillMode") == "mixed"
    assert one(node, "Service", "KillSignal") == "SIGTERM"
    stop = seconds(one(node, "Service", "TimeoutStopSec"))
    assert stop > drain + 2, f"TimeoutStopSec={stop} must exceed --drain-timeout {drain} + 2"
    assert one(node, "Service", "Restart") == "on-failure"
    assert one(router, "Service", "Restart") in ("always", "on-failure")
    # each worker takes the limit minus 32: well above one process's worth of defaults
    assert int(one(node, "Service", "LimitNOFILE").split(":")[0]) >= 65536

    for name, unit, var in (("wsnode", node, "WSNODE_OPTS"), ("wsrouter", router, "WSROUTER_OPTS")):
        text = (SYSTEMD_DIR / f"{name}.service").read_text()
        assert text.startswith("#") and "systemctl enable" in text.split("[Unit]")[0], \
            f"{name}.service: no install comment at the top"
        assert one(unit, "Service", "EnvironmentFile").lstrip("-") == INSTALLED_ENV_FILE
        assert f"${var}" in one(unit, "Service", "ExecStart").split()
        wants = " ".join(unit.get(("Unit", "Wants"), []))
        after = " ".join(unit.get(("Unit", "After"), []))
        requires = " ".join(unit.get(("Unit", "Requires"), []) + unit.get(("Unit", "BindsTo"), []))
        assert "redis-server.service" in wants.split() and "redis-server.service" in after.split()
        assert "redis-server.service" not in requires, f"{name}: must survive Redis restarts"
        for key, value in {
            "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
            "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
            "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
            "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
            "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
            "CapabilityBoundingSet": "",
        }.items():
            assert one(unit, "Service", key) == value, f"{name}.service: {key}"
        assert sorted(one(unit, "Service", "RestrictAddressFamilies").split()) == \
            ["AF_INET", "AF_INET6", "AF_UNIX"]


# --------------------------------------------------------------------------- the env file


@pytest.mark.parametrize("name", sorted(UNITS))
def test_env_file_options_are_real_flags_with_valid_values(name):
    built, _, var = UNITS[name]
    prog = need(built)
    env = read_env_file()
    assert var in env, f"{ENV_FILE} has no {var}"
    tokens = env[var].split()  # systemd splits an unquoted $VAR at whitespace, no quoting
    assert tokens, f"{var} is empty"
    flags = help_flags(prog)
    # Every token is a flag of this binary or the value right after one that takes a value
    # (the binaries ignore stray words, so check that here).
    i = 0
    while i < len(tokens):
        t = tokens[i]
        assert t.startswith("--"), f"{var}: {t!r} is not a flag nor the value of one"
        flag, eq, _ = t[2:].partition("=")
        assert flag in flags, f"{var}: --{flag} is not in `{os.path.basename(prog)} --help`"
        assert flag not in ("help", "version"), f"{var}: --{flag} would stop the service"
        if flags[flag] is not None and not eq:
            assert i + 1 < len(tokens), f"{var}: --{flag} needs a value ({flags[flag]})"
            i += 1
        i += 1
    # The binary's own parser checks every value; --help last exits 0 only if all parsed.
    out = subprocess.run([prog, *tokens, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, f"{var} rejected by {prog}: {out.stderr}"


def test_env_file_node_and_router_agree_on_the_shard_count():
    env = read_env_file()
    node, router = env["WSNODE_OPTS"].split(), env["WSROUTER_OPTS"].split()
    shards = int(option_value(node, "router-shards") or 1)
    i, n = (int(x) for x in (option_value(router, "shard") or "0/1").split("/"))
    assert n == shards and 0 <= i < n, f"--router-shards {shards} vs --shard {i}/{n}"
    assert option_value(node, "redis"), "wsnode needs --redis (workers > 1, wsrouter)"
    assert option_value(node, "redis") == option_value(router, "redis")
    assert option_value(node, "redis-prefix") == option_value(router, "redis-prefix")


# --------------------------------------------------------------------------- haproxy


def test_haproxy_config_is_valid():
    haproxy_check(HAPROXY_CFG)


def test_haproxy_config_is_tcp_leastconn_with_healthz_checks():
    words = [line.split("#")[0].split() for line in HAPROXY_CFG.read_text().splitlines()]
    lines = {" ".join(w) for w in words if w}
    for want in ("mode tcp", "balance leastconn", "option httpchk", "http-check expect status 200",
                 "timeout tunnel 1h"):
        assert want in lines, f"haproxy.cfg: no `{want}`"
    assert any(l.startswith("http-check send meth GET uri /healthz") for l in lines)
    servers = [l for l in lines if l.startswith("server ")]
    assert len(servers) >= 2, "several wsnode hosts"
    assert any(l.startswith("default-server") and " check" in f" {l} " for l in lines) or \
        all(" check" in f" {l} " for l in servers), "servers without health checks"
