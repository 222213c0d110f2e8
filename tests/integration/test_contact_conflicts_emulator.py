"""Name clashes and archived contacts against the extended Xero emulator (its unique-active-name
rule and ContactStatus), not only against the in-memory fake."""

from __future__ import annotations

import pytest

from shared.mapping.settings import ContactRules, MappingConfig
from shared.models.documents import ContactDocument
from shared.usecases.contacts import sync_contacts
from shared.usecases.work import WorkItem
from shared.xero.client import XeroClient
from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue
from tests.unit.test_contacts_usecase import queued


@pytest.fixture
def xero():
    config = EmulatorConfig()
    with serve(config=config) as server:
        yield XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)


def _sync(xero, docs, config=None):
    jobs, queue, mappings = FakeJobs(), FakeQueue(), FakeMappings()
    ids = [queued(jobs, queue, doc) for doc in docs]
    items = [WorkItem(message_id=f"m{i}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
             for i, m in enumerate(queue.sent)]
    result = sync_contacts(items, xero=xero, jobs=jobs, mappings=mappings, config=config or MappingConfig())
    return result, [jobs.jobs[i] for i in ids]


def _contacts(xero):
    return list(xero.iter_pages("Contacts", params={"includeArchived": "true"}))


def test_a_taken_name_of_another_party_is_disambiguated_with_a_warning(xero):
    xero.upsert_batch("Contacts", [{"Name": "Harbour View", "ContactNumber": "someone-else",
                                    "EmailAddress": "other@example.com"}], idempotency_key="seed")
    result, (job,) = _sync(xero, [ContactDocument(crm_id="acc-1", name="Harbour View",
                                                  email="accounts@harbourview.example.sg")])
    assert result.retry == set() and job.status == "succeeded"
    assert any("Harbour View" in w for w in job.warnings)
    names = sorted(c["Name"] for c in _contacts(xero))
    assert names[0] == "Harbour View" and names[1].startswith("Harbour View (") and len(names) == 2


def test_a_taken_name_fails_when_so_configured(xero):
    xero.upsert_batch("Contacts", [{"Name": "Harbour View", "ContactNumber": "someone-else"}],
                      idempotency_key="seed")
    _, (job,) = _sync(xero, [ContactDocument(crm_id="acc-1", name="Harbour View")],
                      MappingConfig(contacts=ContactRules(name_conflict="fail")))
    assert job.status == "failed" and "already assigned" in job.error
    assert len(_contacts(xero)) == 1


def test_an_archived_match_is_restored(xero):
    xero.upsert_batch("Contacts", [{"Name": "Dormant Ltd", "ContactNumber": "acc-9",
                                    "ContactStatus": "ARCHIVED"}], idempotency_key="seed")
    _, (job,) = _sync(xero, [ContactDocument(crm_id="acc-9", name="Dormant Ltd")])
    assert job.status == "succeeded"
    (contact,) = _contacts(xero)
    assert contact["ContactStatus"] == "ACTIVE"
