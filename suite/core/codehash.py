"""Which of twsbench's modules a step runs, and a hash of their source.

A cached step (the twin world, the prepared grids, a CNN's checkpoints, a whole run) must be
recomputed when code it runs changes, and only then. Its modules are found from the import
graph: each module's source is parsed (never executed) and every ``import`` of a twsbench
module is followed, at module level and inside functions alike (a function's import runs
when the step calls it), with the packages that hold each module. Imports under ``if
TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from collections.abc import Iterable
from functools import cache, lru_cache
from pathlib import Path

ROOT = "twsbench"


@cache
def _locate(name: str) -> tuple[Path | None, tuple[Path, ...]]:
    """(source file, package folders) of module ``name``; folders empty for a plain module,
    file ``None`` when there is no such module. Found on the file system: nothing of the
    module is executed (at most its parent package, for a package installed elsewhere)."""
    parent, _, leaf = name.rpartition(".")
    if not parent:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            return None, ()
        return Path(spec.origin), tuple(Path(p) for p in spec.submodule_search_locations or ())
    _, folders = _locate(parent)
    if not folders:  # the parent is a module: ``leaf`` is a name inside it
        return None, ()
    for folder in folders:
        if (folder / leaf / "__init__.py").is_file():
            return folder / leaf / "__init__.py", (folder / leaf,)
        if (folder / f"{leaf}.py").is_file():
            return folder / f"{leaf}.py", ()
    if parent != ROOT:
        return None, ()
    try:  # a subpackage mapped to a folder of its own (an editable install)
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None, ()
    if spec is None or spec.origin is None:
        return None, ()
    return Path(spec.origin), tuple(Path(p) for p in spec.submodule_search_locations or ())


def source_of(name: str) -> tuple[Path | None, bool]:
    """The source file of module ``name`` and whether it is a package (``None``: no such
    module)."""
    path, folders = _locate(name)
    return path, bool(folders)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def imports_of(name: str) -> set[str]:
    """The twsbench modules that module ``name`` imports directly (parent packages of each
    included: importing ``a.b.c`` runs ``a`` and ``a.b`` first)."""
    path, is_package = source_of(name)
    if path is None:
        return set()
    stat = path.stat()
    return set(_imports(name, path, is_package, stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=1024)
def _imports(name: str, path: Path, is_package: bool, mtime_ns: int, size: int
             ) -> frozenset[str]:
    """:func:`imports_of`, parsed once per version of the file (its time and size)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:  # relative: from the module's package, up level - 1 packages
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for target in targets:
            if target != ROOT and not target.startswith(ROOT + "."):
                continue
            if source_of(target)[0] is not None:  # a module, not a name inside one
                found.add(target)
                found.update(_parents(target))
    return frozenset(found)


def modules(roots: Iterable[str]) -> list[str]:
    """``roots`` and every twsbench module they import, directly or not, sorted."""
    todo = [r for root in roots for r in (*_parents(root), root)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imports_of(name) - seen)
    return sorted(n for n in seen if source_of(n)[0] is not None)


def digest(roots: Iterable[str], extra: Iterable[Path] = ()) -> str:
    """Hash of the source of ``roots`` and every module they import (by module name and
    content), and of ``extra`` files (plug-ins): an edit in any of them gives a new value,
    an edit anywhere else does not."""
    h = hashlib.sha256()
    for name in modules(roots):
        path, _ = source_of(name)
        assert path is not None
        h.update(f"{name}\0".encode())
        h.update(path.read_bytes())
    for path in extra:
        h.update(f"{Path(path).name}\0".encode())
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


#: The modules each cached step runs from (the rest of its graph is found from these).
TWIN = ("twsbench.twin",)
GRIDS = ("twsbench.prepare.compute",)
RUN = ("twsbench.pipeline.benchmark",)
