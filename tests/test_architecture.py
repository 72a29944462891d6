"""The package's layering, read from the source with `ast` (nothing is imported or executed).

What counts as an import: every ``import`` and ``from ... import`` statement at any depth (module
top, inside functions and methods, inside ``try``/``if``), except those inside an
``if TYPE_CHECKING:`` block, which never run. The cycle check follows runtime imports only; the
layering checks (io, llm, ray, actors -> jobs) count ``TYPE_CHECKING`` imports too where knowing
the type is itself the dependency (io, llm), and skip them for ``ray`` (the rule there is "runs
without Ray installed", which a type-only import does not break).

How the module graph is built: one node per ``.py`` file under ``recoworld/``, ``actors/`` and
``jobs/``. ``import a.b.c`` is an edge to ``a.b.c``; ``from a.b import c`` is an edge to
``a.b.c`` when that is a module, else to ``a.b``; relative imports are resolved against the
importing module's package. Edges to parent packages (``import a.b.c`` also runs ``a/__init__``)
are not added: every module would otherwise sit in a cycle with any ``__init__`` that re-exports
from it, and those re-exports are checked by their own edges.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("recoworld", "actors", "jobs")


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to an absolute dotted name."""

    module: str  # the importing module
    path: str  # its file, relative to the repository root
    line: int
    target: str  # absolute dotted name (a module, a package, or module.attribute)
    type_only: bool  # inside `if TYPE_CHECKING:`

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            out[_module_name(f)] = f
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under ``node``, with whether it sits in an ``if TYPE_CHECKING:`` body."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, type_only
            for n in child.body:
                yield n, True
                yield from _walk(n, True)
            for n in child.orelse:
                yield n, type_only
                yield from _walk(n, type_only)
            continue
        yield child, type_only
        yield from _walk(child, type_only)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(module: str, path: Path) -> Iterator[Import]:
    rel = str(path.relative_to(ROOT))
    is_pkg = path.name == "__init__.py"
    for node, type_only in _walk(_tree(path)):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield Import(module, rel, node.lineno, a.name, type_only)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # the package a relative import starts from: the module itself for a package's
                # __init__, else its parent; each further dot goes one package up
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, *([node.module] if node.module else [])])
            else:
                stem = node.module or ""
            for a in node.names:
                sub = f"{stem}.{a.name}"
                yield Import(module, rel, node.lineno, sub if sub in MODULES else stem, type_only)


ALL_IMPORTS: list[Import] = [i for m, p in MODULES.items() for i in _imports(m, p)]


def _internal(target: str) -> str | None:
    """The module of ours that ``target`` names (longest known prefix), or None if external."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in MODULES:
            return name
    return None


def _under(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


# --- 1. no import cycles ------------------------------------------------------------------------


def _graph() -> dict[str, dict[str, Import]]:
    """module -> {imported module: the first import statement that makes the edge}."""
    g: dict[str, dict[str, Import]] = {m: {} for m in MODULES}
    for imp in ALL_IMPORTS:
        if imp.type_only:
            continue
        dst = _internal(imp.target)
        if dst is not None:
            g[imp.module].setdefault(dst, imp)
    return g


def _strongly_connected(g: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); components in discovery order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(g[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
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
                    out.append(sorted(comp))
    return out


def _a_cycle(g: dict[str, dict[str, Import]], comp: list[str]) -> list[Import]:
    """One shortest cycle through the component's first module, as its import statements."""
    inside = set(comp)
    start = comp[0]
    prev: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w, imp in sorted(g[v].items()):
                if w not in inside:
                    continue
                if w == start:
                    path = [imp]
                    while path[0].module != start:
                        path.insert(0, prev[path[0].module])
                    return path
                if w not in prev:
                    prev[w] = imp
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {comp}")  # pragma: no cover


def _cycles() -> list[str]:
    g = _graph()
    found = []
    for comp in _strongly_connected(g):
        if len(comp) == 1 and comp[0] not in g[comp[0]]:
            continue
        steps = " -> ".join(f"{i.module} ({i.where()})" for i in _a_cycle(g, comp))
        found.append(f"cycle among {len(comp)} modules {comp}: {steps} -> {comp[0]}")
    return found


def test_the_import_graph_is_built_from_every_module() -> None:
    g = _graph()
    assert {"recoworld.report.viewer", "actors.driver", "jobs.whatif"} <= set(g)
    assert "recoworld.io.runs" in g["recoworld.report.viewer"]
    assert "recoworld.report.data" in g["recoworld.report.viewer"]  # a function-level import


