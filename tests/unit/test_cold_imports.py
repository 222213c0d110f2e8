"""What a handler's import leaves for later: a cold start pays for every module imported and every
model built before the first event, so what the first events do not need stays out (the cold
start row of `make bench` measures the effect; these say where it comes from).

Each check runs in a fresh interpreter, as a new Lambda container does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HANDLERS = ("contact_sync", "invoice_push", "payment_webhook", "reconcile")


def _fresh_import(module: str) -> dict[str, object]:
    script = (f"import json, sys\nimport {module}\n"
              "print(json.dumps({'modules': sorted(sys.modules)}))")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_handler_import_builds_no_powertools_parser_models(handler):
    """Powertools Batch builds its Parser models for type hints when pydantic is loaded before
    it; every handler imports ``shared.api.sqs`` (and so Batch) first."""
    modules = _fresh_import(f"functions.{handler}.app")["modules"]
    assert "aws_lambda_powertools.utilities.batch" in modules
    assert not [m for m in modules if m.startswith("aws_lambda_powertools.utilities.parser")]


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_handler_import_leaves_aws_and_http_clients_to_the_first_event(handler):
    modules = _fresh_import(f"functions.{handler}.app")["modules"]
    assert "boto3" not in modules
    assert "aws_xray_sdk" not in modules  # tracing is off outside Lambda: no X-Ray SDK at all


def test_models_not_on_the_first_events_path_are_built_on_first_use():
    script = ("import json\nimport functions.contact_sync.app\n"
              "from shared.models.invoices import SalesInvoiceDocument\n"
              "from shared.xero.webhooks import WebhookEvent\n"
              "print(json.dumps({'built': [SalesInvoiceDocument.__pydantic_complete__, "
              "WebhookEvent.__pydantic_complete__]}))")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1])["built"] == [False, False]
