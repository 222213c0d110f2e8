"""The README's benchmark table is bench/results.md's, never copied by hand.

`python -m bench.readme` (`make bench-readme`, run by `make bench`) puts the table and notes of
bench/results.md between the README's markers; `--check` exits 1 when they differ (the test suite
runs the same comparison)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = REPO / "bench" / "results.md"
START = "<!-- benchmark table: generated from bench/results.md by `make bench-readme`; do not edit -->"
END = "<!-- end of the benchmark table -->"


def results_block(results: str) -> str:
    """The table and its notes: everything of results.md from the table's first line."""
    lines = results.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("| ")), None)
    if first is None:
        raise ValueError("bench/results.md holds no table")
    return "\n".join(lines[first:]).strip()


def with_results(readme: str, results: str) -> str:
    if readme.count(START) != 1 or readme.count(END) != 1:
        raise ValueError(f"README.md needs the markers once each:\n{START}\n{END}")
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{results_block(results)}\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readme")
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's table is not results.md's")
    args = parser.parse_args(argv)
    readme, wanted = README.read_text(), with_results(README.read_text(), RESULTS.read_text())
    if args.check:
        if readme != wanted:
            print("README.md's benchmark table differs from bench/results.md: run `make bench-readme`",
                  file=sys.stderr)
            return 1
        return 0
    if readme != wanted:
        README.write_text(wanted)
        print("README.md: benchmark table updated from bench/results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
