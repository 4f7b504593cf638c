"""Where the connector keeps state shared across processes: the access token, the daily call count and
the organisation's rate window; each as a protocol with an in-memory and a PostgreSQL implementation.

`protocols.py` says what every store promises; `memory.py` keeps it for one process, `postgres.py` and
`postgres_window.py` for every process sharing the database.
"""

from connectors.zoho.stores.memory import MemoryDailyBudgetStore, MemoryRateWindowStore, MemoryTokenStore
from connectors.zoho.stores.postgres import PgDailyBudgetStore, PgTokenStore
from connectors.zoho.stores.postgres_window import PgRateWindowStore
from connectors.zoho.stores.protocols import (
    DailyBudgetStore,
    RateWindowStore,
    StoredToken,
    TokenStore,
    token_key,
)

__all__ = [
    "DailyBudgetStore",
    "MemoryDailyBudgetStore",
    "MemoryRateWindowStore",
    "MemoryTokenStore",
    "PgDailyBudgetStore",
    "PgRateWindowStore",
    "PgTokenStore",
    "RateWindowStore",
    "StoredToken",
    "TokenStore",
    "token_key",
]
