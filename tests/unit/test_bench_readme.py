"""The README's benchmark table is the committed bench/results.md's, as `make bench` wrote it."""

from __future__ import annotations

import pytest

from bench import readme


def test_the_readme_table_is_the_committed_results():
    text = readme.README.read_text()
    assert text == readme.with_results(text, readme.RESULTS.read_text()), (
        "README.md's benchmark table differs from bench/results.md: run `make bench-readme`")


def test_the_block_is_replaced_whole_and_nothing_else_changes():
    page = f"intro\n{readme.START}\n| old | table |\nold note\n{readme.END}\nafter\n"
    results = "# Benchmark results\n\nProduced by `make bench`.\n\n| a | b |\n| - | - |\n| 1 | 2 |\n\nNotes:\n- n\n"
    assert readme.with_results(page, results) == (
        f"intro\n{readme.START}\n| a | b |\n| - | - |\n| 1 | 2 |\n\nNotes:\n- n\n{readme.END}\nafter\n")


def test_missing_markers_or_table_are_errors():
    with pytest.raises(ValueError, match="markers"):
        readme.with_results("no markers", "| a |")
    with pytest.raises(ValueError, match="no table"):
        readme.with_results(f"{readme.START}\n{readme.END}", "# nothing")
