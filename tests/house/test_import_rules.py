"""The house rules, checked on the product's own imports (an AST read of every module under ``posguard/``).

Data moves one way: reader -> card session -> engine <-> host link; the codec at the edge; flows ask the
engine; the face and the service on top. Simulators are separate programs the product never imports.

An import inside ``if TYPE_CHECKING:`` is a type annotation, not a dependency, and is left out. An import of
``a.b.c`` is an edge to ``a.b.c`` (Python also runs the packages' ``__init__``; that is not counted).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "posguard"

#: (importer prefix, imported prefixes it must not use, why)
FORBIDDEN: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("posguard.drivers", ("posguard.engine", "posguard.iso8583", "posguard.flows", "posguard.service"),
     "drivers know readers, not transactions or messages"),
    ("posguard.flows", ("posguard.drivers",), "a flow asks the engine; it never touches a device"),
    ("posguard.engine", ("posguard.flows", "posguard.cli", "posguard.demo", "posguard.service",
                         "posguard.capture", "posguard.diagnose"),
     "the engine is below every face and flow"),
    ("posguard.emv", ("posguard.engine", "posguard.flows", "posguard.service", "posguard.cli"),
     "the card session knows the card and the reader"),
    ("posguard", ("firmware_sim", "tests"), "the product never imports its simulators or its tests"),
    *((f"posguard.capture.{m}", ("posguard.service", "posguard.cli", "posguard.demo"),
       "captures are below the service: replay feeds a Desk protocol, the faces hand it the till")
      for m in ("format", "sanitize", "taps", "pcap", "replay")),
)
#: modules that stand alone: they import nothing of posguard's outside the listed prefixes
ALONE: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("posguard.iso8583", ("posguard.iso8583", "posguard.sensitive"),
     "the codec imports nothing of posguard's but the leaf card-data module"),
    ("posguard.sensitive", (), "card data that guards itself is a leaf every layer may use"),
    ("posguard.clock", (), "the clock is a leaf"),
)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every module ``module`` imports at run time (absolute names), with the line."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:  # ``from pkg import submodule`` or ``from module import Name``
                    sub = f"{base}.{alias.name}"
                    yield (sub if sub in MODULES else base), child.lineno
            stack.append(child)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _graph() -> dict[str, dict[str, int]]:
    graph: dict[str, dict[str, int]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: dict[str, int] = {}
        for target, line in _imports(tree, name, path.name == "__init__.py"):
            if target.split(".")[0] in ("posguard", "firmware_sim", "tests"):
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


GRAPH = _graph()


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_graph_is_read() -> None:
    assert len(GRAPH) > 50 and "posguard.iso8583.message" in GRAPH
    assert "posguard.sensitive" in GRAPH["posguard.iso8583.message"]


@pytest.mark.parametrize(("importer", "forbidden", "why"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_layers(importer: str, forbidden: tuple[str, ...], why: str) -> None:
    broken = [f"{mod}:{line} imports {target}" for mod, edges in GRAPH.items() if _under(mod, importer)
              for target, line in edges.items() if any(_under(target, f) for f in forbidden)]
    assert not broken, f"{why}:\n" + "\n".join(broken)


@pytest.mark.parametrize(("module", "allowed", "why"), ALONE, ids=[a[0] for a in ALONE])
def test_standing_alone(module: str, allowed: tuple[str, ...], why: str) -> None:
    broken = [f"{mod}:{line} imports {target}" for mod, edges in GRAPH.items() if _under(mod, module)
              for target, line in edges.items() if not any(_under(target, a) for a in allowed + (module,))]
    assert not broken, f"{why}:\n" + "\n".join(broken)


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in GRAPH.get(node, {}):
            if nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_discovery_of_our_own_modules() -> None:
    """The face imports its command groups plainly: nothing in the product imports a module by a name held in a
    string (``importlib.import_module``, ``__import__``), except the codec's loader of *user* dialects named
    ``module:ATTR`` — a feature. Declared plug-in points (entry points: user dialects, the separately installed
    simulators the demo uses) are looked up with ``importlib.metadata``, which is not discovery of our modules."""
    users = []
    for name, path in MODULES.items():
        if name == "posguard.iso8583.dialects":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if called in ("import_module", "__import__"):
                    users.append(f"{name}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.module == "importlib" and any(
                    a.name == "import_module" for a in node.names):
                users.append(f"{name}:{node.lineno}")
    assert not users, f"modules imported by name outside user-dialect loading: {users}"
