"""Zoho Billing connector: the async client, its budget, OAuth and error hierarchy.

The names a caller needs, in one place; each lives in the module named for its concern.
"""

from connectors.zoho.client import ZohoClient
from connectors.zoho.config import ZohoConfig
from connectors.zoho.errors import (
    AccessTokenRejected,
    AuthError,
    DailyBudgetExhausted,
    Duplicate,
    InDoubt,
    NotFound,
    NotOurs,
    PermanentError,
    RateLimited,
    RefreshTokenRevoked,
    ReplyUnreadable,
    ResponseLost,
    TransientError,
    ValidationFailed,
    ZohoError,
)
from connectors.zoho.stores import (
    DailyBudgetStore,
    MemoryDailyBudgetStore,
    MemoryTokenStore,
    PgDailyBudgetStore,
    PgTokenStore,
    TokenStore,
)
from connectors.zoho.tracking import CallRecord, CallTracker, ClientMetrics

__all__ = [
    "AccessTokenRejected",
    "AuthError",
    "CallRecord",
    "CallTracker",
    "ClientMetrics",
    "DailyBudgetExhausted",
    "DailyBudgetStore",
    "Duplicate",
    "InDoubt",
    "MemoryDailyBudgetStore",
    "MemoryTokenStore",
    "NotFound",
    "NotOurs",
    "PermanentError",
    "PgDailyBudgetStore",
    "PgTokenStore",
    "RateLimited",
    "RefreshTokenRevoked",
    "ReplyUnreadable",
    "ResponseLost",
    "TokenStore",
    "TransientError",
    "ValidationFailed",
    "ZohoClient",
    "ZohoConfig",
    "ZohoError",
]
