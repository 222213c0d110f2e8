"""Quotes, invoices and purchases pushed to the extended Xero emulator (its per-line arithmetic,
status rules and payments), with Sugar as an in-memory double. Every body sent is validated
against Xero's official spec by the autouse fixture in conftest."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest

from shared.mapping.settings import InvoiceRules, MappingConfig, RoundingRules
from shared.models.invoices import ContactRef, LineDocument, PurchaseDocument, SalesInvoiceDocument
from shared.models.jobs import CrmRef
from shared.state.records import document_module
from shared.sugar.errors import SugarError
from shared.usecases import invoices
from shared.usecases.accept import accept
from shared.usecases.work import WorkItem
from shared.xero.client import XeroClient, encode_json
from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.conftest import OUR_FIXTURES
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue, FakeSugar

FIXTURES = OUR_FIXTURES / "sugar"
ACCOUNT_ID = "4f1e6a7c-2b3d-11ef-9a1c-0242ac120002"
SGD_GST = {"OUTPUT": Decimal("9"), "EXEMPTOUTPUT": Decimal("0"), "INPUT": Decimal("9"), "NONE": Decimal("0")}


class QuoteSugar(FakeSugar):
    """Sugar's REST reads the worker makes: records by id and a quote's bundles and products."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.bundles: dict[str, list[dict[str, Any]]] = {}
        self.products: dict[str, list[dict[str, Any]]] = {}

    def add_quote_lines(self, quote_id: str, bundles: list[dict[str, Any]]) -> None:
        self.bundles[quote_id] = [{k: v for k, v in b.items() if k != "products"} for b in bundles]
        for bundle in bundles:
            self.products[bundle["id"]] = copy.deepcopy(bundle["products"])

    def related(self, module, record_id, link, fields=None, max_num=100, order_by=None):
        self.reads.append(f"{module}/{record_id}/{link}")
        if self.down is not None:
            raise self.down
        if (module, link) == ("Quotes", "product_bundles"):
            return copy.deepcopy(self.bundles.get(record_id, []))
        return copy.deepcopy(self.products.get(record_id, []))

    def get_record(self, module, record_id, fields=None):
        self.reads.append(f"{module}/{record_id}")
        if (module, record_id) not in self.records:  # as Sugar answers: 404 not_found
            raise SugarError(f"{module}/{record_id} not found", status=404, label="not_found")
        return copy.deepcopy(self.records[(module, record_id)])


@pytest.fixture
def xero():
    config = EmulatorConfig()
    with serve(config=config) as server:
        yield XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)


@pytest.fixture
def sugar():
    crm = QuoteSugar()
    crm.records[("Accounts", ACCOUNT_ID)] = json.loads((FIXTURES / "account_after_save.json").read_text())["data"]
    crm.add_quote_lines(quote()["id"], json.loads((FIXTURES / "quote_product_bundles.json").read_text())["records"])
    return crm


def _thirteen_chiller_visits() -> list[dict[str, Any]]:
    """The fixture's lines with one more chiller visit: the quote changed after it was invoiced."""
    bundles = json.loads((FIXTURES / "quote_product_bundles.json").read_text())["records"]
    bundles[0]["products"][0]["quantity"] = "13.00"
    return bundles


def quote(**changes: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / "quote_closed_accepted.json").read_text())["data"]
    return {**data, **changes}


