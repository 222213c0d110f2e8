"""The SAM template (infra/template.yaml) against what the code and the public contract expect:
routes, queues, tables, secret, schedule, build wiring, and cfn-lint with the serverless rules."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint, lint_file
from cfnlint.config import ManualArgs
from cfnlint.decode import decode
from packaging.requirements import Requirement

from shared.config import Settings
from shared.secrets import SECRET_NAMES
from shared.state.dynamo import XERO_ID_INDEX

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TEMPLATE_PATH = INFRA / "template.yaml"
API_CONTRACT = Path(REPO.parent / "shared" / "design" / "api-contract.md")

# Contract name of a function (api-contract.md, functions/<name>/) -> logical id in the template.
FUNCTIONS = {
    "contact_sync": "ContactSyncFunction",
    "invoice_push": "InvoicePushFunction",
    "payment_webhook": "PaymentWebhookFunction",
    "reconcile": "ReconcileFunction",
}
QUEUES = {  # function logical id -> (work queue, its dead-letter queue)
    "ContactSyncFunction": ("ContactSyncQueue", "ContactSyncDLQ"),
    "InvoicePushFunction": ("InvoicePushQueue", "InvoicePushDLQ"),
    "PaymentWebhookFunction": ("PaymentWebhookQueue", "PaymentWebhookDLQ"),
    "ReconcileFunction": ("ReconcileQueue", "ReconcileDLQ"),
}
# Routes the contract leaves to "any" function, and where this template puts them.
SHARED_ROUTES = {("GET", "/jobs/{job_id}"): "ContactSyncFunction", ("GET", "/health"): "ContactSyncFunction"}
LINT_CONFIG = ManualArgs(append_rules=["cfn_lint_serverless.rules"])


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, errors = decode(str(TEMPLATE_PATH))
    assert not errors, errors
    return json.loads(json.dumps(decoded))  # plain dicts and strings, without cfn-lint's node types


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def function_property(template: dict[str, Any], logical_id: str, name: str) -> Any:
    """A function's effective property: its own, else the Globals one."""
    own = template["Resources"][logical_id]["Properties"]
    return own[name] if name in own else template["Globals"]["Function"][name]


