"""What imports what: torch stays out of the core, and the package's import graph has a shape.

The graph tests read the source (``ast``) instead of importing it, so they see every
import, module level or inside a function, whichever branch would run, and need neither
torch nor matplotlib.
"""

import ast
import pkgutil
import subprocess
import sys
import warnings
from pathlib import Path

import filtertopo

ROOT = "filtertopo"

#: Import edges (importer, imported) that close a cycle, tolerated until they are removed
#: (none now: ``result`` and ``_io`` read ``__version__`` from ``filtertopo._version``).
#: Never add an edge here to make the test pass; when one disappears the test warns
#: (a warning, not a failure, so the file that drops it need not edit this one), and it is
#: deleted here.
KNOWN_CYCLE_EDGES: set = set()


def _modules():
    """{module name: (source path, is a package)} of every module of the package, found
    with ``pkgutil.iter_modules`` folder by folder (as ``pkgutil.walk_packages`` walks,
    but without importing the subpackages, so ``filtertopo.training`` needs no torch)."""
    base = Path(filtertopo.__file__).parent
    mods = {ROOT: (base / "__init__.py", True)}
    todo = [(base, ROOT)]
    while todo:
        folder, name = todo.pop()
        for info in pkgutil.iter_modules([str(folder)]):
            full = f"{name}.{info.name}"
            if info.ispkg:
                mods[full] = (folder / info.name / "__init__.py", True)
                todo.append((folder / info.name, full))
            else:
                mods[full] = (folder / f"{info.name}.py", False)
    return mods


def _is_type_checking(test) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name, path, is_pkg, mods):
    """{imported module: first line} for one module: ``import filtertopo.x`` and
    ``from .x import y`` anywhere in the file (relative imports resolved against the
    module's package; ``from . import x`` where ``x`` is a submodule imports ``x``), except
    under ``if TYPE_CHECKING:``, which never runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and _is_type_checking(node.test) for b in node.body for n in ast.walk(b)}
    package = name if is_pkg else name.rpartition(".")[0]
    found = {}

    def add(target, line):
        if target == ROOT or target.startswith(ROOT + "."):
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                assert node.level <= len(parts), f"{name}:{node.lineno}: import above {ROOT}"
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
            for sub in subs:
                add(sub, node.lineno)
            if len(subs) < len(node.names):  # some names come from `target` itself
                add(target, node.lineno)
    return found


def _graph():
    mods = _modules()
    graph = {m: _imports(m, path, is_pkg, mods) for m, (path, is_pkg) in mods.items()}
    unknown = [f"{m}:{line} imports {t}" for m, ts in graph.items() for t, line in ts.items()
               if t not in mods]
    assert not unknown, "imports of modules that do not exist: " + "; ".join(unknown)
    return graph


def _under(module, package) -> bool:
    return module == package or module.startswith(package + ".")


def test_walk_finds_every_module():
    mods = _modules()
    for m in ("filtertopo.pipeline", "filtertopo.training.loop", "filtertopo.report.html",
              "filtertopo.commands.track", "filtertopo.mapper._graph", "filtertopo.tracking"):
        assert m in mods, m
    files = {p.resolve() for p, _ in mods.values()}
    on_disk = {p.resolve() for p in Path(filtertopo.__file__).parent.rglob("*.py")}
    assert on_disk <= files, sorted(map(str, on_disk - files))


def test_training_and_report_never_import_each_other():
    """Training (torch) and report (matplotlib) are two leaves on the core: neither imports
    the other, in either direction, at module level or inside a function. What joins them
    (tracking a run, then drawing it) is the CLI's or the user's job."""
    graph = _graph()
    pairs = [("filtertopo.training", "filtertopo.report"),
             ("filtertopo.report", "filtertopo.training")]
    bad = [f"{m}:{line} imports {t}" for a, b in pairs for m, ts in graph.items()
           if _under(m, a) for t, line in ts.items() if _under(t, b)]
    assert not bad, "; ".join(bad)


#: Imports from the core into the layers above it in files this test does not own,
#: tolerated until they are removed (none now). An entry whose importer exists but no longer
#: makes that import is warned about, to be deleted.
KNOWN_CORE_EDGES: set = set()


def test_core_never_imports_training_or_report():
    """The core (every module outside training/, report/, priors/, sweep/, study/, commands/ and the
    CLI) imports none of them: they are built on it (DESIGN.md, "Layers")."""
    graph = _graph()
    stale = [e for e in sorted(KNOWN_CORE_EDGES) if e[0] in graph and e[1] not in graph[e[0]]]
    if stale:
        warnings.warn(f"KNOWN_CORE_EDGES lists imports that are gone; delete them: {stale}")
    upper = ("filtertopo.training", "filtertopo.report", "filtertopo.priors", "filtertopo.sweep",
             "filtertopo.study", "filtertopo.commands", "filtertopo.cli", "filtertopo.__main__")
    bad = [f"{m}:{line} imports {t}" for m, ts in graph.items()
           if not any(_under(m, u) for u in upper) for t, line in ts.items()
           if any(_under(t, u) for u in upper) and (m, t) not in KNOWN_CORE_EDGES]
    assert not bad, "; ".join(bad)


def _cycles(graph):
    """The strongly connected components of more than one module (Tarjan), each with
    one cycle through it spelled out."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for comp in comps:  # a shortest way back to the first module, inside the component
        start, members = comp[0], set(comp)
        prev, todo, hit = {start: None}, [start], None
        while todo and hit is None:
            v = todo.pop(0)
            if start in graph[v]:
                hit = v
            for w in sorted(graph[v]):
                if w in members and w not in prev:
                    prev[w] = v
                    todo.append(w)
        path = []
        while hit is not None:
            path.append(hit)
            hit = prev[hit]
        out.append(" -> ".join(path[::-1] + [start]))
    return out


