"""The package's shape: no import cycles (module- and function-level imports), no package_dir
remapping, every module at most 400 lines."""

import ast
import os

from helpers import ROOT

PACKAGE = os.path.join(ROOT, "tfgpt2")


def modules():
    """{dotted name: path} of every module of the package."""
    out = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, name), ROOT)[:-3].split(os.sep)
                out[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = os.path.join(root, name)
    return out


def imports(path, name, known):
    """The package modules `path` imports anywhere in its code (a from-import of a submodule counts
    as that submodule, of a name as the module that defines it)."""
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycles():
    known = modules()
    graph = {name: imports(path, name, known) for name, path in known.items()}
    assert len(graph) > 30 and graph["tfgpt2.modeling"] >= {"tfgpt2.generation", "tfgpt2.main_layer"}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_package_dir_and_modules_under_400_lines():
    assert "package_dir" not in open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
    long = {name: n for name, path in modules().items()
            if (n := len(open(path, encoding="utf-8").read().splitlines())) > 400}
    assert not long, long