class Harness:
    def __init__(self, xero: XeroClient, sugar: QuoteSugar, config: MappingConfig | None = None):
        self.xero, self.sugar = xero, sugar
        self.jobs, self.queue, self.mappings = FakeJobs(), FakeQueue(), FakeMappings()
        self.config = config or MappingConfig()

    def accept_quote(self, data: dict[str, Any], event: str = "after_save") -> str:
        return accept(kind=invoices.KIND_QUOTE, crm=CrmRef(module="Quotes", id=data["id"]),
                      document={"event": event, "quote": data}, jobs=self.jobs, queue=self.queue,
                      status_base_url="https://x/prod").job_id

    def accept_document(self, doc) -> str:
        return accept(kind=invoices.KIND_DOCUMENT, crm=CrmRef(module=doc.crm_module, id=doc.crm_id),
                      document=doc.model_dump(mode="json"), jobs=self.jobs, queue=self.queue,
                      status_base_url="https://x/prod").job_id

    def work(self, **kwargs: Any):
        items = [WorkItem(message_id=f"m{i}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
                 for i, m in enumerate(self.queue.sent)]
        self.queue.sent.clear()
        return invoices.push_documents(items, xero=self.xero, jobs=self.jobs, mappings=self.mappings,
                                       crm=self.sugar, config=self.config, tax_rates=SGD_GST, **kwargs)

    def invoices(self) -> list[dict[str, Any]]:
        return list(self.xero.iter_pages("Invoices"))


def _catalogue(run: Harness) -> None:
    """The fixture's three products, pushed to Xero's catalogue earlier."""
    from shared.state.records import Mapping

    products = json.loads((FIXTURES / "quote_product_bundles.json").read_text())["records"][0]["products"]
    run.xero.upsert_batch("Items", [{"Code": p["mft_part_num"], "Name": p["name"][:50]} for p in products],
                          idempotency_key="catalogue")
    for p in products:
        run.mappings.put_mapping(Mapping(tenant_id=run.xero.tenant_id, module="ProductTemplates", xero_id="item",
                                         crm_id=p["product_template_id"], xero_number=p["mft_part_num"]))


def test_products_xero_lacks_are_pushed_before_the_quote_that_uses_them(xero, sugar):
    """Items before documents, as contacts: the catalogue entries the lines name are read from the
    CRM and pushed first, so the invoice lands with its item codes and without a warning."""
    run = Harness(xero, sugar)
    for product in json.loads((FIXTURES / "quote_product_bundles.json").read_text())["records"][0]["products"]:
        sugar.records[("ProductTemplates", product["product_template_id"])] = {
            "id": product["product_template_id"], "name": product["name"], "mft_part_num": product["mft_part_num"],
            "discount_price": product["discount_price"], "tax_class": product["tax_class"]}
    job_id = run.accept_quote(quote())
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "succeeded", job.error
    assert not [w for w in job.warnings if "catalogue" in w], job.warnings
    (invoice,) = run.invoices()
    assert [line["ItemCode"] for line in invoice["LineItems"]] == ["SVC-CHILL-01", "SVC-LIFT-02", "FEE-CERT"]
    assert {item["Code"] for item in xero.get("/Items")["Items"]} == {"SVC-CHILL-01", "SVC-LIFT-02", "FEE-CERT"}
    assert run.mappings.get_mappings(xero.tenant_id, "ProductTemplates", ["pt-cert-fee"])["pt-cert-fee"].xero_number \
        == "FEE-CERT"

    # the next quote finds them mapped: no second read of the catalogue, no second Items call
    sugar.reads.clear()
    run.accept_quote(quote(id="c3d9f0a8-0000-11ef-9a1c-0242ac120002", quote_num=1043))
    sugar.add_quote_lines("c3d9f0a8-0000-11ef-9a1c-0242ac120002",
                          json.loads((FIXTURES / "quote_product_bundles.json").read_text())["records"])
    run.work()
    assert not [read for read in sugar.reads if read.startswith("ProductTemplates/")]


def test_a_product_the_crm_cannot_give_leaves_its_line_without_a_code_and_says_why(xero, sugar):
    run = Harness(xero, sugar)
    job_id = run.accept_quote(quote())
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "succeeded", job.error
    assert any("not in Xero's catalogue yet" in w for w in job.warnings)
    assert any("pt-cert-fee: not read from the CRM's catalogue" in w for w in job.warnings)


def _catalogue_in_crm(sugar: QuoteSugar) -> list[str]:
    """The fixture's three products, readable from the CRM (not yet in Xero). Returns their codes."""
    products = json.loads((FIXTURES / "quote_product_bundles.json").read_text())["records"][0]["products"]
    for product in products:
        sugar.records[("ProductTemplates", product["product_template_id"])] = {
            "id": product["product_template_id"], "name": product["name"], "mft_part_num": product["mft_part_num"],
            "discount_price": product["discount_price"], "tax_class": product["tax_class"]}
    return [p["mft_part_num"] for p in products]


def _count_item_writes(xero: XeroClient) -> list[int]:
    """Counts the Items batch calls the worker makes (one entry per call: its size)."""
    calls: list[int] = []
    upsert = xero.upsert_batch

    def counted(resource, bodies, **kwargs):
        if resource == "Items":
            calls.append(len(bodies))
        return upsert(resource, bodies, **kwargs)

    xero.upsert_batch = counted  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("organisation", ["default", "another"])
def test_missing_items_go_as_journalled_item_jobs_in_one_batch_call(xero, sugar, organisation):
    """One path for every organisation: the products a quote needs are item jobs of their own
    (stamped with the organisation when it is not the default one), pushed by the item worker's
    journalled write in one batch call, each journal entry marked by the item's Code."""
    run = Harness(xero, sugar)
    codes = _catalogue_in_crm(sugar)
    item_calls = _count_item_writes(xero)
    job_id = run.accept_quote(quote())
    run.work(job_tenant=xero.tenant_id if organisation == "another" else None)
    assert run.jobs.jobs[job_id].status == "succeeded", run.jobs.jobs[job_id].error
    assert not [w for w in run.jobs.jobs[job_id].warnings if "catalogue" in w], run.jobs.jobs[job_id].warnings
    assert item_calls == [3]
    item_jobs = [job for job in run.jobs.jobs.values() if job.kind == "item.upsert"]
    assert sorted(job.xero["code"] for job in item_jobs) == sorted(codes)
    assert {job.status for job in item_jobs} == {"succeeded"}
    assert {job.tenant_id for job in item_jobs} == {xero.tenant_id if organisation == "another" else None}
    intents = run.mappings.get_intents(xero.tenant_id, "ProductTemplates",
                                       [job.crm.id for job in item_jobs])
    assert {intent.state for intent in intents.values()} == {"confirmed"}
    assert sorted((intent.marker_field, intent.marker_value) for intent in intents.values()) == sorted(
        ("Code", code) for code in codes)


@pytest.mark.parametrize("organisation", ["default", "another"])
def test_a_worker_killed_after_xero_made_the_items_makes_no_second_item_on_redelivery(organisation, monkeypatch):
    """Killed after Xero answered the item create and before the item mapping was written: the
    redelivered quote finds the journal's unconfirmed intent, looks the item up by its Code and
    adopts it. One Xero item per code, and the invoice's lines carry the codes."""
    from shared.usecases import journal
    from shared.usecases.crash import XERO_ANSWERED, CrashAt, WorkerCrashed

    # SQS redelivers after its visibility timeout, when Xero may have forgotten the
    # Idempotency-Key: the hardest case, so keys expire at once and no identical resend is trusted.
    monkeypatch.setattr(journal, "IDENTICAL_RESEND_SECONDS", 0.0)
    config = EmulatorConfig(idempotency_ttl_seconds=0.0)
    with serve(config=config) as server:
        xero = XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)
        crm = QuoteSugar()
        crm.records[("Accounts", ACCOUNT_ID)] = json.loads((FIXTURES / "account_after_save.json").read_text())["data"]
        crm.add_quote_lines(quote()["id"], json.loads((FIXTURES / "quote_product_bundles.json").read_text())["records"])
        run = Harness(xero, crm)
        codes = _catalogue_in_crm(crm)
        job_id = run.accept_quote(quote())
        messages = list(run.queue.sent)
        tenant = xero.tenant_id if organisation == "another" else None
        crash = CrashAt(XERO_ANSWERED)
        with pytest.raises(WorkerCrashed):
            run.work(job_tenant=tenant, crash=crash)
        assert crash.crashes == 1
        assert sorted(item["Code"] for item in xero.get("/Items")["Items"]) == sorted(codes)  # Xero made them
        assert not run.mappings.get_mappings(xero.tenant_id, "ProductTemplates", ["pt-cert-fee"])  # we never knew

        run.queue.sent[:] = messages  # SQS redelivers the quote
        item_calls = _count_item_writes(xero)
        run.work(job_tenant=tenant)
        # (Xero would also update an item sent again by its Code; the journal found them by Code
        # and stored the answer the dead attempt never stored, sending nothing again.)
        assert item_calls == []

        assert sorted(item["Code"] for item in xero.get("/Items")["Items"]) == sorted(codes)  # none twice
        assert run.jobs.jobs[job_id].status == "succeeded", run.jobs.jobs[job_id].error
        assert not [w for w in run.jobs.jobs[job_id].warnings if "catalogue" in w], run.jobs.jobs[job_id].warnings
        (invoice,) = run.invoices()
        assert [line["ItemCode"] for line in invoice["LineItems"]] == codes
        assert {job.status for job in run.jobs.jobs.values() if job.kind == "item.upsert"} == {"succeeded"}


