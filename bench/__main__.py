"""`make bench`: run every benchmark, print one table, write bench/results.md."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from bench.report import render, write

BENCHMARKS = ("bench.cold_start", "bench.calls_per_record", "bench.refresh_race", "bench.backfill")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", nargs="*", help="module names to run (default: all)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.md")))
    args = parser.parse_args()
    rows = []
    for module_name in BENCHMARKS:
        if args.only and module_name.rsplit(".", 1)[1] not in args.only:
            continue
        rows += importlib.import_module(module_name).run()
    print(render(rows))
    write(rows, Path(args.out))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
