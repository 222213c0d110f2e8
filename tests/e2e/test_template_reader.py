"""Reading the SAM template and creating its tables, queues and secret on a moto server."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import boto3
import pytest

from sugar_xero.local.aws_resources import create_resources, handler_environment
from sugar_xero.local.template import Resolver, StackTemplate, TemplateError, Unresolved, load_template

REPO = Path(__file__).resolve().parents[2]

SMALL_TEMPLATE = """\
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
  Flag: {Type: String, Default: "yes"}
Conditions:
  IsYes: !Equals [!Ref Flag, "yes"]
Globals:
  Function:
    Handler: app.lambda_handler
    Timeout: 7
    Environment:
      Variables:
        WORK_QUEUE_URL: !Ref WorkQueue
        SYNC_TABLE: !Ref Table
        STAGE_NAME: !Sub "${Stage}-${AWS::Region}"
        PICKED: !If [IsYes, picked, other]
        SECRETS_ARN: !Ref Secret
        API_URL: !Sub "https://${Api}.example"
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../functions/contact_sync/
      MemorySize: 256
      Events:
        Get: {Type: Api, Properties: {Path: "/things/{thing_id}", Method: get}}
        Work:
          Type: SQS
          Properties: {Queue: !GetAtt WorkQueue.Arn, BatchSize: 25, MaximumBatchingWindowInSeconds: 2,
                       FunctionResponseTypes: [ReportBatchItemFailures]}
        Tick: {Type: ScheduleV2, Properties: {ScheduleExpression: rate(2 minutes)}}
  Api: {Type: AWS::Serverless::Api, Properties: {StageName: !Ref Stage}}
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-work"
      VisibilityTimeout: 42
      SqsManagedSseEnabled: true
      RedrivePolicy: {deadLetterTargetArn: !GetAtt WorkDLQ.Arn, maxReceiveCount: 3}
  WorkDLQ: {Type: AWS::SQS::Queue, Properties: {MessageRetentionPeriod: 1209600}}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PROVISIONED
      ProvisionedThroughput: {ReadCapacityUnits: 1, WriteCapacityUnits: 1}
      AttributeDefinitions: [{AttributeName: PK, AttributeType: S}, {AttributeName: g, AttributeType: S}]
      KeySchema: [{AttributeName: PK, KeyType: HASH}]
      GlobalSecondaryIndexes:
        - IndexName: by-g
          KeySchema: [{AttributeName: g, KeyType: HASH}]
          Projection: {ProjectionType: ALL}
          ProvisionedThroughput: {ReadCapacityUnits: 1, WriteCapacityUnits: 1}
      TimeToLiveSpecification: {AttributeName: ttl_at, Enabled: true}
  Secret: {Type: AWS::SecretsManager::Secret, Properties: {GenerateSecretString: {PasswordLength: 10}}}
  NotLocal: {Type: AWS::SQS::Queue, Condition: NeverCondition}
"""


@pytest.fixture
def small_template(tmp_path):
    (tmp_path / "infra").mkdir()
    (tmp_path / "functions" / "contact_sync").mkdir(parents=True)
    (tmp_path / "functions" / "contact_sync" / "app.py").write_text(
        "def lambda_handler(e, c):\n    return e\n"
    )
    path = tmp_path / "infra" / "template.yaml"
    path.write_text(
        SMALL_TEMPLATE.replace("Condition: NeverCondition", "Condition: IsNo").replace(
            '  IsYes: !Equals [!Ref Flag, "yes"]',
            '  IsYes: !Equals [!Ref Flag, "yes"]\n  IsNo: !Not [!Condition IsYes]',
        )
    )
    return StackTemplate(path)


@pytest.fixture(scope="module")
def moto_server_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_url(moto_server_url):
    """The moto server, emptied: each test creates the template's resources afresh."""
    import requests

    requests.post(f"{moto_server_url}/moto-api/reset", timeout=10).raise_for_status()
    return moto_server_url


