"""Backfill: push CRM records that already exist to the connector, page by page.

What Sugar holds is read with its filter API and each record goes to the connector's API in the
same body a Web Logic Hook sends. Job ids are a hash of that body, so a run that is repeated
(or restarted after an interruption) creates no job twice: the API answers ``duplicate: true``.
Everything here is I/O free: reading Sugar, posting and polling are passed in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

ORDER_BY = "date_modified:asc,id:asc"
BAR_WIDTH = 20
FAILURES_SHOWN = 5
FINISHED = frozenset({"succeeded", "failed", "ignored"})


@dataclass(frozen=True)
class ModuleSpec:
    module: str  # Sugar's module name, as the filter API wants it
    bean: str  # the hook body's ``bean``: Sugar's PHP class name
    route: str  # the connector's route
    noun: str  # what the progress line counts


MODULES: dict[str, ModuleSpec] = {
    spec.module: spec
    for spec in (
        ModuleSpec("Accounts", "Account", "/crm/contacts", "accounts"),
        ModuleSpec("Contacts", "Contact", "/crm/contacts", "contacts"),
        ModuleSpec("ProductTemplates", "ProductTemplate", "/crm/products", "products"),
    )
}


def parse_since(text: str) -> str:
    """``2026-01-31`` or an ISO 8601 date-time; the instant as Sugar writes it (UTC offset)."""
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD) or ISO 8601 date-time: {text!r}") from None
    if len(text) == len("2026-01-31"):  # a bare date means that day's start
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def since_filter(since: str, until: str | None = None) -> list[dict[str, Any]]:
    window: list[dict[str, Any]] = [{"date_modified": {"$gte": since}}]
    if until:
        window.append({"date_modified": {"$lte": until}})
    return window


def keyset_records(fetch: Callable[[list[dict[str, Any]], int], list[dict[str, Any]]], *, since: str,
                   until: str, page_size: int, max_pages: int = 1_000_000) -> Iterator[dict[str, Any]]:
    """Every record modified in [since, until], in (date_modified, id) order, read page by page
    after the last record seen rather than by offset.

    Offsets shift under a run: the connector's own write-back saves each pushed record, which
    moves it to the end of a date_modified ordering, so offset paging skips records. Freezing the
    window at ``until`` (the run's start) and paging by key reads each record once; what is saved
    during the run is the next run's (or the reconciliation's) business."""
    window = since_filter(since, until)
    after: tuple[str, str] | None = None
    for _ in range(max_pages):
        filters = window if after is None else [*window, {"$or": [
            {"date_modified": {"$gt": after[0]}},
            {"$and": [{"date_modified": {"$equals": after[0]}}, {"id": {"$gt": after[1]}}]},
        ]}]
        page = fetch(filters, page_size)
        yield from page
        if len(page) < page_size:
            return
        after = (str(page[-1]["date_modified"]), str(page[-1]["id"]))


def hook_body(spec: ModuleSpec, record: dict[str, Any]) -> dict[str, Any]:
    """What Sugar's Web Logic Hook would send for this record after a save."""
    return {"bean": spec.bean, "event": "after_save", "data": record}


