"""Text longer than Xero allows is accepted, cut at a word boundary for Xero, and the CRM user
is told: the job succeeds with a warning, and the record's sync status and last error say it.
Only what can never be pushed (no name at all) is a 4xx."""

from __future__ import annotations

import json

import pytest

from shared import wiring
from shared.config import LOCAL_SECRET_DEFAULTS
from shared.mapping.text import cut_at_word, fit
from shared.models.documents import ItemDocument
from shared.models.invoices import SalesInvoiceDocument
from tests.support.events import FakeLambdaContext, api_event, sqs_event
from tests.support.fakes import FakeSugar, FakeXero

TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
LONG_NAME = "Harbour View Properties " * 15  # 360 characters, Xero takes 255


@pytest.fixture
def handler(aws):
    from functions.contact_sync import app

    return app.lambda_handler


def call(handler, event):
    answer = handler(event, FakeLambdaContext())
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None


def test_an_account_name_over_255_is_pushed_cut_and_the_crm_record_is_told(handler, aws, monkeypatch):
    hook = {"bean": "Account", "event": "after_save", "isUpdate": True,
            "data": {"id": "acc-long-1", "name": LONG_NAME, "date_modified": "2026-12-01T10:00:00+00:00"}}
    status, accepted = call(handler, api_event("POST", "/crm/contacts", body=hook, query={"token": TOKEN}))
    assert status == 202, accepted

    xero, sugar = FakeXero(), FakeSugar()
    monkeypatch.setenv("SUGAR_BASE_URL", "http://127.0.0.1:9")
    wiring.reset()
    monkeypatch.setattr(wiring, "xero_client", lambda: xero)
    monkeypatch.setattr(wiring, "sugar_client", lambda: sugar)
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10)["Messages"]
    assert handler(sqs_event([json.loads(m["Body"]) for m in messages]), FakeLambdaContext()) == \
        {"batchItemFailures": []}

    (contact,) = xero.contacts.values()
    assert len(contact["Name"]) <= 255 and LONG_NAME.startswith(contact["Name"])
    assert not contact["Name"].endswith(" ") and LONG_NAME[len(contact["Name"])] == " "  # a word boundary
    job = wiring.job_store().get_job(accepted["job_id"])
    assert job.status == "succeeded"
    assert any(f"the name was {len(LONG_NAME.strip())} characters; Xero takes 255" in w for w in job.warnings)
    (written,) = [fields for module, updates in sugar.calls for record_id, fields in updates.items()
                  if module == "Accounts" and record_id == "acc-long-1"]
    assert written["xero_sync_status_c"] == "warning" and "Xero takes 255" in written["xero_last_error_c"]


# An Account with no name field at all is a Data Privacy erasure (tests/integration/test_sugar_bodies.py), not
# bad input; a name given empty or blank can never be pushed.
@pytest.mark.parametrize("data", [{"id": "acc-2", "name": ""}, {"id": "acc-2", "name": "  "},
                                  {"id": "../x", "name": "Acme"}])
def test_what_can_never_be_pushed_is_still_a_4xx(handler, aws, data):
    hook = {"bean": "Account", "event": "after_save", "data": data}
    status, answer = call(handler, api_event("POST", "/crm/contacts", body=hook, query={"token": TOKEN}))
    assert status == 422 and answer["error"]


def test_documents_cut_their_text_once_and_keep_the_notes_through_the_queue():
    document = SalesInvoiceDocument(crm_module="Quotes", crm_id="q-1", contact={"crm_id": "acc-1"},
                                    reference="Ref " * 100, lines=[{"description": "word " * 1000, "unit_amount": "1"}])
    assert len(document.reference) <= 255 and len(document.lines[0].description) <= 4000
    assert len(document.truncated) == 2
    again = SalesInvoiceDocument.model_validate(json.loads(document.model_dump_json()))
    assert again.truncated == document.truncated and again.reference == document.reference
    item = ItemDocument(crm_id="pt-1", name="Lift inspection and certification " * 3, code="SVC-" + "X" * 40)
    assert len(item.name) <= 50 and len(item.code) <= 30 and item.code.endswith(item.code[-8:])
    assert [n.split(" ")[1] for n in item.truncated] == ["name", "code"]


def test_cutting_happens_at_a_word_boundary_near_the_limit():
    notes: list[str] = []
    assert fit("short", 10, "x", notes) == "short" and notes == []
    assert fit("alpha beta gamma delta", 12, "the name", notes) == "alpha beta"
    assert notes == ["the name was 22 characters; Xero takes 12, so it was cut"]
    assert cut_at_word("x" * 60, 50) == "x" * 50  # no boundary near: cut at the limit
    assert cut_at_word("a " + "b" * 60, 50) == "a " + "b" * 48  # the only space is too far back
