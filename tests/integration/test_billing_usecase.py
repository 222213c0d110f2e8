"""Billing rules at work against the ledger in moto's DynamoDB, a CRM double and the real
``accept`` path (in-memory jobs and queue): each action, once only under repeats and
concurrency, older states ignored, Sugar failing then recovering."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from shared.billing.ledger import BillingLedger
from shared.billing.rules import parse_rules
from shared.models.invoices import DocumentChange, XeroDocumentState
from shared.state.records import Mapping
from shared.sugar.client import BulkResult
from shared.sugar.errors import SugarNotFound, SugarUnavailable
from shared.usecases.billing import overdue_changes, purchase_acceptor, run_billing_rules
from tests.conftest import SYNC_TABLE_NAME, create_sync_table
from tests.support.fakes import FakeJobs, FakeQueue

TODAY = dt.date(2027, 2, 1)
TENANT = "t-1"
RULES = parse_rules("""
version: 1
rules:
  - name: membership-active
    when: paid
    set_fields: {module: Accounts, id_field: billing_account_id,
                 values: {membership_status_c: Active, membership_paid_on_c: "{paid_date}"}}
  - name: membership-lapsed
    when: [overdue, voided]
    overdue_days: 14
    set_fields: {module: Accounts, id_field: billing_account_id, values: {membership_status_c: Lapsed}}
  - name: rep-commission
    when: paid
    commission_bill: {rate: "10", agent: {record_field: commission_account_id_c}, account_code: "310"}
  - name: revenue
    when: [paid, part_paid, payment_removed, voided]
    revenue:
      to:
        - {module: Opportunities, id_field: opportunity_id, field: revenue_received_c}
        - {module: Users, id_field: assigned_user_id, field: revenue_received_c}
""", path=__import__("pathlib").Path("rules.yaml"))


class Crm:
    """Sugar's get_record and update_records_bulk over in-memory records; thread-safe."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, dict[str, dict[str, Any]]]] = []
        self.gets: list[tuple[str, str]] = []
        self.down: Exception | None = None
        self.refuse: dict[str, int] = {}  # record id → HTTP status of its bulk item
        self._lock = threading.Lock()

    def get_record(self, module: str, record_id: str, fields: Any = None) -> dict[str, Any]:
        self.gets.append((module, record_id))
        if self.down is not None:
            raise self.down
        with self._lock:
            if (module, record_id) not in self.records:
                raise SugarNotFound(f"GET /{module}/{record_id}: not found", status=404, label="not_found")
            return copy.deepcopy(self.records[(module, record_id)])

    def update_records_bulk(self, module: str, updates: dict[str, dict[str, Any]],
                            chunk_size: int = 20) -> dict[str, BulkResult]:
        if self.down is not None:
            raise self.down
        with self._lock:
            self.writes.append((module, copy.deepcopy(updates)))
            outcome = {}
            for record_id, fields in updates.items():
                if record_id in self.refuse:
                    outcome[record_id] = BulkResult(self.refuse[record_id], {"error": "refused"})
                    continue
                self.records.setdefault((module, record_id), {}).update(fields)
                outcome[record_id] = BulkResult(200, {"id": record_id})
            return outcome

    def field(self, module: str, record_id: str, name: str) -> Any:
        return self.records.get((module, record_id), {}).get(name)


def quote(quote_id: str = "q-1", user: str = "user-3", opportunity: str = "opp-5") -> dict[str, Any]:
    return {"id": quote_id, "billing_account_id": "acc-9", "assigned_user_id": user, "opportunity_id": opportunity,
            "commission_account_id_c": "agent-77"}


def state(status="AUTHORISED", paid="0.00", *, xero_id="inv-1", total="1090.00", tax="90.00",
          updated="2027-01-20T10:00:00.000", due_date=dt.date(2027, 2, 20)) -> XeroDocumentState:
    return XeroDocumentState(target="ACCREC", xero_id=xero_id, number=f"INV-{xero_id}", status=status,
                             currency="SGD", total=Decimal(total), total_tax=Decimal(tax), amount_paid=Decimal(paid),
                             amount_due=Decimal(total) - Decimal(paid), due_date=due_date,
                             fully_paid_on=dt.date(2027, 1, 31) if status == "PAID" else None, updated_utc=updated)


def change(before, after, crm_id="q-1") -> DocumentChange:
    return DocumentChange(tenant_id=TENANT, crm_module="Quotes", crm_id=crm_id, before=before, after=after)


PAID = state("PAID", "1090.00", updated="2027-01-31T09:00:00.000")


