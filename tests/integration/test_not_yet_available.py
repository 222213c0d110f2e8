"""Routes of the contract whose work lands later answer 501 in the JSON error shape."""

import json

import pytest

from shared.config import LOCAL_SECRET_DEFAULTS
from tests.support.events import FakeLambdaContext, api_event


@pytest.mark.parametrize("path", ["/crm/quotes", "/crm/invoices", "/crm/purchases"])
def test_later_routes_answer_501_json(aws, path):
    from functions.invoice_push import app

    answer = app.lambda_handler(api_event("POST", path, body={}, query={"token": LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]}),
                                FakeLambdaContext())
    assert answer["statusCode"] == 501
    body = json.loads(answer["body"])
    assert body["error"] == "not_implemented" and "not available" in body["message"]
