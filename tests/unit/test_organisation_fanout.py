"""Which organisations a CRM save of a customer or product goes to, and that queuing their jobs is
safe to repeat (shared.usecases.organisations)."""

from __future__ import annotations

from shared.mapping.settings import Organisations
from shared.state.records import Mapping
from shared.sugar.errors import SugarError
from shared.usecases.organisations import fan_out, for_the_default, organisation_job
from shared.usecases.work import WorkItem
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue

ORGS = Organisations(names={"SG": "t-sg", "MY": "t-my", "ID": "t-id"}, default="SG",
                     route_by="account.billing_address_country", routes={"Malaysia": "MY", "Indonesia": "ID"})


class Crm:
    def __init__(self, countries, error=None):
        self.countries, self.error = countries, error

    def get_record(self, module, record_id, fields=None):
        if self.error:
            raise self.error
        return {"id": record_id, "billing_address_country": self.countries.get(record_id, "")}


def save(account_id, n=0, **changes):
    document = {"crm_module": "Accounts", "crm_id": account_id, "name": f"Account {account_id}", **changes}
    return WorkItem(message_id=f"m{n}", job_id=f"root-{account_id}-{n}", kind="contact.upsert", document=document)


def held(mappings, tenant, account_id):
    mappings.put_mapping(Mapping(tenant_id=tenant, module="Accounts", crm_id=account_id, xero_id=f"x-{account_id}"))


def run(items, crm, mappings=None, jobs=None, queue=None):
    mappings, jobs, queue = mappings or FakeMappings(), jobs or FakeJobs(), queue or FakeQueue()
    fanned = fan_out(items, module_of=lambda i: "Accounts", organisations=ORGS, default_tenant="t-sg", crm=crm,
                     jobs=jobs, mappings=mappings, queue=queue)
    return fanned, jobs, queue


def test_routed_and_holding_organisations_get_a_job_each_and_the_default_keeps_its_own():
    mappings = FakeMappings()
    held(mappings, "t-id", "a-my")
    held(mappings, "t-sg", "a-my")
    fanned, jobs, queue = run([save("a-my"), save("a-sg", 1)], Crm({"a-my": "Malaysia", "a-sg": "Singapore"}),
                              mappings)
    assert sorted((m["tenant_id"], m["document"]["crm_id"]) for m in queue.sent) == [("t-id", "a-my"),
                                                                                        ("t-my", "a-my")]
    assert fanned.elsewhere == {}  # SG holds a-my and is routed a-sg: both stay in the default
    for message in queue.sent:
        job = jobs.get_job(message["job_id"])
        assert job.tenant_id == message["tenant_id"] and jobs.payloads[job.job_id] == message["document"]


def test_a_save_only_another_organisation_needs_leaves_the_default_alone():
    jobs = FakeJobs()
    item = save("a-my")
    fanned, jobs, queue = run([item], Crm({"a-my": "Malaysia"}), jobs=jobs)
    (message,) = queue.sent
    assert fanned.elsewhere == {item.job_id: [message["job_id"]]}
    from shared.models.jobs import CrmRef, Job

    jobs.create_job(Job(job_id=item.job_id, status="queued", kind=item.kind, crm=CrmRef(module="Accounts", id="a-my"),
                        created_at="2026-12-01T00:00:00Z", updated_at="2026-12-01T00:00:00Z"), item.document)
    assert for_the_default([item], fanned, jobs=jobs, organisations=ORGS) == []
    root = jobs.get_job(item.job_id)
    assert root.status == "ignored" and "MY" in root.warnings[0] and message["job_id"] in root.warnings[0]


def test_a_deletion_goes_only_where_the_record_is():
    mappings = FakeMappings()
    held(mappings, "t-id", "a-my")
    fanned, _, queue = run([save("a-my", deleted=True)], Crm({"a-my": "Malaysia"}), mappings)
    assert [m["tenant_id"] for m in queue.sent] == ["t-id"]
    assert list(fanned.elsewhere.values()) == [[queue.sent[0]["job_id"]]]


def test_a_route_the_crm_cannot_read_now_keeps_the_default_and_the_holders():
    mappings = FakeMappings()
    held(mappings, "t-id", "a-my")
    down = SugarError("Sugar is down", status=503, label="unavailable", retryable=True)
    fanned, _, queue = run([save("a-my")], Crm({}, error=down), mappings)
    assert [m["tenant_id"] for m in queue.sent] == ["t-id"] and fanned.elsewhere == {}


def test_repeating_a_save_resends_an_unfinished_job_and_never_a_finished_one():
    """A worker that died after creating the organisation's job but before sending it: the
    redelivered save sends it (the same job id); once that job ended, nothing is sent again."""
    jobs, mappings = FakeJobs(), FakeMappings()
    item = save("a-my")
    child, _, created = organisation_job(item.kind, item.document, "t-my", jobs=jobs)  # created, never sent
    assert created
    _, _, queue = run([item], Crm({"a-my": "Malaysia"}), mappings, jobs)
    assert [m["job_id"] for m in queue.sent] == [child.job_id]
    jobs.update_job(child.job_id, status="succeeded")
    _, _, again = run([item], Crm({"a-my": "Malaysia"}), mappings, jobs)
    assert again.sent == []


def test_one_organisation_configured_or_organisation_jobs_themselves_fan_out_nothing():
    jobs, queue = FakeJobs(), FakeQueue()
    child = WorkItem(message_id="c", job_id="c", kind="contact.upsert", tenant_id="t-my",
                     document={"crm_module": "Accounts", "crm_id": "a-my"})
    fanned = fan_out([child], module_of=lambda i: "Accounts", organisations=ORGS, default_tenant="t-sg",
                     crm=Crm({"a-my": "Indonesia"}), jobs=jobs, mappings=FakeMappings(), queue=queue)
    assert queue.sent == [] and fanned.elsewhere == {}
    fanned = fan_out([save("a-my")], module_of=lambda i: "Accounts", organisations=None, default_tenant="t-sg",
                     crm=None, jobs=jobs, mappings=FakeMappings(), queue=queue)
    assert queue.sent == [] and fanned.elsewhere == {}


def test_status_names_the_organisation_of_a_failed_organisation_job():
    from shared.usecases.status import gather
    from sugar_xero.status import StackTarget, render
    from tests.unit.test_status import NOW, FakeLimits, FakeProbe, FakeStore, connected_xero, job

    items = [job("f-my", "failed", error="Xero refused it", tenant_id="t-my"), job("f-sg", "failed", age=200,
                                                                                 error="Xero refused it too")]
    report = gather(store=FakeStore(items + connected_xero()), probe=FakeProbe({}), limits=FakeLimits(),
                    clock=lambda: NOW)
    assert [f.get("tenant_id") for f in report.recent_failures] == ["t-my", None]
    shown = render(report, StackTarget(where="test", sync_table="sync-test"))
    assert "contact.upsert (organisation t-my)" in shown
