"""One table for every benchmark: measured ratio beside its target, printed and written as
markdown (bench/results.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    issue: str
    name: str
    measured: str
    ratio: float | None
    target: str
    holds: bool | None

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        verdict = {True: "yes", False: "NO", None: "n/a"}[self.holds]
        return [self.issue, self.name, self.measured, ratio, self.target, verdict]


HEADER = ["issue", "benchmark", "measured", "ratio", "target", "holds"]


def render(rows: list[Row]) -> str:
    table = [HEADER] + [row.cells() for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
             for line in table]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def write(rows: list[Row], path: Path) -> None:
    path.write_text("# Benchmark results\n\nProduced by `make bench`; every ratio comes from one run.\n\n"
                    + render(rows) + "\n")
