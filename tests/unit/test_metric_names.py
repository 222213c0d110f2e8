"""Metric names come from one list (shared.observability.MetricNames): no function or adapter
spells one out, so what is emitted and what the dashboard and alarms read cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from shared.observability import MetricNames

REPO = Path(__file__).resolve().parents[2]


def test_no_metric_name_is_spelled_out_where_it_is_emitted():
    spelled = [f"{path.relative_to(REPO)}:{number}"
               for folder in ("functions", "shared", "sugar_xero")
               for path in (REPO / folder).rglob("*.py")
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if re.search(r"add_metric\(\s*name\s*=\s*[\"']", line)]
    assert spelled == []


def test_the_names_are_distinct():
    names = [value for key, value in vars(MetricNames).items() if key.isupper()]
    assert len(names) == len(set(names))
