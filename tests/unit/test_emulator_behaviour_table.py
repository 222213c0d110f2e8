"""The emulator's behaviour table (sugar_xero/local/xero/README.md): every row names a source and
at least one test, and every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "sugar_xero" / "local" / "xero" / "README.md"
FILES = {
    "E": "tests/unit/test_xero_emulator.py",
    "D": "tests/unit/test_xero_emulator_documents.py",
    "X": "tests/unit/test_xero_emulator_as_documented.py",
    "P": "tests/contract/test_emulator_parameters.py",
    "C": "tests/integration/test_xero_as_documented.py",
    "L": "tests/integration/test_organisation_day_and_locks.py",
}


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def _rows() -> list[list[str]]:
    table = README.read_text().split("## Behaviour table", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]


def test_every_row_has_a_source_and_a_test_that_exists():
    known = {letter: _tests_in(ROOT / path) for letter, path in FILES.items()}
    rows = _rows()
    assert len(rows) >= 25
    for behaviour, source, pinned in rows:
        assert source, behaviour
        named = re.findall(r"\b([A-Z])::(test_\w+)", pinned)
        paths = re.findall(r"`(tests/[\w/]+\.py)", pinned)
        assert named or paths, f"no test for: {behaviour}"
        for letter, name in named:
            assert name in known[letter], f"{letter}::{name} does not exist ({FILES[letter]})"
        for path in paths:
            assert (ROOT / path).is_file(), path