def test_a_product_whose_code_another_product_holds_leaves_its_line_without_a_code_and_says_why(xero, sugar):
    """The item worker's code-collision rule holds for items pushed for a document too: the
    product's item job fails naming the owner, and the quote's warning carries that reason."""
    from shared.state.records import Mapping

    run = Harness(xero, sugar)
    _catalogue_in_crm(sugar)
    for module, crm_id, number in (("ProductTemplates", "pt-other", "FEE-CERT"),
                                   ("ProductTemplates.Code", "FEE-CERT", "pt-other")):
        run.mappings.put_mapping(Mapping(tenant_id=xero.tenant_id, module=module, crm_id=crm_id,
                                         xero_id="item-of-pt-other", xero_number=number))
    job_id = run.accept_quote(quote())
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "succeeded", job.error
    assert any("FEE-CERT is already used by CRM product pt-other" in w for w in job.warnings), job.warnings
    (invoice,) = run.invoices()
    assert [line.get("ItemCode") for line in invoice["LineItems"]] == ["SVC-CHILL-01", "SVC-LIFT-02", None]


def test_the_accepted_quote_fixture_becomes_one_invoice_to_the_cent(xero, sugar):
    run = Harness(xero, sugar)
    _catalogue(run)
    job_id = run.accept_quote(quote())
    result = run.work()
    assert result.retry == set()
    job = run.jobs.jobs[job_id]
    assert job.status == "succeeded", job.error
    (invoice,) = run.invoices()
    assert (invoice["Total"], invoice["TotalTax"], invoice["SubTotal"]) == tuple(
        map(Decimal, ("13561.08", "1081.08", "12480.00"))
    )
    assert invoice["Type"] == "ACCREC" and invoice["Status"] == "AUTHORISED"
    assert invoice["Reference"] == "Quote 1042 / PO-HV-7781"
    assert [line["TaxType"] for line in invoice["LineItems"]] == ["OUTPUT", "OUTPUT", "EXEMPTOUTPUT"]
    assert [line["ItemCode"] for line in invoice["LineItems"]] == ["SVC-CHILL-01", "SVC-LIFT-02", "FEE-CERT"]
    # the account became a Xero contact first, in the same run, with a job of its own
    (contact,) = list(xero.iter_pages("Contacts"))
    assert invoice["Contact"]["ContactID"] == contact["ContactID"]
    assert contact["ContactNumber"] == ACCOUNT_ID
    assert any(j.kind == "contact.upsert" and j.status == "succeeded" for j in run.jobs.jobs.values())
    # the result is on the quote in the CRM
    written = sugar.records[("Quotes", quote()["id"])]
    assert written["xero_total_c"] == "13561.08" and written["xero_status_c"] == "AUTHORISED"
    assert written["xero_number_c"] == invoice["InvoiceNumber"] and written["xero_sync_status_c"] == "synced"
    assert written["xero_amount_due_c"] == "13561.08" and written["xero_url_c"].startswith("https://")


