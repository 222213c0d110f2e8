"""invoice_push's /crm/quotes, /crm/invoices and /crm/purchases in-process under moto: callouts
in as API Gateway events, bad input refused with nothing stored or queued, and the SQS worker
path through the handler against the Xero emulator."""

from __future__ import annotations

import json

import pytest

from shared.config import LOCAL_SECRET_DEFAULTS
from shared.models.invoices import PurchaseDocument, SalesInvoiceDocument
from tests.integration.test_invoice_push_products import call, get_job, queued
from tests.support.events import FakeLambdaContext, api_event, sqs_event

TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]


@pytest.fixture
def handler(invoice_push_handler):
    return invoice_push_handler


def _jobs_in_table(aws) -> list[dict]:
    table = aws["dynamodb"].Table("sync-test")
    return [i for i in table.scan()["Items"] if str(i["PK"]).startswith("JOB#")]


def test_an_accepted_quote_is_queued_once(handler, aws, invoice_queue, fixture_body):
    hook = fixture_body("sugar/quote_closed_accepted.json")
    status, body = call(handler, api_event("POST", "/crm/quotes", body=hook, query={"token": TOKEN}))
    assert status == 202, body
    status, repeat = call(handler, api_event("POST", "/crm/quotes", body=hook, query={"token": TOKEN}))
    assert status == 202 and repeat["job_id"] == body["job_id"] and repeat["duplicate"] is True
    (message,) = queued(aws, invoice_queue)
    assert message["kind"] == "quote.push" and message["document"]["quote"]["quote_num"] == 1042
    assert message["document"]["quote"]["total"] == "13561.080000"


def test_a_quote_not_at_the_stage_answers_200_ignored_with_the_reason(handler, aws, invoice_queue, fixture_body):
    hook = fixture_body("sugar/quote_closed_accepted.json")
    hook["data"]["quote_stage"] = "Negotiation"
    status, body = call(handler, api_event("POST", "/crm/quotes", body=hook, query={"token": TOKEN}))
    assert status == 200 and body["status"] == "ignored" and "Negotiation" in body["reason"]
    assert queued(aws, invoice_queue) == [] and _jobs_in_table(aws) == []


def test_the_connectors_own_write_back_on_a_quote_is_ignored(handler, aws, invoice_queue, fixture_body):
    hook = fixture_body("sugar/quote_closed_accepted.json")
    hook["dataChanges"] = {"xero_status_c": {"field_name": "xero_status_c", "before": "", "after": "AUTHORISED"}}
    status, body = call(handler, api_event("POST", "/crm/quotes", body=hook, query={"token": TOKEN}))
    assert status == 200 and body["status"] == "ignored"
    assert queued(aws, invoice_queue) == []


def test_a_deleted_quote_is_queued_as_a_cancellation(handler, aws, invoice_queue, fixture_body):
    hook = fixture_body("sugar/quote_closed_accepted.json")
    hook["event"] = "after_delete"
    status, _ = call(handler, api_event("POST", "/crm/quotes", body=hook, query={"token": TOKEN}))
    assert status == 202
    (message,) = queued(aws, invoice_queue)
    assert message["document"]["event"] == "after_delete"


@pytest.mark.parametrize(("path", "model"), [("/crm/invoices", SalesInvoiceDocument),
                                             ("/crm/purchases", PurchaseDocument)])
def test_own_documents_are_accepted(handler, aws, invoice_queue, path, model):
    example = model.model_config["json_schema_extra"]["examples"][0]
    status, body = call(handler, api_event("POST", path, body=example, query={"token": TOKEN}))
    assert status == 202, body
    (message,) = queued(aws, invoice_queue)
    assert message["kind"] == "document.push" and message["document"]["kind"] == example["kind"]


@pytest.mark.parametrize(("path", "change", "where"), [
    ("/crm/invoices", {"lines": []}, "lines"),
    ("/crm/invoices", {"lines": [{"unit_amount": "ten"}]}, "unit_amount"),
    ("/crm/invoices", {"lines": [{"unit_amount": "1.00001"}]}, "unit_amount"),
    ("/crm/invoices", {"contact": {}}, "contact"),
    ("/crm/invoices", {"kind": "purchase"}, "kind"),
    ("/crm/invoices", {"currency": "dollars"}, "currency"),
    ("/crm/invoices", {"date": "2027-02-01", "due_date": "2027-01-01"}, "due_date"),
    ("/crm/purchases", {"lines": [{"unit_amount": "10", "discount_rate": "5"}]}, "discounts"),
    ("/crm/invoices", {"surprise": 1}, "surprise"),
])
def test_bad_documents_get_a_422_naming_the_problem_and_nothing_is_stored(handler, aws, invoice_queue, path,
                                                                          change, where):
    model = SalesInvoiceDocument if path == "/crm/invoices" else PurchaseDocument
    body = {**model.model_config["json_schema_extra"]["examples"][0], **change}
    status, answer = call(handler, api_event("POST", path, body=body, query={"token": TOKEN}))
    assert status == 422, answer
    assert answer["error"] and where in json.dumps(answer)
    assert queued(aws, invoice_queue) == [] and _jobs_in_table(aws) == []


