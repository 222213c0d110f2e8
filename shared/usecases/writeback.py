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
import uuid
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
    # The version of Xero's state in ``values`` (its UpdatedDateUTC, ``xero_version``): the step
    # refuses it when a newer state was already written back to the record (newest wins).
    version: str | None = None


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


def step_module(module: str, step: str = STEP) -> str:
    return f"{module}#{step}"


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


def write_back_owed(journal: StepReader, module: str, crm_id: str, version: str | None = None) -> bool:
    """This record's write-back is not done for the state now stored: no step at all (the worker
    died between the state write and the write-back), one Sugar refused (tried again: a job
    redelivered after it failed must not end ``succeeded`` without it, and a record restored in
    the CRM gets it), or only one of an older Xero state (``version``). A confirmed step of this
    state (or a newer one) owes nothing: a plain re-save writes nothing back, so the write-back
    cannot loop."""
    step = journal.load(step_module(module), [crm_id]).get(crm_id)
    if step is None or step.state == "failed":
        return True
    return bool(version and step.version and step.version < version)


@dataclass
class WriteBackReport:
    written: set[tuple[str, str]]
    pending: dict[tuple[str, str], str]  # retryable: try again later
    failed: dict[tuple[str, str], str]  # Sugar refused for good (e.g. the record is gone)
    # A newer Xero state was already written back: this older one's Xero values were left out
    # (the connector's own fields, if any, were still written; then the key is in ``written``).
    superseded: set[tuple[str, str]] = field(default_factory=set)


# Write-back names that describe the connector's own push, not Xero's state of the document:
# an older Xero state's write-back still writes them (``write_back``, newest wins).
CONNECTOR_VALUES = frozenset({"xero_id", "sync_status", "last_error", "synced_at"})


def xero_version(updated_utc: str | None) -> str | None:
    """A Xero state's UpdatedDateUTC as a step version (the journal compares them as text)."""
    from shared.usecases.versions import version_of

    return version_of(updated_utc) if updated_utc else None


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
               config: MappingConfig, steps: Steps | None = None, step_name: str = STEP) -> WriteBackReport:
    """Each outcome's Sugar fields, 20 records a bulk call, each record a journal step (``steps``)
    named ``{module}#{step_name}``: the push and Xero's news about documents share ``WRITEBACK`` (they
    write the same Xero values, so one version orders them); writers of other fields name their own."""
    report = WriteBackReport(written=set(), pending={}, failed={})
    if not outcomes or not config.write_back.enabled:
        return report
    if crm is None:
        logger.info("CRM write-back skipped: SUGAR_BASE_URL is not configured",
                    extra={"records": len(outcomes)})
        return report
    by_module: dict[str, dict[str, dict[str, Any]]] = {}
    versions: dict[tuple[str, str], str] = {}
    for outcome in outcomes:
        fields = outcome.recorded if outcome.recorded is not None else payload(outcome, config)
        if fields:
            by_module.setdefault(outcome.module, {})[outcome.crm_id] = fields
            if outcome.version:
                versions[(outcome.module, outcome.crm_id)] = outcome.version
    own_fields = {crm_field for name, crm_field in config.write_back.fields.items() if name in CONNECTOR_VALUES}
    for module, updates in by_module.items():
        ids = list(updates)
        for start in range(0, len(ids), BULK_CHUNK):
            chunk = {crm_id: updates[crm_id] for crm_id in ids[start:start + BULK_CHUNK]}
            _write_chunk(crm, steps, module, chunk, versions, own_fields, step_name, report)
    return report


def _write_chunk(crm: CrmWriter, steps: Steps | None, module: str, chunk: dict[str, dict[str, Any]],
                 versions: dict[tuple[str, str], str], own_fields: set[str], step_name: str,
                 report: WriteBackReport) -> None:
    """One bulk call: steps recorded first (an older Xero state keeps only the connector's own
    fields), then Sugar, then each step settled by Sugar's answer for its record."""
    recorded, older = _record_steps(steps, module, chunk, versions, step_name)
    for crm_id in older:
        # A newer Xero state is already on the record: never overwritten with this older
        # one; only the connector's own fields (status of the push) still go.
        report.superseded.add((module, crm_id))
        chunk[crm_id] = {k: v for k, v in chunk[crm_id].items() if k in own_fields}
        if not chunk[crm_id]:
            del chunk[crm_id]
            report.written.add((module, crm_id))
    if older:
        logger.info("older Xero state not written back: a newer one is on the CRM record",
                    extra={"crm_module": module, "records": sorted(older)[:20]})
    if not chunk:
        return
    try:
        results = crm.update_records_bulk(module, chunk, chunk_size=BULK_CHUNK)
    except Exception as error:  # noqa: BLE001 - Sugar being down must never fail the Xero job
        logger.warning("CRM write-back deferred", extra={"crm_module": module, "records": len(chunk),
                                                         "error": str(error)})
        for crm_id in chunk:
            report.pending[(module, crm_id)] = str(error)
            _settle_step(steps, recorded.get(crm_id), "sent", str(error))
        return
    overtaken: list[str] = []
    for crm_id in chunk:
        result = results.get(crm_id)
        problem = result.error(f"PUT /{module}/{crm_id}") if result is not None else None
        step = recorded.get(crm_id)
        if result is None:
            report.pending[(module, crm_id)] = "Sugar gave no answer for this record"
            _settle_step(steps, step, "sent", report.pending[(module, crm_id)])
        elif problem is None:
            report.written.add((module, crm_id))
            if not _settle_step(steps, step, "confirmed") and step is not None:
                overtaken.append(crm_id)
        elif getattr(problem, "retryable", False):
            report.pending[(module, crm_id)] = str(problem)
            _settle_step(steps, step, "sent", str(problem))
        else:
            report.failed[(module, crm_id)] = str(problem)
            _settle_step(steps, step, "failed", str(problem))
    if overtaken and steps is not None:
        _write_newest_again(steps, crm, module, overtaken, report, step_name)


