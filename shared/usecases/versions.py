"""Which save of a CRM record is the newest: the one rule for contacts, items and documents.

A record's version is the instant it was saved in the CRM: Sugar's ``date_modified`` (sent in
the saving user's UTC offset, so ``2026-12-03T09:00:00+08:00`` is *earlier* than
``2026-12-03T02:00:00Z``: compared as instants, never as text), or for the connector's own
documents their ``crm_modified``, or the time the connector received the callout when absent.

Versions are stored as UTC text of fixed width (``2026-12-03T01:00:00.000000Z``), so that
DynamoDB compares them correctly in a condition expression (string order is time order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")
K = TypeVar("K")


def parse_instant(value: str | None) -> datetime | None:
    """An ISO-8601 text with its offset → an aware UTC datetime; None for nothing or unreadable.
    A text without offset is taken as UTC (Sugar's REST answers carry one; the rest is ours)."""
    if not value:
        return None
    text = str(value).strip().replace("Z", "+00:00").replace("z", "+00:00")
    if " " in text and "T" not in text:
        text = text.replace(" ", "T", 1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def version_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version_of(crm_modified: str | None, received_at: str | None = None) -> str | None:
    """The comparable version of one save: its CRM instant, else when the callout arrived."""
    moment = parse_instant(crm_modified) or parse_instant(received_at)
    return version_text(moment) if moment else None


def newest_per_record(entries: Iterable[T], *, key: Callable[[T], K],
                      version: Callable[[T], str | None]) -> dict[K, list[T]]:
    """Group ``entries`` (in delivery order) by record, newest save first in each group.

    Newest is the latest instant; between equal instants (or none at all) the later delivery
    wins, because it is the later save the CRM told us about. An entry without a version
    counts as older than any entry with one."""
    groups: dict[K, list[tuple[int, T]]] = {}
    for position, entry in enumerate(entries):
        groups.setdefault(key(entry), []).append((position, entry))
    ordered: dict[K, list[T]] = {}
    for record, members in groups.items():
        members.sort(key=lambda pair: (version(pair[1]) or "", pair[0]), reverse=True)
        ordered[record] = [entry for _, entry in members]
    return ordered


SUPERSEDED = "superseded by a newer save of the same record in this batch: that save was pushed instead"
OLDER = "an older save than the one already in Xero"