def test_a_quote_already_invoiced_is_not_invoiced_again(xero, sugar):
    run = Harness(xero, sugar)
    run.accept_quote(quote())
    run.work()
    calls = xero.calls
    second = run.accept_quote(quote(date_modified="2026-11-26T11:00:00+00:00", description="re-saved"))
    run.work()
    assert xero.calls == calls  # nothing sent
    assert len(run.invoices()) == 1
    assert run.jobs.jobs[second].status == "succeeded"
    assert "unchanged" in run.jobs.jobs[second].warnings[0]


def test_a_changed_quote_updates_its_invoice_keeping_line_ids(xero, sugar):
    run = Harness(xero, sugar)
    run.accept_quote(quote())
    run.work()
    (before,) = run.invoices()
    sugar.add_quote_lines(quote()["id"], _thirteen_chiller_visits())
    job_id = run.accept_quote(quote(total="14269.580000", tax="1139.580000",
                                    date_modified="2026-11-27T09:00:00+00:00"))
    run.work()
    assert run.jobs.jobs[job_id].status == "succeeded", run.jobs.jobs[job_id].error
    (after,) = run.invoices()
    assert after["InvoiceID"] == before["InvoiceID"] and after["Total"] == Decimal("14269.58")
    assert [line["LineItemID"] for line in after["LineItems"]] == [line["LineItemID"] for line in before["LineItems"]]