def _write_newest_again(steps: Steps, crm: CrmWriter, module: str, crm_ids: list[str],
                        report: WriteBackReport, step_name: str = STEP) -> None:
    """Records whose step was overtaken while this write was in flight: a newer write-back was
    recorded meanwhile (the journal refuses older ones), and Sugar may have applied this older
    write after it. The newest step's recorded values are written once more, so the last write
    to land carries them (writing the same values twice is harmless; a failure of this resend is
    left to the newer step's own retries)."""
    newest = steps.store.get_intents(steps.tenant_id, step_module(module, step_name), crm_ids)
    again = {crm_id: dict(json.loads(step.step_values)) for crm_id, step in newest.items() if step.step_values}
    if not again:
        return
    try:
        crm.update_records_bulk(module, again, chunk_size=BULK_CHUNK)
    except Exception as error:  # noqa: BLE001 - the newer step retries itself
        logger.warning("newest write-back not written again", extra={"crm_module": module, "error": str(error)})
        return
    report.superseded.update((module, crm_id) for crm_id in again)
    logger.info("a newer write-back overtook this one: its values written again",
                extra={"crm_module": module, "records": sorted(again)[:20]})


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


WRITE_BACK_KIND = "crm.write_back"  # a failed job that makes a refused write-back of Xero's news visible
_FAILED_WRITE_BACK_IDS = uuid.UUID("0b7f2c1e-8d3a-4e55-9c61-2f4a7b9e0d13")


def record_refused_write_back(jobs: Any, *, tenant_id: str, module: str, crm_id: str, xero_id: str,
                              version: str | None, error: str, source: str) -> str | None:
    """Xero's news (a webhook or the reconcile) could not be written onto a CRM record because
    Sugar refused it for good: a ``failed`` job of kind ``crm.write_back`` says so, so that
    ``sugar-xero status`` lists it among the failures with the record and the reason, instead of
    a log line only. One job per record and Xero state (its id is derived from them): the same
    refusal seen again is not listed twice. Returns the job id (None without a job store)."""
    if jobs is None:
        return None
    from shared.models.jobs import CrmRef, Job

    job_id = str(uuid.uuid5(_FAILED_WRITE_BACK_IDS, f"{tenant_id}:{module}:{crm_id}:{xero_id.lower()}:{version}"))
    stamp = now_iso()
    message = (f"Xero's update ({source}) of {xero_id} could not be written onto the CRM record: Sugar refused "
               f"it for good ({error}); the record was not updated (deleted in the CRM, or a field it refuses?): "
               "fix it in the CRM; the next change in Xero, or the nightly audit, writes it again")
    try:
        jobs.create_job(Job(job_id=job_id, status="failed", kind=WRITE_BACK_KIND, crm=CrmRef(module=module, id=crm_id),
                            xero={"id": xero_id}, error=message[:1000], created_at=stamp, updated_at=stamp),
                        {"tenant_id": tenant_id, "xero_id": xero_id, "version": version, "source": source})
    except Exception as failure:  # noqa: BLE001 - the log line below still tells
        logger.error("could not record the refused write-back as a job", extra={"error": str(failure)[:300]})
        return None
    return job_id


def _record_steps(steps: Steps | None, module: str, chunk: dict[str, dict[str, Any]],
                  versions: dict[tuple[str, str], str], step_name: str = STEP
                  ) -> tuple[dict[str, Intent], list[str]]:
    """Each record's write-back intent, with the exact values and the version of Xero's state
    they carry, before the Sugar call. Returns the intents, and the records whose step was
    refused because a newer Xero state was already intended for them (the journal's
    conditional write: the newest wins)."""
    if steps is None:
        return {}, []
    recorded: dict[str, Intent] = {}
    older: list[str] = []
    for crm_id, fields in chunk.items():
        text = json.dumps(fields, sort_keys=True, default=str)
        intent = steps.store.record_intent(Intent(
            tenant_id=steps.tenant_id, module=step_module(module, step_name), crm_id=crm_id,
            resource="SugarWriteBack",
            body_hash=hashlib.sha256(text.encode()).hexdigest(), step_values=text,
            version=versions.get((module, crm_id)), updated_at=now_iso()))
        if intent is not None:
            recorded[crm_id] = intent
        else:
            older.append(crm_id)
    return recorded, older


def _settle_step(steps: Steps | None, step: Intent | None, state: str, error: str | None = None) -> bool:
    """False when a later attempt of the step was recorded meanwhile (nothing settled)."""
    if steps is not None and step is not None:
        return steps.store.settle_intent(step, state, error=error)
    return True


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
