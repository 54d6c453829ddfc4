"""The layout's rules, checked on the source so that a shortcut fails here rather than in review.

Dependencies point one way (worker -> integrations -> metrics); only integrations/ speaks to Stripe and Slack;
stand-ins live in worker/demo/ and tests/ and production code never imports them; command modules run no SQL.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("metrics", "integrations", "worker")


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import in the file, at any depth (function-level imports count too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _offences(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in _modules(package):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(allowed):
            continue
        for line, module in _imports(path):
            if module.split(".")[0] in forbidden or module.startswith(forbidden):
                found.append(f"{rel}:{line} imports {module}")
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("metrics", ("integrations", "worker", "tests", "stripe", "slack_sdk", "celery", "redis")),
        ("integrations", ("worker", "tests")),
        ("worker", ("tests", "stripe", "slack_sdk")),
    ],
)
def test_dependencies_point_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    assert _offences(package, forbidden) == []


def test_no_production_module_imports_a_stand_in() -> None:
    # worker/cli/demo.py is the `retention demo` command itself: it imports the demo inside the command.
    allowed = ("worker/demo/", "worker/cli/demo.py")
    assert _offences("worker", ("worker.demo",), allowed) == []
    assert _offences("integrations", ("worker.demo",)) == []


def test_the_command_line_starts_without_the_demo() -> None:
    code = "import sys, worker.cli.main; print(sorted(m for m in sys.modules if m.startswith('worker.demo')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_command_modules_run_no_sql() -> None:
    """A command parses its arguments, calls a function and prints: queries live in the repositories."""
    statements = {"select", "text", "insert", "update", "delete", "table_of"}  # SQLAlchemy's builders
    runs = {"execute", "exec", "scalars", "scalar"}  # a connection's or session's methods
    found = []
    for path in _modules("worker/cli"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if (isinstance(func, ast.Name) and func.id in statements) or (
                isinstance(func, ast.Attribute) and func.attr in runs
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {ast.unparse(func)}()")
    assert found == []
