"""`make bench`: run every benchmark, print one table, write bench/results.md.

A benchmark is a module here with ``run() -> list[bench.report.Row]``; adding one is adding its
name to BENCHMARKS. A benchmark that raises becomes a row that says so, so the table is always
complete."""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from pathlib import Path

from bench.report import Row, render, render_notes, write

# In issue order: connection layer (3), contacts (4), invoices (5), webhooks (6), operations (7).
BENCHMARKS = (
    "bench.calls_per_record",
    "bench.refresh_race",
    "bench.backfill",
    "bench.quotes_to_invoices",
    "bench.invoice_mapping",
    "bench.cold_start",
    "bench.webhook_answer",
    "bench.fuzz",
    "bench.exactly_once",
    "bench.write_back_steps",
    "bench.throughput",
    "bench.idle_latency",
)


def _short_name(module_name: str) -> str:
    return module_name.rsplit(".", 1)[1]


def run_one(module_name: str) -> list[Row]:
    started = time.monotonic()
    try:
        rows = importlib.import_module(module_name).run()
    except Exception as error:
        traceback.print_exc()
        return [Row("-", f"{_short_name(module_name)} did not complete", f"{type(error).__name__}: {error}",
                    None, "completes", False)]
    print(f"{_short_name(module_name)}: {time.monotonic() - started:.0f} s", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", nargs="*", choices=[_short_name(name) for name in BENCHMARKS],
                        help="benchmarks to run (default: all)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.md")))
    args = parser.parse_args()
    rows: list[Row] = []
    for module_name in BENCHMARKS:
        if args.only and _short_name(module_name) not in args.only:
            continue
        rows += run_one(module_name)
    print()
    print(render(rows))
    notes = render_notes(rows)
    if notes:
        print("\n" + notes)
    write(rows, Path(args.out))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
