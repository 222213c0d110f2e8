"""Xero's news back into the CRM: re-read what Xero says changed and bring each pushed document's
mapping and CRM record up to date (status, amounts paid, due and credited, payments, the online
invoice link), then hand the changes to the billing rules.

Two entry points:

- ``apply_documents``: documents as Xero's GET answers them, from anywhere (the webhook worker, the
  scheduled reconcile's "changed since" read). Nothing here depends on webhooks.
- ``refresh_pending``: the webhook worker's part. It reads the tenant's pending refreshes (left by
  ``shared.usecases.webhooks.record_events``), fetches the resources 50 ids a call, applies them,
  and marks each pending item refreshed only if no newer event arrived meanwhile.

Ordering and repeats. A state is applied only if it is at least as new as the stored one
(Xero's UpdatedDateUTC, ``is_newer``), so duplicate and out-of-order news never moves a record
backwards, and an equal state writes nothing and calls nothing. The CRM write-back and the
billing rules run *before* the state is stored, and the store is conditional on the stored
state still being the one read: a state is stored only once all its effects are done, so any
failure (Sugar down, rules failing, a crash) leaves the old state stored and the same news is
applied again later with the same values (they come from Xero's state alone). When two workers
race, the one whose conditional store loses re-writes the CRM with the state that won.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.mapping.settings import MappingConfig
from shared.mapping.xero_documents import (
    APP_LINKS,
    ID_FIELDS,
    document_state,
    is_newer,
    money,
    updated_iso,
    write_back_values,
)
from shared.models.invoices import DocumentChange, XeroDocumentState
from shared.observability import MetricNames, logger, metrics
from shared.state.records import Mapping, document_module
from shared.usecases.writeback import Outcome, Steps, record_refused_write_back, write_back, xero_version

OnChanges = Callable[[list[DocumentChange]], Any]

DOCUMENT_RESOURCES = frozenset(ID_FIELDS)
# Write-back names that describe the connector's own push (its status, last error, when it ran):
# Xero's news leaves them as the push wrote them.
PUSH_OWNED_VALUES = frozenset({"sync_status", "last_error", "synced_at"})
STORE_ATTEMPTS = 3
DEFAULT_REFRESH_LIMIT = 250  # pending resources per tenant per run: 5 Xero GETs of 50 invoices
CONTACT_VALUES_STEP = "XEROVALUES"  # the journal step of Xero's contact values written onto a CRM record
# Imported records get an id derived from the Xero id, so a second attempt cannot create a twin.
IMPORT_NAMESPACE = uuid.UUID("6f1c2b0e-5f7a-4d8e-9a51-3c2d7e0b9f14")

# CONTACT events: Xero-owned contact values by the names ``xero_updates.contact_fields`` uses.
# Any other name is read as a dotted Xero path (``Balances.AccountsPayable.Overdue``).
CONTACT_VALUES: dict[str, tuple[str, ...]] = {
    "balance_receivable": ("Balances", "AccountsReceivable", "Outstanding"),
    "overdue_receivable": ("Balances", "AccountsReceivable", "Overdue"),
    "balance_payable": ("Balances", "AccountsPayable", "Outstanding"),
    "overdue_payable": ("Balances", "AccountsPayable", "Overdue"),
    "contact_status": ("ContactStatus",),
    "default_currency": ("DefaultCurrency",),
}


class ChangesFailed(Exception):
    """Raised by an ``on_changes`` that did part of its work: only ``changes`` are applied again
    (any other exception from ``on_changes`` means all of them)."""

    def __init__(self, message: str, changes: list[DocumentChange]):
        super().__init__(message)
        self.changes = changes


class DocumentMappings(Protocol):
    """The sync table's mapping side (``shared.state.dynamo.SyncStateTable``)."""

    def find_by_xero_ids(self, tenant_id: str, xero_ids: list[str]) -> dict[str, list[Mapping]]: ...

    def get_mappings(self, tenant_id: str, module: str, crm_ids: list[str]) -> dict[str, Mapping]: ...

    def put_document_state(self, mapping: Mapping, document: dict[str, Any], *,
                           expected_updated_utc: str | None) -> bool: ...

    def create_mapping(self, mapping: Mapping) -> bool: ...


