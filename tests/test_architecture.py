"""The package's shape is part of its specification (docs/architecture.md).

- Layers: every import inside ``logq`` points down the stack
  ``errors/types -> codec -> config -> storage -> groups -> client -> aio -> server -> cli -> logq``.
- No import cycle between modules, counting imports inside functions too (a lazy import
  that only hides a cycle is still a cycle).
- No module imports a private name (``_x``) of another module.
- The installed package holds no benchmark peers: nothing in ``logq`` imports ``benchmarks``,
  ``subprocess``-driven peers or the docs.
- Every public name of ``logq`` is in ``__all__``, and every exception class lives in
  ``logq/errors.py`` and derives from ``LogqError``.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import logq
import pytest
from logq import errors

ROOT = Path(logq.__file__).resolve().parent

# Lower rank = lower layer. A module may import modules of its own rank or lower.
RANKS = {
    "logq.errors": 0,
    "logq.types": 0,
    "logq.codec": 1,
    "logq.config": 2,
    "logq.storage": 3,
    "logq.groups": 4,
    "logq.client": 5,
    "logq.aio": 6,  # asyncio clients over the sync clients' core
    "logq.server": 7,  # the Kafka-protocol broker (logq serve)
    "logq.cli": 8,
    "logq": 9,  # logq/__init__.py and logq/__main__.py re-export the public surface
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def rank(name: str) -> int:
    while name not in RANKS:
        name = name.rpartition(".")[0]
    return RANKS[name]


def imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import statement, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield node.lineno, base, [a.name for a in node.names]


def resolve(target: str, names: list[str], known: dict[str, Path]) -> list[str]:
    """The logq modules an import statement loads: ``from logq.x import y`` may name module y."""
    out = [target] if target in known else []
    out += [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    for mod, path in known.items():
        for _, target, names in imports(path):
            if target == "logq" or target.startswith("logq."):
                edges[mod].update(d for d in resolve(target, names, known) if d != mod)
    return edges


def test_every_import_points_down_the_layers() -> None:
    known = modules()
    wrong = []
    for mod, path in known.items():
        for line, target, names in imports(path):
            for dep in resolve(target, names, known):
                if dep != mod and rank(dep) > rank(mod):
                    wrong.append(f"{path.relative_to(ROOT.parent)}:{line} {mod} imports {dep}")
    assert not wrong, "imports that point up the layers:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules() -> None:
    edges = graph()
    # Package __init__ modules are entered before their children; an __init__ that
    # re-exports a child is not a cycle with it.
    for mod in list(edges):
        edges[mod] = {d for d in edges[mod] if not mod.startswith(d + ".") and not d.startswith(mod + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d) :] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_imports_a_private_name_of_another() -> None:
    wrong = []
    for mod, path in modules().items():
        for line, target, names in imports(path):
            if not (target == "logq" or target.startswith("logq.")):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [p for p in target.split(".") if p.startswith("_") and not p.startswith("__")]
            if private:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line} {mod} imports {private} from {target}")
    assert not wrong, "\n".join(wrong)


def test_the_package_does_not_import_benchmark_or_test_code() -> None:
    for mod, path in modules().items():
        for line, target, _ in imports(path):
            assert target.split(".")[0] not in {"benchmarks", "tests", "tools", "redis", "matplotlib"}, (
                f"{path.relative_to(ROOT.parent)}:{line} {mod} imports {target}"
            )


def test_every_exception_class_lives_in_errors_and_derives_from_logq_error() -> None:
    for mod, path in modules().items():
        if mod == "logq.errors":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                assert not any(b.endswith(("Error", "Exception", "Warning")) for b in bases), (
                    f"{mod}.{node.name} is an exception class outside logq/errors.py"
                )
    leaves = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, BaseException)]
    for cls in leaves:
        if cls.__module__ != "logq.errors":
            continue
        assert issubclass(cls, (errors.LogqError, Warning)), f"{cls.__name__} does not derive from LogqError"
        assert cls.__name__ in logq.__all__, f"logq does not export {cls.__name__}"


@pytest.mark.parametrize("name", logq.__all__)
def test_every_name_in_all_is_importable_from_logq(name: str) -> None:
    assert getattr(logq, name) is not None


def test_python_dash_m_logq_runs_the_cli() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "logq", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage: logq" in out.stdout
