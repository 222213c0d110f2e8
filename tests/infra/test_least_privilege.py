"""Least privilege, read from the template as CloudFormation receives it (the SAM transform
expanded with samtranslator, the SAM CLI's own translator): every function has its own role; no
SQS, DynamoDB, Secrets Manager or KMS action on ``*``; only reconcile scans; the
internet-facing webhook/OAuth function reads only what it uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sugar_xero.local.template import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.yaml"
CHECKED_SERVICES = ("sqs:", "dynamodb:", "secretsmanager:", "kms:")
FUNCTIONS = ("ContactSyncFunction", "InvoicePushFunction", "PaymentWebhookFunction", "ReconcileFunction")


class _NoManagedPolicies:
    """samtranslator asks IAM for managed policy ARNs only for names it must look up."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def expanded() -> dict[str, Any]:
    import os

    from samtranslator.translator.transform import transform

    saved = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = saved or "eu-west-1"  # the transform asks boto3 for a region
    try:
        template = load_template(TEMPLATE)
        for resource in template["Resources"].values():  # what `sam package` puts there
            properties = resource.get("Properties") or {}
            for uri in ("CodeUri", "ContentUri"):
                if isinstance(properties.get(uri), str):
                    properties[uri] = "s3://packaged/code.zip"
        return transform(template, {}, _NoManagedPolicies())
    finally:
        if saved is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in resource["Properties"].get("Policies") or []:
        found += _as_list(policy["PolicyDocument"]["Statement"])
    return found


def _roles(expanded: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in expanded["Resources"].items() if r["Type"] == "AWS::IAM::Role"}


def test_no_checked_action_applies_to_every_resource(expanded):
    problems = []
    for lid, role in _roles(expanded).items():
        for statement in _statements(role):
            actions = [a.lower() for a in _as_list(statement.get("Action"))]
            if statement.get("Effect") == "Allow" and "*" in _as_list(statement.get("Resource")) and any(
                    a == "*" or a.startswith(CHECKED_SERVICES) for a in actions):
                problems.append(f"{lid}: {actions} on *")
        for arn in role["Properties"].get("ManagedPolicyArns") or []:
            # AWS's managed policies grant on "*"; the one allowed (API Gateway's account-wide
            # logging role) touches only CloudWatch Logs.
            if "AmazonAPIGatewayPushToCloudWatchLogs" not in str(arn):
                problems.append(f"{lid}: managed policy {arn} (grants on every queue or table)")
    assert not problems, problems


def test_each_function_has_its_own_role(expanded):
    resources = expanded["Resources"]
    roles = [resources[name]["Properties"]["Role"] for name in FUNCTIONS]
    assert all(isinstance(r, dict) and "Fn::GetAtt" in r for r in roles)
    assert len({r["Fn::GetAtt"][0] for r in roles}) == len(FUNCTIONS)


def _actions_of(expanded: dict[str, Any], function: str) -> dict[str, list[Any]]:
    role_id = expanded["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    granted: dict[str, list[Any]] = {}
    for statement in _statements(expanded["Resources"][role_id]):
        for action in _as_list(statement["Action"]):
            granted.setdefault(action, []).extend(_as_list(statement["Resource"]))
    return granted


def test_only_reconcile_scans_and_the_internet_facing_function_least_of_all(expanded):
    for function in FUNCTIONS:
        granted = _actions_of(expanded, function)
        assert ("dynamodb:Scan" in granted) == (function == "ReconcileFunction"), function
        assert granted["kms:Decrypt"] == [{"Fn::GetAtt": ["TokenKey", "Arn"]}]
        assert granted["secretsmanager:GetSecretValue"] == [{"Ref": "ConnectorSecret"}]
    webhook = _actions_of(expanded, "PaymentWebhookFunction")
    assert webhook["sqs:ReceiveMessage"] == [{"Fn::GetAtt": ["PaymentWebhookQueue", "Arn"]}]
    assert {r["Fn::GetAtt"][0] for r in webhook["sqs:SendMessage"]} == {"PaymentWebhookQueue", "InvoicePushQueue"}


def test_each_worker_consumes_only_its_own_queue(expanded):
    own = {"ContactSyncFunction": "ContactSyncQueue", "InvoicePushFunction": "InvoicePushQueue",
           "PaymentWebhookFunction": "PaymentWebhookQueue", "ReconcileFunction": "ReconcileQueue"}
    for function, queue in own.items():
        granted = _actions_of(expanded, function)
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
            assert granted[action] == [{"Fn::GetAtt": [queue, "Arn"]}], (function, action)


def test_the_unused_idempotency_table_is_gone(expanded):
    assert "IdempotencyTable" not in expanded["Resources"]
    assert not any("IdempotencyTable" in str(r) for r in expanded["Resources"].values())


@pytest.mark.parametrize("name", ["contact_sync", "invoice_push", "payment_webhook", "reconcile"])
def test_the_tracer_never_records_a_handlers_answer(name):
    """/xero/connect's Location carries a live OAuth state and job answers carry CRM data."""
    import ast

    source = (TEMPLATE.parents[1] / "functions" / name / "app.py").read_text()
    [handler] = [n for n in ast.walk(ast.parse(source))
                 if isinstance(n, ast.FunctionDef) and n.name == "lambda_handler"]
    traced = [d for d in handler.decorator_list if isinstance(d, ast.Call)
              and getattr(d.func, "attr", "") == "capture_lambda_handler"]
    assert traced and any(k.arg == "capture_response" and k.value.value is False for k in traced[0].keywords)