def test_short_tags_become_intrinsics_and_dates_stay_strings(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent("""\
        AWSTemplateFormatVersion: 2010-09-09
        Resources:
          A: {Type: X, Properties: {R: !Ref B, G: !GetAtt B.Arn, S: !Sub "x-${B}", J: !Join [",", [a, b]]}}
    """)
    )
    document = load_template(path)
    assert document["AWSTemplateFormatVersion"] == "2010-09-09"
    props = document["Resources"]["A"]["Properties"]
    assert props == {
        "R": {"Ref": "B"},
        "G": {"Fn::GetAtt": ["B", "Arn"]},
        "S": {"Fn::Sub": "x-${B}"},
        "J": {"Fn::Join": [",", ["a", "b"]]},
    }


def test_resolver_handles_sub_if_select_split_and_no_value():
    template = {
        "Parameters": {"P": {"Default": "v"}},
        "Conditions": {"C": {"Fn::Equals": [{"Ref": "P"}, "v"]}},
        "Resources": {},
    }
    resolver = Resolver(template, region="eu-west-1")
    resolver.refs["Q"] = "http://q"
    assert (
        resolver.resolve({"Fn::Sub": "${P}/${AWS::Region}/${Q}/${!Literal}"})
        == "v/eu-west-1/http://q/${Literal}"
    )
    assert resolver.resolve({"Fn::Sub": ["${X}-${P}", {"X": {"Ref": "Q"}}]}) == "http://q-v"
    assert resolver.resolve({"Fn::If": ["C", "yes", "no"]}) == "yes"
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    assert resolver.resolve({"A": {"Ref": "AWS::NoValue"}, "B": 1}) == {"B": 1}
    with pytest.raises(Unresolved):
        resolver.resolve({"Fn::GetAtt": ["Missing", "Arn"]})


def test_functions_routes_queues_and_schedules_come_from_the_template(small_template):
    functions = small_template.functions()
    spec = functions["Fn"]
    assert (spec.module, spec.attribute, spec.memory_mb, spec.timeout_seconds) == (
        "functions.contact_sync.app",
        "lambda_handler",
        256,
        7,
    )
    routes = small_template.api_routes()
    assert [(r.function, r.path, r.method) for r in routes] == [("Fn", "/things/{thing_id}", "GET")]
    [subscription] = small_template.queue_subscriptions()
    assert (
        subscription.queue,
        subscription.batch_size,
        subscription.batching_window_seconds,
        subscription.report_batch_item_failures,
        subscription.maximum_concurrency,
    ) == ("WorkQueue", 25, 2.0, True, 1)  # no ScalingConfig: one poller locally
    [schedule] = small_template.schedules()
    assert (schedule.function, schedule.every_seconds) == ("Fn", 120)


def test_a_handler_that_does_not_exist_is_a_template_error(tmp_path):
    (tmp_path / "infra").mkdir()
    path = tmp_path / "infra" / "template.yaml"
    path.write_text(
        "Resources:\n  F: {Type: AWS::Serverless::Function, Properties: "
        "{CodeUri: ../nowhere/, Handler: app.lambda_handler}}\n"
    )
    with pytest.raises(TemplateError, match="not found"):
        StackTemplate(path).functions()