def declared_routes(resources: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    routes: dict[tuple[str, str], list[str]] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "Api":
                assert event["Properties"]["RestApiId"] == {"Ref": "ConnectorApi"}, logical_id
                key = (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
                routes.setdefault(key, []).append(logical_id)
    return routes


def contract_routes() -> dict[tuple[str, str], str]:
    """(method, path) -> the function column of the contract's HTTP table."""
    text = API_CONTRACT.read_text()
    table = text.split("## HTTP API", 1)[1].split("\n### ", 1)[0]
    routes: dict[tuple[str, str], str] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`", cells[0]):
            routes[(method, path)] = cells[1]
    assert len(routes) >= 10, f"could not read the HTTP table of {API_CONTRACT}: {routes}"
    return routes


# ------------------------------------------------------------------ lint


@pytest.mark.slow
def test_cfn_lint_with_serverless_rules_finds_no_error_or_warning():
    matches = lint_file(TEMPLATE_PATH, config=LINT_CONFIG)
    problems = [f"{m.rule.id} {m.rule.severity} line {m.linenumber}: {m.message}" for m in matches
                if m.rule.severity in ("error", "warning")]
    assert problems == []


@pytest.mark.slow
def test_the_serverless_rules_are_really_loaded():
    # Without this, a misspelt rules module would make the lint test pass on any template.
    bare = ("Transform: AWS::Serverless-2016-10-31\nResources:\n  F:\n    Type: AWS::Serverless::Function\n"
            "    Properties:\n      Runtime: python3.13\n      Handler: app.h\n      CodeUri: s3://b/k\n")
    found = {m.rule.id for m in lint(bare, config=LINT_CONFIG)}
    assert {"WS1000", "ES1005", "ES1006", "WS1004"} <= found


# ------------------------------------------------------------------ routes


def test_every_contract_route_is_declared_once_on_its_function(resources):
    declared = declared_routes(resources)
    for (method, path), owner in contract_routes().items():
        assert len(declared.get((method, path), [])) == 1, f"{method} {path}: {declared.get((method, path))}"
        [function] = declared[(method, path)]
        named = [FUNCTIONS[name] for name in FUNCTIONS if re.search(rf"\b{name}\b", owner)]
        if owner.strip() == "any":
            assert function == SHARED_ROUTES[(method, path)]
        else:
            assert named, f"no known function in the contract's column {owner!r}"
            assert function == named[0], f"{method} {path} goes to {function}, the contract says {owner!r}"


def test_no_route_outside_the_contract(resources):
    assert set(declared_routes(resources)) <= set(contract_routes())


def test_each_function_serves_the_routes_the_api_sends_it(resources):
    """API Gateway must never forward a path to a function whose resolver answers 404."""
    import importlib

    served_by: dict[str, set[tuple[str, str]]] = {}
    for (method, path), [function] in declared_routes(resources).items():
        served_by.setdefault(function, set()).add((method, path))
    for name, logical_id in FUNCTIONS.items():
        if logical_id not in served_by:
            continue
        module = importlib.import_module(f"functions.{name}.app")
        # The resolver's own route table, matched the way it matches a request at run time.
        registered = module.app._static_routes + module.app._dynamic_routes
        missing = {(method, path) for method, path in served_by[logical_id]
                   if not any(route.method == method and route.rule.match(re.sub(r"\{\w+\}", "x1", path))
                              for route in registered)}
        assert not missing, f"{logical_id} does not serve {missing}"


def test_api_stage_has_throttling_tracing_and_structured_access_logs(resources):
    api = resources["ConnectorApi"]
    assert api["Type"] == "AWS::Serverless::Api"
    props = api["Properties"]
    assert props["TracingEnabled"] is True
    [default] = [s for s in props["MethodSettings"] if s["ResourcePath"] == "/*" and s["HttpMethod"] == "*"]
    assert {"ThrottlingBurstLimit", "ThrottlingRateLimit"} <= set(default)
    access_log = props["AccessLogSetting"]
    assert access_log["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    json.loads(re.sub(r"\$context\.[A-Za-z.]+", "x", access_log["Format"]))


# ------------------------------------------------------------------ functions and build


@pytest.mark.parametrize("name,logical_id", sorted(FUNCTIONS.items()))
def test_function_runs_its_own_folder_on_python_313_with_the_layer(template, resources, name, logical_id):
    function = resources[logical_id]
    assert function["Type"] == "AWS::Serverless::Function"
    assert function_property(template, logical_id, "Runtime") == "python3.13"
    assert function_property(template, logical_id, "Architectures") == ["x86_64"]
    assert function_property(template, logical_id, "Tracing") == "Active"
    assert function_property(template, logical_id, "Layers") == [{"Ref": "SharedLayer"}]
    handler = function_property(template, logical_id, "Handler")
    assert handler == "app.lambda_handler"
    code_uri = function["Properties"]["CodeUri"]
    assert (INFRA / code_uri).resolve() == REPO / "functions" / name
    source = (INFRA / code_uri / "app.py").read_text()
    assert re.search(r"^def lambda_handler\(", source, re.M)
    assert function["Metadata"]["BuildMethod"] == "makefile"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_handler_module_imports_nothing_from_functions(name):
    """In Lambda only the function's own folder and the layer's shared/ are on the path."""
    tree = ast.parse((REPO / "functions" / name / "app.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in functions/{name}/app.py"
            imported.add(node.module or "")
    assert not {m for m in imported if m == "functions" or m.startswith("functions.")}


def test_layer_is_one_makefile_build_of_shared(resources):
    layer = resources["SharedLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert (INFRA / layer["Properties"]["ContentUri"]).resolve() == REPO / "shared"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    layers = [k for k, v in resources.items() if v["Type"] == "AWS::Serverless::LayerVersion"]
    assert layers == ["SharedLayer"]


def test_makefile_has_a_target_for_every_makefile_build(resources):
    makefile = (INFRA / "Makefile").read_text()
    targets = {t for line in re.findall(r"^([\w\- ]+):(?!=)", makefile, re.M) for t in line.split()}
    built = [k for k, v in resources.items() if v.get("Metadata", {}).get("BuildMethod") == "makefile"]
    assert len(built) == 5
    for logical_id in built:
        assert resources[logical_id]["Metadata"]["ContextPath"] == "."  # the Makefile beside the template
        assert f"build-{logical_id}" in targets
    layer_recipe = makefile.split("build-SharedLayer:", 1)[1]
    for flag in ("--platform manylinux2014_x86_64", "--implementation cp", "--python-version 3.13",
                 "--only-binary=:all:"):
        assert flag in makefile
    assert '--target "$(ARTIFACTS_DIR)/python"' in layer_recipe
    assert "$(ARTIFACTS_DIR)/python/shared" in layer_recipe


def test_lambda_requirements_pin_every_runtime_dependency_within_pyproject_ranges():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = {Requirement(r).name.lower(): Requirement(r) for r in pyproject["project"]["dependencies"]}
    pinned = {}
    for line in (INFRA / "requirements-lambda.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            [spec] = requirement.specifier
            assert spec.operator == "==", f"{line}: pin an exact version"
            pinned[requirement.name.lower()] = (requirement, spec.version)
    assert set(wanted) <= set(pinned)
    for name, requirement in wanted.items():
        pinned_requirement, version = pinned[name]
        assert requirement.specifier.contains(version), f"{name}=={version} is outside {requirement}"
        assert requirement.extras <= pinned_requirement.extras, f"{name} lacks extras {requirement.extras}"


def test_environment_names_are_those_the_code_reads(template):
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    settings_names = {name.upper() for name in Settings.model_fields}
    powertools = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL",
                  "POWERTOOLS_TRACER_CAPTURE_RESPONSE", "PYDANTIC_DISABLE_PLUGINS"}
    assert set(variables) - powertools <= settings_names, "a variable that Settings never reads"
    # X-Ray never records a handler's answer (a Location with a live OAuth state, job data).
    assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
    assert variables["PYDANTIC_DISABLE_PLUGINS"] == "__all__"  # cold start: no entry-point scan
    assert variables["PAYLOAD_BUCKET"] == {"Ref": "PayloadBucket"}
    assert variables["TOKEN_KEY_ID"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}
    assert {"SYNC_TABLE", "CONTACT_QUEUE_URL", "INVOICE_QUEUE_URL", "WEBHOOK_QUEUE_URL",
            "RECONCILE_QUEUE_URL", "SECRETS_ARN", "XERO_API_BASE_URL", "XERO_IDENTITY_URL",
            "SUGAR_BASE_URL"} | powertools <= set(variables)
    assert variables["POWERTOOLS_SERVICE_NAME"] == "sugar-xero"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "SugarXero"
    assert variables["SYNC_TABLE"] == {"Ref": "SyncTable"}
    assert variables["CONTACT_QUEUE_URL"] == {"Ref": "ContactSyncQueue"}
    assert variables["SECRETS_ARN"] == {"Ref": "ConnectorSecret"}
    parameters = template["Parameters"]
    assert parameters["XeroApiBaseUrl"]["Default"] == Settings().xero_api_base_url
    assert parameters["XeroIdentityUrl"]["Default"] == Settings().xero_identity_url
    assert variables["SUGAR_BASE_URL"] == {"Ref": "SugarBaseUrl"}


@pytest.mark.parametrize("logical_id", sorted(QUEUES))
def test_function_reads_its_queue_in_batches_with_partial_failures(template, resources, logical_id):
    queue_id, dlq_id = QUEUES[logical_id]
    [work] = [e["Properties"] for e in resources[logical_id]["Properties"]["Events"].values()
              if e["Type"] == "SQS"]
    assert work["Queue"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    if logical_id == "ReconcileFunction":  # a message is one organisation's whole pass
        assert work["BatchSize"] == 1 and "MaximumBatchingWindowInSeconds" not in work
    else:
        # Lambda's rule: a BatchSize above 10 needs a window of at least 1 s (up to 300)
        assert 1 <= work["BatchSize"] <= 10 or 1 <= work["MaximumBatchingWindowInSeconds"] <= 300
    assert work["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert work["ScalingConfig"]["MaximumConcurrency"] >= 2  # Lambda's least; few workers per organisation

    queue = resources[queue_id]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    assert 1 <= queue["RedrivePolicy"]["maxReceiveCount"] <= 20
    assert queue["VisibilityTimeout"] >= 6 * function_property(template, logical_id, "Timeout")
    assert resources[dlq_id]["Type"] == "AWS::SQS::Queue"
    assert resources[dlq_id]["Properties"]["MessageRetentionPeriod"] == 1209600


@pytest.mark.parametrize("logical_id", sorted(QUEUES))
def test_function_has_its_own_role_scoped_to_its_resources(resources, logical_id):
    """One explicit role per function (SAM's generated roles would add AWSLambdaSQSQueueExecutionRole,
    receive and delete on every queue); tests/infra/test_least_privilege.py reads the expansion."""
    props = resources[logical_id]["Properties"]
    assert "Policies" not in props
    role_id = props["Role"]["Fn::GetAtt"][0]
    role = resources[role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    statements = {s["Sid"]: s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]}
    assert statements["OwnQueue"]["Resource"] == {"Fn::GetAtt": [QUEUES[logical_id][0], "Arn"]}
    assert "sqs:ChangeMessageVisibility" in statements["OwnQueue"]["Action"]  # deferring needs it
    assert statements["Secret"]["Resource"] == {"Ref": "ConnectorSecret"}
    assert statements["SealTokens"]["Resource"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}
    assert sorted(statements["SealTokens"]["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert {"Fn::GetAtt": ["SyncTable", "Arn"]} in statements["SyncTable"]["Resource"]


@pytest.mark.parametrize("logical_id", sorted(QUEUES))
def test_dead_letter_queue_has_an_alarm(resources, logical_id):
    dlq_id = QUEUES[logical_id][1]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
              and r["Properties"].get("Dimensions") == [{"Name": "QueueName",
                                                        "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]]
    assert len(alarms) == 1
    assert alarms[0]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarms[0]["Threshold"] == 0 and alarms[0]["ComparisonOperator"] == "GreaterThanThreshold"


@pytest.mark.parametrize("logical_id", sorted(QUEUES))
def test_function_has_a_log_group_with_retention(resources, logical_id):
    groups = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"
              and r["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{logical_id}}}"}]
    assert len(groups) == 1
    assert groups[0]["RetentionInDays"] >= 7


# ------------------------------------------------------------------ state, secret, schedule


def test_sync_table_has_the_keys_index_and_ttl_the_state_adapter_uses(resources):
    table = resources["SyncTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "PK", "KeyType": "HASH"},
                                  {"AttributeName": "SK", "KeyType": "RANGE"}]
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert types == {"PK": "S", "SK": "S", "xero_id": "S"}
    [index] = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == XERO_ID_INDEX
    assert index["KeySchema"] == [{"AttributeName": "xero_id", "KeyType": "HASH"}]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # The attribute the adapter writes for TTL.
    assert '"expires_at"' in (REPO / "shared" / "state" / "dynamo.py").read_text()
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}


def test_the_unused_idempotency_table_is_removed(template, resources):
    # No code used it (a job is its own idempotency record); IDEMPOTENCY_TABLE stays a reserved,
    # documented name (README changelog), read by Settings and set by no one.
    assert "IdempotencyTable" not in resources
    assert "IDEMPOTENCY_TABLE" not in template["Globals"]["Function"]["Environment"]["Variables"]


def test_payload_bucket_is_private_encrypted_tls_only_and_expires(resources):
    props = resources["PayloadBucket"]["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    [rule] = props["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["Prefix"] == "payloads/" and rule["ExpirationInDays"] > 30
    [statement] = resources["PayloadBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_token_key_rotates_and_is_kept(resources):
    key = resources["TokenKey"]
    assert key["Properties"]["EnableKeyRotation"] is True and key["DeletionPolicy"] == "Retain"


def test_crm_routes_have_their_own_throttles_and_waf_is_optional(template, resources):
    settings = resources["ConnectorApi"]["Properties"]["MethodSettings"]
    crm = {s["ResourcePath"]: s for s in settings if s["ResourcePath"].startswith("/~1crm~1")}
    assert set(crm) == {f"/~1crm~1{r}" for r in ("contacts", "products", "quotes", "invoices", "purchases")}
    assert all(s["ThrottlingRateLimit"] == {"Ref": "CrmThrottlingRateLimit"} for s in crm.values())
    onboarding = [s for s in settings if s["ResourcePath"].startswith("/~1xero~1c")]
    assert len(onboarding) == 2 and all(s["ThrottlingRateLimit"] <= 1 for s in onboarding)
    assert template["Parameters"]["EnableWafRateLimit"]["Default"] == "false"
    acl = resources["ApiWebAcl"]
    assert acl["Condition"] == "UseWafRateLimit" and resources["ApiWebAclAssociation"]["Condition"] == "UseWafRateLimit"
    [rule] = acl["Properties"]["Rules"]
    assert rule["Statement"]["RateBasedStatement"]["Limit"] == {"Ref": "WafRateLimitPer5Minutes"}


def test_secret_holds_exactly_the_names_the_code_reads(resources):
    secret = resources["ConnectorSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    generate = secret["Properties"]["GenerateSecretString"]
    keys = set(json.loads(generate["SecretStringTemplate"])) | {generate["GenerateStringKey"]}
    assert keys == set(SECRET_NAMES)
    assert generate["GenerateStringKey"] == "CRM_TOKEN"
    assert generate["PasswordLength"] >= 32


def test_reconcile_schedule_every_15_minutes_with_retries_and_dlq(resources):
    schedule = resources["ReconcileSchedule"]
    assert schedule["Type"] == "AWS::Scheduler::Schedule"
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == "rate(15 minutes)"
    target = props["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["ReconcileFunction", "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["ReconcileDLQ", "Arn"]}
    json.loads(target["Input"])
    role = resources[target["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert {"Effect": "Allow", "Action": "lambda:InvokeFunction",
            "Resource": {"Fn::GetAtt": ["ReconcileFunction", "Arn"]}} in statements
    assert {"Effect": "Allow", "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["ReconcileDLQ", "Arn"]}} in statements


def test_outputs_give_the_urls_an_operator_registers(template):
    outputs = template["Outputs"]
    api_url = outputs["ApiUrl"]["Value"]["Fn::Sub"]
    assert api_url.startswith("https://${ConnectorApi}.execute-api.${AWS::Region}.")
    assert api_url.endswith("/${StageName}")
    assert outputs["WebhookUrl"]["Value"]["Fn::Sub"] == api_url + "/xero/webhooks"
    assert outputs["CrmContactsUrl"]["Value"]["Fn::Sub"] == api_url + "/crm/contacts"
    for name in ("SyncTableName", "ContactSyncQueueUrl", "InvoicePushQueueUrl",
                 "PaymentWebhookQueueUrl", "ReconcileQueueUrl", "ConnectorSecretArn"):
        assert name in outputs


# ------------------------------------------------------------------ observability


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def _dashboard(resources: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body as CloudFormation would render it, ``${...}`` replaced by placeholders."""
    [dashboard] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = dashboard["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    references = set(re.findall(r"\$\{([^}]+)\}", body))
    for reference in references:  # each names a resource, a resource attribute or a parameter
        name = reference.split(".", 1)[0]
        assert name in resources or name.startswith("AWS::") or name in {"StageName"}, reference
    return json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", body))


def _dashboard_metrics(body: dict[str, Any]) -> list[list[Any]]:
    return [m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]


def test_metric_namespace_is_one_everywhere(template):
    from shared.observability import METRICS_NAMESPACE

    assert template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] \
        == METRICS_NAMESPACE


def test_the_dashboard_shows_every_connector_metric_queue_dlq_function_and_the_api(resources):
    from shared.observability import METRICS_NAMESPACE, SERVICE, MetricNames

    metrics = _dashboard_metrics(_dashboard(resources))
    own = {m[1] for m in metrics if m[0] == METRICS_NAMESPACE}
    names = {v for k, v in vars(MetricNames).items() if k.isupper()}
    assert names <= own, f"not on the dashboard: {names - own}"
    for m in metrics:
        if m[0] == METRICS_NAMESPACE:  # Powertools' one default dimension, as the functions emit it
            assert m[2:4] == ["service", SERVICE], m
    depths = {m[3] for m in metrics if m[:2] == ["AWS/SQS", "ApproximateNumberOfMessagesVisible"]}
    for queue_id, dlq_id in QUEUES.values():
        assert {f"<{queue_id}.QueueName>", f"<{dlq_id}.QueueName>"} <= depths
    for logical_id in FUNCTIONS.values():
        for name in ("Errors", "Duration"):
            assert ["AWS/Lambda", name, "FunctionName", f"<{logical_id}>"] in [m[:4] for m in metrics], \
                (name, logical_id)
    api = {m[1] for m in metrics if m[0] == "AWS/ApiGateway" and m[2:6] == ["ApiName", "<AWS::StackName>",
                                                                          "Stage", "<StageName>"]}
    assert {"4XXError", "5XXError"} <= api


def test_the_metrics_the_code_emits_today_are_spelled_as_the_dashboard_reads_them():
    from shared.observability import MetricNames

    emitted = set()
    for folder in ("shared", "functions"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            emitted |= set(re.findall(r"add_metric\(\s*name=\"(\w+)\"", text))
            emitted |= {getattr(MetricNames, n) for n in re.findall(r"name=MetricNames\.(\w+)", text)}
    # Emitted before the dashboard existed: a rename on either side breaks the dashboard silently.
    assert {MetricNames.TOKEN_REFRESHES, MetricNames.CONNECTION_DISCONNECTED, MetricNames.CALLOUTS_ACCEPTED,
            MetricNames.WEBHOOK_EVENTS_QUEUED, MetricNames.WEBHOOK_SIGNATURE_REJECTED,
            MetricNames.BATCHES_DEFERRED_NO_CONNECTION} <= emitted


def _notifies_the_optional_topic(alarm: dict[str, Any]) -> bool:
    action = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    return alarm.get("AlarmActions") == action and alarm.get("OKActions") == action


def test_every_alarm_notifies_the_optional_sns_topic(template, resources):
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert template["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    alarms = _alarms(resources)
    assert len(alarms) >= 11
    assert [k for k, a in alarms.items() if not _notifies_the_optional_topic(a)] == []


@pytest.mark.parametrize("logical_id", sorted(QUEUES))
def test_each_function_has_an_error_rate_alarm(resources, logical_id):
    found = []
    for alarm in _alarms(resources).values():
        queries = {q["Id"]: q for q in alarm.get("Metrics", [])}
        stats = [q["MetricStat"]["Metric"] for q in queries.values() if "MetricStat" in q]
        if {"Namespace": "AWS/Lambda", "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": logical_id}}]} in stats and \
                {"Namespace": "AWS/Lambda", "MetricName": "Invocations",
                 "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": logical_id}}]} in stats:
            [expression] = [q["Expression"] for q in queries.values() if q.get("ReturnData")]
            found.append((expression, alarm))
    assert len(found) == 1
    expression, alarm = found[0]
    assert re.fullmatch(r"100 \* FILL\(errors, 0\) / MAX\(\[FILL\(invocations, 0\), 1\]\)", expression)
    assert alarm["Threshold"] == {"Ref": "FunctionErrorRatePercent"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_a_disconnected_organisation_raises_an_alarm(resources):
    from shared.observability import METRICS_NAMESPACE, SERVICE, MetricNames

    matching = [a for a in _alarms(resources).values()
                if a.get("MetricName") == MetricNames.CONNECTION_DISCONNECTED]
    assert len(matching) == 1
    [alarm] = matching
    assert alarm["Namespace"] == METRICS_NAMESPACE
    assert alarm["Dimensions"] == [{"Name": "service", "Value": SERVICE}]
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Statistic"] == "Sum"


def test_a_failed_reconcile_raises_an_alarm(resources):
    from shared.observability import METRICS_NAMESPACE, SERVICE, MetricNames

    matching = []
    for alarm in _alarms(resources).values():
        stats = [q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q]
        if any(s["MetricName"] == MetricNames.RECONCILE_FAILED for s in stats):
            matching.append((alarm, stats))
    assert len(matching) == 1
    alarm, stats = matching[0]
    assert {"Namespace": METRICS_NAMESPACE, "MetricName": MetricNames.RECONCILE_FAILED,
            "Dimensions": [{"Name": "service", "Value": SERVICE}]} in stats
    assert {"Namespace": "AWS/Lambda", "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "ReconcileFunction"}}]} in stats
    [returned] = [q for q in alarm["Metrics"] if q.get("ReturnData")]
    assert returned["Expression"] == "FILL(reported, 0) + FILL(errors, 0)"
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_the_dashboard_url_is_an_output(template):
    assert "${ConnectorDashboard}" in template["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]


@pytest.mark.parametrize("logical_id", ["ContactSyncFunction", "InvoicePushFunction"])
def test_document_workers_are_invoked_at_once_and_gather_themselves(resources, logical_id):
    """No batching window (Lambda allows none only for a BatchSize of 10 or less): a lone save is
    not held; the worker gathers up to Xero's 50 by the organisation's headroom (shared/batching.py)."""
    [work] = [e["Properties"] for e in resources[logical_id]["Properties"]["Events"].values() if e["Type"] == "SQS"]
    assert (work["BatchSize"], work["MaximumBatchingWindowInSeconds"]) == (10, 0)


def test_the_local_poller_mirrors_the_templates_event_source_settings():
    from sugar_xero.local.template import StackTemplate, default_template_path

    subscriptions = {s.function: s for s in StackTemplate(default_template_path()).queue_subscriptions()}
    contact = subscriptions["ContactSyncFunction"]
    assert (contact.batch_size, contact.batching_window_seconds, contact.maximum_concurrency) == (10, 0.0, 2)
