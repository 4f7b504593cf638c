"""Operator-facing commands (reconcile, status, the status page) against the real services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from consumer.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `zoho-cdc` process load exactly `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "KAFKA_", "DATABASE_"))}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    return env


def run_cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `zoho-cdc <args>` as its own process, from a folder without a `.env` file."""
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env=settings_env(settings),
        cwd=REPO / "tests" / "ops",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
