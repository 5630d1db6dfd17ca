#!/usr/bin/env python3
"""The tree's layout rules (docs/architecture.md), checked on the sources as text:

- layers: lib <- rt <- {node, router, loadtest, bench}; a folder includes headers only from
  itself and the layers below it (generated *.pb-c.h count as lib);
- no include cycle between modules (a module is x.c with its x.h);
- no .c file over 800 lines, no function over 80 lines (bench/ aside: its programs are
  measurement scripts in C, held to the layers only).

Prints every breach and exits 1 if there is one. Usage: check_layout.py [REPO_ROOT]
"""
import os
import re
import sys

FOLDERS = ["lib", "rt", "node", "router", "loadtest", "bench"]
ALLOWED = {
    "lib": {"lib"},
    "rt": {"lib", "rt"},
    "node": {"lib", "rt", "node"},
    "router": {"lib", "rt", "router"},
    "loadtest": {"lib", "rt", "loadtest"},
    "bench": {"lib", "rt", "bench"},
}
MAX_FILE, MAX_FUNC = 800, 80
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def sources(root):
    for d in FOLDERS:
        full = os.path.join(root, d)
        if not os.path.isdir(full):
            continue
        for name in sorted(os.listdir(full)):
            if name.endswith((".c", ".h")):
                yield d, name


def resolve(root, folder, header):
    """The folder a quoted include is found in: the includer's own, then lib, then rt (the
    order of the include path), then any other folder (a breach), else None (a system
    header)."""
    if header.endswith(".pb-c.h"):
        return "lib"
    for d in [folder, "lib", "rt"] + FOLDERS:
        if os.path.exists(os.path.join(root, d, header)):
            return d
    return None


def function_lengths(lines):
    """(first line, length, name) of every function: a line at column 0 that opens a
    parameter list, whose body starts with '{' and ends with '}' at column 0."""
    start = None
    for i, line in enumerate(lines):
        if start is None:
            if re.match(r"^[A-Za-z_][\w\s\*]*\b(\w+)\s*\(", line) and not line.rstrip().endswith(";") \
                    and not line.startswith(("typedef", "#")) and "=" not in line.split("(")[0] \
                    and not line.rstrip().endswith("}"):  # a one-line function
                for k in range(i, min(i + 6, len(lines))):
                    if lines[k].rstrip().endswith(";"):
                        break
                    if lines[k].startswith("{") or lines[k].rstrip().endswith(") {"):
                        start, name = i, re.match(r"^[A-Za-z_][\w\s\*]*\b(\w+)\s*\(", line).group(1)
                        break
        elif line.startswith("}"):
            yield start + 1, i - start + 1, name
            start = None


def cycles(graph):
    """Every module on a cycle of graph (module -> set of modules), as one path each."""
    found, state = [], {}

    def visit(m, path):
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                found.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return found


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), "..", ".."))
    errors, graph = [], {}
    for folder, name in sources(root):
        path = os.path.join(root, folder, name)
        rel = f"{folder}/{name}"
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        module = f"{folder}/{name[:-2]}"
        for n, line in enumerate(lines, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            where = resolve(root, folder, m.group(1))
            if where is None:
                continue
            if where not in ALLOWED[folder]:
                errors.append(f"{rel}:{n}: includes {where}/{m.group(1)}: {folder} may include "
                              f"only from {', '.join(sorted(ALLOWED[folder]))}")
            target = f"{where}/{m.group(1)[:-2]}"
            if target != module:
                graph.setdefault(module, set()).add(target)
        if name.endswith(".c") and folder != "bench":
            if len(lines) > MAX_FILE:
                errors.append(f"{rel}: {len(lines)} lines (at most {MAX_FILE})")
            for first, length, fn in function_lengths(lines):
                if length > MAX_FUNC:
                    errors.append(f"{rel}:{first}: {fn}() is {length} lines (at most {MAX_FUNC})")
    for cycle in cycles(graph):
        errors.append("include cycle: " + " -> ".join(cycle))
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