class XeroReader(Protocol):
    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def get_by_ids(self, resource: str, ids: list[str], *, params: dict[str, Any] | None = None
                   ) -> list[dict[str, Any]]: ...


class PendingStore(Protocol):
    """What ``refresh_pending`` needs of ``shared.state.webhook_events.WebhookEventTable``."""

    def pending_items(self, tenant_id: str, *, limit: int = 1000) -> list[dict[str, Any]]: ...

    def clear_pending(self, *, tenant_id: str, category: str, resource_id: str, event_date_utc: str) -> bool: ...


@dataclass
class ApplyReport:
    """What one ``apply_documents`` call did, by Xero id."""

    seen: set[str] = field(default_factory=set)
    changes: list[DocumentChange] = field(default_factory=list)  # stored, written back, rules run
    unchanged: set[str] = field(default_factory=set)  # equal or older than what is stored
    ignored: set[str] = field(default_factory=set)  # not the connector's, and not imported
    imported: set[str] = field(default_factory=set)
    pending: dict[str, str] = field(default_factory=dict)  # to apply again later, and why
    failed: dict[str, str] = field(default_factory=dict)  # CRM refused for good; state stored anyway
    online_urls_fetched: int = 0
    rewrites: int = 0  # CRM re-written with the state that won a race

    @property
    def settled(self) -> set[str]:
        """Ids with nothing left to do (whatever became of them)."""
        return self.seen - set(self.pending)


@dataclass
class _Candidate:
    xero_id: str
    mapping: Mapping
    stored: XeroDocumentState | None
    state: XeroDocumentState

    @property
    def crm_module(self) -> str:
        return crm_module(self.mapping.module)

    def change(self) -> DocumentChange:
        # Every document the connector pushed has a stored state from its push; one without is an
        # import, whose history the connector never saw: no transition fires on first sight (an
        # invoice imported already PAID must not raise a commission bill for last year's sale).
        before = self.stored if self.stored is not None else self.state
        return DocumentChange(tenant_id=self.mapping.tenant_id, crm_module=self.crm_module,
                              crm_id=self.mapping.crm_id, before=before, after=self.state)


def crm_module(mapping_module: str) -> str:
    """``Quotes#ACCREC`` → ``Quotes``: the CRM module of a document mapping."""
    return mapping_module.split("#", 1)[0]


def imported_record_id(tenant_id: str, xero_id: str) -> str:
    return str(uuid.uuid5(IMPORT_NAMESPACE, f"{tenant_id}:{xero_id.lower()}"))


def online_url_of(state: XeroDocumentState | None) -> str | None:
    """The state's online invoice URL, None when it only has the Xero app link (or nothing)."""
    if state is None or not state.url:
        return None
    app_link = APP_LINKS.get(state.target, "").format(id=state.xero_id)
    return None if state.url == app_link else state.url


def wants_online_url(state: XeroDocumentState) -> bool:
    return state.target == "ACCREC" and state.status == "AUTHORISED" and online_url_of(state) is None


def _stored_state(mapping: Mapping) -> XeroDocumentState | None:
    return XeroDocumentState.model_validate(mapping.document) if mapping.document else None


def _xero_values_only(config: MappingConfig) -> MappingConfig:
    fields = {name: crm_field for name, crm_field in config.write_back.fields.items()
              if name not in PUSH_OWNED_VALUES}
    return config.model_copy(update={"write_back": config.write_back.model_copy(update={"fields": fields})})


def find_mappings(mappings: Any, tenant_id: str, xero_ids: list[str]) -> dict[str, list[Mapping]]:
    """Mappings by Xero id: batched when the store can (``find_by_xero_ids``), else one lookup each."""
    if hasattr(mappings, "find_by_xero_ids"):
        return mappings.find_by_xero_ids(tenant_id, xero_ids)
    found: dict[str, list[Mapping]] = {}
    for xero_id in dict.fromkeys(xero_ids):
        mapping = mappings.find_by_xero_id(xero_id)
        if mapping is not None and mapping.tenant_id == tenant_id:
            found[xero_id] = [mapping]
    return found


