"""The package's import graph: no cycles, no module reaching into another one's private names.

Read from the sources with ``ast`` (nothing is imported, so it is fast and needs no extras). Every
import statement counts, those inside functions too: a lazy import only hides a cycle until both
modules are loaded. ``configs/`` and ``data_pipelines/`` install as ``objtrack_jax.configs`` and
``objtrack_jax.data_pipelines`` (setup.py) and are read under those names.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = {"objtrack_jax": "objtrack_jax", "objtrack_jax.configs": "configs",
            "objtrack_jax.data_pipelines": "data_pipelines"}


def package_modules(root=ROOT) -> dict:
    """``{dotted module name: source path}`` of every module of the installed package."""
    mods = {}
    for pkg, folder in PACKAGES.items():
        base = os.path.join(root, folder)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
            parts = [] if dirpath == base else os.path.relpath(dirpath, base).split(os.sep)
            for f in filenames:
                if f.endswith(".py"):
                    leaf = [] if f == "__init__.py" else [f[:-3]]
                    mods[".".join([pkg] + parts + leaf)] = os.path.join(dirpath, f)
    return mods


def _absolute(name: str, path: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module
    parts = name.split(".")
    base = parts if path.endswith("__init__.py") else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def module_imports(name: str, path: str, mods: dict):
    """``(imported package modules, [(line, private name used)])`` of one module."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    edges, private, bound = set(), [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in mods:
                    edges.add(a.name)
                    if a.asname:
                        bound.add(a.asname)
        elif isinstance(node, ast.ImportFrom):
            src = _absolute(name, path, node)
            for a in node.names:
                if f"{src}.{a.name}" in mods:  # a module of the package
                    edges.add(f"{src}.{a.name}")
                    bound.add(a.asname or a.name)
                elif src in mods:
                    edges.add(src)
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        private.append((node.lineno, f"{src}.{a.name}"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in bound and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            private.append((node.lineno, f"{node.value.id}.{node.attr}"))
    edges.discard(name)
    return edges, private


def find_cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_find_cycles_sees_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_module_imports_reads_lazy_and_relative_imports(tmp_path):
    mods = {"p": "", "p.x": "", "p.y": "", "p.sub": "", "p.sub.z": ""}
    src = tmp_path / "z.py"
    src.write_text("from p import x\n"
                   "def f():\n"
                   "    from ..y import thing, _hidden\n"
                   "    return x._private(), x.public\n")
    edges, private = module_imports("p.sub.z", str(src), mods)
    assert edges == {"p.x", "p.y"}
    assert private == [(3, "p.y._hidden"), (4, "x._private")]


def test_package_import_graph_is_acyclic():
    mods = package_modules()
    assert "objtrack_jax.data_pipelines.synthetic" in mods and "objtrack_jax.inference" in mods
    graph = {m: module_imports(m, p, mods)[0] for m, p in mods.items()}
    assert find_cycles(graph) == [], "import cycles between package modules"


# Uses of another module's private names still in the package: (module, name). An entry that
# no longer occurs fails the test too, so the list only shrinks.
PRIVATE_USES: set = set()


def test_no_private_names_across_modules():
    mods = package_modules()
    used = {(m, name) for m, p in mods.items() for _, name in module_imports(m, p, mods)[1]}
    assert used - PRIVATE_USES == set(), \
        "modules using another module's private names (make them public or move them)"
    assert PRIVATE_USES - used == set(), "no longer used: remove from PRIVATE_USES"
