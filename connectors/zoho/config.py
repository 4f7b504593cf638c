"""The Zoho client's configuration: every knob it reads, as one frozen value.

No defaults here: the service's settings are the one source of truth for them
(`consumer/service/zoho_config.py` builds this value from them), so a field can never disagree with
the setting it comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal


def custom_field_filter(label: str) -> str:
    """Books-style list filter for a custom field: `Account Number` -> `cf_account_number`."""
    return "cf_" + re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_")


@dataclass(frozen=True)
class ZohoConfig:
    api_base: str
    accounts_url: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    organization_id: str
    rate_per_window: int
    rate_window_seconds: float
    rate_guard_seconds: float
    max_concurrency: int
    rate_pacing: Literal["burst", "even"]
    rate_block_size: int
    rate_block_seconds: float
    instance_label: str
    daily_limit: int
    connect_timeout: float
    read_timeout: float
    max_attempts: int
    retry_max_seconds: float
    retry_base_seconds: float
    account_number_field: str
    account_number_filter: str
    customer_email_filter: str
    invoice_number_filter: str
    token_refresh_margin: float
    token_backoff_seconds: float
    token_backoff_max_seconds: float
    budget_poll_seconds: float

    @property
    def account_number_list_filter(self) -> str:
        return self.account_number_filter or custom_field_filter(self.account_number_field)
