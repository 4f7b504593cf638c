"""Fixtures for the Zoho simulator and client.

`zoho_sim` is a fresh simulator per test on a free port, with a 1-second rate window (100 calls per
second instead of per minute) and a large daily cap so tests run fast; `zoho_sim_factory(**SimConfig
fields)` starts one with other settings. `zoho_settings` is a `Settings` whose client matches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connectors.zoho_sim import SimConfig, SimHandle, SimLimits, run_in_thread
from consumer.settings import Settings

TEST_WINDOW_SECONDS = 1.0
TEST_RATE_PER_WINDOW = 100
TEST_DAILY_LIMIT = 100_000


def sim_config(**overrides: Any) -> SimConfig:
    limits = overrides.pop(
        "limits",
        SimLimits(
            per_window=TEST_RATE_PER_WINDOW, window_seconds=TEST_WINDOW_SECONDS, daily=TEST_DAILY_LIMIT
        ),
    )
    return SimConfig(limits=limits, seed=overrides.pop("seed", 1234), **overrides)


@pytest.fixture
def zoho_sim_factory() -> Iterator[Callable[..., SimHandle]]:
    """Start simulators with `SimConfig` fields (limits=SimLimits(...), faults=SimFaults(...), ...)."""
    handles: list[SimHandle] = []

    def start(**overrides: Any) -> SimHandle:
        handle = run_in_thread(sim_config(**overrides))
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def zoho_sim(zoho_sim_factory: Callable[..., SimHandle]) -> SimHandle:
    """A fresh simulator: `.base_url`, `.accounts_url`, credentials, `.stats()`, `.set_faults()`..."""
    return zoho_sim_factory()


def settings_for(handle: SimHandle, database_url: str, **overrides: Any) -> Settings:
    """Settings whose Zoho client points at `handle`, paced to the simulator's test window."""
    sim = handle.simulator
    limits = sim.config.limits if sim is not None else SimLimits(window_seconds=TEST_WINDOW_SECONDS)
    values: dict[str, Any] = {
        "database_url": database_url,
        "zoho_api_base": handle.base_url,
        "zoho_accounts_url": handle.accounts_url,
        "zoho_client_id": handle.client_id,
        "zoho_client_secret": handle.client_secret,
        "zoho_refresh_token": handle.refresh_token,
        "zoho_organization_id": handle.org_id,
        "zoho_rate_per_minute": limits.per_window,
        "zoho_rate_window_seconds": limits.window_seconds,
        "zoho_rate_guard_seconds": 0.05 * limits.window_seconds,
        "zoho_max_concurrency": limits.concurrency,
        "zoho_daily_limit": limits.daily,
        "zoho_connect_timeout": 2.0,
        "zoho_read_timeout": 5.0,
        "zoho_max_attempts": 8,
        "zoho_retry_max_seconds": 30.0,
        "zoho_retry_base_seconds": 0.05,
        "zoho_token_backoff_seconds": 0.2,
        "zoho_token_backoff_max_seconds": 2.0,
        "zoho_budget_poll_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def zoho_settings(zoho_sim: SimHandle, database_url: str) -> Settings:
    """Settings pointing at `zoho_sim` (fast retries and backoffs for tests)."""
    return settings_for(zoho_sim, database_url)
