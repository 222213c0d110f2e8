"""After a batch: the outcome of each CRM record goes back into its configured Sugar fields
(xero_id, sync_status, last_error, synced_at), one Sugar ``/bulk`` call per 20 records.

The values come only from stored state (the mapping and Xero's answer), so a write-back that
is retried later writes exactly what the first attempt meant to write.

With a journal (``steps``), the write-back is a journal step of its own per record
(``{module}#WRITEBACK``, ``docs/exactly-once.md``): recorded with the exact values before the
Sugar bulk call, ``confirmed`` after Sugar wrote them, ``sent`` while Sugar's answer is unknown or
retryable, ``failed`` when Sugar refuses for good. A step left unconfirmed (the worker died during
the call, or Sugar was down) is redone on redelivery with the recorded values
(``unfinished_step``): Sugar's record update sets fields to values, so writing them twice leaves
the record as writing them once did, and a resend is safe.

A job whose record is written back gets its final status only after the write-back ran
(``end_after_write_back``): ``succeeded`` (or ``failed``, as the Xero side ended) once Sugar wrote
the record; ``failed`` when Sugar refused it for good; while Sugar's answer is retryable it stays
``queued`` with the warning ``xero done, crm write-back pending: ...`` and its message comes back.
A poller of ``GET /jobs/{id}`` therefore never sees ``succeeded`` for a job that will fail.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.mapping.settings import MappingConfig
from shared.observability import logger
from shared.state.dynamo import now_iso
from shared.state.records import Intent
from shared.usecases.work import finish

# Fields Sugar itself changes on every save: a save touching only these and the connector's
# own write-back fields is the connector's write-back coming round again, not a user's edit.
SUGAR_BOOKKEEPING_FIELDS = frozenset({"date_modified", "modified_user_id", "modified_by_name",
                                      "date_entered"})
WRITE_BACK_VALUES = ("xero_id", "sync_status", "last_error", "synced_at")
BULK_CHUNK = 20
STEP = "WRITEBACK"  # the journal module suffix of a record's write-back step
UNCONFIRMED = ("intent", "sent")
# The note a job carries while its CRM write-back waits for Sugar (``end_after_write_back``).
WRITE_BACK_PENDING = "xero done, crm write-back pending"


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
    # The Sugar fields exactly as an earlier unconfirmed step recorded them: sent as they are.
    recorded: dict[str, Any] | None = None


class StepStore(Protocol):
    def get_intents(self, tenant_id: str, module: str, crm_ids: list[str]) -> dict[str, Intent]: ...

    def record_intent(self, intent: Intent) -> Intent | None: ...

    def settle_intent(self, intent: Intent, state: str, *, found_id: str | None = None,
                      error: str | None = None) -> bool: ...


@dataclass
class Steps:
    """Where a batch's write-back steps are journalled: the sync table, the organisation."""

    store: StepStore
    tenant_id: str


def step_module(module: str) -> str:
    return f"{module}#{STEP}"


class StepReader(Protocol):
    def load(self, module: str, crm_ids: Any) -> dict[str, Intent]: ...


def unfinished_step(journal: StepReader, module: str, crm_id: str) -> dict[str, Any] | None:
    """The Sugar fields of this record's write-back step when it was recorded and never
    confirmed (the worker died during the Sugar call, or Sugar was down); else None.
    ``journal`` is the run's ``Journal``: load a batch's steps at once beforehand."""
    step = journal.load(step_module(module), [crm_id]).get(crm_id)
    if step is None or step.state not in UNCONFIRMED or not step.step_values:
        return None
    return dict(json.loads(step.step_values))


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
               config: MappingConfig, steps: Steps | None = None) -> WriteBackReport:
    report = WriteBackReport(written=set(), pending={}, failed={})
    if not outcomes or not config.write_back.enabled:
        return report
    if crm is None:
        logger.info("CRM write-back skipped: SUGAR_BASE_URL is not configured",
                    extra={"records": len(outcomes)})
        return report
    by_module: dict[str, dict[str, dict[str, Any]]] = {}
    for outcome in outcomes:
        fields = outcome.recorded if outcome.recorded is not None else payload(outcome, config)
        if fields:
            by_module.setdefault(outcome.module, {})[outcome.crm_id] = fields
    for module, updates in by_module.items():
        ids = list(updates)
        for start in range(0, len(ids), BULK_CHUNK):
            chunk = {crm_id: updates[crm_id] for crm_id in ids[start:start + BULK_CHUNK]}
            recorded = _record_steps(steps, module, chunk)
            try:
                results = crm.update_records_bulk(module, chunk, chunk_size=BULK_CHUNK)
            except Exception as error:  # noqa: BLE001 - Sugar being down must never fail the Xero job
                logger.warning("CRM write-back deferred", extra={"crm_module": module, "records": len(chunk),
                                                                 "error": str(error)})
                for crm_id in chunk:
                    report.pending[(module, crm_id)] = str(error)
                    _settle_step(steps, recorded.get(crm_id), "sent", str(error))
                continue
            for crm_id in chunk:
                result = results.get(crm_id)
                problem = result.error(f"PUT /{module}/{crm_id}") if result is not None else None
                step = recorded.get(crm_id)
                if result is None:
                    report.pending[(module, crm_id)] = "Sugar gave no answer for this record"
                    _settle_step(steps, step, "sent", report.pending[(module, crm_id)])
                elif problem is None:
                    report.written.add((module, crm_id))
                    _settle_step(steps, step, "confirmed")
                elif getattr(problem, "retryable", False):
                    report.pending[(module, crm_id)] = str(problem)
                    _settle_step(steps, step, "sent", str(problem))
                else:
                    report.failed[(module, crm_id)] = str(problem)
                    _settle_step(steps, step, "failed", str(problem))
    return report


