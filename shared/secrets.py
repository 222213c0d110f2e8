"""Secrets: one JSON secret in Secrets Manager when deployed (cached by Powertools Parameters),
the environment with documented local defaults otherwise. Values never reach a log.

Deployed (``SECRETS_ARN`` set), a secret the operator has not filled in is an error: falling back
to the public local defaults would let anyone sign a callout or a webhook."""

from __future__ import annotations

import os
from functools import cache

from shared.config import LOCAL_SECRET_DEFAULTS, settings
from shared.errors import ConnectorError

SECRET_NAMES = tuple(LOCAL_SECRET_DEFAULTS)


@cache
def secrets_provider():
    """Powertools' Secrets Manager provider (it caches what it reads), on a client of boto3's
    default session: its own default would open a second session, which loads botocore's data
    files again on a cold start. Dropped by ``shared.wiring.reset()``."""
    import boto3
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=boto3.client("secretsmanager"))


class MissingSecret(ConnectorError):
    """A secret the deployed stack needs is empty in Secrets Manager."""


def get_secret(name: str) -> str:
    if name not in LOCAL_SECRET_DEFAULTS:
        raise KeyError(f"unknown secret {name}")
    arn = settings().secrets_arn
    if arn:
        values = secrets_provider().get(arn, transform="json", max_age=300)
        value = values.get(name) if isinstance(values, dict) else None
        if not value:
            raise MissingSecret(f"{name} is empty in the connector's secret; set it in Secrets Manager")
        return str(value)
    return os.environ.get(name) or LOCAL_SECRET_DEFAULTS[name]


def optional_secret(name: str) -> str:
    """The secret, or "" when the deployed stack leaves it empty (for secrets of which any one
    is enough, such as ``CRM_TOKEN`` and ``CRM_SIGNING_SECRET``)."""
    try:
        return get_secret(name)
    except MissingSecret:
        return ""