# ---- documents ------------------------------------------------------------------------------
def apply_documents(resource: str, documents: list[dict[str, Any]], *, tenant_id: str,
                    mappings: DocumentMappings, crm: Any, config: MappingConfig,
                    on_changes: OnChanges | None = None, xero: XeroReader | None = None,
                    jobs: Any = None, source: str = "webhook") -> ApplyReport:
    """Bring the mappings and CRM records of ``documents`` (``resource``: Invoices, CreditNotes,
    Quotes or PurchaseOrders, as Xero's GET answers them) up to Xero's state.

    ``crm``: the Sugar client (None: no write-back). ``on_changes`` gets the changes once their
    write-back is done and before they are stored (the billing rules); if it raises, the
    changes are not stored and come back as ``pending`` (``ChangesFailed`` names which). ``xero``, when given, is
    used for one thing: the online invoice URL of an AUTHORISED sales invoice that has none yet
    (``GET /Invoices/{id}/OnlineInvoice``, once; it is then kept with the state).

    Raises only for Xero failures worth retrying (while fetching an online URL), before anything
    is written. Everything else is in the report: ``pending`` ids must be applied again later.

    The CRM write-back is a journal step per record (``shared.usecases.writeback``), carrying the
    version of Xero's state it writes (UpdatedDateUTC): a slower write-back of an older state is
    refused by the step and never overwrites a newer one. One Sugar refuses for good is recorded
    as a ``failed`` job (``jobs``: the sync table; ``source`` names who applied it).
    """
    if resource not in DOCUMENT_RESOURCES:
        raise ValueError(f"unknown Xero document resource {resource!r}")
    report = ApplyReport()
    newest = _newest_by_id(documents, ID_FIELDS[resource])
    report.seen = set(newest)
    if not newest:
        return report
    if config.xero_invoices.enabled and crm is not None:
        # Every invoice and credit note, known to the connector or not, as a CRM record.
        from shared.usecases.invoice_records import fill_invoice_records

        filled = fill_invoice_records(resource, list(newest.values()), tenant_id=tenant_id, crm=crm,
                                      mappings=mappings, config=config)
        for xero_id, why in filled.pending.items():
            report.pending[xero_id] = f"Xero Invoices record: {why}"

    found = {xero_id: [m for m in maps if "#" in m.module]  # document mappings only
             for xero_id, maps in find_mappings(mappings, tenant_id, list(newest)).items()}
    found = {xero_id: maps for xero_id, maps in found.items() if maps}
    unknown = [newest[xero_id] for xero_id in newest if xero_id not in found]
    if unknown:
        found.update(_unknown_documents(resource, unknown, tenant_id=tenant_id, mappings=mappings, crm=crm,
                                        config=config, report=report))
    candidates = _changed(resource, newest, found, report)
    if xero is not None:
        _add_online_urls(candidates, xero, report)
    still = []
    for candidate in candidates:
        if candidate.state == candidate.stored:
            report.unchanged.add(candidate.xero_id)  # only the online URL was missing, and none came
        else:
            still.append(candidate)
    if still:
        # 1. the CRM record, 2. the billing rules, 3. the stored state, last
        written_config, steps = _xero_values_only(config), _steps(mappings, tenant_id)
        ready = _write_back_news(still, crm=crm, config=written_config, steps=steps, jobs=jobs,
                                 tenant_id=tenant_id, source=source, report=report)
        ready = _apply_rules(ready, on_changes, report)
        _store_news(ready, mappings, crm=crm, config=written_config, steps=steps, report=report)
    _log(resource, report)
    return report