def _pay(xero: XeroClient, invoice: dict[str, Any], amount: str) -> None:
    """A payment applied by hand in Xero."""
    payment = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"},
               "Amount": Decimal(amount), "Date": "2026-11-27"}
    answer = xero._request("PUT", "/api.xro/2.0/Payments", json_body=encode_json({"Payments": [payment]}),
                           idempotency_key=f"pay-{invoice['InvoiceID']}-{amount}")
    assert answer["Payments"][0].get("StatusAttributeString", "OK") != "ERROR", answer


def test_a_document_with_payments_is_not_overwritten_and_the_record_says_why(xero, sugar):
    run = Harness(xero, sugar)
    run.accept_quote(quote())
    run.work()
    (invoice,) = run.invoices()
    _pay(xero, invoice, "1000.00")
    # the connector learns of the payment (webhook or reconcile) before the CRM changes the quote
    mapping = run.mappings.get_mappings(xero.tenant_id, "Quotes#ACCREC", [quote()["id"]])[quote()["id"]]
    mapping.document = {**mapping.document, "amount_paid": "1000.00", "amount_due": "12561.08"}
    sugar.add_quote_lines(quote()["id"], _thirteen_chiller_visits())
    job_id = run.accept_quote(quote(total="14269.580000", date_modified="2026-11-27T09:00:00+00:00"))
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "failed" and "payments applied" in job.error
    (unchanged,) = run.invoices()
    assert unchanged["Total"] == Decimal("13561.08")
    written = sugar.records[("Quotes", quote()["id"])]
    assert written["xero_sync_status_c"] == "failed" and "payments applied" in written["xero_last_error_c"]


def test_a_payment_the_connector_has_not_heard_of_is_reported_from_xeros_answer(xero, sugar):
    run = Harness(xero, sugar)
    run.accept_quote(quote())
    run.work()
    (invoice,) = run.invoices()
    _pay(xero, invoice, "10.00")
    sugar.add_quote_lines(quote()["id"], _thirteen_chiller_visits())
    job_id = run.accept_quote(quote(total="14269.580000", date_modified="2026-11-27T09:00:00+00:00"))
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "failed" and job.error.startswith("Xero:")
    assert run.invoices()[0]["Total"] == Decimal("13561.08")


@pytest.mark.parametrize(("status", "ends_as"), [("DRAFT", "DELETED"), ("AUTHORISED", "VOIDED")])
def test_a_deleted_quote_ends_its_invoice_the_way_xero_allows(xero, sugar, status, ends_as):
    run = Harness(xero, sugar, MappingConfig(invoices=InvoiceRules(sales_status=status)))
    run.accept_quote(quote())
    run.work()
    job_id = run.accept_quote(quote(deleted=True), event="after_delete")
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "succeeded", job.error
    (invoice,) = run.invoices()
    assert invoice["Status"] == ends_as
    assert sugar.records[("Quotes", quote()["id"])]["xero_status_c"] == ends_as


def test_a_paid_invoice_cancelled_in_the_crm_is_credited_once(xero, sugar):
    run = Harness(xero, sugar)
    run.accept_quote(quote())
    run.work()
    (invoice,) = run.invoices()
    _pay(xero, invoice, "561.08")
    mapping = run.mappings.get_mappings(xero.tenant_id, "Quotes#ACCREC", [quote()["id"]])[quote()["id"]]
    mapping.document = {**mapping.document, "amount_paid": "561.08", "amount_due": "13000.00"}
    job_id = run.accept_quote(quote(deleted=True), event="after_delete")
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "succeeded", job.error
    assert any("credit note" in w for w in job.warnings)
    notes = xero.get("CreditNotes")["CreditNotes"]
    assert len(notes) == 1 and notes[0]["Total"] == Decimal("13561.08") and notes[0]["Type"] == "ACCRECCREDIT"
    # a repeat of the cancellation raises nothing more
    run.accept_quote(quote(deleted=True, date_modified="2026-11-28T00:00:00+00:00"), event="after_delete")
    run.work()
    assert len(xero.get("CreditNotes")["CreditNotes"]) == 1


def test_cancelling_a_quote_never_pushed_is_ignored(xero, sugar):
    run = Harness(xero, sugar)
    job_id = run.accept_quote(quote(), event="after_delete")
    run.work()
    assert run.jobs.jobs[job_id].status == "ignored"
    assert run.invoices() == []


def test_a_quote_not_at_the_stage_is_ignored_with_the_reason(xero, sugar):
    run = Harness(xero, sugar)
    job_id = run.accept_quote(quote(quote_stage="Negotiation"))
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "ignored" and "Negotiation" in job.warnings[0]
    assert sugar.reads == []