def pages_of(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    if size < 1:
        raise ValueError("a page holds at least one record")
    page: list[dict[str, Any]] = []
    for record in records:
        page.append(record)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


Outcome = Literal["new", "duplicate", "refused"]


@dataclass(frozen=True)
class Pushed:
    """The API's answer to one record: a job (new or the earlier one), or why not."""

    record_id: str
    outcome: Outcome
    job_id: str | None = None
    error: str | None = None


@dataclass
class Tally:
    sent: int = 0
    new: int = 0
    duplicates: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (record id, error)
    job_ids: list[str] = field(default_factory=list)  # new and duplicate, in order, distinct

    def add(self, pushed: Pushed) -> None:
        self.sent += 1
        if pushed.outcome == "refused":
            self.refused.append((pushed.record_id, pushed.error or "refused"))
            return
        if pushed.outcome == "new":
            self.new += 1
        elif pushed.outcome == "duplicate":
            self.duplicates += 1
        if pushed.job_id and pushed.job_id not in self._seen:
            self._seen.add(pushed.job_id)
            self.job_ids.append(pushed.job_id)

    def __post_init__(self) -> None:
        self._seen: set[str] = set(self.job_ids)


def push_pages(pages: Iterable[list[dict[str, Any]]], push: Callable[[dict[str, Any]], Pushed], *,
               workers: int = 8, on_page: Callable[[Tally], None] = lambda tally: None) -> Tally:
    """Push every record, a page at a time, ``workers`` posts at once."""
    tally = Tally()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill") as pool:
        for page in pages:
            for answer in pool.map(push, page):
                tally.add(answer)
            on_page(tally)
    return tally


def progress_line(tally: Tally, total: int | None, noun: str, *, width: int = BAR_WIDTH) -> str:
    """``[#####...............] 1200/2000 accounts, 3 duplicates, 0 refused``."""
    counts = f"{tally.duplicates} duplicates, {len(tally.refused)} refused"
    if not total:
        return f"{tally.sent} {noun}, {counts}"
    filled = min(width, math.floor(width * tally.sent / total))
    return f"[{'#' * filled}{'.' * (width - filled)}] {tally.sent}/{total} {noun}, {counts}"


def summary_lines(tally: Tally, noun: str) -> list[str]:
    lines = [f"sent {tally.sent} {noun}: {tally.new} new jobs, {tally.duplicates} duplicates, "
             f"{len(tally.refused)} refused"]
    for record_id, error in tally.refused[:FAILURES_SHOWN]:
        lines.append(f"  refused {record_id}: {error}")
    if len(tally.refused) > FAILURES_SHOWN:
        lines.append(f"  ... and {len(tally.refused) - FAILURES_SHOWN} more refused")
    return lines


@dataclass
class JobsOutcome:
    counts: dict[str, int] = field(default_factory=dict)  # by final status, plus "unfinished"
    failures: list[tuple[str, str]] = field(default_factory=list)  # (job id, error)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def unfinished(self) -> int:
        return self.counts.get("unfinished", 0)

    def lines(self) -> list[str]:
        order = ["succeeded", "ignored", "failed", "unfinished"]
        known = [name for name in order if self.counts.get(name)] + sorted(
            name for name in self.counts if name not in order)
        lines = ["jobs: " + (", ".join(f"{self.counts[name]} {name}" for name in known) or "none")]
        for job_id, error in self.failures[:FAILURES_SHOWN]:
            lines.append(f"  failed {job_id}: {error}")
        if len(self.failures) > FAILURES_SHOWN:
            lines.append(f"  ... and {len(self.failures) - FAILURES_SHOWN} more failed")
        return lines


def wait_for_jobs(job_ids: list[str], job_of: Callable[[str], dict[str, Any]], *, wait_seconds: float,
                  workers: int = 8, poll_seconds: float = 1.0,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> JobsOutcome:
    """Poll each job until it is finished or ``wait_seconds`` have passed. ``job_of`` answers the
    job's status document (``status``, ``error``)."""
    deadline = clock() + wait_seconds
    pending = list(dict.fromkeys(job_ids))
    final: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill-wait") as pool:
        while pending:
            for job_id, job in zip(pending, pool.map(job_of, pending), strict=True):
                if job.get("status") in FINISHED:
                    final[job_id] = job
            pending = [job_id for job_id in pending if job_id not in final]
            if not pending or clock() + poll_seconds > deadline:
                break
            sleep(poll_seconds)
    outcome = JobsOutcome()
    for job_id in dict.fromkeys(job_ids):
        job = final.get(job_id)
        status = job["status"] if job else "unfinished"
        outcome.counts[status] = outcome.counts.get(status, 0) + 1
        if status == "failed":
            outcome.failures.append((job_id, str(job.get("error") or "no error recorded")))  # type: ignore[union-attr]
    return outcome
