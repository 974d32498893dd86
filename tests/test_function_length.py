"""Functions fit on a screen: none outside ``benchmarks/`` is longer than 80 lines, from ``def`` to its last line."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 80
CHECKED = ("deploy", "infra", "scenes", "supernet", "search_spaces", "nas", "tests")  # with cli.py


def long_functions(files: list[Path], root: Path, limit: int = LIMIT) -> list[str]:
    """``path:line name (N lines)`` for every function or method in ``files`` longer than ``limit`` lines."""
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_outside_benchmarks_is_longer_than_80_lines():
    files = [ROOT / "cli.py", *sorted(f for d in CHECKED for f in (ROOT / d).rglob("*.py"))]
    assert long_functions(files, ROOT) == []


def _function(name: str, lines: int, indent: str = "") -> str:
    """Source of a function ``lines`` lines long, from ``def`` to its last line."""
    return f"{indent}def {name}(self=None):\n" + "".join(f"{indent}    x = {i}\n" for i in range(lines - 1))


def test_the_check_sees_a_long_function(tmp_path):
    """The check can fail: 81 lines from ``def`` are reported, 80 are not; methods count too."""
    (tmp_path / "a.py").write_text(_function("fits", LIMIT) + "\n\nclass C:\n" + _function("long", LIMIT + 1, "    "))
    assert long_functions([tmp_path / "a.py"], tmp_path) == [f"a.py:{LIMIT + 4} long ({LIMIT + 1} lines)"]
