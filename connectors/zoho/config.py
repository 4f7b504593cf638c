"""The Zoho client's configuration: the slice of `Settings` it needs, as one frozen value."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from consumer.settings import Settings


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
    rate_per_window: int = 100
    rate_window_seconds: float = 60.0
    rate_guard_seconds: float = 0.5
    max_concurrency: int = 5
    rate_pacing: Literal["burst", "even"] = "burst"
    rate_block_size: int = 5
    rate_block_seconds: float = 2.0
    instance_label: str = ""
    daily_limit: int = 1000
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 8
    retry_max_seconds: float = 300.0
    retry_base_seconds: float = 1.0
    account_number_field: str = "Account Number"
    account_number_filter: str = ""
    customer_email_filter: str = "email"
    invoice_number_filter: str = "invoice_number"
    token_refresh_margin: float = 120.0
    token_backoff_seconds: float = 120.0
    token_backoff_max_seconds: float = 1800.0
    budget_poll_seconds: float = 30.0

    @property
    def account_number_list_filter(self) -> str:
        return self.account_number_filter or custom_field_filter(self.account_number_field)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ZohoConfig:
        config = cls(
            api_base=settings.zoho_api_base,
            accounts_url=settings.zoho_accounts_url,
            client_id=settings.zoho_client_id,
            client_secret=settings.zoho_client_secret.get_secret_value(),
            refresh_token=settings.zoho_refresh_token.get_secret_value(),
            organization_id=settings.zoho_organization_id,
            rate_per_window=settings.zoho_rate_per_minute,
            rate_window_seconds=settings.zoho_rate_window_seconds,
            rate_guard_seconds=settings.zoho_rate_guard_seconds,
            max_concurrency=settings.zoho_max_concurrency,
            rate_pacing=settings.zoho_rate_pacing,
            rate_block_size=settings.zoho_rate_block_size,
            rate_block_seconds=settings.zoho_rate_block_seconds,
            instance_label=settings.kafka_group_instance_id,
            daily_limit=settings.zoho_daily_limit,
            connect_timeout=settings.zoho_connect_timeout,
            read_timeout=settings.zoho_read_timeout,
            max_attempts=settings.zoho_max_attempts,
            retry_max_seconds=settings.zoho_retry_max_seconds,
            retry_base_seconds=settings.zoho_retry_base_seconds,
            account_number_field=settings.zoho_account_number_field,
            account_number_filter=settings.zoho_account_number_filter,
            customer_email_filter=settings.zoho_customer_email_filter,
            invoice_number_filter=settings.zoho_invoice_number_filter,
            token_refresh_margin=settings.zoho_token_refresh_margin,
            token_backoff_seconds=settings.zoho_token_backoff_seconds,
            token_backoff_max_seconds=settings.zoho_token_backoff_max_seconds,
            budget_poll_seconds=settings.zoho_budget_poll_seconds,
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown ZohoConfig fields: {sorted(unknown)}")
        return replace(config, **overrides)
