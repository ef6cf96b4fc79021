"""The import graph runs one way: every web module imports on its own in a fresh interpreter, and no package has a cycle
among its modules' top-level imports (a cycle made `import web.excel`, and so `dangan import`, fail)."""
from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "web")

# One interpreter loads the libraries once, then forks a child per module: the child imports only our module and
# whatever it imports, as `python -c "import web.excel"` would.
PROBE = r"""
import importlib, os, sys, traceback
ours, libraries = sys.argv[1].split(","), sys.argv[2].split(",")
for library in libraries:  # start-up shared by the children
    try:
        importlib.import_module(library)
    except BaseException:
        pass
failed = []
for name in ours:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(name)
print("FAILED:" + ",".join(failed))
"""


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" in path.parts and (path.name == "env.py" or "versions" in path.parts):
                continue  # Alembic's scripts, run by Alembic
            parts = path.relative_to(REPO).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_every_web_module__imports_on_its_own() -> None:
    """Engine modules are checked by the static test below only: importing each of 100 in a fresh child costs minutes."""
    names = [m for m in modules() if m.split(".")[0] == "web"]
    # Libraries and the engine (which never imports web; its own cycles are the static test's) load once.
    libraries = sorted({t.split(".")[0] for name in names for t in _top_level_imports(_path(name), name)} - {"web", ""})
    libraries += sorted({t for name in names for t in _top_level_imports(_path(name), name) if t.startswith("engine.")})
    done = subprocess.run([sys.executable, "-c", PROBE, ",".join(names), ",".join(libraries)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    failed = done.stdout.strip().rpartition("FAILED:")[2]
    assert failed == "", f"{failed}\n{done.stderr[-3000:]}"


def _path(name: str) -> Path:
    parts = name.split(".")
    folder = REPO.joinpath(*parts)
    return folder / "__init__.py" if folder.is_dir() else REPO.joinpath(*parts[:-1], parts[-1] + ".py")


def _top_level_imports(path: Path, name: str) -> set[str]:
    """Modules of our packages imported when the module loads (not inside functions, not TYPE_CHECKING only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_within(package: str) -> None:
    names = [m for m in modules() if m.split(".")[0] == package]
    known = set(names)
    graph: dict[str, set[str]] = {}
    for name in names:
        path = _path(name)
        # A module's own packages run before it anyway: an edge to them is no cycle of ours.
        graph[name] = {t for t in _top_level_imports(path, name) & known if t != name and not name.startswith(t + ".")}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' → '.join(exc.args[1])}")
