"""No import cycles in fastgan: the graph of every import statement in fastgan/ and
kernels/ (installed as fastgan.kernels), including those inside functions (a lazy
import is still a dependency) and the package __init__ files an import runs, has no
cycle; and the modules at the top of the graph import fresh in a new interpreter."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Source folder -> the package it is installed as (pyproject's package-dir).
PACKAGES = {"fastgan": ROOT / "fastgan", "fastgan.kernels": ROOT / "kernels"}


def module_files(packages: dict) -> dict:
    """{dotted module name: (path, is a package __init__)} of every .py file."""
    modules = {}
    for name, folder in packages.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            dotted = ".".join((name, *(parts[:-1] if is_package else parts)))
            modules.setdefault(dotted, (path, is_package))
    return modules


def imported_modules(name: str, path: pathlib.Path, is_package: bool, modules: dict) -> set:
    """The modules of `modules` that `name` imports anywhere in its file."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()

    def add(target):
        while target and target not in modules:  # `import a.b.func`-like: the module that holds it
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
    return found


def import_graph(packages: dict) -> dict:
    """{module: the modules it imports}. Importing a.b.c first runs a/__init__ and
    a/b/__init__, so those count too, except the packages the importer is inside
    (they are already being imported)."""
    modules = module_files(packages)
    graph = {}
    for name, (path, is_package) in modules.items():
        direct = imported_modules(name, path, is_package, modules)
        graph[name] = set(direct)
        for target in direct:
            parts = target.split(".")
            for i in range(1, len(parts)):
                package = ".".join(parts[:i])
                if package in modules and name != package and not name.startswith(package + "."):
                    graph[name].add(package)
    return graph


def cycles(graph: dict) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_fastgan_has_no_import_cycle():
    graph = import_graph(PACKAGES)
    expected = {"fastgan.cli", "fastgan.cli.eval", "fastgan.recsys", "fastgan.kernels", "fastgan.train.trainer"}
    assert expected <= set(graph)
    # The walk sees imports inside functions, and the packages an import runs.
    assert "fastgan.cli.eval_recsys" in graph["fastgan.cli.eval"]  # imported inside add_eval
    assert "fastgan.recsys.protocol" in graph["fastgan.cli.eval_recsys"]
    assert {"fastgan.cli", "fastgan.cli.eval_recsys"} <= graph["fastgan.recsys.__main__"]
    assert "fastgan.recsys" in graph["fastgan.cli.eval_recsys"]
    assert cycles(graph) == []


def test_the_walk_finds_a_cycle_through_a_lazy_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = import_graph({"pkg": pkg})
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}  # `from .sub import b` runs pkg/sub/__init__.py
    assert graph["pkg.sub.b"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_the_walk_finds_a_cycle_through_a_package_init(tmp_path):
    # No module imports another that imports it back, but importing pkg.cli.options
    # runs pkg/cli/__init__.py, which imports pkg.tool: the shape cli.py and
    # recsys/command.py had.
    pkg = tmp_path / "pkg"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("def main():\n    from ..tool import run\n")
    (pkg / "cli" / "options.py").write_text("")
    (pkg / "tool.py").write_text("from .cli.options import *\n")
    graph = import_graph({"pkg": pkg})
    assert graph["pkg.tool"] == {"pkg.cli", "pkg.cli.options"}
    assert cycles(graph) == [["pkg.cli", "pkg.tool"]]


@pytest.mark.parametrize("module", ["fastgan.cli", "fastgan.cli.eval_recsys", "fastgan.recsys", "fastgan.train.parity",
                                    "fastgan.train.trainer"])
def test_command_modules_import_fresh(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