def test_a_quote_hook_of_another_module_or_without_a_stage_is_refused(handler, aws, invoice_queue, fixture_body):
    hook = fixture_body("sugar/quote_closed_accepted.json")
    del hook["data"]["quote_stage"]
    status, answer = call(handler, api_event("POST", "/crm/quotes", body=hook, query={"token": TOKEN}))
    assert status == 422 and "quote_stage" in json.dumps(answer)
    status, _ = call(handler, api_event("POST", "/crm/quotes", body={**hook, "bean": "Account"},
                                        query={"token": TOKEN}))
    assert status == 422
    assert queued(aws, invoice_queue) == [] and _jobs_in_table(aws) == []


def test_documents_need_the_crm_credential(handler, aws, invoice_queue):
    example = SalesInvoiceDocument.model_config["json_schema_extra"]["examples"][0]
    answer = handler(api_event("POST", "/crm/invoices", body=example), FakeLambdaContext())
    assert answer["statusCode"] == 401
    assert queued(aws, invoice_queue) == []


def test_the_worker_pushes_an_invoice_document_through_the_handler(handler, aws, invoice_queue, monkeypatch):
    from sugar_xero.local.xero_emulator import EmulatorConfig, serve

    config = EmulatorConfig()
    with serve(config=config) as server:
        monkeypatch.setenv("XERO_API_BASE_URL", server.url)
        monkeypatch.setenv("XERO_TENANT_ID", config.tenant_id)
        from shared import wiring
        from shared.xero.client import XeroClient

        wiring.reset()
        monkeypatch.setattr(wiring, "xero_client", lambda: XeroClient(server.url, config.tenant_id,
                                                                       lambda force: "token", sleep=lambda s: None))
        document = {"kind": "sales", "crm_module": "Memberships", "crm_id": "m-1",
                    "contact": {"contact": {"crm_id": "acc-1", "name": "Harbour View Properties Pte Ltd"}},
                    "lines": [{"description": "Annual membership", "unit_amount": "480.00", "tax_type": "OUTPUT",
                               "tax_rate": "9"}], "expected_total": "523.20"}
        status, accepted = call(handler, api_event("POST", "/crm/invoices", body=document, query={"token": TOKEN}))
        assert status == 202
        (message,) = queued(aws, invoice_queue)
        answer = handler(sqs_event([message]), FakeLambdaContext())
        assert answer["batchItemFailures"] == []
        status, job = get_job(handler, accepted["job_id"])
        assert job["status"] == "succeeded", job
        assert job["xero"]["total"] == "523.20" and job["xero"]["type"] == "ACCREC"


@pytest.mark.parametrize("module", ["Users", "Employees", "Bookings"])
def test_a_document_for_a_module_the_configuration_does_not_name_is_refused(handler, aws, invoice_queue,
                                                                            module):
    # Write-back lands on the module the document names: never on one nobody configured.
    body = {**SalesInvoiceDocument.model_config["json_schema_extra"]["examples"][0], "crm_module": module}
    status, answer = call(handler, api_event("POST", "/crm/invoices", body=body, query={"token": TOKEN}))
    assert status == 422 and answer["error"] == "unknown_module" and "write_back.modules" in answer["message"]
    assert queued(aws, invoice_queue) == [] and _jobs_in_table(aws) == []


@pytest.mark.parametrize("crm_id", ["..", ".", "../Users/1", "a/b"])
def test_a_document_whose_id_is_no_id_is_refused(handler, aws, invoice_queue, crm_id):
    body = {**SalesInvoiceDocument.model_config["json_schema_extra"]["examples"][0], "crm_id": crm_id}
    status, _ = call(handler, api_event("POST", "/crm/invoices", body=body, query={"token": TOKEN}))
    assert status == 422
    assert queued(aws, invoice_queue) == [] and _jobs_in_table(aws) == []
