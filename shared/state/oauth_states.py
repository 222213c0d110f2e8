"""DynamoDB adapter for OAuth2 ``state`` values between ``/xero/connect`` and ``/xero/callback``.

Only a SHA-256 of the state is stored (``OAUTHSTATE#<sha256>`` / ``OAUTHSTATE``): a table read
does not yield a usable value. A state is consumed by a conditional delete that also checks
its expiry and the browser binding (the hash of the cookie's nonce), because DynamoDB's TTL
removes expired items only eventually and a callback from another browser must leave the state
for the right one.
"""

from __future__ import annotations

from typing import Any, Literal

from shared.state.dynamo import conditional_check_failed, dynamodb_resource

ConsumeOutcome = Literal["ok", "expired", "unknown", "wrong_browser"]


def oauth_state_key(state_hash: str) -> dict[str, str]:
    return {"PK": f"OAUTHSTATE#{state_hash}", "SK": "OAUTHSTATE"}


class OAuthStateTable:
    def __init__(self, table_name: str, *, resource: Any | None = None):
        self._table = (resource or dynamodb_resource()).Table(table_name)

    def put_state(self, state_hash: str, *, expires_at: int, **fields: Any) -> None:
        self._table.put_item(Item={**oauth_state_key(state_hash), **fields, "expires_at": expires_at},
                             ConditionExpression="attribute_not_exists(PK)")

    def consume_state(self, state_hash: str, *, now: int, browser_hash: str
                      ) -> tuple[ConsumeOutcome, dict[str, Any]]:
        """Delete the state if it exists, has not expired and was issued to this browser; one
        caller at most gets "ok". "unknown" covers never issued and already used (both are gone)."""
        try:
            answer = self._table.delete_item(
                Key=oauth_state_key(state_hash),
                ConditionExpression="attribute_exists(PK) AND expires_at > :now AND browser_hash = :browser",
                ExpressionAttributeValues={":now": now, ":browser": browser_hash}, ReturnValues="ALL_OLD")
            if answer.get("Attributes"):
                return "ok", answer["Attributes"]
            return "unknown", {}  # a concurrent caller deleted it between check and delete
        except Exception as error:
            if not conditional_check_failed(error):
                raise
        left = self._table.get_item(Key=oauth_state_key(state_hash), ConsistentRead=True).get("Item")
        if left is not None and int(left.get("expires_at", 0)) > now:
            return "wrong_browser", {}
        if left is not None:
            # Expired: remove it now so that it cannot be mistaken for anything later.
            self._table.delete_item(Key=oauth_state_key(state_hash))
            return "expired", left
        return "unknown", {}