def test_cycle_finder_spells_out_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert _cycles(graph) == ["a -> b -> c -> a", "e -> e2 -> e"]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_has_no_cycle():
    """No module imports, directly or through others, a module that imports it: not only
    no two modules importing each other, no cycle at all.

    The rule, one edge per ``import`` statement of the source, module level or inside a
    function (a lazy import is still an import: it only hides the cycle until some call
    order trips it):

    - ``from .a import f`` is an edge to ``a``; ``from . import a`` to the submodule ``a``
      when ``a`` is one, else to the package ``__init__`` (where the name lives).
    - Importing ``pkg.sub`` also runs ``pkg/__init__.py``, but that is not an edge:
      every module of a package would otherwise depend on its ``__init__``.
    - A package ``__init__`` importing its own submodules to re-export them is an edge
      like any other, so the pattern to avoid shows: a submodule importing a name back
      from the ``__init__`` that imports it (``from . import helper`` in
      ``pkg/sub.py`` while ``pkg/__init__.py`` does ``from .sub import ...``). Shared
      helpers go into a module both import (``report/_common.py``), not into ``__init__``.

    :data:`KNOWN_CYCLE_EDGES` lists the edges of files outside this change that still
    close a cycle; they are left out of the graph, and an entry that no longer exists is
    warned about, to be deleted.
    """
    graph = _graph()
    stale = [e for e in sorted(KNOWN_CYCLE_EDGES) if e[1] not in graph.get(e[0], {})]
    if stale:
        warnings.warn(f"KNOWN_CYCLE_EDGES lists imports that are gone; delete them: {stale}")
    edges = {m: {t for t in ts if (m, t) not in KNOWN_CYCLE_EDGES} for m, ts in graph.items()}
    cycles = _cycles(edges)
    lines = {(m, t): line for m, ts in graph.items() for t, line in ts.items()}
    detail = []
    for c in cycles:
        hops = c.split(" -> ")
        detail.append(c + "  [" + ", ".join(f"{a}:{lines[(a, b)]}" for a, b in
                                             zip(hops, hops[1:])) + "]")
    assert not cycles, "import cycles (module:line of each import): " + "; ".join(detail)


def _torch_loaded_after(code):
    code = f"import sys\n{code}\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_does_not_import_torch():
    assert _torch_loaded_after("import filtertopo, filtertopo.cli; "
                               "filtertopo.cli.build_parser()") == "False"


def test_tracking_and_report_do_not_import_torch():
    """Tracking reads snapshot files and analyses them: no torch, so a run trained on one
    machine is tracked and drawn on another without it."""
    assert _torch_loaded_after("import filtertopo.tracking, filtertopo.report, "
                               "filtertopo.report.track_figures, filtertopo.commands.track"
                               ) == "False"


def test_public_api():
    import filtertopo

    for name in filtertopo.__all__:
        assert hasattr(filtertopo, name), name
