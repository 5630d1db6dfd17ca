"""The container and Kubernetes files (docs/deploy.md, "Containers" and "Kubernetes"):
deploy/container/{Dockerfile,compose.yaml,haproxy.cfg} and deploy/k8s/*.yaml.

No container runtime runs here, so the files are read, not run:
- every wsnode and wsrouter command line in them (compose commands, Kubernetes command + args,
  the Dockerfile's CMD) uses only flags in the built binaries' --help, with values they accept;
- a stopping node has time to drain: grace periods above preStop + --drain-timeout + 2 s;
- readiness on /healthz, the JWT key from a mounted Secret, Services that select their pods,
  seed lists and shard counts that agree, a Redis prefix without braces;
- the Dockerfile builds and runs on Debian 12, as a non-root user, and its runtime stage installs
  a package for every library `ldd` lists for the built binaries;
- the compose file's Redis is a 3-master cluster made by a one-shot service, and its HAProxy
  config names the node services and passes haproxy -c.
"""
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from conftest import WSNODE, WSROUTER, haproxy_check, option_value as option, program_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "deploy" / "container"
DOCKERFILE = CONTAINER / "Dockerfile"
COMPOSE = CONTAINER / "compose.yaml"
HAPROXY_CFG = CONTAINER / "haproxy.cfg"
K8S = ROOT / "deploy" / "k8s"
PROGRAMS = {"wsnode": WSNODE, "wsrouter": WSROUTER}
# The wsnode master SIGKILLs workers still draining this long after --drain-timeout.
KILL_AFTER_DRAIN = 2
SEEDS = re.compile(r"[A-Za-z0-9.-]+:\d{1,5}(,[A-Za-z0-9.-]+:\d{1,5})*")


# --------------------------------------------------------------------------- the binaries

def help_flags(name):
    """{flag: (metavar or None, default or None)} as `name --help` prints them."""
    prog = PROGRAMS[name]
    if not os.access(prog, os.X_OK):
        pytest.fail(f"{name} binary not found at {prog} (set WSNODE / WSROUTER)")
    return program_flags(prog)


def option_or_default(name, argv, flag):
    value = option(argv, flag)
    return value if value is not None else help_flags(name)[flag][1]


# --------------------------------------------------------------------------- reading the files


def program(argv):
    """"wsnode" or "wsrouter" if argv runs one of them directly, else None."""
    return os.path.basename(argv[0]) if argv and os.path.basename(argv[0]) in PROGRAMS else None


