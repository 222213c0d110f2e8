"""After a batch: the outcome of each CRM record goes back into its configured Sugar fields
(xero_id, sync_status, last_error, synced_at), one Sugar ``/bulk`` call per 20 records.

The values come only from stored state (the mapping and Xero's answer), so a write-back that
is retried later writes exactly what the first attempt meant to write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.mapping.settings import MappingConfig
from shared.observability import logger

# Fields Sugar itself changes on every save: a save touching only these and the connector's
# own write-back fields is the connector's write-back coming round again, not a user's edit.
SUGAR_BOOKKEEPING_FIELDS = frozenset({"date_modified", "modified_user_id", "modified_by_name",
                                      "date_entered"})
WRITE_BACK_VALUES = ("xero_id", "sync_status", "last_error", "synced_at")
BULK_CHUNK = 20


class CrmWriter(Protocol):
    def update_records_bulk(self, module: str, updates: dict[str, dict[str, Any]],
                            chunk_size: int = BULK_CHUNK) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Outcome:
    """What one CRM record's sync ended as."""

    module: str
    crm_id: str
    sync_status: str  # synced | warning | failed
    xero_id: str | None = None
    last_error: str | None = None
    synced_at: str | None = None
    # Trade documents: Xero's own values (number, status, amounts, url...), by write-back name.
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class WriteBackReport:
    written: set[tuple[str, str]]
    pending: dict[tuple[str, str], str]  # retryable: try again later
    failed: dict[tuple[str, str], str]  # Sugar refused for good (e.g. the record is gone)


def payload(outcome: Outcome, config: MappingConfig) -> dict[str, Any]:
    """The Sugar fields for one outcome; values the configuration does not map are left out."""
    fields = config.write_back.fields
    values: dict[str, Any] = {**outcome.values, "sync_status": outcome.sync_status,
                              "last_error": (outcome.last_error or "")[:255]}
    if outcome.xero_id:
        values["xero_id"] = outcome.xero_id
    if outcome.synced_at:
        values["synced_at"] = outcome.synced_at
    return {fields[name]: value for name, value in values.items() if name in fields}


def write_back(outcomes: list[Outcome], *, crm: CrmWriter | None,
               config: MappingConfig) -> WriteBackReport:
    report = WriteBackReport(written=set(), pending={}, failed={})
    if not outcomes or not config.write_back.enabled:
        return report
    if crm is None:
        logger.info("CRM write-back skipped: SUGAR_BASE_URL is not configured",
                    extra={"records": len(outcomes)})
        return report
    by_module: dict[str, dict[str, dict[str, Any]]] = {}
    for outcome in outcomes:
        fields = payload(outcome, config)
        if fields:
            by_module.setdefault(outcome.module, {})[outcome.crm_id] = fields
    for module, updates in by_module.items():
        ids = list(updates)
        for start in range(0, len(ids), BULK_CHUNK):
            chunk = {crm_id: updates[crm_id] for crm_id in ids[start:start + BULK_CHUNK]}
            try:
                results = crm.update_records_bulk(module, chunk, chunk_size=BULK_CHUNK)
            except Exception as error:  # noqa: BLE001 - Sugar being down must never fail the Xero job
                logger.warning("CRM write-back deferred", extra={"crm_module": module, "records": len(chunk),
                                                                 "error": str(error)})
                for crm_id in chunk:
                    report.pending[(module, crm_id)] = str(error)
                continue
            for crm_id in chunk:
                result = results.get(crm_id)
                problem = result.error(f"PUT /{module}/{crm_id}") if result is not None else None
                if result is None:
                    report.pending[(module, crm_id)] = "Sugar gave no answer for this record"
                elif problem is None:
                    report.written.add((module, crm_id))
                elif getattr(problem, "retryable", False):
                    report.pending[(module, crm_id)] = str(problem)
                else:
                    report.failed[(module, crm_id)] = str(problem)
    return report


def _changed_fields(data_changes: Any) -> set[str] | None:
    if isinstance(data_changes, dict):
        return {str(name) for name in data_changes}
    if isinstance(data_changes, list):
        names = {str(c.get("field_name")) for c in data_changes if isinstance(c, dict) and c.get("field_name")}
        return names if len(names) == len(data_changes) else None
    return None


def own_write_back(hook: Any, config: MappingConfig) -> str | None:
    """Why a Sugar hook is the connector's own write-back coming round again (None if it is not).

    Only a hook whose ``dataChanges`` list nothing but write-back and bookkeeping fields counts:
    a hook without ``dataChanges`` (a new record, a delete) is always a real change."""
    if getattr(hook, "event", None) != "after_save":
        return None
    changed = _changed_fields(getattr(hook, "dataChanges", None))
    if not changed:
        return None
    own = set(config.write_back.fields.values()) | set(config.xero_updates.contact_fields.values())
    if changed <= own | SUGAR_BOOKKEEPING_FIELDS and changed & own:
        return "only the connector's write-back fields changed: " + ", ".join(sorted(changed & own))
    return None
