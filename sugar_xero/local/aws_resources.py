"""The template's DynamoDB tables, SQS queues, S3 buckets, KMS keys and secret, created on a moto server, and the
environment the handlers need to find them.

Everything comes from the template's own resource Properties: a queue that refers to another
(its RedrivePolicy names the DLQ's ARN) is created once what it refers to exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.config import LOCAL_SECRET_DEFAULTS
from sugar_xero.local.template import LOCAL_STACK_NAME, Resolver, StackTemplate, TemplateError, Unresolved

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}
DEFAULT_REGION = "eu-west-1"


def act_as_local_functions(environment: Mapping[str, str], *, local: bool) -> None:
    """Take ``environment`` (the functions' settings) into this process, as the functions read
    them. For a local stack, never real AWS: no profile or deployed secret, moto's fake credentials."""
    os.environ.update({k: v for k, v in environment.items() if isinstance(v, str)})
    if not local:
        return
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "SECRETS_ARN"):
        os.environ.pop(name, None)
    os.environ.update(FAKE_CREDENTIALS)
    os.environ.setdefault("AWS_REGION", DEFAULT_REGION)
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])

_QUEUE_TYPE = "AWS::SQS::Queue"
_TABLE_TYPE = "AWS::DynamoDB::Table"
_SECRET_TYPE = "AWS::SecretsManager::Secret"
_BUCKET_TYPE = "AWS::S3::Bucket"
_KEY_TYPE = "AWS::KMS::Key"

# Queue properties that are not queue attributes of the SQS API.
_NOT_QUEUE_ATTRIBUTES = {
    "QueueName",
    "Tags",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "RedriveAllowPolicy",
}
# Variables a local run takes from the stack it starts, whatever the template or the shell say.
_LOCAL_ONLY = {"SECRETS_ARN"}
# Local only, for tests and the demo: every queue's RedrivePolicy maxReceiveCount becomes this, so
# that failing work reaches its dead-letter queue in seconds instead of after the template's count.
MAX_RECEIVE_COUNT_VARIABLE = "SUGAR_XERO_LOCAL_MAX_RECEIVE_COUNT"


@dataclass
class LocalAws:
    endpoint_url: str
    region: str
    queues: dict[str, dict[str, str]] = field(default_factory=dict)  # logical id → url, arn, name
    tables: dict[str, str] = field(default_factory=dict)  # logical id → table name
    secrets: dict[str, str] = field(default_factory=dict)  # logical id → arn
    buckets: dict[str, str] = field(default_factory=dict)  # logical id → bucket name
    keys: dict[str, dict[str, str]] = field(default_factory=dict)  # logical id → key id, arn
    resolver: Resolver | None = None

    def queue_url_by_arn(self, arn: str) -> str | None:
        return next((q["url"] for q in self.queues.values() if q["arn"] == arn), None)


def _client(service: str, endpoint_url: str, region: str):
    import boto3

    return boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=region,
    ).client(service, endpoint_url=endpoint_url)


def _physical_name(logical_id: str) -> str:
    return f"{LOCAL_STACK_NAME}-{logical_id}"


def _attribute_value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _create_queue(sqs: Any, logical_id: str, props: dict[str, Any], aws: LocalAws,
                  max_receive_count: int | None = None) -> None:
    name = props.get("QueueName") or _physical_name(logical_id)
    policy = props.get("RedrivePolicy")
    if max_receive_count and isinstance(policy, dict):
        props = {**props, "RedrivePolicy": {**policy, "maxReceiveCount": max_receive_count}}
    if props.get("FifoQueue") and not name.endswith(".fifo"):
        name += ".fifo"
    attributes = {k: _attribute_value(v) for k, v in props.items() if k not in _NOT_QUEUE_ATTRIBUTES}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.queues[logical_id] = {"url": url, "arn": arn, "name": name}


def _without_throughput(value: Any) -> Any:
    if isinstance(value, list):
        return [_without_throughput(v) for v in value]
    if isinstance(value, dict):
        return {
            k: _without_throughput(v)
            for k, v in value.items()
            if k not in {"ProvisionedThroughput", "OnDemandThroughput", "ContributorInsightsSpecification"}
        }
    return value