def test_a_purchase_becomes_a_bill_to_an_inline_supplier(xero, sugar):
    run = Harness(xero, sugar)
    bill = PurchaseDocument.model_validate(PurchaseDocument.model_config["json_schema_extra"]["examples"][0])
    job_id = run.accept_document(bill)
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "succeeded", job.error
    (created,) = run.invoices()
    assert created["Type"] == "ACCPAY" and created["Status"] == "SUBMITTED"
    assert created["Total"] == 27250.0 and created["InvoiceNumber"] == "Commission 14 Harbour Road"
    (supplier,) = list(xero.iter_pages("Contacts"))
    assert supplier["Name"] == "Tan Realty Agency"
    assert ("Property_Sales", "ps-1187") not in sugar.records  # write_back false


def test_the_configured_rounding_policy_settles_a_crm_that_taxes_the_total(xero, sugar):
    # Xero taxes each line: 7 × round(0.35 × 9%) = 7 × 0.03 = 0.21; a CRM taxing the total
    # gets round(2.45 × 9%) = 0.22, so its total is 2.67 where Xero's would be 2.66
    lines = [LineDocument(crm_id=f"l{n}", description=f"seat {n}", unit_amount=Decimal("0.35"), tax_type="OUTPUT")
             for n in range(7)]
    doc = SalesInvoiceDocument(crm_module="Bookings", crm_id="b-1", contact=ContactRef(crm_id=ACCOUNT_ID),
                               lines=lines, expected_total=Decimal("2.67"))
    run = Harness(xero, sugar)
    job_id = run.accept_document(doc)
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "succeeded" and any("Rounding line of +0.01" in w for w in job.warnings), job.warnings
    (invoice,) = run.invoices()
    assert invoice["Total"] == Decimal("2.67")

    warn = Harness(xero, sugar, MappingConfig(invoices=InvoiceRules(rounding=RoundingRules(policy="warn"))))
    job_id = warn.accept_document(doc.model_copy(update={"crm_id": "b-2"}))
    warn.work()
    job = warn.jobs.jobs[job_id]
    assert job.status == "succeeded" and any("per-line tax rounding" in w for w in job.warnings)
    assert sugar.records[("Bookings", "b-2")]["xero_sync_status_c"] == "warning"


def test_a_difference_beyond_rounding_fails_before_anything_is_sent(xero, sugar):
    doc = SalesInvoiceDocument(crm_module="Bookings", crm_id="b-9", contact=ContactRef(crm_id=ACCOUNT_ID),
                               lines=[LineDocument(unit_amount=Decimal("100"), tax_type="OUTPUT")],
                               expected_total=Decimal("100.00"))
    run = Harness(xero, sugar)
    job_id = run.accept_document(doc)
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "failed" and "more than rounding can explain" in job.error
    assert run.invoices() == []


def test_unknown_references_are_refused_before_anything_is_sent(xero, sugar):
    doc = SalesInvoiceDocument(crm_module="Bookings", crm_id="b-3", contact=ContactRef(crm_id=ACCOUNT_ID),
                               lines=[LineDocument(unit_amount=Decimal("10"), account_code="999")])
    run = Harness(xero, sugar)
    job_id = run.accept_document(doc)
    run.work(check_references=lambda body: [f"account code {line['AccountCode']} is not in Xero"
                                            for line in body["LineItems"] if line["AccountCode"] == "999"])
    assert run.jobs.jobs[job_id].status == "failed"
    assert "account code 999" in run.jobs.jobs[job_id].error
    assert run.invoices() == []


def test_many_documents_cost_one_call_per_fifty_plus_their_contacts(xero, sugar):
    run = Harness(xero, sugar)
    for n in range(60):
        account = f"acc-{n % 12}"
        sugar.records[("Accounts", account)] = {"id": account, "name": f"Customer {n % 12}"}
        run.accept_document(SalesInvoiceDocument(
            crm_module="Memberships", crm_id=f"m-{n}", contact=ContactRef(crm_id=account),
            lines=[LineDocument(description="membership", unit_amount=Decimal("480"), tax_type="OUTPUT")]))
    before = xero.calls
    result = run.work()
    assert xero.calls - before == 1 + 2  # one contacts call for 12 accounts, two invoice calls for 60
    assert result.retry == set()
    assert all(j.status == "succeeded" for j in run.jobs.jobs.values()), [j.error for j in run.jobs.jobs.values()]
    assert len(run.invoices()) == 60


