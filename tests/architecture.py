"""The architecture's rules, read from the source alone (`ast`; nothing is imported, so no torch): no import cycle
among the modules of tricks/, claims/ and benchmarks/ (imports inside functions and `importlib.import_module("...")`
with a constant name count: they run, just later), `tricks` never imports `claims` except through the one lazy import
of `claims.compare` in the command line (`tricks/apply*.py`, the comparison mode), and no module over 600 lines.

    python -m tests.architecture [ROOT]    # every violation, one line each; exit 1 when there is one
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("tricks", "claims", "benchmarks")
MAX_LINES = 600
CLI = re.compile(r"tricks\.apply(_\w+)?(\.\w+)*")  # the command line: tricks/apply.py, tricks/apply_*.py (or a package)
COMPARISON = "claims.compare"  # the comparison mode, the one module of claims the command line may import (lazily)


@dataclass(frozen=True)
class Import:
    """One import of a module of the packages by another: where it is written, and whether it runs at import time."""

    source: str  # the importing module, dotted ("tricks.apply")
    target: str  # the imported module, dotted ("claims.compare"); a package's __init__ is the package's name
    path: Path
    line: int
    lazy: bool  # inside a function: runs when the function is called, not when the module is imported

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.path}:{self.line}{', lazy' if self.lazy else ''})"


def modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of the packages under `root`, by dotted name (a package's __init__.py by the package's name)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


class _Collector(ast.NodeVisitor):
    """The names a module imports, each with its line and whether it sits inside a function."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.depth = 0  # enclosing functions
        self.found: list[tuple[list[str], int, bool]] = []  # (candidate names, most specific first; line; lazy)

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, names: list[str], node: ast.AST) -> None:
        self.found.append((names, node.lineno, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add([alias.name], node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: from the module's package, one level up per extra dot
            package = self.module.split(".") if self.is_package else self.module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([node.module] if node.module else [])])
        for alias in node.names:  # `from claims import compare` imports the module claims.compare
            self._add([f"{base}.{alias.name}", base], node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self._add([node.args[0].value], node)
        self.generic_visit(node)


def imports(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[Import]:
    """Every import by a module of the packages of another module of the packages (third-party ones left out)."""
    mods = modules(root, packages)

    def resolve(name: str) -> str | None:  # the module a dotted name lives in: `a.b.f` -> `a.b` when a/b.py exists
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    out: dict[Import, None] = {}  # one per statement and module: `from a import b, c` is one import of `a`
    for module, path in mods.items():
        collector = _Collector(module, path.name == "__init__.py")
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        for names, line, lazy in collector.found:
            target = next((m for m in map(resolve, names) if m), None)
            if target is not None and target != module:
                out[Import(module, target, path.relative_to(root), line, lazy)] = None
    return list(out)


def cycles(found: list[Import]) -> list[list[Import]]:
    """The import cycles: for each group of modules that reach each other (a strongly connected component of two or
    more), the imports within the group, by module."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    groups = [set(g) for g in _components(graph) if len(g) > 1]
    return [sorted((i for i in found if i.source in g and i.target in g), key=lambda i: (i.source, i.line))
            for g in sorted(groups, key=min)]


def _components(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Tarjan's strongly connected components of `graph`."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(v: str) -> Iterator[list[str]]:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                yield from visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            yield group

    for v in sorted(graph):
        if v not in index:
            yield from visit(v)


def forbidden(found: list[Import]) -> list[Import]:
    """Imports of `claims` by `tricks` beyond the one allowed: a lazy import of claims.compare in the command line."""
    allowed = 0
    out = []
    for imp in sorted(found, key=lambda i: (i.source, i.line)):
        if not (imp.source.split(".")[0] == "tricks" and imp.target.split(".")[0] == "claims"):
            continue
        if allowed == 0 and CLI.fullmatch(imp.source) and imp.target == COMPARISON and imp.lazy:
            allowed += 1
        else:
            out.append(imp)
    return out


def oversized(root: Path, packages: tuple[str, ...] = PACKAGES, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """The modules of the packages over `limit` lines, with their line counts."""
    counts = ((m, len(p.read_text().splitlines())) for m, p in modules(root, packages).items())
    return [(m, n) for m, n in counts if n > limit]


def violations(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Every violation of the three rules under `root`, one line each (an import cycle: its group, then its imports)."""
    found = imports(root, packages)
    out = []
    for cycle in cycles(found):
        out.append("import cycle among " + ", ".join(sorted({i.source for i in cycle})))
        out += [f"    {i}" for i in cycle]
    out += [f"tricks imports claims: {i}" for i in forbidden(found)]
    out += [f"module over {MAX_LINES} lines: {m} ({n})" for m, n in oversized(root, packages)]
    return out


if __name__ == "__main__":
    lines = violations(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    print("\n".join(lines) or "no violations")
    sys.exit(1 if lines else 0)