def test_tarjan_finds_cycles_and_self_loops() -> None:
    def edge(a: str, b: str) -> Import:
        return Import(a, f"{a}.py", 1, b, False)

    g = {
        m: {d: edge(m, d) for d in ds}
        for m, ds in {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["e"]}.items()
    }
    comps = _strongly_connected(g)
    assert sorted(comps) == [["a", "b", "c"], ["d"], ["e"]]
    assert [i.module for i in _a_cycle(g, ["a", "b", "c"])] == ["a", "b", "c"]


def test_no_import_cycles() -> None:
    found = _cycles()
    assert not found, "import cycles (function-level imports included):\n" + "\n".join(found)


# --- 2-5. layering rules ------------------------------------------------------------------------


def _violations(importer: str, forbidden: tuple[str, ...], *, type_only: bool = True) -> list[str]:
    found = {
        f"{i.where()}: {i.module} imports {i.target}": None  # one line per statement and target
        for i in ALL_IMPORTS
        if _under(i.module, importer)
        and (type_only or not i.type_only)
        and any(_under(i.target, f) for f in forbidden)
    }
    return list(found)


IO_MUST_NOT_KNOW = (
    "recoworld.study",
    "recoworld.users",
    "recoworld.recommenders",
    "recoworld.env",
    "recoworld.llm",
)
LLM_MUST_NOT_KNOW = (
    "recoworld.users",
    "recoworld.recommenders",
    "recoworld.study",
    "recoworld.eval",
)


def test_io_knows_schemas_and_files_only() -> None:
    found = _violations("recoworld.io", IO_MUST_NOT_KNOW)
    assert not found, "recoworld/io imports the simulation:\n" + "\n".join(found)


def test_the_llm_package_is_transport_only() -> None:
    found = _violations("recoworld.llm", LLM_MUST_NOT_KNOW)
    assert not found, "recoworld/llm imports the domain:\n" + "\n".join(found)


def test_the_library_never_imports_ray() -> None:
    found = _violations("recoworld", ("ray",), type_only=False)
    assert not found, "recoworld imports ray (only actors/ and jobs/ may):\n" + "\n".join(found)


def test_actors_never_import_jobs() -> None:
    found = _violations("actors", ("jobs",))
    assert not found, "actors import jobs (arrows point jobs -> actors):\n" + "\n".join(found)


# --- 3. Parquet is written in recoworld/io only --------------------------------------------------

PQ_FUNCS = {"write_table", "write_to_dataset", "ParquetWriter"}  # pyarrow.parquet's writers
ANY_RECEIVER = {"ParquetWriter", "write_parquet", "sink_parquet"}  # a write whatever the object


def _parquet_writes(path: Path) -> Iterator[tuple[int, str]]:
    tree = _tree(path)
    pq_aliases: set[str] = set()  # names bound to pyarrow.parquet
    pq_names: dict[str, str] = {}  # names bound to one of its writers -> the writer
    for node, _ in _walk(tree):
        if isinstance(node, ast.Import):
            pq_aliases |= {a.asname for a in node.names if a.name == "pyarrow.parquet" and a.asname}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            if node.module == "pyarrow":
                pq_aliases |= {a.asname or a.name for a in node.names if a.name == "parquet"}
            elif node.module == "pyarrow.parquet":
                pq_names |= {a.asname or a.name: a.name for a in node.names if a.name in PQ_FUNCS}
    for node, _ in _walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in pq_names:
            yield node.lineno, f"{pq_names[f.id]}("
        elif isinstance(f, ast.Attribute):
            if f.attr in ANY_RECEIVER:
                yield node.lineno, f".{f.attr}("
            elif f.attr in PQ_FUNCS and (
                (isinstance(f.value, ast.Name) and f.value.id in pq_aliases)
                or ast.unparse(f.value) == "pyarrow.parquet"
            ):
                yield node.lineno, f"{ast.unparse(f.value)}.{f.attr}("


def test_the_parquet_write_finder_sees_every_spelling(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "import pyarrow.parquet as pq\n"
        "import pyarrow\n"
        "from pyarrow.parquet import ParquetWriter as W, write_to_dataset\n"
        "from recoworld.io import tables\n"
        "def f(df, t):\n"
        "    pq.write_table(t, 'x')\n"
        "    pyarrow.parquet.write_table(t, 'x')\n"
        "    with W('x', t.schema) as w: pass\n"
        "    write_to_dataset(t, 'x')\n"
        "    df.write_parquet('x')\n"
        "    df.lazy().sink_parquet('x')\n"
        "    tables.write_table(t, 'x')\n"  # the io helper: allowed
    )
    assert [line for line, _ in _parquet_writes(src)] == [6, 7, 8, 9, 10, 11]


def test_parquet_is_written_only_in_io() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for module, path in MODULES.items()
        if not _under(module, "recoworld.io")
        for line, what in _parquet_writes(path)
    ]
    assert not found, "Parquet written outside recoworld/io:\n" + "\n".join(found)