def _newest_by_id(documents: list[dict[str, Any]], id_field: str) -> dict[str, dict[str, Any]]:
    """Each Xero document once, its latest UpdatedDateUTC (ties: the later in the list)."""
    newest: dict[str, dict[str, Any]] = {}
    for document in documents:
        xero_id = str(document.get(id_field) or "")
        if not xero_id:
            continue
        if xero_id not in newest or (updated_iso(document) or "") >= (updated_iso(newest[xero_id]) or ""):
            newest[xero_id] = document
    return newest


def _changed(resource: str, newest: dict[str, dict[str, Any]], found: dict[str, list[Any]],
             report: ApplyReport) -> list[_Candidate]:
    """The mapped documents whose Xero state is newer than, and differs from, the stored one."""
    candidates: list[_Candidate] = []
    for xero_id, maps in found.items():
        for mapping in maps:
            stored = _stored_state(mapping)
            state = document_state(resource, newest[xero_id], online_url=online_url_of(stored))
            if stored is not None and stored.line_ids:
                state = state.model_copy(update={"line_ids": stored.line_ids})
            if stored is not None and not is_newer(state, stored):
                report.unchanged.add(xero_id)  # older news: never move a record backwards
            elif stored == state and not wants_online_url(state):
                report.unchanged.add(xero_id)
            else:
                candidates.append(_Candidate(xero_id, mapping, stored, state))
    return candidates


def _write_back_news(candidates: list[_Candidate], *, crm: Any, config: MappingConfig, steps: Any, jobs: Any,
                     tenant_id: str, source: str, report: ApplyReport) -> list[_Candidate]:
    """Write Xero's state to the CRM records (journal steps). Returns those that go on: written,
    or refused for good (recorded as a failed job; Xero's state is still stored)."""
    written = write_back([_outcome(c.crm_module, c.mapping.crm_id, c.state) for c in candidates],
                         crm=crm, config=config, steps=steps)
    ready: list[_Candidate] = []
    for candidate in candidates:
        key = (candidate.crm_module, candidate.mapping.crm_id)
        if key in written.pending:
            report.pending[candidate.xero_id] = f"CRM write-back: {written.pending[key]}"
            continue
        if key in written.failed:
            # The record is gone or refuses the fields: retrying cannot help. Xero's state is
            # still stored, so the rules and the drift report see it.
            report.failed[candidate.xero_id] = written.failed[key]
            logger.error("CRM refused Xero's update of a record", extra={
                "crm_module": key[0], "crm_id": key[1], "xero_id": candidate.xero_id, "error": written.failed[key]})
            record_refused_write_back(jobs, tenant_id=tenant_id, module=key[0], crm_id=key[1],
                                      xero_id=candidate.xero_id, version=xero_version(candidate.state.updated_utc),
                                      error=written.failed[key], source=source)
        ready.append(candidate)
    return ready


def _apply_rules(ready: list[_Candidate], on_changes: OnChanges | None, report: ApplyReport) -> list[_Candidate]:
    """The billing rules on the changes; documents whose rules failed come back as pending."""
    if on_changes is None or not ready:
        return ready
    try:
        on_changes([c.change() for c in ready])
    except ChangesFailed as error:
        again = {(c.crm_module, c.crm_id, c.after.xero_id) for c in error.changes}
        logger.warning("billing rules failed for some documents; they will be applied again",
                       extra={"documents": len(again), "error": str(error)})
        for candidate in ready:
            if (candidate.crm_module, candidate.mapping.crm_id, candidate.xero_id) in again:
                report.pending[candidate.xero_id] = f"billing rules: {error}"
        return [c for c in ready if c.xero_id not in report.pending]
    except Exception as error:  # noqa: BLE001 - rules failing must leave the news to be applied again
        logger.exception("billing rules failed; the documents will be applied again")
        for candidate in ready:
            report.pending[candidate.xero_id] = f"billing rules: {error}"
        return []
    return ready


