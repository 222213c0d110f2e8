"""Where Sugar's token set lives between calls and between workers.

The same compare-and-set the Xero tokens use: every write names the version it read, and only
one writer per version wins. The sync table's ``TOKEN#<connection>`` item holds it, under the
connection id ``sugar:<platform>:<username>`` (one live token per user and platform in Sugar).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

KEY_ATTRIBUTES = frozenset({"PK", "SK"})


def sugar_connection_id(platform: str, username: str) -> str:
    return f"sugar:{platform}:{username}"


class SugarTokenCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None:
        """The stored token item with its ``version`` (an int), or None."""

    def put(self, key: str, token: dict[str, Any], expected_version: int | None) -> bool:
        """Store ``token`` as version ``(expected_version or 0) + 1`` only if the stored version
        is still ``expected_version`` (None: only if nothing is stored). False: another writer won."""


class TokenTable(Protocol):
    """The part of ``shared.state.dynamo.SyncStateTable`` this cache uses."""

    def get_token(self, connection_id: str) -> dict[str, Any] | None: ...

    def put_token(self, connection_id: str, token: dict[str, Any], *,
                  expected_version: int | None) -> bool: ...


class DynamoSugarTokenCache:
    def __init__(self, state: TokenTable):
        self._state = state

    def get(self, key: str) -> dict[str, Any] | None:
        item = self._state.get_token(key)
        if not item:
            return None
        return {name: _plain_number(value) for name, value in item.items() if name not in KEY_ATTRIBUTES}

    def put(self, key: str, token: dict[str, Any], expected_version: int | None) -> bool:
        clean = {name: value for name, value in token.items()
                 if name not in KEY_ATTRIBUTES and name != "version" and value is not None}
        return self._state.put_token(key, clean, expected_version=expected_version)


def _plain_number(value: Any) -> Any:
    """DynamoDB hands every number back as Decimal; the token item holds only whole seconds
    and versions, which callers compare as ints."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value