def test_sugar_down_while_reading_lines_keeps_the_quote_queued(xero, sugar):
    from shared.sugar.errors import SugarUnavailable

    run = Harness(xero, sugar)
    sugar.down = SugarUnavailable("maintenance", status=503, retryable=True)
    job_id = run.accept_quote(quote())
    result = run.work()
    assert result.retry == {"m0"} and run.jobs.jobs[job_id].status == "queued"
    assert run.invoices() == []


def test_mapping_module_names_the_target():
    assert document_module("Quotes", "ACCREC") == "Quotes#ACCREC"


def test_a_quote_sent_to_the_customer_follows_its_stage_as_a_xero_quote(xero, sugar):
    run = Harness(xero, sugar, MappingConfig(invoices=InvoiceRules(xero_quotes=True)))
    sent = run.accept_quote(quote(quote_stage="Delivered", date_modified="2026-11-20T00:00:00+00:00"))
    run.work()
    assert run.jobs.jobs[sent].status == "succeeded", run.jobs.jobs[sent].error
    (xero_quote,) = xero.get("Quotes")["Quotes"]
    assert xero_quote["Status"] == "SENT" and xero_quote["Total"] == Decimal("13561.08")
    assert run.invoices() == []
    accepted = run.accept_quote(quote())
    run.work()
    assert run.jobs.jobs[accepted].status == "succeeded", run.jobs.jobs[accepted].error
    (xero_quote,) = xero.get("Quotes")["Quotes"]
    assert xero_quote["Status"] == "ACCEPTED"
    assert len(run.invoices()) == 1


def test_a_purchase_can_go_to_xero_as_a_purchase_order(xero, sugar):
    run = Harness(xero, sugar, MappingConfig(invoices=InvoiceRules(purchases_as="purchase_order")))
    order = PurchaseDocument.model_validate(PurchaseDocument.model_config["json_schema_extra"]["examples"][0])
    job_id = run.accept_document(order)
    run.work()
    job = run.jobs.jobs[job_id]
    assert job.status == "succeeded", job.error
    (created,) = xero.get("PurchaseOrders")["PurchaseOrders"]
    assert created["Total"] == 27250.0 and created["Reference"] == "Commission 14 Harbour Road"
    assert job.xero["type"] == "PURCHASEORDER" and job.xero["number"] == created["PurchaseOrderNumber"]
    assert run.invoices() == []


def test_a_state_a_webhook_stored_while_the_push_was_in_flight_is_never_moved_back(xero, sugar):
    run = Harness(xero, sugar)
    run.accept_quote(quote())
    run.work()
    quote_id = quote()["id"]
    sugar.add_quote_lines(quote_id, _thirteen_chiller_visits())
    real_upsert = xero.upsert_batch

    def upsert_then_webhook(resource, bodies, **kwargs):
        answers = real_upsert(resource, bodies, **kwargs)
        mapping = run.mappings.get_mappings(xero.tenant_id, "Quotes#ACCREC", [quote_id])[quote_id]
        mapping.document = {**mapping.document, "status": "PAID", "updated_utc": "2099-01-01T00:00:00.000+00:00"}
        return answers

    xero.upsert_batch = upsert_then_webhook
    run.accept_quote(quote(total="14269.580000", date_modified="2026-11-27T09:00:00+00:00"))
    run.work()
    stored = run.mappings.get_mappings(xero.tenant_id, "Quotes#ACCREC", [quote_id])[quote_id].document
    assert stored["status"] == "PAID" and stored["updated_utc"].startswith("2099")


def test_the_customer_pushed_first_has_a_job_whose_payload_is_the_bare_document(xero, sugar):
    """As accept() stores it: a replay of that job sends a document the contact worker reads."""
    from shared.usecases import contacts
    from shared.usecases.redrive import redrive_job

    run = Harness(xero, sugar)
    _catalogue(run)
    run.accept_quote(quote())
    run.work()
    (job_id,) = [j for j, job in run.jobs.jobs.items() if job.kind == contacts.KIND]
    payload = run.jobs.payloads[job_id]
    assert payload["crm_module"] == "Accounts" and payload["crm_id"] == ACCOUNT_ID
    assert "document" not in payload and "job_id" not in payload
    assert run.jobs.jobs[job_id].tenant_id is None
    replayed = FakeQueue()
    assert redrive_job(job_id, jobs=run.jobs, queues={"contact": replayed}, force=True).sent
    (message,) = replayed.sent
    assert message == {"job_id": job_id, "kind": contacts.KIND, "document": payload}