def _store_news(ready: list[_Candidate], mappings: DocumentMappings, *, crm: Any, config: MappingConfig,
                steps: Any, report: ApplyReport) -> None:
    """Store each state (conditionally); a record that lost a race to a newer state gets the
    winner's values written to the CRM again."""
    rewrites: list[tuple[str, str, XeroDocumentState]] = []
    for candidate in ready:
        stored, winner = _store(candidate, mappings)
        if stored:
            report.changes.append(candidate.change())
        elif winner is None and candidate.xero_id not in report.failed:
            report.pending[candidate.xero_id] = "the stored state kept moving; try again"
        if winner is not None:
            rewrites.append((candidate.crm_module, candidate.mapping.crm_id, winner))
    if rewrites:
        again = write_back([_outcome(module, crm_id, state) for module, crm_id, state in rewrites],
                           crm=crm, config=config, steps=steps)
        report.rewrites = len(rewrites) - len(again.pending) - len(again.failed)
        if again.pending:
            logger.warning("CRM re-write after a race deferred: the drift report will show it",
                           extra={"records": sorted(f"{m}/{i}" for m, i in again.pending)})


def _steps(mappings: Any, tenant_id: str) -> Steps | None:
    """The write-back's journal steps live in the sync table (the mappings' store)."""
    return Steps(mappings, tenant_id) if hasattr(mappings, "record_intent") else None


def _outcome(module: str, crm_id: str, state: XeroDocumentState) -> Outcome:
    return Outcome(module=module, crm_id=crm_id, sync_status="synced", xero_id=state.xero_id,
                   values=write_back_values(state), version=xero_version(state.updated_utc))


def _store(candidate: _Candidate, mappings: DocumentMappings) -> tuple[bool, XeroDocumentState | None]:
    """Store the candidate's state unless another worker moved the mapping meanwhile. Returns
    (stored, state the CRM must be re-written with: ours after a contended store, or the newer
    one that won; None when no re-write is needed)."""
    expected = candidate.stored.updated_utc if candidate.stored else None
    contended = False
    mapping = candidate.mapping
    for _ in range(STORE_ATTEMPTS):
        if mappings.put_document_state(mapping, candidate.state.model_dump(mode="json"),
                                       expected_updated_utc=expected):
            # After a contended store, another worker's older write-back may have landed after ours.
            return True, (candidate.state if contended else None)
        contended = True
        current = mappings.get_mappings(mapping.tenant_id, mapping.module, [mapping.crm_id]).get(mapping.crm_id)
        if current is None:
            logger.warning("mapping vanished while Xero's update was applied",
                           extra={"crm_module": mapping.module, "crm_id": mapping.crm_id})
            return False, None
        now = _stored_state(current)
        if now is not None and (now == candidate.state or not is_newer(candidate.state, now)):
            # Another worker stored this state or a newer one; ours may have reached the CRM last.
            return False, (None if now == candidate.state else now)
        expected = now.updated_utc if now else None
    return False, None


def _add_online_urls(candidates: list[_Candidate], xero: XeroReader, report: ApplyReport) -> None:
    from shared.errors import XeroError

    for candidate in candidates:
        if not wants_online_url(candidate.state):
            continue
        try:
            answer = xero.get(f"Invoices/{candidate.xero_id}/OnlineInvoice")
        except XeroError as error:
            if error.retryable:
                raise  # nothing written yet: the whole refresh is tried again later
            logger.warning("no online invoice URL from Xero; the app link is kept",
                           extra={"xero_id": candidate.xero_id, "error": str(error)})
            continue
        report.online_urls_fetched += 1
        urls = [u.get("OnlineInvoiceUrl") for u in (answer or {}).get("OnlineInvoices") or [] if isinstance(u, dict)]
        url = next((u for u in urls if u), None)
        if url:
            candidate.state = candidate.state.model_copy(update={"url": str(url)})


