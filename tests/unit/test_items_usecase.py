"""The product worker against in-memory adapters (FakeXero upserts items like Xero does)."""

from __future__ import annotations

from decimal import Decimal

from shared.errors import RateLimited, XeroError
from shared.mapping.settings import CatalogueRules
from shared.models.jobs import CrmRef, Job
from shared.usecases import items
from shared.usecases.versions import SUPERSEDED
from shared.usecases.work import WorkItem
from tests.support.fakes import FakeJobs, FakeMappings, FakeXero

RULES = CatalogueRules()


class World:
    def __init__(self) -> None:
        self.xero, self.jobs, self.mappings = FakeXero(), FakeJobs(), FakeMappings()
        self.count = 0

    def item(self, crm_id: str, **fields) -> WorkItem:
        self.count += 1
        job_id = f"job-{self.count}"
        document = {"crm_id": crm_id, "name": f"Product {crm_id}", "sales_price": "10.5000", **fields}
        self.jobs.create_job(Job(job_id=job_id, status="queued", kind=items.KIND,
                                 crm=CrmRef(module="ProductTemplates", id=crm_id),
                                 created_at="t", updated_at="t"), document)
        return WorkItem(message_id=f"m-{self.count}", job_id=job_id, kind=items.KIND, document=document)

    def run(self, work: list[WorkItem]):
        return items.sync_items(work, xero=self.xero, jobs=self.jobs, mappings=self.mappings, catalogue=RULES)

    def job(self, work: WorkItem) -> Job:
        return self.jobs.jobs[work.job_id]


def test_120_products_go_in_calls_of_50_50_20_with_unitdp_4():
    world = World()
    work = [world.item(f"p{i}", code=f"C{i}") for i in range(120)]
    result = world.run(work)
    assert result.retry == set()
    assert [len(elements) for _, elements, _ in world.xero.calls] == [50, 50, 20]
    assert {resource for resource, _, _ in world.xero.calls} == {"Items"}
    assert all(p == {"unitdp": "4", "summarizeErrors": "false"} for p in world.xero.params)
    assert len({key for _, _, key in world.xero.calls}) == 3  # one Idempotency-Key per call
    assert all(world.job(w).status == "succeeded" for w in work)
    assert len(world.xero.items) == 120
    first = world.job(work[0])
    assert first.xero["item_id"] in world.xero.items and first.xero["code"] == "C0"
    stored = world.mappings.items[("tenant-1", "ProductTemplates", "p0")]
    assert stored.xero_id == first.xero["item_id"] and stored.payload_hash and stored.xero_number == "C0"
    assert world.xero.items[first.xero["item_id"]]["SalesDetails"]["UnitPrice"] == Decimal("10.5000")


def test_an_unchanged_product_is_not_sent_again_and_a_changed_one_updates_its_item():
    world = World()
    world.run([world.item("p1", code="C1")])
    (item_id,) = world.xero.items
    again = world.item("p1", code="C1", description="same product, newer job")
    del again.document["description"]
    world.run([again])
    assert len(world.xero.calls) == 1
    assert world.job(again).status == "succeeded"
    assert world.job(again).xero["item_id"] == item_id and "unchanged" in world.job(again).warnings[0]

    changed = world.item("p1", code="C1", sales_price="11.0000")
    world.run([changed])
    assert len(world.xero.calls) == 2
    assert world.xero.calls[-1][1][0]["ItemID"] == item_id
    assert list(world.xero.items) == [item_id]
    assert world.xero.items[item_id]["SalesDetails"]["UnitPrice"] == Decimal("11.0000")


def test_a_code_already_held_by_another_crm_product_fails_the_later_one_and_overwrites_nothing():
    world = World()
    world.run([world.item("p1", code="SHARED", name="First")])
    later = world.item("p2", code="shared", name="Second")
    world.run([later])
    assert len(world.xero.calls) == 1  # nothing sent for the later product
    job = world.job(later)
    assert job.status == "failed" and "already used by CRM product p1" in job.error
    (only,) = world.xero.items.values()
    assert only["Name"] == "First"


def test_two_products_with_one_code_in_one_batch_the_first_wins():
    world = World()
    first, second, other = world.item("p1", code="DUP"), world.item("p2", code="DUP"), world.item("p3")
    world.run([first, second, other])
    assert world.job(first).status == "succeeded" and world.job(other).status == "succeeded"
    assert world.job(second).status == "failed" and "p1" in world.job(second).error
    assert len(world.xero.calls[0][1]) == 2


def test_a_renamed_code_frees_the_old_one():
    world = World()
    world.run([world.item("p1", code="OLD")])
    world.run([world.item("p1", code="NEW")])
    taker = world.item("p2", code="OLD")
    world.run([taker])
    assert world.job(taker).status == "succeeded"
    assert sorted(i["Code"] for i in world.xero.items.values()) == ["NEW", "OLD"]


def test_a_bad_element_fails_alone():
    world = World()
    # An item made in Xero by hand holds code TAKEN; p2 (already mapped) is renamed onto it.
    world.xero.items["manual"] = {"ItemID": "manual", "Code": "TAKEN", "Name": "Manual"}
    world.run([world.item("p2", code="P2")])
    good, bad = world.item("p1", code="P1"), world.item("p2", code="TAKEN")
    result = world.run([good, bad])
    assert result.retry == set()
    assert len(world.xero.calls[-1][1]) == 2  # sent together, answered separately
    assert world.job(good).status == "succeeded"
    assert world.job(bad).status == "failed" and "TAKEN" in world.job(bad).error
    assert world.xero.items["manual"]["Name"] == "Manual"
    assert world.mappings.items[("tenant-1", "ProductTemplates", "p2")].xero_number == "P2"


def test_rate_limit_requeues_and_a_refused_batch_fails_its_jobs():
    world = World()
    world.xero.fail_next.append(RateLimited("minute", retry_after=30, problem="minute"))
    waiting = world.item("p1")
    result = world.run([waiting])
    assert result.retry == {waiting.message_id} and result.retry_after == 30
    assert world.job(waiting).status == "queued"

    world.xero.fail_next.append(XeroError("Xero answered 400: bad", status=400))
    refused = world.item("p2")
    assert world.run([refused]).retry == set()
    assert world.job(refused).status == "failed" and "bad" in world.job(refused).error


def test_unreadable_documents_fail_and_newest_save_wins():
    world = World()
    broken = world.item("p1", sales_price="1.123456")  # more than 4 decimals: not a valid document
    older = world.item("p2", name="Old", crm_modified="2026-01-01T00:00:00Z")
    newer = world.item("p2", name="New", crm_modified="2026-01-02T00:00:00Z")
    world.run([broken, older, newer])
    assert world.job(broken).status == "failed" and "unreadable" in world.job(broken).error
    (sent,) = world.xero.calls[0][1]
    assert sent["Name"] == "New"
    assert world.job(newer).status == "succeeded"
    assert world.job(older).status == "ignored" and world.job(older).warnings == [SUPERSEDED]


def test_deleted_product_is_kept_in_xero_but_not_sold():
    world = World()
    world.run([world.item("p1", code="C1", description="text")])
    world.run([world.item("p1", code="C1", deleted=True)])
    (item,) = world.xero.items.values()
    assert world.xero.calls[-1][1][0]["IsSold"] is False
    assert item["IsSold"] is False