def test_resources_are_created_from_their_properties(small_template, moto_url):
    aws = create_resources(small_template, moto_url, region="eu-west-1", environ={"CRM_TOKEN": "from-env"})
    assert set(aws.queues) == {"WorkQueue", "WorkDLQ"}  # NotLocal's condition is false
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="eu-west-1")
    sqs = session.client("sqs", endpoint_url=moto_url)
    work = aws.queues["WorkQueue"]
    assert work["name"] == "sugar-xero-local-work"
    attributes = sqs.get_queue_attributes(QueueUrl=work["url"], AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "42"
    policy = json.loads(attributes["RedrivePolicy"])
    assert (
        policy["deadLetterTargetArn"] == aws.queues["WorkDLQ"]["arn"] and int(policy["maxReceiveCount"]) == 3
    )

    dynamodb = session.client("dynamodb", endpoint_url=moto_url)
    table = dynamodb.describe_table(TableName=aws.tables["Table"])["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "by-g"
    ttl = dynamodb.describe_time_to_live(TableName=aws.tables["Table"])["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl_at"}

    secret = session.client("secretsmanager", endpoint_url=moto_url).get_secret_value(
        SecretId=aws.secrets["Secret"]
    )
    assert json.loads(secret["SecretString"])["CRM_TOKEN"] == "from-env"

    env = handler_environment(small_template, aws)
    assert env.resources["WORK_QUEUE_URL"] == work["url"]
    assert env.resources["WORK_DLQ_URL"] == aws.queues["WorkDLQ"]["url"]
    assert env.resources["SYNC_TABLE"] == aws.tables["Table"]
    assert env.resources["AWS_ENDPOINT_URL"] == moto_url
    assert env.template_values["STAGE_NAME"] == "dev-eu-west-1" and env.template_values["PICKED"] == "picked"
    everything = {**env.resources, **env.template_values}
    assert "SECRETS_ARN" not in everything  # local secrets come from the environment
    assert "API_URL" not in everything  # names the deployed API, which does not exist locally


def test_the_project_template_builds_locally(moto_url):
    template = StackTemplate(REPO / "infra" / "template.yaml")
    aws = create_resources(template, moto_url, region="eu-west-1")
    env = handler_environment(template, aws).resources
    for name in (
        "SYNC_TABLE",
        "CONTACT_QUEUE_URL",
        "INVOICE_QUEUE_URL",
        "WEBHOOK_QUEUE_URL",
        "RECONCILE_QUEUE_URL",
        "CONTACT_DLQ_URL",
        "INVOICE_DLQ_URL",
        "WEBHOOK_DLQ_URL",
        "RECONCILE_DLQ_URL",
        "PAYLOAD_BUCKET",
        "TOKEN_KEY_ID",
    ):
        assert env.get(name), name
    routes = {(r.method, r.path) for r in template.api_routes()}
    assert {("POST", "/crm/contacts"), ("GET", "/jobs/{job_id}"), ("GET", "/health")} <= routes
    assert {s.function for s in template.queue_subscriptions()} == set(template.functions())
    assert any(s.every_seconds for s in template.schedules())


def test_local_urls_win_over_the_templates_defaults_and_the_shell_wins_over_both(moto_url, monkeypatch):
    from sugar_xero.local.stack import LocalStack, StackOptions

    shell = {
        "SUGAR_BASE_URL": "http://127.0.0.1:9/proxy",
        "SECRETS_ARN": "arn:real",
        "AWS_PROFILE": "prod",
        "SYNC_TABLE": "real-table",
        "LOG_LEVEL": "DEBUG",
    }
    template = StackTemplate(REPO / "infra" / "template.yaml")
    aws = create_resources(template, moto_url, region="eu-west-1")
    monkeypatch.setattr(os, "environ", dict(shell))
    stack = LocalStack(StackOptions())
    stack.template, stack.aws = template, aws
    stack.urls = {
        "xero": "http://127.0.0.1:1",
        "sugar": "http://127.0.0.1:2",
        "gateway": "http://127.0.0.1:3",
    }
    applied = stack._apply_environment()
    assert os.environ["XERO_API_BASE_URL"] == "http://127.0.0.1:1"  # not the template's api.xero.com
    assert os.environ["XERO_IDENTITY_URL"] == "http://127.0.0.1:1/connect/token"
    assert os.environ["SUGAR_BASE_URL"] == "http://127.0.0.1:9/proxy"  # the shell's value wins
    assert (
        os.environ["SYNC_TABLE"] == stack.aws.tables["SyncTable"]
    )  # the local table, whatever the shell says
    assert os.environ["LOG_LEVEL"] == "DEBUG" and os.environ["PUBLIC_BASE_URL"] == "http://127.0.0.1:3"
    assert "SECRETS_ARN" not in os.environ and "AWS_PROFILE" not in os.environ
    assert applied["AWS_ENDPOINT_URL"] == moto_url