@pytest.fixture(scope="module")
def sync_table():
    """One moto sync table for the module (creating one per test costs more than the tests);
    each test starts from an empty table."""
    import boto3
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        session = boto3.session.Session()
        create_sync_table(session.client("dynamodb"), SYNC_TABLE_NAME)
        yield session.resource("dynamodb")


@pytest.fixture
def world(sync_table):
    table = sync_table.Table(SYNC_TABLE_NAME)
    for item in table.scan(ProjectionExpression="PK, SK")["Items"]:
        table.delete_item(Key={"PK": item["PK"], "SK": item["SK"]})
    crm = Crm()
    crm.records[("Quotes", "q-1")] = quote()
    jobs, queue = FakeJobs(), FakeQueue()
    ledger = BillingLedger(SYNC_TABLE_NAME, resource=sync_table, sleep=lambda _: None)

    class World:
        pass

    w = World()
    w.crm, w.jobs, w.queue, w.ledger = crm, jobs, queue, ledger
    w.accept = purchase_acceptor(jobs=jobs, queue=queue, status_base_url="https://connector.test")

    def run(changes, today=TODAY, accept=None):
        return run_billing_rules(changes, rules=RULES, crm=crm, accept_purchase=accept or w.accept,
                                 ledger=ledger, today=today)
    w.run = run
    return w


def test_paid_sets_fields_raises_the_commission_and_writes_revenue(world):
    report = world.run([change(state(), PAID)])
    assert not report.failed and not report.skipped
    assert world.crm.field("Accounts", "acc-9", "membership_status_c") == "Active"
    assert world.crm.field("Accounts", "acc-9", "membership_paid_on_c") == "2027-01-31"
    assert report.bills_raised == ["q-1:commission:rep-commission"]
    [message] = world.queue.sent
    assert message["kind"] == "document.push"
    bill = message["document"]
    assert bill["kind"] == "purchase" and bill["crm_id"] == "q-1:commission:rep-commission"
    assert bill["contact"]["crm_id"] == "agent-77" and bill["lines"][0]["unit_amount"] == "100.00"
    assert bill["lines"][0]["account_code"] == "310"
    assert world.crm.field("Opportunities", "opp-5", "revenue_received_c") == "1090.00"
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "1090.00"
    assert world.ledger.last_states(TENANT, ["inv-1"])["inv-1"] == PAID


def test_redelivery_and_replay_do_nothing_again(world):
    world.run([change(state(), PAID)])
    writes = len(world.crm.writes)
    again = world.run([change(state(), PAID)])  # the same change redelivered: judged from the ledger
    assert again.fields_set == [] and again.bills_raised == [] and again.revenue_written == []
    assert len(world.crm.writes) == writes and len(world.queue.sent) == 1 and len(world.jobs.jobs) == 1


def test_an_older_state_arriving_late_triggers_nothing(world):
    world.run([change(state(), PAID)])
    part = state(paid="500.00", updated="2027-01-25T00:00:00.000")
    late = world.run([change(state(), part)])
    assert late.stale == ["inv-1"] and late.revenue_written == []
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "1090.00"


def test_revenue_is_absolute_per_invoice_and_summed_over_invoices(world):
    world.crm.records[("Quotes", "q-2")] = quote("q-2", opportunity="opp-6")
    part = state(paid="500.00", updated="2027-01-21T00:00:00.000")
    world.run([change(state(), part)])
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "500.00"
    other = state("PAID", "200.00", xero_id="inv-2", total="200.00", tax="0.00", updated="2027-01-22T00:00:00.000")
    world.run([change(state(xero_id="inv-2", total="200.00", tax="0.00"), other, crm_id="q-2")])
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "700.00"
    world.run([change(part, PAID)])  # the rest of inv-1 arrives: 1090 for it, not 500 + 1090
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "1290.00"
    assert world.crm.field("Opportunities", "opp-5", "revenue_received_c") == "1090.00"
    assert world.crm.field("Opportunities", "opp-6", "revenue_received_c") == "200.00"


def test_sugar_down_then_back_retries_without_doing_anything_twice(world):
    world.crm.down = SugarUnavailable("Sugar is down", status=503, retryable=True)
    first = world.run([change(state(), PAID)])
    assert first.retry == [change(state(), PAID)]  # the caller puts the message back
    assert world.ledger.last_states(TENANT, ["inv-1"])["inv-1"] == state()  # PAID not evaluated yet
    world.crm.down = None
    # The worker's retry, or any later change or reconcile pass: the ledger still says AUTHORISED.
    second = world.run([change(PAID, PAID)])
    assert not second.failed and world.crm.field("Accounts", "acc-9", "membership_status_c") == "Active"
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "1090.00"
    assert len(world.queue.sent) == 1 and len(world.jobs.jobs) == 1


