"""In-memory adapters for use-case tests: they keep what real adapters would send or store."""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from typing import Any

from shared.errors import XeroError
from shared.models.jobs import Job
from shared.state.records import Intent, Mapping
from shared.xero.client import encode_json
from tests.support import contract


class FakeJobs:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.payloads: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def create_job(self, job: Job, payload: dict[str, Any]) -> tuple[Job, bool]:
        with self._lock:
            if job.job_id in self.jobs:
                return self.jobs[job.job_id], False
            self.jobs[job.job_id] = job
            self.payloads[job.job_id] = payload
            return job, True

    def get_job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def get_job_payload(self, job_id: str) -> dict[str, Any] | None:
        return self.payloads.get(job_id)

    def delete_job(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def update_job(self, job_id: str, **changes: Any) -> None:
        self.jobs[job_id] = self.jobs[job_id].model_copy(update=changes)

    def start_attempt(self, job_id: str) -> None:
        job = self.jobs[job_id]
        self.jobs[job_id] = job.model_copy(update={"status": "in_progress", "attempts": job.attempts + 1})


class HistoryJobs(FakeJobs):
    """Jobs whose every status change is kept, in order, as a poller could have seen it."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[str]] = {}

    def _saw(self, job_id: str) -> None:
        status = self.jobs[job_id].status
        seen = self.history.setdefault(job_id, [])
        if not seen or seen[-1] != status:
            seen.append(status)

    def create_job(self, job: Any, payload: dict[str, Any]) -> Any:
        answer = super().create_job(job, payload)
        self._saw(job.job_id)
        return answer

    def update_job(self, job_id: str, **changes: Any) -> None:
        super().update_job(job_id, **changes)
        self._saw(job_id)

    def start_attempt(self, job_id: str) -> None:
        super().start_attempt(job_id)
        self._saw(job_id)


class FakeMappings:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], Mapping] = {}
        self.intents: dict[tuple[str, str, str], Intent] = {}

    def get_mappings(self, tenant_id: str, module: str, crm_ids: list[str]) -> dict[str, Mapping]:
        return {i: self.items[(tenant_id, module, i)] for i in crm_ids if (tenant_id, module, i) in self.items}

    def put_mapping(self, mapping: Mapping) -> None:
        self.items[(mapping.tenant_id, mapping.module, mapping.crm_id)] = mapping

    def find_by_xero_ids(self, tenant_id: str, xero_ids: list[str]) -> dict[str, list[Mapping]]:
        found: dict[str, list[Mapping]] = {}
        for mapping in self.items.values():
            if mapping.tenant_id == tenant_id and mapping.xero_id in xero_ids:
                found.setdefault(mapping.xero_id, []).append(mapping)
        return found

    # the write-ahead journal, with the sync table's conditions (shared/state/dynamo.py)
    def get_intents(self, tenant_id: str, module: str, crm_ids: list[str]) -> dict[str, Intent]:
        journal = self.intents
        return {i: journal[(tenant_id, module, i)].model_copy() for i in crm_ids if (tenant_id, module, i) in journal}

    def record_intent(self, intent: Intent) -> Intent | None:
        journal = self.intents
        key = (intent.tenant_id, intent.module, intent.crm_id)
        stored = journal.get(key)
        if stored is not None and intent.version is not None and stored.version is not None \
                and stored.version > intent.version:
            return None
        new = intent.model_copy(update={
            "state": "intent", "error": None, "attempt": (stored.attempt if stored else 0) + 1,
            "version": intent.version if intent.version is not None else (stored.version if stored else None),
            "found_id": intent.found_id or (stored.found_id if stored else None)})
        journal[key] = new
        return new.model_copy()

    def settle_intent(self, intent: Intent, state: str, *, found_id: str | None = None,
                      error: str | None = None) -> bool:
        journal = self.intents
        key = (intent.tenant_id, intent.module, intent.crm_id)
        stored = journal.get(key)
        if stored is None or stored.attempt != intent.attempt:
            return False
        journal[key] = stored.model_copy(update={"state": state, "found_id": found_id or stored.found_id,
                                                 "error": error})
        return True


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, body: dict[str, Any], *, delay_seconds: int = 0) -> None:
        self.sent.append(body)


class FakeXero:
    """Upserts contacts like Xero: match by ContactID, else ContactNumber; names unique.
    Upserts items like Xero: match by ItemID, else Code; codes unique."""

    tenant_id = "tenant-1"

    def __init__(self) -> None:
        self.contacts: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, list[dict[str, Any]], str]] = []
        self.params: list[dict[str, Any]] = []
        self.gets: list[tuple[str, dict[str, Any]]] = []
        self.fail_next: list[XeroError] = []

    def upsert_batch(self, resource: str, elements: list[dict[str, Any]], *,
                     idempotency_key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        assert 1 <= len(elements) <= 50
        query = {**(params or {}), "summarizeErrors": "false"}
        # Checked in the form it travels in: Decimal prices as JSON numbers.
        contract.check("POST", f"/api.xro/2.0/{resource}", encode_json({resource: elements}), query)
        self.calls.append((resource, copy.deepcopy(elements), idempotency_key))
        self.params.append(query)
        if self.fail_next:
            raise self.fail_next.pop(0)
        if resource == "Items":
            return [self._upsert_item(element) for element in elements]
        return [self._upsert(element) for element in elements]

    def _upsert_item(self, element: dict[str, Any]) -> dict[str, Any]:
        if "ItemID" in element:
            existing = self.items.get(element["ItemID"])
            if existing is None:
                return {**element, "StatusAttributeString": "ERROR",
                        "ValidationErrors": [{"Message": "The item could not be found."}]}
        else:
            existing = next((i for i in self.items.values()
                             if i["Code"].lower() == element["Code"].lower()), None)
        clash = next((i for i in self.items.values()
                      if i["Code"].lower() == element["Code"].lower() and i is not existing), None)
        if clash:
            return {**element, "StatusAttributeString": "ERROR",
                    "ValidationErrors": [{"Message": f"Item code '{element['Code']}' already exists"}]}
        item = existing or {"ItemID": str(uuid.uuid4())}
        item.update(copy.deepcopy(element))
        self.items[item["ItemID"]] = item
        return {**item, "StatusAttributeString": "OK"}

    def _upsert(self, element: dict[str, Any]) -> dict[str, Any]:
        merged = self.contacts.get(element.get("ContactID", ""), {}).get("MergedToContactID")
        if merged:
            return {**element, "StatusAttributeString": "ERROR", "HasValidationErrors": True,
                    "ValidationErrors": [{"Message": "This contact has been merged into another contact."}]}
        existing = self.contacts.get(element.get("ContactID", "")) or next(
            (c for c in self.contacts.values()
             if element.get("ContactNumber") and c.get("ContactNumber") == element["ContactNumber"]), None)
        clash = next((c for c in self.contacts.values()
                      if c["Name"].lower() == element["Name"].lower() and c is not existing
                      and c.get("ContactStatus", "ACTIVE") == "ACTIVE" and not c.get("MergedToContactID")),
                     None)
        if clash:
            return {**element, "StatusAttributeString": "ERROR", "HasValidationErrors": True,
                    "ValidationErrors": [{"Message": f"The contact name {element['Name']} is already "
                                                     "assigned to another contact."}]}
        contact = existing or {"ContactID": str(uuid.uuid4())}
        contact.update(element)
        self.contacts[contact["ContactID"]] = contact
        return {**contact, "StatusAttributeString": "OK"}

    def get(self, path: str, params: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        """GET /Contacts (or /Items) with ``IDs=`` or a ``where`` OR-list of ``Field=="value"`` terms."""
        params = dict(params or {})
        self.gets.append((path, copy.deepcopy(params)))
        resource = path.strip("/")
        found = list((self.contacts if resource == "Contacts" else self.items).values())
        if params.get("includeArchived") != "true":
            found = [c for c in found if c.get("ContactStatus", "ACTIVE") != "ARCHIVED"]
        if params.get("IDs"):
            ids = {i.lower() for i in params["IDs"].split(",")}
            id_field = "ContactID" if resource == "Contacts" else "ItemID"
            found = [c for c in found if c[id_field].lower() in ids]
        if params.get("where"):
            terms = [(field, json.loads(value)) for field, value in
                     re.findall(r'(\w+)==("(?:[^"\\]|\\.)*")', params["where"])]
            assert len(terms) == params["where"].count(" OR ") + 1, params["where"]
            found = [c for c in found if any(str(c.get(field) or "").lower() == value.lower()
                                             for field, value in terms)]
        return {resource: copy.deepcopy(found)}


class FakeTokens:
    """A token store with the compare-and-set on version that the Sugar client's lease needs."""

    def __init__(self):
        self.items: dict[str, Any] = {}

    def get(self, key):
        return self.items.get(key)

    def put(self, key, token, expected_version):
        if (self.items.get(key) or {}).get("version") != expected_version:
            return False
        self.items[key] = {**token, "version": (expected_version or 0) + 1}
        return True


class FakeSugar:
    """Sugar's ``update_records_bulk``: records each call; ``down`` makes the bulk call raise,
    ``missing`` ids answer 404 like a record deleted in Sugar."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, dict[str, Any]]]] = []
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.down: Exception | None = None
        self.missing: set[str] = set()

    def update_records_bulk(self, module: str, updates: dict[str, dict[str, Any]],
                            chunk_size: int = 20) -> dict[str, Any]:
        from shared.sugar.client import BulkResult

        assert len(updates) <= chunk_size
        self.calls.append((module, copy.deepcopy(dict(updates))))
        if self.down is not None:
            raise self.down
        outcome = {}
        for record_id, fields in updates.items():
            if record_id in self.missing:
                outcome[record_id] = BulkResult(404, {"error": "not_found", "error_message": "Could not find record"})
                continue
            self.records.setdefault((module, record_id), {}).update(fields)
            outcome[record_id] = BulkResult(200, {"id": record_id, **fields})
        return outcome