def _unknown_documents(resource: str, documents: list[dict[str, Any]], *, tenant_id: str,
                       mappings: DocumentMappings, crm: Any, config: MappingConfig,
                       report: ApplyReport) -> dict[str, list[Mapping]]:
    """Documents the connector did not create: left alone, or (``unknown_documents: import``)
    sales invoices become records of ``import_module``, idempotently: the record's id derives
    from the Xero id (a second create finds it there), and the mapping is created only if absent."""
    rules = config.xero_updates
    id_field = ID_FIELDS[resource]
    found: dict[str, list[Mapping]] = {}
    for document in documents:
        xero_id = str(document[id_field])
        importable = (rules.unknown_documents == "import" and rules.import_module and resource == "Invoices"
                      and document.get("Type", "ACCREC") == "ACCREC" and document.get("Status") != "DELETED")
        if not importable or crm is None:
            report.ignored.add(xero_id)
            continue
        record_id = imported_record_id(tenant_id, xero_id)
        try:
            _create_imported(crm, str(rules.import_module), record_id, xero_id, document)
        except Exception as error:  # noqa: BLE001 - sorted into retry later / refused for good
            if getattr(error, "retryable", True):
                report.pending[xero_id] = f"import: {error}"
            else:
                report.failed[xero_id] = f"import: {error}"
                logger.error("Xero invoice could not be imported into the CRM",
                             extra={"xero_id": xero_id, "crm_module": rules.import_module, "error": str(error)})
            continue
        mapping = Mapping(tenant_id=tenant_id, module=document_module(str(rules.import_module), "ACCREC"),
                          crm_id=record_id, xero_id=xero_id, xero_number=document.get("InvoiceNumber") or None)
        if not mappings.create_mapping(mapping):
            mapping = mappings.get_mappings(tenant_id, mapping.module, [record_id]).get(record_id) or mapping
        found[xero_id] = [mapping]
        report.imported.add(xero_id)
    if report.ignored:
        logger.info("Xero documents the connector did not create were ignored",
                    extra={"resource": resource, "count": len(report.ignored),
                           "xero_ids": sorted(report.ignored)[:20]})
    return found


def _create_imported(crm: Any, module: str, record_id: str, xero_id: str, document: dict[str, Any]) -> None:
    name = " ".join(p for p in (document.get("InvoiceNumber"), (document.get("Contact") or {}).get("Name")) if p)
    fields = {"id": record_id, "name": (name or f"Xero invoice {xero_id}")[:255], "sync_key": xero_id}
    try:
        crm.create_record(module, fields)
    except Exception as error:
        # Sugar refuses a second create with the same id ("Record already exists"): an earlier
        # attempt got this far, so the record is there.
        if "already exists" in str(error).lower():
            return
        raise


def _log(resource: str, report: ApplyReport) -> None:
    logger.info("Xero documents applied", extra={
        "resource": resource, "seen": len(report.seen), "changed": len(report.changes),
        "unchanged": len(report.unchanged), "ignored": len(report.ignored), "imported": len(report.imported),
        "pending": len(report.pending), "failed": len(report.failed),
        "online_urls_fetched": report.online_urls_fetched})


