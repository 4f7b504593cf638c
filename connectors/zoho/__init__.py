"""Zoho Billing connector: the async client, its budget, OAuth and error hierarchy."""

from connectors.zoho.client import ZohoClient
from connectors.zoho.config import ZohoConfig
from connectors.zoho.errors import (
    AuthError,
    DailyBudgetExhausted,
    Duplicate,
    NotFound,
    NotOurs,
    PermanentError,
    RateLimited,
    RefreshTokenRevoked,
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
    "AuthError",
    "CallRecord",
    "CallTracker",
    "ClientMetrics",
    "DailyBudgetExhausted",
    "DailyBudgetStore",
    "Duplicate",
    "MemoryDailyBudgetStore",
    "MemoryTokenStore",
    "NotFound",
    "NotOurs",
    "PermanentError",
    "PgDailyBudgetStore",
    "PgTokenStore",
    "RateLimited",
    "RefreshTokenRevoked",
    "ResponseLost",
    "TokenStore",
    "TransientError",
    "ValidationFailed",
    "ZohoClient",
    "ZohoConfig",
    "ZohoError",
]
