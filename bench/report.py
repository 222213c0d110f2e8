"""One table for every benchmark: measured ratio beside its target, printed and written as
markdown (bench/results.md). A benchmark may attach notes (failures, examples) to its rows; they
follow the table."""

from __future__ import annotations

import dataclasses
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
    notes: tuple[str, ...] = ()

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        verdict = {True: "yes", False: "NO", None: "n/a"}[self.holds]
        return [self.issue, self.name, self.measured, ratio, self.target, verdict]

    def with_notes(self, notes: list[str]) -> Row:
        return dataclasses.replace(self, notes=tuple(notes))


HEADER = ["issue", "benchmark", "measured", "ratio", "target", "holds"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row]) -> str:
    table = [HEADER] + [[_cell(cell) for cell in row.cells()] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
             for line in table]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def render_notes(rows: list[Row]) -> str:
    notes = [f"- {note}" for row in rows for note in row.notes]
    return "\n".join(["Notes:", *notes]) if notes else ""


def write(rows: list[Row], path: Path) -> None:
    notes = render_notes(rows)
    path.write_text("# Benchmark results\n\nProduced by `make bench`; every ratio comes from one run.\n\n"
                    + render(rows) + "\n" + (f"\n{notes}\n" if notes else ""))
