import json

import pytest

from shared import wiring
from shared.secrets import MissingSecret, get_secret


def test_local_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("SECRETS_ARN", raising=False)
    monkeypatch.delenv("CRM_TOKEN", raising=False)
    wiring.reset()
    assert get_secret("CRM_TOKEN") == "local-crm-token"
    monkeypatch.setenv("CRM_TOKEN", "from-env")
    assert get_secret("CRM_TOKEN") == "from-env"


def test_deployed_secret_is_read_and_an_empty_one_fails_closed(monkeypatch):
    from moto import mock_aws

    with mock_aws():
        import boto3

        arn = boto3.client("secretsmanager").create_secret(
            Name="connector", SecretString=json.dumps({"CRM_TOKEN": "real", "XERO_WEBHOOK_KEY": ""}))["ARN"]
        monkeypatch.setenv("SECRETS_ARN", arn)
        monkeypatch.setenv("XERO_WEBHOOK_KEY", "ignored-when-deployed")
        wiring.reset()
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
        try:
            assert get_secret("CRM_TOKEN") == "real"
            with pytest.raises(MissingSecret):
                get_secret("XERO_WEBHOOK_KEY")
        finally:
            parameters.clear_caches()
            monkeypatch.delenv("SECRETS_ARN")
            wiring.reset()