def as_argv(value):
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def dockerfile_stages(path=DOCKERFILE):
    """[(FROM argument, [(INSTRUCTION, rest of the line)])], continuation lines joined."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    stages = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instr, _, rest = line.strip().partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr == "FROM":
            stages.append((rest, []))
        else:
            assert stages, f"{path}: {instr} before the first FROM"
            stages[-1][1].append((instr, rest))
    return stages


def docker_argv(rest):
    """The argv of a CMD or ENTRYPOINT (exec form, else shell form as sh -c would split it)."""
    return json.loads(rest) if rest.startswith("[") else shlex.split(rest)


def apt_installed(run_lines):
    """Packages an apt-get install in these RUN lines names."""
    pkgs = []
    for run in run_lines:
        for part in run.split("&&"):
            words = shlex.split(part)
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def k8s_docs():
    return [(p.name, d) for p in sorted(K8S.glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]


def pod_spec(doc):
    """The pod spec of a workload (Deployment, StatefulSet, DaemonSet, Job, Pod), else None."""
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        return spec
    return (spec.get("template") or {}).get("spec")


def pod_labels(doc):
    if doc.get("kind") == "Pod":
        return doc["metadata"].get("labels") or {}
    return doc["spec"]["template"]["metadata"].get("labels") or {}


def containers(pod):
    return (pod.get("initContainers") or []) + (pod.get("containers") or [])


def compose():
    return yaml.safe_load(COMPOSE.read_text())


def command_lines():
    """(source, program, argv) for every command line that runs wsnode or wsrouter, and a
    check that no other command line hides one (say, inside sh -c) from the flag test."""
    found, hidden = [], []

    def add(source, argv):
        name = program(argv)
        if name:
            found.append((source, name, argv))
        elif re.search(r"\bws(node|router)\b", " ".join(argv)):
            hidden.append(source)

    for fname, doc in k8s_docs():
        for c in containers(pod_spec(doc) or {}):
            add(f"k8s:{fname}:{doc['metadata']['name']}/{c['name']}",
                as_argv(c.get("command")) + as_argv(c.get("args")))
    for name, svc in compose()["services"].items():
        add(f"compose:{name}", as_argv(svc.get("entrypoint")) + as_argv(svc.get("command")))
    final = dockerfile_stages()[-1][1]
    entry = [docker_argv(r) for i, r in final if i == "ENTRYPOINT"][-1:] or [[]]
    cmd = [docker_argv(r) for i, r in final if i == "CMD"][-1:] or [[]]
    add("Dockerfile:CMD", entry[0] + cmd[0])
    return found, hidden


COMMANDS, HIDDEN = command_lines()


# --------------------------------------------------------------------------- flags


def test_every_command_line_is_found():
    sources = {(src.split(":")[0], name) for src, name, _ in COMMANDS}
    for want in [("k8s", "wsnode"), ("k8s", "wsrouter"), ("compose", "wsnode"),
                 ("compose", "wsrouter"), ("Dockerfile", "wsnode")]:
        assert want in sources, f"no {want[1]} command line found in {want[0]}"
    assert not HIDDEN, f"wsnode/wsrouter run through a wrapper (give them their flags " \
                       f"directly, so this test sees them): {HIDDEN}"


@pytest.mark.parametrize("source,name,argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_line_flags_exist_with_valid_values(source, name, argv):
    flags = help_flags(name)
    tokens, problems, i = argv[1:], [], 0
    while i < len(tokens):
        t = tokens[i]
        i += 1
        if not t.startswith("--"):
            problems.append(f"{t!r} is not a flag nor the value of one")
            continue
        flag, eq, _ = t[2:].partition("=")
        if flag not in flags:
            problems.append(f"--{flag} is not in `{name} --help`")
            # Unknown arity: take a following non-flag word as its value.
            i += 1 if i < len(tokens) and not tokens[i].startswith("--") and not eq else 0
            continue
        if flag in ("help", "version"):
            problems.append(f"--{flag} would print and exit")
        if flags[flag][0] is not None and not eq:
            if i >= len(tokens):
                problems.append(f"--{flag} needs a value ({flags[flag][0]})")
            i += 1
    assert not problems, f"{source}: " + "; ".join(problems)
    # The binary's own parser checks every value; --help last exits 0 only if all parsed.
    out = subprocess.run([PROGRAMS[name], *tokens, "--help"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0, f"{source}: {name} rejects its command line: {out.stderr}"


def test_seed_lists_prefixes_and_shards_agree():
    for where in ("k8s", "compose"):
        lines = [(name, argv) for src, name, argv in COMMANDS if src.startswith(where + ":")]
        seeds = {option(argv, "redis-cluster") for _, argv in lines}
        assert len(seeds) == 1 and None not in seeds, \
            f"{where}: every node and router needs the same --redis-cluster seeds, got {seeds}"
        assert SEEDS.fullmatch(seeds.pop()), f"{where}: seeds are not HOST:PORT[,HOST:PORT...]"
        prefixes = {option(argv, "redis-prefix") for _, argv in lines}
        assert len(prefixes) == 1, f"{where}: --redis-prefix differs: {prefixes}"
        prefix = prefixes.pop()
        # A brace would move the hash tag of every channel name into the prefix.
        assert prefix is None or not set(prefix) & set("{}"), f"{where}: braces in the prefix"
        shards = {int(option_or_default("wsnode", a, "router-shards")) for n, a in lines
                  if n == "wsnode"}
        routers = [option_or_default("wsrouter", a, "shard") for n, a in lines if n == "wsrouter"]
        assert len(shards) == 1, f"{where}: nodes disagree on --router-shards: {shards}"
        n = shards.pop()
        assert sorted(routers) == [f"{i}/{n}" for i in range(n)], \
            f"{where}: routers {routers} do not cover --router-shards {n}"


# --------------------------------------------------------------------------- Kubernetes


def workloads(name):
    """(file, doc, container, argv) for every Kubernetes container that runs `name`."""
    out = []
    for fname, doc in k8s_docs():
        for c in containers(pod_spec(doc) or {}):
            argv = as_argv(c.get("command")) + as_argv(c.get("args"))
            if program(argv) == name:
                out.append((fname, doc, c, argv))
    assert out, f"no Kubernetes workload runs {name}"
    return out


def port_number(container, port):
    """A probe's or Service's port (a number or a container port's name) as a number."""
    for p in container.get("ports") or []:
        if port in (p.get("name"), p["containerPort"]):
            return p["containerPort"]
    return port if isinstance(port, int) else None


def prestop_seconds(container):
    pre = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    cmd = as_argv((pre.get("exec") or {}).get("command"))
    assert cmd, f"{container['name']}: no preStop (a sleep while the endpoint is removed)"
    m = re.search(r"\bsleep\s+([\d.]+)", " ".join(cmd))
    assert m, f"{container['name']}: preStop does not sleep: {cmd}"
    return float(m.group(1))


def test_k8s_nodes_drain_within_the_grace_period_and_are_ready_on_healthz():
    for fname, doc, c, argv in workloads("wsnode"):
        pod = pod_spec(doc)
        drain = float(option_or_default("wsnode", argv, "drain-timeout"))
        pre = prestop_seconds(c)
        grace = pod.get("terminationGracePeriodSeconds")
        assert grace is not None, f"{fname}: set terminationGracePeriodSeconds"
        assert grace > drain and grace > pre + drain + KILL_AFTER_DRAIN, \
            f"{fname}: terminationGracePeriodSeconds {grace} must exceed preStop {pre} + " \
            f"--drain-timeout {drain} + {KILL_AFTER_DRAIN}"
        probe = (c.get("readinessProbe") or {}).get("httpGet") or {}
        assert probe.get("path") == "/healthz", f"{fname}: readinessProbe is not GET /healthz"
        port = int(option_or_default("wsnode", argv, "port"))
        assert port_number(c, probe.get("port")) == port, f"{fname}: probe port is not --port"


def test_k8s_routers_are_ready_on_healthz_reachable_by_the_kubelet():
    for fname, doc, c, argv in workloads("wsrouter"):
        probe = (c.get("readinessProbe") or {}).get("httpGet") or {}
        assert probe.get("path") == "/healthz", f"{fname}: readinessProbe is not GET /healthz"
        port = int(option_or_default("wsrouter", argv, "port"))
        assert port_number(c, probe.get("port")) == port, f"{fname}: probe port is not --port"
        assert option_or_default("wsrouter", argv, "bind") not in ("127.0.0.1", "::1"), \
            f"{fname}: the kubelet probes the pod's address: give wsrouter --bind 0.0.0.0"


def test_k8s_jwt_key_is_a_mounted_secret():
    secrets = {d["metadata"]["name"]: d for _, d in k8s_docs() if d.get("kind") == "Secret"}
    for fname, doc, c, argv in workloads("wsnode"):
        assert option(argv, "jwt-secret") is None, f"{fname}: a key on the command line"
        assert option(argv, "auth") in ("required", "optional"), f"{fname}: --auth is off"
        path = option(argv, "jwt-secret-file")
        assert path, f"{fname}: no --jwt-secret-file"
        mounts = [m for m in c.get("volumeMounts") or []
                  if path.startswith(m["mountPath"].rstrip("/") + "/")]
        assert mounts, f"{fname}: {path} is not under any volumeMount"
        volumes = {v["name"]: v for v in pod_spec(doc).get("volumes") or []}
        secret = (volumes.get(mounts[0]["name"]) or {}).get("secret") or {}
        name = secret.get("secretName")
        assert name in secrets, f"{fname}: {path} is not from a Secret defined in deploy/k8s"
        key = path[len(mounts[0]["mountPath"].rstrip("/")) + 1:]
        items = {i["path"]: i["key"] for i in secret.get("items") or []}
        keys = set(secrets[name].get("data") or {}) | set(secrets[name].get("stringData") or {})
        assert items.get(key, key) in keys, f"{fname}: Secret {name} has no key for {key}"


def test_k8s_pods_run_as_the_images_non_root_user():
    uid = final_user().split(":")[0]
    assert uid.isdigit(), f"the image's USER {uid} is not numeric"
    uid = int(uid)
    for name in PROGRAMS:
        for fname, doc, c, _ in workloads(name):
            ctx = {**(pod_spec(doc).get("securityContext") or {}),
                   **(c.get("securityContext") or {})}
            assert ctx.get("runAsNonRoot") is True, f"{fname}: runAsNonRoot"
            assert ctx.get("runAsUser", uid) == uid, f"{fname}: runAsUser is not the image's user"
            assert ctx.get("allowPrivilegeEscalation") is False, \
                f"{fname}: allowPrivilegeEscalation"


def test_k8s_services_select_their_pods_and_ports():
    docs = k8s_docs()
    pods = {d["metadata"]["name"]: d for _, d in docs if pod_spec(d)}
    served = set()
    for fname, svc in ((f, d) for f, d in docs if d.get("kind") == "Service"):
        selector = svc["spec"]["selector"]
        matches = [n for n, d in pods.items() if selector.items() <= pod_labels(d).items()]
        assert len(matches) == 1, f"{fname}: Service {svc['metadata']['name']} selects {matches}"
        workload = pods[matches[0]]
        served.add(matches[0])
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            assert any(port_number(c, target) for c in containers(pod_spec(workload))), \
                f"{fname}: targetPort {target} is no port of {matches[0]}"
    assert {"wsnode", "wsrouter"} <= served, f"Services for wsnode and wsrouter: {served}"


# --------------------------------------------------------------------------- the Dockerfile


def final_user():
    users = [rest for instr, rest in dockerfile_stages()[-1][1] if instr == "USER"]
    assert users, "the final stage has no USER: the programs would run as root"
    return users[-1]


def test_dockerfile_is_debian_12_and_runs_as_non_root():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    for base, _ in stages:
        assert re.match(r"debian:12(\b|-|$)", base.split()[0]), f"FROM {base}: not Debian 12"
    user = final_user()
    assert user.split(":")[0] not in ("root", "0"), f"USER {user}"
    assert re.fullmatch(r"\d+(:\d+)?", user), \
        f"USER {user}: numeric, so that Kubernetes' runAsNonRoot can check it"
    final = stages[-1][1]
    health = " ".join(rest for instr, rest in final if instr == "HEALTHCHECK")
    assert "/healthz" in health, "no HEALTHCHECK on /healthz"
    exposed = " ".join(rest for instr, rest in final if instr == "EXPOSE").split()
    cmd_port = option(docker_argv([r for i, r in final if i == "CMD"][-1]), "port") or "8080"
    assert cmd_port in exposed and "8090" in exposed, f"EXPOSE {exposed}"
    copies = " ".join(rest for instr, rest in final if instr == "COPY")
    for want in ("wsnode", "wsrouter", "web/"):
        assert want in copies, f"the final stage does not copy {want}"
    assert "--from=" in copies, "the binaries come from the build stage"


def test_dockerfile_build_stage_installs_what_deps_sh_lists():
    deps = re.search(r'PKGS="([^"]*)"', (ROOT / "scripts" / "deps.sh").read_text()).group(1)
    build = apt_installed(rest for instr, rest in dockerfile_stages()[0][1] if instr == "RUN")
    assert "cmake" in build and "protobuf-c-compiler" in build, build
    assert set(build) <= set(deps.split()), \
        f"build packages not in scripts/deps.sh: {sorted(set(build) - set(deps.split()))}"


def owner_package(lib):
    """The Debian package that ships a library. With merged /usr, dpkg knows each file by the
    path its package used (/lib/... or /usr/lib/...), and ldd may name either or a symlink."""
    real = os.path.realpath(lib)
    for path in dict.fromkeys([lib, real, re.sub(r"^/usr", "", real), "/usr" + lib]):
        out = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True,
                             timeout=30)
        if out.returncode == 0:
            return out.stdout.split(":")[0]
    return None


