"""Cold start: importing each function's handler module ÷ importing boto3 alone, each in a fresh
interpreter (payment-webhooks issue; target at most 2).

Robust against a busy machine: one discarded warm-up round (bytecode and page cache), then rounds
that import boto3 and every handler one after the other, so that a slow moment weighs on both
sides of a ratio; each ratio is the median of the per-round ratios."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from bench.report import Row

FUNCTIONS = ("contact_sync", "invoice_push", "payment_webhook", "reconcile")
ROUNDS = 7
TARGET = 2.0
REPO = Path(__file__).resolve().parents[1]

_PROBE = ("import time, importlib; t = time.perf_counter(); importlib.import_module({module!r}); "
          "print(time.perf_counter() - t)")
# Tracing off, as outside Lambda (and as under SAM local): the environment the target is about.
_PLAIN = {"POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "eu-west-1", "PATH": "/usr/bin:/bin"}
# What Lambda looks like with the template's `Tracing: Active`: Powertools' Tracer and the X-Ray SDK
# load at import. Reported beside the target, for what tracing costs.
_TRACED = {"LAMBDA_TASK_ROOT": str(REPO), "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1",
           "PATH": "/usr/bin:/bin"}


def _import_seconds(module: str, environment: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)], check=True, cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=environment)
    return float(out.stdout.strip().splitlines()[-1])


def measure(rounds: int = ROUNDS) -> dict[str, dict[str, float]]:
    """Median seconds and median ratio to boto3 per handler module ('traced:' prefix: X-Ray on)."""
    subjects = [(name, f"functions.{name}.app", _PLAIN) for name in FUNCTIONS]
    subjects.append(("traced:payment_webhook", "functions.payment_webhook.app", _TRACED))
    for _, module, environment in subjects:  # warm-up, not counted
        _import_seconds(module, environment)
    baselines: list[float] = []
    samples: dict[str, list[float]] = {name: [] for name, _, _ in subjects}
    ratios: dict[str, list[float]] = {name: [] for name, _, _ in subjects}
    for _ in range(rounds):
        baseline = _import_seconds("boto3", _PLAIN)
        baselines.append(baseline)
        for name, module, environment in subjects:
            seconds = _import_seconds(module, environment)
            samples[name].append(seconds)
            ratios[name].append(seconds / baseline)
    boto3_seconds = statistics.median(baselines)
    return {name: {"seconds": statistics.median(samples[name]), "boto3": boto3_seconds,
                   "ratio": statistics.median(ratios[name])} for name in samples}


def run() -> list[Row]:
    rows = []
    for name, result in measure().items():
        measured = f"{result['seconds'] * 1000:.0f} ms ÷ {result['boto3'] * 1000:.0f} ms (median of {ROUNDS})"
        if name.startswith("traced:"):
            function = name.split(":", 1)[1]
            rows.append(Row("6", f"cold start with X-Ray active (Lambda): functions.{function}.app ÷ boto3",
                            measured, result["ratio"], "for information", None))
        else:
            rows.append(Row("6", f"cold start: import functions.{name}.app ÷ import boto3", measured,
                            result["ratio"], f"≤ {TARGET:g}", result["ratio"] <= TARGET))
    return rows