def write_back_refused(error: str) -> str:
    """The job's failure when Sugar refuses a write-back for good (the record deleted: 404)."""
    return (f"the Xero write is done, but the CRM write-back was refused for good ({error}); "
            "the CRM record was not updated (deleted in the CRM?): check it, then replay the job")


@dataclass
class JobEnding:
    """How one job ends once its record's write-back ran (held until then)."""

    job_id: str
    status: str  # succeeded | failed
    xero: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


class JobMarker(Protocol):
    def get_job(self, job_id: str) -> Any: ...

    def update_job(self, job_id: str, **changes: Any) -> None: ...


def end_after_write_back(jobs: JobMarker, endings: dict[tuple[str, str], list[JobEnding]],
                         report: WriteBackReport) -> dict[tuple[str, str], str]:
    """Give each held job its final status now that its record's write-back ran: as planned when
    Sugar wrote it (or there was nothing to write), ``failed`` when Sugar refused it for good,
    and ``queued`` (not final; the warning says it waits for the CRM write-back) when Sugar's
    answer was retryable. Returns the records still waiting, with why: their messages must come
    back. A job held twice in one batch (a quote carrying two documents) ends as its last."""
    waiting: dict[tuple[str, str], str] = {}
    for key, held in endings.items():
        last = {ending.job_id: ending for ending in held}
        for ending in last.values():
            if key in report.pending:
                waiting[key] = report.pending[key]
                jobs.update_job(ending.job_id, status="queued", xero=ending.xero,
                                error=ending.error if ending.status == "failed"
                                else f"will retry: the CRM write-back ({report.pending[key]})",
                                warnings=[*ending.warnings, f"{WRITE_BACK_PENDING}: {report.pending[key]}"])
            elif key in report.failed:
                refused = write_back_refused(report.failed[key])
                finish(jobs, ending.job_id, "failed", xero=ending.xero,  # type: ignore[arg-type]
                       error=f"{ending.error}; {refused}" if ending.status == "failed" and ending.error
                       else refused, warnings=ending.warnings)
            else:
                finish(jobs, ending.job_id, ending.status, xero=ending.xero,  # type: ignore[arg-type]
                       error=ending.error, warnings=ending.warnings)
    return waiting


def _record_steps(steps: Steps | None, module: str, chunk: dict[str, dict[str, Any]]) -> dict[str, Intent]:
    """Each record's write-back intent, with the exact values, before the Sugar call."""
    if steps is None:
        return {}
    recorded: dict[str, Intent] = {}
    for crm_id, fields in chunk.items():
        text = json.dumps(fields, sort_keys=True, default=str)
        intent = steps.store.record_intent(Intent(
            tenant_id=steps.tenant_id, module=step_module(module), crm_id=crm_id, resource="SugarWriteBack",
            body_hash=hashlib.sha256(text.encode()).hexdigest(), step_values=text, updated_at=now_iso()))
        if intent is not None:
            recorded[crm_id] = intent
    return recorded


def _settle_step(steps: Steps | None, step: Intent | None, state: str, error: str | None = None) -> None:
    if steps is not None and step is not None:
        steps.store.settle_intent(step, state, error=error)


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