def test_sugar_failing_after_the_bill_was_raised_does_not_raise_it_again(world):
    world.crm.refuse["opp-5"] = 503  # revenue on the opportunity fails after the commission went out
    first = world.run([change(state(), PAID)])
    assert first.bills_raised == ["q-1:commission:rep-commission"] and first.retry
    del world.crm.refuse["opp-5"]
    second = world.run([change(state(), PAID)], today=TODAY + dt.timedelta(days=2))  # a bill of another date
    assert not second.failed and second.bills_already_raised == ["q-1:commission:rep-commission"]
    assert len(world.queue.sent) == 1
    assert world.crm.field("Opportunities", "opp-5", "revenue_received_c") == "1090.00"
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "1090.00"


def test_paid_again_after_a_payment_was_removed_raises_no_second_bill(world):
    world.run([change(state(), PAID)])
    unpaid = state(updated="2027-02-02T00:00:00.000")
    world.run([change(PAID, unpaid)], today=TODAY + dt.timedelta(days=1))
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "0.00"
    paid_again = state("PAID", "1090.00", updated="2027-02-05T00:00:00.000")
    report = world.run([change(unpaid, paid_again)], today=TODAY + dt.timedelta(days=4))
    assert report.bills_already_raised == ["q-1:commission:rep-commission"] and len(world.queue.sent) == 1
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "1090.00"


def test_a_claimed_bill_whose_queueing_failed_is_resent_identically_days_later(world):
    def queue_down(document):
        raise ConnectionError("SQS unreachable")
    first = world.run([change(state(), PAID)], accept=queue_down)
    assert first.retry and world.queue.sent == []
    second = world.run([change(state(), PAID)], today=TODAY + dt.timedelta(days=3))
    assert second.bills_raised == ["q-1:commission:rep-commission"]
    [message] = world.queue.sent
    assert message["document"]["date"] == TODAY.isoformat()  # the claimed document, not a new one
    again = world.accept(__import__("shared.models.invoices", fromlist=["x"]).PurchaseDocument.model_validate(
        message["document"]))
    assert again.duplicate and again.job_id == message["job_id"]


def test_the_same_change_at_once_from_many_workers_raises_one_bill(world, atomic_moto):
    with ThreadPoolExecutor(max_workers=8) as pool:
        reports = list(pool.map(lambda _: world.run([change(state(), PAID)]), range(8)))
    assert not any(r.failed for r in reports)
    assert len(world.queue.sent) == 1 and len(world.jobs.jobs) == 1
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "1090.00"
    assert world.ledger.revenue_total(TENANT, "Users", "user-3", "revenue_received_c") == Decimal("1090.00")


def test_many_invoices_of_one_rep_at_once_sum_exactly(world, atomic_moto):
    changes = []
    for n in range(8):
        world.crm.records[("Quotes", f"q-{n}")] = quote(f"q-{n}", opportunity=f"opp-{n}")
        paid = state("PAID", "100.00", xero_id=f"inv-{n}", total="100.00", tax="0.00")
        changes.append(change(state(xero_id=f"inv-{n}", total="100.00", tax="0.00"), paid, crm_id=f"q-{n}"))
    with ThreadPoolExecutor(max_workers=4) as pool:
        reports = list(pool.map(lambda c: world.run([c]), changes))
    assert [f.error for r in reports for f in r.failed] == []
    assert world.crm.field("Users", "user-3", "revenue_received_c") == "800.00"
    assert len(world.queue.sent) == 8


def test_overdue_fires_once_per_invoice_from_the_daily_pass(world):
    due = state(due_date=dt.date(2027, 1, 10))
    mappings = [Mapping(tenant_id=TENANT, module="Quotes#ACCREC", crm_id="q-1", xero_id="inv-1",
                        document=due.model_dump(mode="json")),
                Mapping(tenant_id=TENANT, module="Quotes#ACCREC", crm_id="q-2", xero_id="inv-2",
                        document=state(xero_id="inv-2", due_date=dt.date(2027, 1, 30)).model_dump(mode="json")),
                Mapping(tenant_id=TENANT, module="Quotes#ACCREC", crm_id="q-3", xero_id="inv-3",
                        document=state("PAID", "1090.00", xero_id="inv-3",
                                       due_date=dt.date(2027, 1, 1)).model_dump(mode="json"))]
    changes = overdue_changes(mappings, rules=RULES, today=TODAY)
    assert [c.crm_id for c in changes] == ["q-1"]  # q-2 is not 14 days overdue yet; q-3 is paid
    world.run(changes)
    assert world.crm.field("Accounts", "acc-9", "membership_status_c") == "Lapsed"
    world.crm.records[("Accounts", "acc-9")]["membership_status_c"] = "Active"  # someone sets it back
    again = world.run(overdue_changes(mappings, rules=RULES, today=TODAY + dt.timedelta(days=1)))
    assert again.fields_set == []
    assert world.crm.field("Accounts", "acc-9", "membership_status_c") == "Active"


