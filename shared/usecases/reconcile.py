"""One reconciliation pass for one Xero organisation: what makes "nothing lost" true.

Stock Sugar hooks are sent once and fail silently; Xero webhooks can be off; people edit Xero by
hand. Each pass, bounded in time and in calls:

1. Xero → CRM: invoices and credit notes changed since the watermark (minus an overlap, since
   not every change moves UpdatedDateUTC at once), read with If-Modified-Since in pages of up to
   1000, oldest change first, applied exactly as the webhook worker applies them (the injected
   ``apply_documents``). Payments changed since theirs name invoices (and credit notes) that are
   re-read by id, 50 a call, and applied the same way. A watermark moves only after its page is
   applied. With nothing changed that is three calls: Invoices, CreditNotes, Payments.
2. CRM → Xero: Sugar Accounts, Contacts, ProductTemplates and Quotes saved since their watermark
   whose content differs from what was last pushed are accepted as jobs of the kinds the hooks
   make, so a lost hook is caught. The Sugar window is frozen at the pass's start and read by
   key (``shared.usecases.backfill.keyset_records``), so the connector's own write-backs during
   the pass cannot make it skip records.
3. Drift audit, about nightly: a bounded slice of the pushed documents' mappings, compared with
   Xero (by ids) and with the CRM's write-back fields; what differs is counted (with sample ids)
   and repaired from Xero's answer or from the stored state.
4. Metadata (accounts, tax rates, tracking categories, currencies) refreshed when a day old, and
   the mapping configuration checked against it.
Once per tick, not per organisation (``GlobalPorts``): jobs stuck queued or in progress past a
threshold are re-driven from their stored payload (found with the filtered, TTL-bounded Scan that
``sugar-xero status`` also uses; at most three times each, then left to an operator), and a Xero
refresh token near its 60 unused days is used.

Everything here is I/O free: adapters come in as arguments.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from pydantic import ValidationError

from shared.errors import ConnectionNotReady, RateLimited
from shared.mapping.items import hook_to_item_document, to_xero_item
from shared.mapping.settings import MappingConfig
from shared.mapping.sugar_contacts import hook_to_document
from shared.mapping.xero_contacts import to_xero_contact, to_xero_person
from shared.mapping.xero_documents import ID_FIELDS, document_state, write_back_values
from shared.models.invoices import DocumentChange, XeroDocumentState
from shared.models.jobs import CrmRef
from shared.models.sugar import AccountHook, ContactHook, ProductTemplateHook
from shared.observability import logger
from shared.ports import JobStore, WorkQueue
from shared.state.records import Mapping, mapping_key
from shared.state.watermarks import normalised_instant
from shared.usecases import metadata as org_metadata
from shared.usecases.accept import accept
from shared.usecases.backfill import ORDER_BY, keyset_records, pages_of
from shared.usecases.work import content_hash
from shared.usecases.writeback import CrmWriter, Outcome, Steps, write_back, xero_version
from shared.xero.dates import if_modified_since, parse_xero_date

CRM_MODULES = ("Accounts", "Contacts", "ProductTemplates", "Quotes")
XERO_DOCUMENTS = ("Invoices", "CreditNotes")
QUEUE_OF_KIND = {"contact.upsert": "contact", "item.upsert": "invoice", "document.push": "invoice",
                 "quote.push": "invoice", "xero.webhook": "webhook"}
# What the audit can read back by id (Xero's Quotes and PurchaseOrders take no id list).
RESOURCE_OF_TARGET = {"ACCREC": "Invoices", "ACCPAY": "Invoices", "ACCRECCREDIT": "CreditNotes",
                      "ACCPAYCREDIT": "CreditNotes"}
DRIFT_KINDS = ("status", "amount", "missing_in_state", "missing_in_xero", "crm_status", "crm_amount",
               "missing_in_crm", "stuck_jobs")
WHERE_IDS_PER_CALL = 25  # CreditNotes take no IDs= list: a where OR-list instead
MAX_ERRORS = 20
_GUID = re.compile(r"^[0-9a-fA-F-]{36}$")


@dataclass(frozen=True)
class Limits:
    """How much one pass may do. The defaults suit a 15-minute schedule and a 300 s Lambda."""

    overlap: timedelta = timedelta(minutes=5)
    initial_lookback: timedelta = timedelta(days=1)  # no watermark yet; history is `sugar-xero backfill`'s
    xero_page_size: int = 1000
    xero_max_pages: int = 10  # per resource per pass; the watermark says where the next pass goes on
    crm_page_size: int = 200
    crm_max_pages: int = 10
    stuck_after: tuple[tuple[str, timedelta], ...] = (("queued", timedelta(minutes=60)),
                                                      ("in_progress", timedelta(minutes=15)))
    max_redrives: int = 3  # then the job is left for an operator (it shows in `sugar-xero status`)
    max_redrives_per_pass: int = 200
    audit_every: timedelta = timedelta(hours=24)
    audit_scan_items: int = 2000
    audit_sample: int = 50  # one Xero call by ids
    crm_sample: int = 20
    metadata_max_age: timedelta = org_metadata.MAX_AGE
    token_refresh_after: timedelta = timedelta(days=45)  # Xero drops refresh tokens unused for 60
    samples: int = 10
    stop_margin_seconds: float = 20.0


# ---- ports ---------------------------------------------------------------------------------------
class XeroReader(Protocol):
    def get(self, path: str, params: dict[str, Any] | None = None, *,
            if_modified_since: str | None = None) -> dict[str, Any]: ...

    def get_by_ids(self, resource: str, ids: list[str], *, params: dict[str, Any] | None = None,
                   id_param: str = "IDs") -> list[dict[str, Any]]: ...


class ReconcileState(Protocol):
    def get_watermark(self, tenant_id: str, resource: str) -> str | None: ...

    def advance_watermark(self, tenant_id: str, resource: str, value: str | datetime) -> bool: ...

    def put_last_reconcile(self, tenant_id: str, report: dict[str, Any]) -> None: ...

    def get_metadata(self, tenant_id: str) -> dict[str, Any] | None: ...

    def put_metadata(self, tenant_id: str, metadata: dict[str, Any]) -> None: ...

    def get_audit_cursor(self, tenant_id: str) -> dict[str, Any]: ...

    def put_audit_cursor(self, tenant_id: str, start_key: dict[str, Any] | None, audited_at: str) -> None: ...

    def scan_document_mappings(self, tenant_id: str, start_key: dict[str, Any] | None, *,
                               max_scanned: int = 2000) -> tuple[list[Mapping], dict[str, Any] | None]: ...

    def stuck_jobs(self, older_than: dict[str, str], *, now_epoch: int,
                   max_items: int = 500) -> list[dict[str, Any]]: ...


class MappingReader(Protocol):
    def get_mappings(self, tenant_id: str, module: str, crm_ids: list[str]) -> dict[str, Mapping]: ...


class CrmReader(CrmWriter, Protocol):
    def filter(self, module: str, filter: list[dict[str, Any]], fields: Any = None, max_num: int = 20,
               offset: int = 0, order_by: str | None = None) -> tuple[list[dict[str, Any]], int]: ...


class DocumentApplier(Protocol):
    """``shared.usecases.xero_updates.apply_documents``: what the webhook worker does with Xero
    documents (mapping, CRM write-back, never backwards), reporting changes to ``on_changes``."""

    def __call__(self, resource: str, documents: list[dict[str, Any]], *, tenant_id: str, mappings: Any,
                 crm: Any, config: MappingConfig, on_changes: Callable[[list[DocumentChange]], None],
                 xero: Any = None, jobs: Any = None, source: str = "webhook") -> Any: ...


@dataclass
class TenantPorts:
    tenant_id: str
    xero: XeroReader
    state: ReconcileState
    mappings: MappingReader
    apply_documents: DocumentApplier
    config: MappingConfig
    crm: CrmReader | None = None
    jobs: JobStore | None = None
    queues: dict[str, WorkQueue] = field(default_factory=dict)  # "contact", "invoice"
    status_base_url: str = ""
    push_tenant: bool = True  # the organisation the CRM's workers push to: only it gets CRM → Xero
    on_changes: Callable[[list[DocumentChange]], None] | None = None  # billing rules, as the webhook worker
    # The CRM's fields and hooks against the configuration (shared.usecases.sugar_check), run
    # with the nightly metadata refresh: a field deleted in Studio shows in status before jobs fail.
    crm_check: Callable[[], dict[str, Any]] | None = None


class TokenStore(Protocol):
    def get_token(self, connection_id: str) -> dict[str, Any] | None: ...


@dataclass
class GlobalPorts:
    state: ReconcileState
    jobs: Any  # JobStore with get_job_payload
    redrive: Callable[[str], Any]  # job id → re-driven to its queue
    tokens: Callable[..., str] | None = None  # XeroTokens: calling it refreshes an expired token set
    token_store: TokenStore | None = None
    connection_id: str | None = None


# ---- the report ----------------------------------------------------------------------------------
@dataclass
class TenantReport:
    tenant_id: str
    started: str
    finished: str | None = None
    complete: bool = True
    repaired: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("xero_documents", "crm_records_queued", "crm_written_back", "jobs_redriven", "tokens_refreshed"), 0))
    drift: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DRIFT_KINDS, 0))
    drift_samples: dict[str, list[str]] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)
    token: str | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    xero_calls: int | None = None

    def count(self, section: str, key: str, amount: int = 1) -> None:
        target = getattr(self, section)
        target[key] = target.get(key, 0) + amount

    def drifted(self, kind: str, sample: str, limit: int) -> None:
        self.count("drift", kind)
        samples = self.drift_samples.setdefault(kind, [])
        if len(samples) < limit and sample not in samples:
            samples.append(sample)

    def error(self, step: str, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{step}: {text}"[:500])

    @property
    def drift_total(self) -> int:
        return sum(self.drift.values())

    @property
    def repaired_total(self) -> int:
        return sum(self.repaired.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drift_total": self.drift_total, "repaired_total": self.repaired_total,
                "ok": not self.errors}


class _OutOfTime(Exception):
    pass


class _Clock:
    def __init__(self, now: datetime, deadline: float | None, monotonic: Callable[[], float], margin: float):
        self.now, self._deadline, self._monotonic, self._margin = now, deadline, monotonic, margin

    def check(self, before: str) -> None:
        if self._deadline is not None and self._deadline - self._monotonic() < self._margin:
            raise _OutOfTime(before)


# ---- the pass ------------------------------------------------------------------------------------
def reconcile_tenant(ports: TenantPorts, *, limits: Limits = Limits(), now: datetime | None = None,
                     deadline: float | None = None, monotonic: Callable[[], float] = time.monotonic,
                     deep: bool = False, global_ports: GlobalPorts | None = None) -> TenantReport:
    """One pass for ``ports.tenant_id``; ``deadline`` is a ``monotonic()`` instant to stop by
    (what is left is the next pass's, from the watermarks). ``deep`` runs the drift audit now.
    ``global_ports``: also the once-per-tick steps (tokens, stuck jobs)."""
    now = now or datetime.now(UTC)
    clock = _Clock(now, deadline, monotonic, limits.stop_margin_seconds)
    report = TenantReport(tenant_id=ports.tenant_id, started=now.isoformat(timespec="seconds"))
    calls_before = getattr(ports.xero, "calls", None)
    run = _TenantPass(ports, limits, clock, report)
    steps: list[tuple[str, Callable[[], None], bool]] = []
    if global_ports is not None:  # first: cheap, and a pass cut short by time must not skip them
        steps.append(("tokens", lambda: _keep_token_alive(global_ports, limits, now, report), False))
        steps.append(("stuck jobs", lambda: _redrive_stuck(global_ports, limits, now, report), False))
    steps += [("metadata", run.metadata, True)]
    steps += [(resource, lambda r=resource: run.xero_documents(r), True) for resource in XERO_DOCUMENTS]
    steps += [("Payments", run.payments, True), ("audit", lambda: run.audit(deep), True)]
    if ports.push_tenant and ports.crm is not None and ports.jobs is not None:
        steps += [(f"CRM {module}", lambda m=module: run.crm_changes(m), False) for module in CRM_MODULES]
    elif ports.push_tenant:
        report.notes.append("CRM → Xero skipped: no Sugar connection configured")

    xero_blocked: str | None = None
    for name, step, uses_xero in steps:
        try:
            clock.check(name)
            if uses_xero and xero_blocked:
                report.notes.append(f"{name} skipped: {xero_blocked}")
                report.complete = False
                continue
            step()
        except _OutOfTime:
            report.complete = False
            report.notes.append(f"stopped for time before {name}; the next pass goes on from the watermarks")
            break
        except (RateLimited, ConnectionNotReady) as error:
            report.error(name, error)
            report.complete = False
            xero_blocked = f"Xero not usable now ({type(error).__name__})"
        except Exception as error:  # one step failing must not stop the others
            logger.exception("reconcile step failed", extra={"tenant_id": ports.tenant_id, "step": name})
            report.error(name, error)
            report.complete = False
    if calls_before is not None:
        report.xero_calls = int(getattr(ports.xero, "calls", 0)) - int(calls_before)
    report.finished = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        ports.state.put_last_reconcile(ports.tenant_id, report.as_dict())
    except Exception as error:
        report.error("storing the report", error)
    return report


class _TenantPass:
    def __init__(self, ports: TenantPorts, limits: Limits, clock: _Clock, report: TenantReport):
        self.ports, self.limits, self.clock, self.report = ports, limits, clock, report
        self.tenant_id = ports.tenant_id
        self.seen: dict[tuple[str, str], str | None] = {}  # (resource, xero id) → UpdatedDateUTC read this pass
        self.repaired_ids: set[str] = set()

    # ---- metadata ------------------------------------------------------------------------------
    def metadata(self) -> None:
        fresh, refreshed = org_metadata.refresh_metadata(
            self.ports.xero, self.ports.state, self.tenant_id, self.ports.config, now=self.clock.now,
            max_age=self.limits.metadata_max_age)
        self.report.metadata = {"refreshed": refreshed, "refreshed_at": fresh.refreshed_at if fresh else None,
                                "problems": list(fresh.problems) if fresh else []}
        if refreshed and self.ports.crm_check is not None:
            self.report.metadata["crm_check"] = self.ports.crm_check()

    # ---- Xero → CRM ----------------------------------------------------------------------------
    def _since(self, watermark_name: str) -> datetime:
        stored = self.ports.state.get_watermark(self.tenant_id, watermark_name)
        start = datetime.fromisoformat(stored) if stored else self.clock.now - self.limits.initial_lookback
        return start - self.limits.overlap

    def _changed_pages(self, resource: str, since: datetime) -> Iterator[list[dict[str, Any]]]:
        """Pages of what changed after ``since``, oldest change first, read by key: each next
        page asks If-Modified-Since the newest change read so far (less a second, the header's
        grain), so records moving to the end during the pass cannot shift one out of sight. A full
        page within one second falls back to the page number. Bounded by ``xero_max_pages``."""
        size = self.limits.xero_page_size
        cursor, page = since, 1
        for _ in range(self.limits.xero_max_pages):
            answer = self.ports.xero.get(resource, {"order": "UpdatedDateUTC ASC", "page": page, "pageSize": size},
                                         if_modified_since=if_modified_since(cursor))
            elements = list(answer.get(resource) or [])
            yield elements
            if len(elements) < size:
                return
            newest = _newest(elements)
            following = newest.replace(microsecond=0) - timedelta(seconds=1) if newest else cursor
            if following > cursor:
                cursor, page = following, 1
            else:
                page += 1
        self.report.complete = False
        self.report.notes.append(f"{resource}: more than {self.limits.xero_max_pages} pages changed; "
                                 "the next pass goes on from the watermark")

    def _apply(self, resource: str, documents: list[dict[str, Any]]) -> set[str]:
        """Apply as the webhook worker does; returns the ids left pending (to apply again later:
        the watermark must not pass them)."""
        if not documents:
            return set()
        reported: list[DocumentChange] = []

        def on_changes(changes: list[DocumentChange]) -> None:
            if self.ports.on_changes is not None:  # the billing rules, before the state is stored
                self.ports.on_changes(changes)
            reported.extend(changes)

        answer = self.ports.apply_documents(resource, documents, tenant_id=self.tenant_id,
                                            mappings=self.ports.mappings, crm=self.ports.crm,
                                            config=self.ports.config, on_changes=on_changes,
                                            jobs=self.ports.jobs, source="reconcile",
                                            **({"xero": self.ports.xero} if resource == "Invoices" else {}))
        stored = getattr(answer, "changes", None)
        for change in reported if stored is None else stored:
            kind = _difference(change.before, change.after)
            if kind is None:
                continue
            self.report.count("repaired", "xero_documents")
            self.report.drifted(kind, f"{change.crm_module}/{change.crm_id}", self.limits.samples)
            self.repaired_ids.add(change.after.xero_id)
        for document in documents:
            xero_id = str(document.get(ID_FIELDS.get(resource, ""), "") or "")
            if xero_id:
                self.seen[(resource, xero_id)] = document.get("UpdatedDateUTC")
        reasons = dict(getattr(answer, "pending", None) or {})
        pending = set(reasons)
        if pending:
            self.report.count("checked", "pending_again", len(pending))
        waiting = sorted(xero_id for xero_id, why in reasons.items() if str(why).startswith("CRM write-back"))
        if waiting:
            # Retried by every pass (the watermark waits) and by the webhook worker; said in the
            # problem list meanwhile, so a Sugar that keeps refusing is never a log line only.
            self.report.error(f"{resource} CRM write-back", f"{len(waiting)} of Xero's updates wait for the CRM "
                                                            f"(first {waiting[0]}: {reasons[waiting[0]]}); retried "
                                                            "every pass")
        return pending

    def xero_documents(self, resource: str) -> None:
        id_field = ID_FIELDS[resource]
        for page in self._changed_pages(resource, self._since(resource)):
            self.report.count("checked", f"{resource}_read", len(page))
            if page:
                pending = self._apply(resource, page)
                if pending:
                    # Held just before the oldest one left to do: the next pass reads it again.
                    held = _newest([d for d in page if str(d.get(id_field)) in pending], oldest=True)
                    self._advance(resource, held - timedelta(milliseconds=1) if held else None)
                    self.report.notes.append(f"{resource}: {len(pending)} to apply again next pass")
                    return
                self._advance(resource, _newest(page))
            self.clock.check(f"the next page of {resource}")

    def payments(self) -> None:
        """Payments changed since the watermark: the documents they name are re-read by id and
        applied, which catches a payment whose invoice's UpdatedDateUTC did not move, or whose
        webhook was lost."""
        for page in self._changed_pages("Payments", self._since("Payments")):
            self.report.count("checked", "Payments_read", len(page))
            wanted: dict[str, list[str]] = {"Invoices": [], "CreditNotes": []}
            for payment in page:
                for resource, key in (("Invoices", "Invoice"), ("CreditNotes", "CreditNote")):
                    xero_id = str((payment.get(key) or {}).get(ID_FIELDS[resource]) or "")
                    if xero_id and (resource, xero_id) not in self.seen and xero_id not in wanted[resource]:
                        wanted[resource].append(xero_id)
            pending: set[str] = set()
            for resource, ids in wanted.items():
                if ids:
                    documents = self._by_ids(resource, ids)
                    self.report.count("checked", f"{resource}_reread_for_payments", len(documents))
                    pending |= self._apply(resource, documents)
            if pending:
                self.report.notes.append(f"Payments: {len(pending)} documents to apply again next pass")
                return  # the watermark stays: this page's payments are read again
            if page:
                self._advance("Payments", _newest(page))
            self.clock.check("the next page of Payments")

    def _by_ids(self, resource: str, ids: list[str]) -> list[dict[str, Any]]:
        if resource == "Invoices":
            return self.ports.xero.get_by_ids(resource, ids)
        found: list[dict[str, Any]] = []
        id_field = ID_FIELDS[resource]
        for start in range(0, len(ids), WHERE_IDS_PER_CALL):
            chunk = [i for i in ids[start:start + WHERE_IDS_PER_CALL] if _GUID.match(i)]
            if chunk:
                where = " OR ".join(f'{id_field}==Guid("{i}")' for i in chunk)
                found += self.ports.xero.get(resource, {"where": where}).get(resource) or []
        return found

    def _advance(self, name: str, newest: datetime | None) -> None:
        if newest is None:
            return
        self.ports.state.advance_watermark(self.tenant_id, name, newest)
        self.report.watermarks[name] = normalised_instant(newest)

    # ---- drift audit ---------------------------------------------------------------------------
    def audit(self, deep: bool) -> None:
        cursor = self.ports.state.get_audit_cursor(self.tenant_id)
        last = cursor.get("audited_at")
        in_cycle = bool(cursor.get("start_key"))
        due = deep or in_cycle or not last or self.clock.now - datetime.fromisoformat(last) >= self.limits.audit_every
        if not due:
            return
        mappings, next_key = self.ports.state.scan_document_mappings(
            self.tenant_id, cursor.get("start_key"), max_scanned=self.limits.audit_scan_items)
        if len(mappings) > self.limits.audit_sample:
            mappings = mappings[:self.limits.audit_sample]
            last_one = mappings[-1]
            next_key = mapping_key(last_one.tenant_id, last_one.module, last_one.crm_id)
        self.report.audit = {"mappings": len(mappings), "cycle_done": next_key is None}
        self.report.count("checked", "mappings_audited", len(mappings))
        states: list[tuple[Mapping, XeroDocumentState]] = []
        for mapping in mappings:
            try:
                states.append((mapping, XeroDocumentState.model_validate(mapping.document)))
            except ValidationError as error:
                self.report.error("audit", f"unreadable stored document of {mapping.module}/{mapping.crm_id}: "
                                           f"{error.errors()[:1]}")
        self._audit_against_xero(states)
        self.clock.check("the CRM side of the audit")
        self._audit_against_crm([(m, s) for m, s in states if s.xero_id not in self.repaired_ids])
        audited_at = self.clock.now.isoformat(timespec="seconds") if next_key is None else (last or "")
        self.ports.state.put_audit_cursor(self.tenant_id, next_key, audited_at)

    def _audit_against_xero(self, states: list[tuple[Mapping, XeroDocumentState]]) -> None:
        by_resource: dict[str, list[tuple[Mapping, XeroDocumentState]]] = {}
        for mapping, state in states:
            resource = RESOURCE_OF_TARGET.get(state.target)
            if resource and (resource, state.xero_id) not in self.seen:  # read this pass: applied already
                by_resource.setdefault(resource, []).append((mapping, state))
        for resource, entries in by_resource.items():
            fetched = {str(d.get(ID_FIELDS[resource])): d
                       for d in self._by_ids(resource, [s.xero_id for _, s in entries])}
            differing = []
            for mapping, stored in entries:
                document = fetched.get(stored.xero_id)
                if document is None:
                    self.report.drifted("missing_in_xero", _label(mapping), self.limits.samples)
                    continue
                if _difference(stored, document_state(resource, document)) is not None:
                    differing.append(document)
            # _apply counts each repaired document under its kind of drift.
            self._apply(resource, differing)

    def _audit_against_crm(self, states: list[tuple[Mapping, XeroDocumentState]]) -> None:
        crm, config = self.ports.crm, self.ports.config
        if crm is None or not config.write_back.enabled or not states:
            return
        fields = config.write_back.fields
        compared = [name for name in ("xero_id", "status", "total", "amount_due", "amount_paid") if name in fields]
        if not compared:
            return
        by_module: dict[str, list[tuple[Mapping, XeroDocumentState]]] = {}
        for mapping, state in states[:self.limits.crm_sample]:
            by_module.setdefault(mapping.module.split("#", 1)[0], []).append((mapping, state))
        repairs: list[Outcome] = []
        for module, entries in by_module.items():
            ids = [m.crm_id for m, _ in entries]
            records, _ = crm.filter(module, [{"id": {"$in": ids}}], fields=["id", *(fields[n] for n in compared)],
                                    max_num=len(ids))
            found = {str(r.get("id")): r for r in records}
            for mapping, state in entries:
                record = found.get(mapping.crm_id)
                label = _label(mapping)
                if record is None:
                    self.report.drifted("missing_in_crm", label, self.limits.samples)
                    continue
                expected = {**write_back_values(state), "xero_id": state.xero_id}
                kind = None
                if any(str(record.get(fields[n]) or "") != str(expected[n]) for n in ("xero_id", "status")
                       if n in compared):
                    kind = "crm_status"
                elif any(not _same_amount(record.get(fields[n]), expected[n]) for n in compared
                         if n not in ("xero_id", "status")):
                    kind = "crm_amount"
                if kind:
                    self.report.drifted(kind, label, self.limits.samples)
                    repairs.append(Outcome(module=module, crm_id=mapping.crm_id,
                                           sync_status=mapping.sync_status or "synced", xero_id=state.xero_id,
                                           last_error=mapping.last_error, values=write_back_values(state),
                                           version=xero_version(state.updated_utc)))
        if repairs:
            # journal steps, as every write-back: a newer state written meanwhile is not overwritten
            steps = Steps(self.ports.mappings, self.tenant_id) if hasattr(self.ports.mappings, "record_intent") \
                else None
            written = write_back(repairs, crm=crm, config=config, steps=steps)  # type: ignore[arg-type]
            self.report.count("repaired", "crm_written_back", len(written.written))
            for (module, crm_id), error in {**written.pending, **written.failed}.items():
                self.report.error("audit write-back", f"{module}/{crm_id}: {error}")

    # ---- CRM → Xero ----------------------------------------------------------------------------
    def crm_changes(self, module: str) -> None:
        crm = self.ports.crm
        assert crm is not None
        name = f"CRM#{module}"
        since = _sugar_time(self._since(name))
        until = _sugar_time(self.clock.now)
        size = self.limits.crm_page_size

        def fetch(filters: list[dict[str, Any]], page_size: int) -> list[dict[str, Any]]:
            return crm.filter(module, filters, max_num=page_size, order_by=ORDER_BY)[0]

        records = keyset_records(fetch, since=since, until=until, page_size=size, max_pages=self.limits.crm_max_pages)
        for page in pages_of(records, size):
            self.report.count("checked", f"{module}_read", len(page))
            self._queue_changed(module, page)
            # Compared as instants: Sugar writes each date in the API user's UTC offset.
            newest = max((normalised_instant(str(r["date_modified"])) for r in page if r.get("date_modified")),
                         default="")
            if newest:
                self.ports.state.advance_watermark(self.tenant_id, name, newest)
                self.report.watermarks[name] = newest
            self.clock.check(f"the next page of {module}")

    def _queue_changed(self, module: str, records: list[dict[str, Any]]) -> None:
        candidates: list[tuple[str, str, dict[str, Any]]] = []  # (kind, crm id, document)
        if module in ("Accounts", "Contacts"):
            candidates = self._changed_contacts(module, records)
        elif module == "ProductTemplates":
            candidates = self._changed_items(records)
        elif module == "Quotes":
            candidates = self._changed_quotes(records)
        assert self.ports.jobs is not None
        for kind, crm_id, document in candidates:
            queue = self.ports.queues.get(QUEUE_OF_KIND[kind])
            if queue is None:
                self.report.error(f"CRM {module}", f"no {QUEUE_OF_KIND[kind]} queue configured")
                return
            # repair: a record whose identical document already had a job that failed (or was
            # overwritten since) gets a new attempt of that job; a live one is not queued twice.
            accepted = accept(kind=kind, crm=CrmRef(module=module, id=crm_id), document=document,
                              jobs=self.ports.jobs, queue=queue, status_base_url=self.ports.status_base_url,
                              repair="reconcile")
            if accepted.duplicate:
                self.report.count("checked", "crm_already_queued")
            else:
                self.report.count("repaired", "crm_records_queued")
                samples = self.report.jobs.setdefault("queued_samples", [])
                if len(samples) < self.limits.samples:
                    samples.append(f"{module}/{crm_id}")

    def _documents(self, module: str, records: list[dict[str, Any]], build: Callable[[dict[str, Any]], Any]
                   ) -> list[Any]:
        built = []
        for record in records:
            try:
                built.append(build(record))
            except (ValidationError, ValueError) as error:
                self.report.error(f"CRM {module}", f"record {record.get('id')} cannot be read: {error}"[:300])
        return built

    def _changed_contacts(self, module: str, records: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
        config = self.ports.config
        if module == "Accounts":
            docs = self._documents(module, records, lambda r: hook_to_document(
                AccountHook.model_validate({"bean": "Account", "event": "after_save", "data": r}), config))
        else:
            docs = self._documents(module, records, lambda r: hook_to_document(
                ContactHook.model_validate({"bean": "Contact", "event": "after_save", "data": r}), config))
        known = self.ports.mappings.get_mappings(self.tenant_id, module, [d.crm_id for d in docs])
        as_persons = module == "Contacts" and config.contacts.sugar_contacts_as == "contact_persons"
        parent_ids = sorted({d.parent_crm_id for d in docs if d.parent_crm_id}) if as_persons else []
        parents = self.ports.mappings.get_mappings(self.tenant_id, "Accounts", parent_ids) if parent_ids else {}
        changed = []
        for doc in docs:
            mapping = known.get(doc.crm_id)
            if as_persons and doc.parent_crm_id:
                # What the contact worker hashes for a contact person (shared.usecases.contacts._sync_persons).
                parent = parents.get(doc.parent_crm_id)
                same = bool(parent and mapping and mapping.xero_id == parent.xero_id and mapping.payload_hash ==
                            content_hash({"parent": parent.xero_id, "person": to_xero_person(doc),
                                          "deleted": doc.deleted}))
            else:
                same = bool(mapping and mapping.payload_hash == content_hash(to_xero_contact(doc)))
            if not same:
                changed.append(("contact.upsert", doc.crm_id, doc.model_dump(mode="json")))
        return changed

    def _changed_items(self, records: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
        docs = self._documents("ProductTemplates", records, lambda r: hook_to_item_document(
            ProductTemplateHook.model_validate({"bean": "ProductTemplate", "event": "after_save", "data": r})))
        known = self.ports.mappings.get_mappings(self.tenant_id, "ProductTemplates", [d.crm_id for d in docs])
        catalogue = self.ports.config.catalogue
        changed = []
        for doc in docs:
            mapping = known.get(doc.crm_id)
            if not (mapping and mapping.payload_hash == content_hash(to_xero_item(doc, catalogue))):
                changed.append(("item.upsert", doc.crm_id, doc.model_dump(mode="json")))
        return changed

    def _changed_quotes(self, records: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
        """Quotes at a stage that makes a Xero document and saved after the connector last
        recorded anything for them: after the pushed version (the mapping's crm_modified) and
        after the mapping's last update, since each write-back of Xero's news saves the quote
        just before its state is stored. The worker compares content itself, so a save that
        changed nothing still costs no Xero call."""
        rules = self.ports.config.invoices
        targets: dict[str, list[str]] = {}
        for record in records:
            stage = str(record.get("quote_stage") or "")
            wanted = []
            if stage == rules.quote_stage:
                wanted.append("Quotes#ACCREC")
            if rules.xero_quotes and rules.quote_stages.get(stage):
                wanted.append("Quotes#QUOTE")
            if wanted and record.get("id"):
                targets[str(record["id"])] = wanted
        known = {module: self.ports.mappings.get_mappings(self.tenant_id, module, list(targets))
                 for module in {m for ms in targets.values() for m in ms}}
        changed = []
        for record in records:
            crm_id = str(record.get("id") or "")
            if crm_id not in targets:
                continue
            behind = False
            for module in targets[crm_id]:
                mapping = known[module].get(crm_id)
                behind |= mapping is None or not (_at_or_after(mapping.crm_modified, record.get("date_modified"))
                                                  or _at_or_after(mapping.updated_at, record.get("date_modified")))
            if behind:
                changed.append(("quote.push", crm_id, {"event": "after_save", "quote": record}))
        return changed


# ---- once per tick -------------------------------------------------------------------------------
def _keep_token_alive(ports: GlobalPorts, limits: Limits, now: datetime, report: TenantReport) -> None:
    """Xero drops a refresh token unused for 60 days. Any call refreshes an expired access token
    (which rotates the refresh token); this makes sure one happens before the limit even if no
    other call would."""
    if ports.token_store is None or ports.tokens is None or not ports.connection_id:
        return
    token = ports.token_store.get_token(ports.connection_id)
    if not token:
        report.token = "no token stored"
        return
    if str(token.get("status") or "") == "disconnected":
        report.token = "disconnected: run `sugar-xero connect`"
        return
    if not token.get("refresh_token"):
        report.token = "no refresh token (client credentials)"
        return
    # Refreshed at: recorded, else when the access token (30 minutes) was issued.
    refreshed = float(token.get("refreshed_at") or 0) or float(token.get("access_expires_at") or 0) - 1800
    age = now.timestamp() - refreshed
    if age < limits.token_refresh_after.total_seconds():
        report.token = f"refresh token used {age / 86400:.1f} days ago"
        return
    ports.tokens(True)
    report.count("repaired", "tokens_refreshed")
    report.token = f"refreshed: the refresh token was {age / 86400:.0f} days unused"


def _redrive_stuck(ports: GlobalPorts, limits: Limits, now: datetime, report: TenantReport) -> None:
    cutoffs = {status: _job_time(now - after) for status, after in limits.stuck_after}
    stuck = ports.state.stuck_jobs(cutoffs, now_epoch=int(now.timestamp()), max_items=limits.max_redrives_per_pass)
    report.jobs.update(stuck=len(stuck), gave_up=0)
    for job in stuck:
        job_id = str(job.get("job_id") or "")
        redrives = int(job.get("redrives") or 0)
        if redrives >= limits.max_redrives:
            report.jobs["gave_up"] += 1
            report.drifted("stuck_jobs", job_id, limits.samples)
            continue
        try:
            ports.redrive(job_id)
        except Exception as error:
            report.error("stuck jobs", f"{job_id}: {type(error).__name__}: {error}")
            continue
        ports.jobs.update_job(job_id, redrives=redrives + 1)
        report.count("repaired", "jobs_redriven")


def redrive_from_payload(job_id: str, *, jobs: Any, queues: dict[str, WorkQueue]) -> str:
    """Send a job's stored document to its kind's queue again, as it was first sent (the job id is
    the same, so the worker's own checks keep it from doing anything twice). Used when
    ``shared.usecases.redrive`` is not there."""
    job = jobs.get_job(job_id)
    if job is None:
        raise LookupError(f"job {job_id} not found")
    payload = jobs.get_job_payload(job_id)
    if payload is None:
        raise LookupError(f"job {job_id} has no stored payload")
    queue = queues.get(QUEUE_OF_KIND.get(job.kind, ""))
    if queue is None:
        raise LookupError(f"no queue for jobs of kind {job.kind}")
    queue.send({"job_id": job_id, "kind": job.kind, "document": payload})
    jobs.update_job(job_id, status="queued")
    return "redriven"


# ---- small helpers -------------------------------------------------------------------------------
def _newest(documents: list[dict[str, Any]], *, oldest: bool = False) -> datetime | None:
    moments = [m for m in (parse_xero_date(d.get("UpdatedDateUTC")) for d in documents) if m]
    if not moments:
        return None
    return min(moments) if oldest else max(moments)


def _difference(before: XeroDocumentState | None, after: XeroDocumentState) -> str | None:
    """What kind of drift a change repairs: ``missing_in_xero`` is not one (a document the state
    did not know is an import or a first sight), so: status, amount, or None (nothing moved)."""
    if before is None:
        return "missing_in_state"
    if before.status != after.status:
        return "status"
    amounts = ("total", "amount_due", "amount_paid", "amount_credited")
    if any(getattr(before, name) != getattr(after, name) for name in amounts):
        return "amount"
    if len(before.payments) != len(after.payments):
        return "amount"
    return None


def _label(mapping: Mapping) -> str:
    """``Quotes/<id>``: the CRM record, as drift samples name it."""
    return f"{mapping.module.split('#', 1)[0]}/{mapping.crm_id}"


def _same_amount(value: Any, expected: Any) -> bool:
    try:
        return Decimal(str(value if value not in (None, "") else "0")) == Decimal(str(expected or "0"))
    except InvalidOperation:
        return False


def _at_or_after(stored: str | None, current: Any) -> bool:
    if not stored or not current:
        return False
    try:
        return normalised_instant(stored) >= normalised_instant(str(current))
    except ValueError:
        return False


def _sugar_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _job_time(moment: datetime) -> str:
    """Jobs' ``updated_at`` form (``shared.state.dynamo.now_iso``), so text compares as time."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