def test_for_another_organisation_the_customer_job_is_stamped_with_it_and_not_written_back(xero, sugar):
    """The CRM's xero_* fields name the default organisation's contact; a push to another
    organisation keeps its own job (salted id, tenant id) and leaves them alone."""
    from shared.usecases import contacts

    run = Harness(xero, sugar)
    _catalogue(run)
    run.accept_quote(quote())
    run.work(job_tenant=xero.tenant_id)
    (job_id,) = [j for j, job in run.jobs.jobs.items() if job.kind == contacts.KIND]
    assert run.jobs.jobs[job_id].tenant_id == xero.tenant_id and run.jobs.jobs[job_id].status == "succeeded"
    assert "document" not in run.jobs.payloads[job_id]
    assert not [u for module, u in sugar.calls if module == "Accounts"]
    (contact,) = list(xero.iter_pages("Contacts"))
    assert run.mappings.get_mappings(xero.tenant_id, "Accounts", [ACCOUNT_ID])[ACCOUNT_ID].xero_id == \
        contact["ContactID"]


class FillingSugar(QuoteSugar):
    """The quote reads as above; the Xero Invoices module's upserts go to the Sugar double over
    loopback HTTP (``PATCH /v11_10/<module>/sync_key/<id>`` inside ``/bulk``)."""

    def __init__(self, client) -> None:
        super().__init__()
        self.client = client

    def bulk(self, requests):
        return self.client.bulk(requests)


@pytest.fixture
def filling_sugar():
    from shared.sugar import SugarClient
    from shared.sugar.invoice_module import installed_vardefs
    from sugar_xero.local.sugar_double import SugarDouble, SugarDoubleServer
    from tests.integration.test_invoice_records import Tokens

    double = SugarDouble()
    double.install_fields(installed_vardefs())
    server = SugarDoubleServer(double)
    crm = FillingSugar(SugarClient(server.url, "xero-connector", "local-sugar-password", "xero_connector", Tokens(),
                                   sleep=lambda s: None))
    crm.records[("Accounts", ACCOUNT_ID)] = json.loads((FIXTURES / "account_after_save.json").read_text())["data"]
    crm.add_quote_lines(quote()["id"], json.loads((FIXTURES / "quote_product_bundles.json").read_text())["records"])
    yield double, crm
    server.shutdown()


def test_the_connectors_own_push_fills_the_xero_invoices_module_at_once(xero, filling_sugar):
    """Not only through the later webhook or reconcile: the record is there when the push ends,
    related to the quote and the Account, and writing it again (a redelivery, the webhook) keeps
    one record."""
    from shared.sugar.invoice_module import MODULE
    from shared.usecases.invoice_records import fill_invoice_records

    double, crm = filling_sugar
    config = MappingConfig.model_validate({"xero_invoices": {"enabled": True}})
    run = Harness(xero, crm, config)
    _catalogue(run)
    run.accept_quote(quote())
    run.work()
    (invoice,) = run.invoices()
    (record,) = double.store.records.get(MODULE, {}).values()
    assert record["sync_key"] == invoice["InvoiceID"] and record["xero_id"] == invoice["InvoiceID"]
    assert record["invoice_number"] == invoice["InvoiceNumber"] and record["total"] == "13561.08"
    assert record["parent_type"] == "Quotes" and record["parent_id"] == quote()["id"]
    assert record["account_id"] == ACCOUNT_ID and record["xero_tenant_id"] == xero.tenant_id
    assert [line["item_code"] for line in json.loads(record["lines_json"])] == ["SVC-CHILL-01", "SVC-LIFT-02",
                                                                              "FEE-CERT"]
    # the webhook's later fill of the same invoice is the same upsert by Xero id: still one record
    fill_invoice_records("Invoices", [invoice], tenant_id=xero.tenant_id, crm=crm, mappings=run.mappings,
                         config=config)
    assert len(double.store.records[MODULE]) == 1


def test_without_the_module_enabled_the_push_writes_no_invoice_records(xero, filling_sugar):
    from shared.sugar.invoice_module import MODULE

    double, crm = filling_sugar
    run = Harness(xero, crm)
    _catalogue(run)
    run.accept_quote(quote())
    run.work()
    assert len(run.invoices()) == 1 and not double.store.records.get(MODULE)