def test_voided_lapses_and_takes_the_revenue_back(world):
    part = state(paid="0.00", updated="2027-01-21T00:00:00.000")
    world.run([change(None, part)])
    voided = state("VOIDED", "0.00", updated="2027-01-26T00:00:00.000")
    report = world.run([change(part, voided)])
    assert world.crm.field("Accounts", "acc-9", "membership_status_c") == "Lapsed"
    assert report.revenue_written == [("Opportunities", "opp-5", "revenue_received_c", Decimal("0.00")),
                                      ("Users", "user-3", "revenue_received_c", Decimal("0.00"))]


def test_agent_found_on_the_owning_users_record(world):
    rules = parse_rules("""rules: [{name: c, when: paid, commission_bill: {rate: "5", account_code: "310",
                           agent: {user_field: commission_account_id_c}}}]""",
                        path=__import__("pathlib").Path("r.yaml"))
    world.crm.records[("Users", "user-3")] = {"commission_account_id_c": "agent-12"}
    report = run_billing_rules([change(state(), PAID)], rules=rules, crm=world.crm, accept_purchase=world.accept,
                               ledger=world.ledger, today=TODAY)
    assert report.bills_raised == ["q-1:commission:c"]
    assert world.queue.sent[0]["document"]["contact"]["crm_id"] == "agent-12"
    assert ("Users", "user-3") in world.crm.gets


def test_a_missing_crm_record_is_a_failure_not_worth_retrying(world):
    report = world.run([change(state(), PAID, crm_id="q-gone")])
    [failure] = report.failed
    assert not failure.retryable and "not found" in failure.error and report.retry == []


def test_sugar_refusing_a_field_is_reported_not_retried(world):
    world.crm.refuse["acc-9"] = 422
    report = world.run([change(state(), PAID)])
    [failure] = report.failed
    assert not failure.retryable and "Accounts acc-9" in failure.error
    assert len(world.queue.sent) == 1  # the other actions still ran


def test_per_tenant_rules_and_no_rules_means_no_calls(world):
    rules = parse_rules("""rules: [{name: a, when: paid, set_fields: {values: {paid_c: true}}}]
tenants: {t-1: {disable: [a]}}""", path=__import__("pathlib").Path("r.yaml"))
    report = run_billing_rules([change(state(), PAID)], rules=rules, crm=world.crm, accept_purchase=world.accept,
                               ledger=world.ledger, today=TODAY)
    assert report.evaluated == 0 and world.crm.gets == [] and world.crm.writes == []


def test_the_reconciliation_runs_overdue_rules_once_a_day_over_stored_invoices(world, sync_table):
    from shared.state.dynamo import SyncStateTable
    from shared.state.watermarks import ReconcileStateTable
    from shared.usecases.billing import overdue_pass

    store = SyncStateTable(SYNC_TABLE_NAME, resource=sync_table)
    for n, due in ((1, dt.date(2027, 1, 10)), (2, dt.date(2027, 1, 30))):
        store.put_mapping(Mapping(tenant_id=TENANT, module="Quotes#ACCREC", crm_id=f"q-{n}", xero_id=f"inv-{n}",
                                  document=state(xero_id=f"inv-{n}", due_date=due).model_dump(mode="json")))
    state_table = ReconcileStateTable(SYNC_TABLE_NAME, resource=sync_table)
    handed: list[list[DocumentChange]] = []
    assert overdue_pass(TENANT, state=state_table, rules=RULES, on_changes=handed.append, today=TODAY) == 1
    assert [c.crm_id for c in handed[0]] == ["q-1"]
    assert overdue_pass(TENANT, state=state_table, rules=RULES, on_changes=handed.append, today=TODAY) == 0
    assert len(handed) == 1  # the day is done

    def failing(changes):
        raise RuntimeError("Sugar is down")

    tomorrow = TODAY + dt.timedelta(days=1)
    with pytest.raises(RuntimeError):
        overdue_pass(TENANT, state=state_table, rules=RULES, on_changes=failing, today=tomorrow)
    assert overdue_pass(TENANT, state=state_table, rules=RULES, on_changes=handed.append, today=tomorrow) == 1
