"""The history import: every Xero invoice and credit note (since a date) into the CRM's Xero
Invoices module, once (``sugar-xero backfill --from-xero``).

Xero is read in its own pages (``GET /Invoices?page=N&pageSize=100``, ordered by date and id so a
page holds the same documents when read again); each page is written with Sugar's ``/bulk``
(upserts by Xero id, 20 to a call), each call checkpointed once Sugar took it: a run stopped
anywhere (Sugar down, a crash, Ctrl-C) resumes at the first document not yet written, reading
only the page it is on, so each document is written once. Writes
to Sugar are paced to ``writes_per_minute`` (default 1,000) over a rolling minute; Xero's own
limits are the Xero client's.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from shared.mapping.settings import MappingConfig
from shared.mapping.xero_documents import ID_FIELDS
from shared.usecases.invoice_records import BULK_CHUNK, fill_invoice_records

RESOURCES = ("Invoices", "CreditNotes")
PAGE_SIZE = 100
WRITES_PER_MINUTE = 1000
MAX_PAGES = 100_000  # a bound on the loop: 10 million documents


class Checkpoints(Protocol):
    """How many documents of a resource (in the import's stable order) are written."""

    def written(self, tenant_id: str, name: str) -> int: ...

    def advance(self, tenant_id: str, name: str, position: int) -> None: ...


class MemoryCheckpoints:
    def __init__(self) -> None:
        self.positions: dict[tuple[str, str], int] = {}

    def written(self, tenant_id: str, name: str) -> int:
        return self.positions.get((tenant_id, name), 0)

    def advance(self, tenant_id: str, name: str, position: int) -> None:
        self.positions[(tenant_id, name)] = max(position, self.positions.get((tenant_id, name), 0))


class HistoryStopped(Exception):
    """A page could not be written; the run stops there and resumes from it next time."""


@dataclass
class HistoryProgress:
    resource: str
    page: int
    documents: int  # in this page
    written: int  # records written so far, this run
    page_count: int | None = None  # Xero's pagination.pageCount, when it says


@dataclass
class HistoryReport:
    written: int = 0
    pages: int = 0
    skipped_pages: dict[str, int] = field(default_factory=dict)  # resource → pages done by earlier runs
    failed: dict[str, str] = field(default_factory=dict)  # xero id → why Sugar refused it for good


class WritePacer:
    """At most ``per_minute`` writes in any rolling 60 seconds: waits before a batch that would
    go over."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute, self.clock, self.sleep = per_minute, clock, sleep
        self._recent: deque[tuple[float, int]] = deque()
        self.waited = 0.0

    def before(self, writes: int) -> None:
        writes = min(writes, self.per_minute)
        while True:
            now = self.clock()
            while self._recent and self._recent[0][0] <= now - 60:
                self._recent.popleft()
            used = sum(n for _, n in self._recent)
            if used + writes <= self.per_minute:
                self._recent.append((now, writes))
                return
            wait = self._recent[0][0] + 60 - now
            self.waited += wait
            self.sleep(max(wait, 0.01))


def checkpoint_name(resource: str, since: date | None) -> str:
    return f"{resource}#{since.isoformat() if since else 'all'}"


def import_history(xero: Any, crm: Any, *, tenant_id: str, mappings: Any, config: MappingConfig,
                   checkpoints: Checkpoints, since: date | None = None, page_size: int = PAGE_SIZE,
                   pacer: WritePacer | None = None,
                   on_page: Callable[[HistoryProgress], None] | None = None) -> HistoryReport:
    """Import every page not yet written; raises ``HistoryStopped`` (after checkpointing what
    was written) when Sugar cannot take a page now."""
    pacer = pacer or WritePacer(WRITES_PER_MINUTE)
    report = HistoryReport()
    for resource in RESOURCES:
        name = checkpoint_name(resource, since)
        position = checkpoints.written(tenant_id, name)
        report.skipped_pages[resource] = position // page_size
        # Date then id: a page holds the same documents when it is read again.
        params: dict[str, Any] = {"pageSize": page_size, "order": f"Date ASC,{ID_FIELDS[resource]} ASC"}
        if since is not None:
            params["where"] = f"Date >= DateTime({since.year}, {since.month:02d}, {since.day:02d})"
        for page in range(position // page_size + 1, MAX_PAGES + 1):
            answer = xero.get(resource, {**params, "page": page})
            documents = list(answer.get(resource) or [])
            page_count = (answer.get("pagination") or {}).get("pageCount")
            start = position - (page - 1) * page_size  # written by an earlier run, in this page
            for offset in range(start, len(documents), BULK_CHUNK):
                chunk = documents[offset:offset + BULK_CHUNK]
                pacer.before(len(chunk))
                filled = fill_invoice_records(resource, chunk, tenant_id=tenant_id, crm=crm,
                                              mappings=mappings, config=config)
                if filled.pending:
                    raise HistoryStopped(f"{resource} page {page}: Sugar could not take "
                                         f"{len(filled.pending)} record(s) now "
                                         f"({next(iter(filled.pending.values()))}); run again to resume here")
                report.failed.update(filled.failed)
                report.written += len(filled.written)
                position = (page - 1) * page_size + offset + len(chunk)
                checkpoints.advance(tenant_id, name, position)
            if documents[start:]:
                report.pages += 1
                if on_page is not None:
                    on_page(HistoryProgress(resource, page, len(documents), report.written, page_count))
            if len(documents) < page_size:
                break  # the last page; documents made after it arrive through webhooks and reconcile
    return report