def test_dockerfile_runtime_stage_has_every_library_the_binaries_link():
    if not shutil.which("ldd") or not shutil.which("dpkg-query"):
        pytest.skip("ldd or dpkg-query missing: not a Debian machine")
    runtime = set(apt_installed(r for i, r in dockerfile_stages()[-1][1] if i == "RUN"))
    # What those packages pull in (Debian 12's own dependencies, as installed here), and libc.
    provided = set(runtime) | {"libc6"}
    for pkg in runtime:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", pkg], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, f"{pkg} is not a Debian package installed here: {out.stderr}"
        provided |= {d.split()[0].split(":")[0] for d in re.split(r"[,|]", out.stdout) if d.strip()}
    missing = []
    for name, prog in PROGRAMS.items():
        out = subprocess.run(["ldd", prog], capture_output=True, text=True, timeout=30)
        libs = re.findall(r"=> (/\S+)", out.stdout)
        assert libs, f"ldd {prog}: {out.stdout}{out.stderr}"
        if any(re.search(r"/lib(asan|ubsan|tsan)\.", lib) for lib in libs):
            pytest.skip("a sanitizer build links more than the image's plain build does")
        for lib in libs:
            pkg = owner_package(lib)
            if pkg not in provided:
                missing.append(f"{name}: {lib} ({pkg or 'no package'})")
    assert not missing, "the runtime stage installs no package for: " + ", ".join(missing)


