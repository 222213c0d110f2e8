"""Refresh race (connection-layer issue): 20 workers, each with its own token manager as a
separate Lambda would have, find the Xero token expired at the same moment. Target: exactly one
call to the token endpoint, and every worker ends with the same new token.

DynamoDB runs in-process under moto, with conditional writes made atomic as DynamoDB's are; the
token endpoint is the extended Xero emulator on 127.0.0.1, whose request log counts the calls."""

from __future__ import annotations

import os
import threading
import time

import requests

from bench.report import Row

WORKERS = 20
TABLE = "bench-refresh-race"


def run() -> list[Row]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    from moto import mock_aws

    from shared.state.dynamo import SyncStateTable
    from shared.xero.auth import XeroTokens
    from sugar_xero.local.xero_emulator import serve
    from tests.conftest import create_sync_table
    from tests.support.moto_atomic import atomic_moto_dynamodb

    with mock_aws(), atomic_moto_dynamodb(), serve() as xero:
        import boto3

        create_sync_table(boto3.client("dynamodb"), TABLE)
        resource = boto3.resource("dynamodb")
        SyncStateTable(TABLE, resource=resource).put_token(
            "default", {"access_token": "expired", "refresh_token": "refresh-1",
                        "access_expires_at": int(time.time()) - 5, "status": "connected", "lease_until": 0},
            expected_version=None)
        barrier = threading.Barrier(WORKERS)
        tokens: list[str] = []

        def worker() -> None:
            manager = XeroTokens(SyncStateTable(TABLE, resource=resource), "default",
                                 identity_url=f"{xero.url}/connect/token", client_id="id", client_secret="secret")
            barrier.wait(timeout=30)
            tokens.append(manager.access_token())

        threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        log = requests.get(f"{xero.url}/_emulator/requests", timeout=30).json()["requests"]
    token_calls = sum(1 for r in log if r["path"].startswith("/connect/token"))
    same = len(set(tokens)) == 1 and len(tokens) == WORKERS and "expired" not in tokens
    return [Row("3", f"refresh race: {WORKERS} workers, expired token", f"{token_calls} token call(s); "
                f"{len(tokens)} workers got {'one' if same else 'different'} new token",
                float(token_calls), "exactly 1", token_calls == 1 and same)]
