"""The Zoho client's configuration cut from `Settings`: the one place a setting becomes a `ZohoConfig` field.

`connectors/` knows nothing of `Settings`; this is where the service hands it the slice it needs.
Overrides replace single fields (tests, commands); an unknown name is refused, never ignored.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from connectors.zoho.config import ZohoConfig
from consumer.settings import Settings


def zoho_config(settings: Settings, **overrides: Any) -> ZohoConfig:
    """`settings` as a `ZohoConfig`; `overrides` replace single fields, unknown names raise TypeError."""
    config = ZohoConfig(
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
    unknown = set(overrides) - {f.name for f in fields(ZohoConfig)}
    if unknown:
        raise TypeError(f"unknown ZohoConfig fields: {sorted(unknown)}")
    return replace(config, **overrides)