def test_dockerignore_keeps_build_trees_out_of_the_context():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert "build*/" in lines or "build*" in lines, ".dockerignore does not exclude build*/"


# --------------------------------------------------------------------------- compose


def duration(value):
    """A compose duration ("20s", "1m30s", 20) in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    parts = re.findall(r"([\d.]+)(ms|us|s|m|h)", value)
    assert parts, f"not a duration: {value!r}"
    return sum(float(n) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


def test_compose_redis_cluster_of_three_masters_made_before_the_nodes_start():
    services = compose()["services"]
    redis = [n for n, s in services.items()
             if re.search(r"--cluster-enabled\s+yes", " ".join(as_argv(s.get("command"))))]
    assert len(redis) >= 3, f"3 cluster-enabled Redis masters, got {redis}"
    inits = [n for n, s in services.items()
             if "--cluster create" in " ".join(as_argv(s.get("command")))]
    assert len(inits) == 1, f"one service runs redis-cli --cluster create, got {inits}"
    script = " ".join(as_argv(services[inits[0]]["command"]))
    assert "--cluster-replicas 0" in script and "--cluster-yes" in script, script
    assert all(r in script for r in redis), f"{inits[0]} does not join all of {redis}"
    for src, name, argv in COMMANDS:
        if not src.startswith("compose:"):
            continue
        svc = services[src.split(":", 1)[1]]
        hosts = {s.split(":")[0] for s in option(argv, "redis-cluster").split(",")}
        assert hosts <= set(redis), f"{src}: seeds {hosts} are not Redis services"
        dep = (svc.get("depends_on") or {}).get(inits[0]) or {}
        assert dep.get("condition") == "service_completed_successfully", \
            f"{src}: must wait for {inits[0]} to finish"


def test_compose_nodes_drain_within_their_stop_grace_period():
    services = compose()["services"]
    nodes = [(src.split(":", 1)[1], argv) for src, name, argv in COMMANDS
             if src.startswith("compose:") and name == "wsnode"]
    assert len(nodes) >= 2, "several wsnode services"
    for svc, argv in nodes:
        drain = float(option_or_default("wsnode", argv, "drain-timeout"))
        grace = duration(services[svc].get("stop_grace_period", "10s"))  # compose's default
        assert grace > drain + KILL_AFTER_DRAIN, \
            f"{svc}: stop_grace_period {grace}s must exceed --drain-timeout {drain} + 2"


def test_compose_health_checks_ask_the_port_each_program_serves():
    services = compose()["services"]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(
        rest for instr, rest in dockerfile_stages()[-1][1] if instr == "ENV")))
    assert "HEALTH_PORT" in env, "the Dockerfile's HEALTHCHECK port is not an ENV HEALTH_PORT"
    for src, name, argv in COMMANDS:
        if src.startswith("compose:"):
            svc_env = services[src.split(":", 1)[1]].get("environment") or {}
            if isinstance(svc_env, list):
                svc_env = dict(e.split("=", 1) for e in svc_env)
            port = str(svc_env.get("HEALTH_PORT", env["HEALTH_PORT"]))
            assert port == option_or_default(name, argv, "port"), \
                f"{src}: the health check asks port {port}, {name} serves /healthz elsewhere"


def test_compose_haproxy_sends_to_every_node_service():
    services = compose()["services"]
    lbs = [s for s in services.values() if str(s.get("image", "")).startswith("haproxy")]
    assert len(lbs) == 1, "one haproxy service"
    assert any(str(v).startswith("./haproxy.cfg:") for v in lbs[0].get("volumes") or []), \
        "haproxy does not mount ./haproxy.cfg"
    servers = set(re.findall(r"^\s*server\s+\S+\s+(\S+)", HAPROXY_CFG.read_text(), re.M))
    nodes = {f"{src.split(':', 1)[1]}:{option_or_default('wsnode', argv, 'port')}"
             for src, name, argv in COMMANDS if src.startswith("compose:") and name == "wsnode"}
    assert servers == nodes, f"haproxy servers {servers} vs wsnode services {nodes}"


def test_container_haproxy_config_is_valid_tcp_leastconn_with_healthz_checks():
    lines = {" ".join(line.split("#")[0].split()) for line in HAPROXY_CFG.read_text().splitlines()}
    for want in ("mode tcp", "balance leastconn", "option httpchk", "http-check expect status 200",
                 "timeout tunnel 1h"):
        assert want in lines, f"haproxy.cfg: no `{want}`"
    assert any(line.startswith("http-check send meth GET uri /healthz") for line in lines)
    haproxy_check(HAPROXY_CFG)
