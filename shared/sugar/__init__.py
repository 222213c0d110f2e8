"""SugarCRM REST v11: the client, its token cache and its errors."""

from shared.sugar.client import BulkRequest, BulkResult, SugarClient
from shared.sugar.errors import (
    SugarAuthError,
    SugarEditConflict,
    SugarError,
    SugarInvalidRequest,
    SugarNotAuthorized,
    SugarNotFound,
    SugarServerError,
    SugarUnavailable,
)
from shared.sugar.token_cache import DynamoSugarTokenCache, SugarTokenCache, sugar_connection_id

__all__ = [
    "BulkRequest",
    "BulkResult",
    "DynamoSugarTokenCache",
    "SugarAuthError",
    "SugarClient",
    "SugarEditConflict",
    "SugarError",
    "SugarInvalidRequest",
    "SugarNotAuthorized",
    "SugarNotFound",
    "SugarServerError",
    "SugarTokenCache",
    "SugarUnavailable",
    "sugar_connection_id",
]
