"""Cold start: importing each function's handler module ÷ importing boto3 alone, each in a fresh
interpreter, median of several runs (payment-webhooks issue; target at most 2)."""

from __future__ import annotations

import statistics
import subprocess
import sys

from bench.report import Row

FUNCTIONS = ("contact_sync", "invoice_push", "payment_webhook", "reconcile")
RUNS = 5
TARGET = 2.0

_PROBE = ("import time, importlib; t = time.perf_counter(); importlib.import_module({module!r}); "
          "print(time.perf_counter() - t)")


def _import_seconds(module: str) -> float:
    samples = []
    for _ in range(RUNS):
        out = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)], check=True,
                             capture_output=True, text=True, timeout=120,
                             env={"POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "eu-west-1",
                                  "PATH": "/usr/bin:/bin"})
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def run() -> list[Row]:
    baseline = _import_seconds("boto3")
    rows = []
    for name in FUNCTIONS:
        seconds = _import_seconds(f"functions.{name}.app")
        ratio = seconds / baseline
        rows.append(Row("6", f"cold start: import functions.{name}.app ÷ import boto3",
                        f"{seconds * 1000:.0f} ms ÷ {baseline * 1000:.0f} ms", ratio,
                        f"≤ {TARGET:g}", ratio <= TARGET))
    return rows