# ---- contacts -------------------------------------------------------------------------------
def contact_values(contact: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """The CRM fields ``fields`` (value name → CRM field) take from one Xero contact. A value
    Xero left out of its answer is left out here too: never written as empty."""
    values: dict[str, Any] = {}
    for name, crm_field in fields.items():
        path = CONTACT_VALUES.get(name) or tuple(name.split("."))
        value: Any = contact
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        values[crm_field] = str(money(value)) if path[0] == "Balances" else value
    return values


def apply_contacts(contacts: list[dict[str, Any]], *, tenant_id: str, mappings: Any, crm: Any,
                   config: MappingConfig, jobs: Any = None, source: str = "webhook") -> tuple[set[str], dict[str, str]]:
    """Write the configured Xero-owned values of each contact onto its mapped CRM records.
    Returns (written contact ids, pending contact id → why). A record Sugar refuses for good is
    recorded as a ``failed`` job (``record_refused_write_back``)."""
    fields = config.xero_updates.contact_fields
    by_id = {str(c.get("ContactID")): c for c in contacts if c.get("ContactID")}
    if not fields or crm is None or not by_id:
        return set(), {}
    updates: dict[str, dict[str, dict[str, Any]]] = {}  # CRM module → id → fields
    owners: dict[tuple[str, str], str] = {}
    for xero_id, maps in find_mappings(mappings, tenant_id, list(by_id)).items():
        values = contact_values(by_id[xero_id], fields)
        for mapping in maps:
            if "#" in mapping.module or not values:
                continue  # documents and items share the index; only records that are contacts
            updates.setdefault(mapping.module, {})[mapping.crm_id] = values
            owners[(mapping.module, mapping.crm_id)] = xero_id
    # Journal steps of their own (``{module}#XEROVALUES``: the push's write-back writes other
    # fields), carrying the contact's UpdatedDateUTC: an older refresh never overwrites a newer one.
    outcomes = [Outcome(module=module, crm_id=crm_id, sync_status="synced", recorded=values,
                        version=xero_version(updated_iso(by_id[owners[(module, crm_id)]])))
                for module, records in updates.items() for crm_id, values in records.items()]
    values_only = config.model_copy(update={"write_back": config.write_back.model_copy(
        update={"enabled": True, "fields": {}})})
    report = write_back(outcomes, crm=crm, config=values_only, steps=_steps(mappings, tenant_id),
                        step_name=CONTACT_VALUES_STEP)
    written = {owners[key] for key in report.written}
    pending = {owners[key]: why for key, why in report.pending.items()}
    for (module, crm_id), problem in report.failed.items():
        logger.error("CRM refused Xero's contact values",
                     extra={"crm_module": module, "crm_id": crm_id, "error": problem})
        xero_id = owners[(module, crm_id)]
        record_refused_write_back(jobs, tenant_id=tenant_id, module=module, crm_id=crm_id, xero_id=xero_id,
                                  version=xero_version(updated_iso(by_id[xero_id])), error=problem, source=source)
    return written - set(pending), pending


# ---- the webhook worker's refresh -------------------------------------------------------------
@dataclass
class RefreshReport:
    read: int = 0
    cleared: int = 0  # pending items marked refreshed
    superseded: int = 0  # applied, but a newer event arrived meanwhile: still pending
    kept: dict[str, str] = field(default_factory=dict)  # resource id → why it stays pending
    more: bool = False  # more pending items than ``limit``: run again
    xero_gets: int = 0
    invoices: ApplyReport | None = None
    credit_notes: ApplyReport | None = None
    contacts_written: int = 0

    @property
    def retry(self) -> bool:
        return bool(self.kept)


def refresh_pending(tenant_id: str, *, store: PendingStore, xero: XeroReader, mappings: DocumentMappings,
                    crm: Any, config: MappingConfig, on_changes: OnChanges | None = None,
                    limit: int = DEFAULT_REFRESH_LIMIT, jobs: Any = None) -> RefreshReport:
    """Re-read from Xero every resource the tenant's webhooks said changed, and apply it.

    INVOICE: the invoices, 50 ids a call. CREDITNOTE: the credit notes, then the invoices they
    are allocated to (AmountCredited lives on the invoice), fetched with the INVOICE ones; a
    credit note the connector raised gets its own state updated. CONTACT: the configured
    Xero-owned values onto the mapped CRM record (nothing when none are configured).

    Xero failures raise (nothing is marked refreshed: all of it is tried again). A pending item
    is marked refreshed only once its resource is applied, and only if no newer event arrived
    since it was read."""
    report = RefreshReport()
    items = store.pending_items(tenant_id, limit=limit + 1)
    report.more = len(items) > limit
    items = items[:limit]
    report.read = len(items)
    if not items:
        return report
    ids: dict[str, list[str]] = {}
    for item in items:
        ids.setdefault(str(item["event_category"]), []).append(str(item["resource_id"]))
    done: dict[str, set[str]] = {}  # category → resource ids applied
    why: dict[str, str] = {}

    allocated: dict[str, set[str]] = {}  # credit note id → invoice ids
    note_report = None
    if ids.get("CREDITNOTE"):
        notes = _fetch(xero, "CreditNotes", ids["CREDITNOTE"], report)
        for note in notes:
            allocated[str(note.get("CreditNoteID"))] = {
                str(a["Invoice"]["InvoiceID"]) for a in note.get("Allocations") or []
                if isinstance(a, dict) and (a.get("Invoice") or {}).get("InvoiceID")}
        note_report = report.credit_notes = apply_documents(
            "CreditNotes", notes, tenant_id=tenant_id, mappings=mappings, crm=crm, config=config,
            on_changes=on_changes, jobs=jobs)

    invoice_ids = list(dict.fromkeys([*ids.get("INVOICE", []), *(i for s in allocated.values() for i in s)]))
    invoice_report = None
    if invoice_ids:
        invoices = _fetch(xero, "Invoices", invoice_ids, report)
        invoice_report = report.invoices = apply_documents(
            "Invoices", invoices, tenant_id=tenant_id, mappings=mappings, crm=crm, config=config,
            on_changes=on_changes, xero=xero, jobs=jobs)
        missing = set(invoice_ids) - invoice_report.seen
        if missing:
            logger.warning("Xero did not return some changed invoices; nothing to apply for them",
                           extra={"xero_ids": sorted(missing)[:20], "count": len(missing)})
        why.update(invoice_report.pending)
        done["INVOICE"] = set(invoice_ids) - set(invoice_report.pending)

    if note_report is not None:
        why.update(note_report.pending)
        invoices_done = done.get("INVOICE", set())
        done["CREDITNOTE"] = {note_id for note_id in ids["CREDITNOTE"]
                              if note_id not in note_report.pending
                              and allocated.get(note_id, set()) <= invoices_done}

    if ids.get("CONTACT"):
        if config.xero_updates.contact_fields and crm is not None:
            contacts = _fetch(xero, "Contacts", ids["CONTACT"], report)
            written, pending = apply_contacts(contacts, tenant_id=tenant_id, mappings=mappings, crm=crm,
                                              config=config, jobs=jobs)
            report.contacts_written = len(written)
            why.update(pending)
            done["CONTACT"] = set(ids["CONTACT"]) - set(pending)
        else:
            done["CONTACT"] = set(ids["CONTACT"])  # nothing configured to take from contacts
    _clear_applied(tenant_id, items, done, why, store, report)
    logger.info("pending Xero resources refreshed", extra={
        "tenant_id": tenant_id, "read": report.read, "cleared": report.cleared, "superseded": report.superseded,
        "kept": len(report.kept), "more": report.more, "xero_gets": report.xero_gets})
    return report


def _clear_applied(tenant_id: str, items: list[dict[str, Any]], done: dict[str, set[str]], why: dict[str, str],
                   store: PendingStore, report: RefreshReport) -> None:
    """Mark each applied pending item refreshed (unless a newer event came meanwhile); keep the
    others with the reason."""
    for item in items:
        category, resource_id = str(item["event_category"]), str(item["resource_id"])
        if category in {"INVOICE", "CREDITNOTE", "CONTACT"} and resource_id not in done.get(category, set()):
            report.kept[resource_id] = why.get(resource_id) or "an allocated invoice is still to be applied"
            continue
        # Categories the connector does not act on (SUBSCRIPTION...) are simply marked done.
        if store.clear_pending(tenant_id=tenant_id, category=category, resource_id=resource_id,
                               event_date_utc=str(item["event_date_utc"])):
            report.cleared += 1
            latency = _milliseconds_since(item["event_date_utc"])
            if latency is not None:  # Xero's event → the CRM written: what "within seconds" promises
                metrics.add_metric(name=MetricNames.WEBHOOK_LATENCY, unit="Milliseconds", value=latency)
        else:
            report.superseded += 1


def _milliseconds_since(event_date_utc: Any) -> float | None:
    try:
        moment = datetime.fromisoformat(str(event_date_utc).replace("Z", "+00:00"))
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - moment).total_seconds() * 1000)


def _fetch(xero: XeroReader, resource: str, ids: list[str], report: RefreshReport) -> list[dict[str, Any]]:
    unique = list(dict.fromkeys(ids))
    report.xero_gets += -(-len(unique) // 50)
    return xero.get_by_ids(resource, unique)