def _create_table(dynamodb: Any, logical_id: str, props: dict[str, Any], aws: LocalAws) -> None:
    name = props.get("TableName") or _physical_name(logical_id)
    request: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            request[key] = _without_throughput(props[key])
    stream = props.get("StreamSpecification")
    if isinstance(stream, dict) and stream.get("StreamViewType"):
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    described = dynamodb.create_table(**request)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if isinstance(ttl, dict) and ttl.get("Enabled") and ttl.get("AttributeName"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    aws.tables[logical_id] = name
    if aws.resolver is not None:
        aws.resolver.attributes[(logical_id, "Arn")] = described["TableArn"]
        if described.get("LatestStreamArn"):
            aws.resolver.attributes[(logical_id, "StreamArn")] = described["LatestStreamArn"]


def local_secret_values(environ: dict[str, str]) -> dict[str, str]:
    return {name: environ.get(name) or default for name, default in LOCAL_SECRET_DEFAULTS.items()}


def _create_secret(
    secretsmanager: Any, logical_id: str, props: dict[str, Any], aws: LocalAws, environ: dict[str, str]
) -> None:
    name = props.get("Name") or _physical_name(logical_id)
    # A generated secret cannot be known locally: hold the documented local values instead.
    value = props.get("SecretString") or json.dumps(local_secret_values(environ))
    arn = secretsmanager.create_secret(Name=name, SecretString=value)["ARN"]
    aws.secrets[logical_id] = arn


def _create_bucket(s3: Any, logical_id: str, props: dict[str, Any], aws: LocalAws) -> None:
    name = (props.get("BucketName") or _physical_name(logical_id)).lower()
    request: dict[str, Any] = {"Bucket": name}
    if aws.region != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    s3.create_bucket(**request)
    encryption = props.get("BucketEncryption")
    if isinstance(encryption, dict) and encryption.get("ServerSideEncryptionConfiguration"):
        # CloudFormation's ServerSideEncryptionByDefault is the API's ApplyServerSideEncryptionByDefault.
        rules = [{("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v
                  for k, v in rule.items() if k in {"ServerSideEncryptionByDefault", "BucketKeyEnabled"}}
                 for rule in encryption["ServerSideEncryptionConfiguration"]]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    aws.buckets[logical_id] = name


def _create_key(kms: Any, logical_id: str, props: dict[str, Any], aws: LocalAws) -> None:
    request = {k: props[k] for k in ("Description", "KeyUsage", "KeySpec") if props.get(k)}
    metadata = kms.create_key(**request)["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=metadata["KeyId"])
    aws.keys[logical_id] = {"id": metadata["KeyId"], "arn": metadata["Arn"]}


def create_resources(
    template: StackTemplate,
    endpoint_url: str,
    *,
    region: str = DEFAULT_REGION,
    environ: dict[str, str] | None = None,
) -> LocalAws:
    """Create every table, queue and secret the template declares; answer where they are."""
    environ = dict(environ or {})
    resolver = Resolver(template.document, region=region)
    aws = LocalAws(endpoint_url=endpoint_url, region=region, resolver=resolver)
    clients = {
        "sqs": _client("sqs", endpoint_url, region),
        "dynamodb": _client("dynamodb", endpoint_url, region),
        "secretsmanager": _client("secretsmanager", endpoint_url, region),
        "s3": _client("s3", endpoint_url, region),
        "kms": _client("kms", endpoint_url, region),
    }
    creators = {
        _QUEUE_TYPE: lambda lid, props: _create_queue(clients["sqs"], lid, props, aws,
                                                      _max_receive_count(environ)),
        _TABLE_TYPE: lambda lid, props: _create_table(clients["dynamodb"], lid, props, aws),
        _SECRET_TYPE: lambda lid, props: _create_secret(clients["secretsmanager"], lid, props, aws, environ),
        _BUCKET_TYPE: lambda lid, props: _create_bucket(clients["s3"], lid, props, aws),
        _KEY_TYPE: lambda lid, props: _create_key(clients["kms"], lid, props, aws),
    }
    waiting = {lid: r for lid, r in template.of_type(*creators).items() if _included(resolver, r)}
    # Resources that name others (a queue's RedrivePolicy → its DLQ) wait until those exist.
    while waiting:
        progress = False
        problems: dict[str, str] = {}
        for logical_id, resource in list(waiting.items()):
            try:
                props = resolver.resolve(resource.get("Properties") or {})
            except Unresolved as error:
                problems[logical_id] = str(error)
                continue
            creators[resource["Type"]](logical_id, props)
            _publish(resolver, aws, logical_id, resource["Type"])
            del waiting[logical_id]
            progress = True
        if not progress:
            raise TemplateError(
                "cannot create locally: " + "; ".join(f"{k}: {v}" for k, v in problems.items())
            )
    return aws


def _max_receive_count(environ: dict[str, str]) -> int | None:
    text = environ.get(MAX_RECEIVE_COUNT_VARIABLE, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise TemplateError(f"{MAX_RECEIVE_COUNT_VARIABLE} must be a whole number from 1 to 1000, not {text!r}")
    return int(text)


def _included(resolver: Resolver, resource: dict[str, Any]) -> bool:
    condition = resource.get("Condition")
    return resolver.condition(condition) if isinstance(condition, str) else True


def _publish(resolver: Resolver, aws: LocalAws, logical_id: str, resource_type: str) -> None:
    """What ``!Ref`` and ``!GetAtt`` give for a resource just created."""
    if resource_type == _QUEUE_TYPE:
        queue = aws.queues[logical_id]
        resolver.refs[logical_id] = queue["url"]
        resolver.attributes.update(
            {
                (logical_id, "Arn"): queue["arn"],
                (logical_id, "QueueUrl"): queue["url"],
                (logical_id, "QueueName"): queue["name"],
            }
        )
    elif resource_type == _TABLE_TYPE:
        resolver.refs[logical_id] = aws.tables[logical_id]
    elif resource_type == _KEY_TYPE:
        resolver.refs[logical_id] = aws.keys[logical_id]["id"]
        resolver.attributes[(logical_id, "Arn")] = aws.keys[logical_id]["arn"]
        resolver.attributes[(logical_id, "KeyId")] = aws.keys[logical_id]["id"]
    elif resource_type == _BUCKET_TYPE:
        name = aws.buckets[logical_id]
        resolver.refs[logical_id] = name
        resolver.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
    elif resource_type == _SECRET_TYPE:
        resolver.refs[logical_id] = aws.secrets[logical_id]
        resolver.attributes[(logical_id, "Id")] = aws.secrets[logical_id]


@dataclass
class HandlerEnvironment:
    """``resources``: variables naming the local tables, queues and endpoint, which must win over
    anything in the shell. ``template_values``: the template's other variables (parameter defaults
    and literals), which the shell and the local stack's own URLs override."""

    resources: dict[str, str]
    template_values: dict[str, str]


def handler_environment(template: StackTemplate, aws: LocalAws) -> HandlerEnvironment:
    """The environment the handlers need: the variables the template gives its functions
    (resolved against the local resources), each queue's DLQ URL beside it, the moto endpoint,
    the region and fake credentials.

    Variables that name something the local stack does not create are left out, and so is
    SECRETS_ARN: a local run takes its secrets from the environment (``api-contract.md``).
    """
    resolver = aws.resolver or Resolver(template.document, region=aws.region)
    resources: dict[str, str] = {}
    template_values: dict[str, str] = {}
    for spec in template.functions().values():
        for name, value in spec.environment.items():
            if name in _LOCAL_ONLY:
                continue
            before = resolver.resource_lookups
            try:
                resolved = resolver.resolve(value)
            except Unresolved:
                continue
            if isinstance(resolved, (str, int, float, bool)):
                target = resources if resolver.resource_lookups > before else template_values
                target.setdefault(name, _attribute_value(resolved))
    by_url = {q["url"]: lid for lid, q in aws.queues.items()}
    for name, value in list(resources.items()):
        if name.endswith("_QUEUE_URL") and value in by_url:
            dlq_url = dead_letter_queue_url(template, aws, by_url[value])
            if dlq_url:
                resources.setdefault(name[: -len("_QUEUE_URL")] + "_DLQ_URL", dlq_url)
    resources.update(
        {
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            "AWS_DEFAULT_REGION": aws.region,
            "AWS_REGION": aws.region,
            **FAKE_CREDENTIALS,
        }
    )
    return HandlerEnvironment(resources=resources, template_values=template_values)


def dead_letter_queue_url(template: StackTemplate, aws: LocalAws, queue_logical_id: str) -> str | None:
    resolver = aws.resolver or Resolver(template.document, region=aws.region)
    props = resolver.resolve(template.resources[queue_logical_id].get("Properties") or {})
    policy = props.get("RedrivePolicy")
    if isinstance(policy, str):
        policy = json.loads(policy)
    if not isinstance(policy, dict):
        return None
    return aws.queue_url_by_arn(str(policy.get("deadLetterTargetArn", "")))
