"""The Tracer is Powertools' own where X-Ray can record (Lambda), and a stand-in elsewhere, so that
a handler's import does not pay for the X-Ray SDK and botocore (cold-start benchmark)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared import observability

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("environment,active", [
    ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
    ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
    ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"}, False),
    ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
    ({}, False),
])
def test_tracing_is_active_only_in_lambda_and_not_disabled(monkeypatch, environment, active):
    for name in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert observability.tracing_active() is active


def test_the_stand_in_decorators_return_the_function_itself():
    stand_in = observability.DisabledTracer()

    def handler(event, context):
        return {"event": event}

    assert stand_in.capture_lambda_handler(handler) is handler
    assert stand_in.capture_lambda_handler(capture_response=False)(handler) is handler
    assert stand_in.capture_method(handler) is handler
    assert stand_in.capture_method(capture_response=False)(handler) is handler
    stand_in.put_annotation("job_id", "x")
    stand_in.put_metadata("job", {"a": 1})


def _modules_after_import(environment: dict[str, str]) -> set[str]:
    probe = ("import sys, functions.payment_webhook.app as app, shared.observability as o; "
             "print(type(o.tracer).__name__); print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "eu-west-1", **environment})
    tracer_type, modules = out.stdout.strip().splitlines()[-2:]
    return {tracer_type, *modules.split()}


def test_a_handler_import_outside_lambda_loads_no_xray_sdk():
    loaded = _modules_after_import({"POWERTOOLS_TRACE_DISABLED": "1"})
    assert "DisabledTracer" in loaded
    assert not any(name.startswith("aws_xray_sdk") for name in loaded)


def test_in_lambda_the_handler_is_traced_by_powertools():
    loaded = _modules_after_import({"LAMBDA_TASK_ROOT": str(REPO), "AWS_REGION": "eu-west-1"})
    assert "Tracer" in loaded
    assert "aws_xray_sdk.core" in loaded
