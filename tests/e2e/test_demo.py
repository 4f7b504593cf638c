"""`make demo` runs to its end: the whole main job on the embedded default, as a newcomer would run it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from consumer.local.broker import free_port

pytestmark = pytest.mark.relay


def test_demo_runs_to_its_end_with_nothing_missing_and_zoho_statuses_matching_the_source(
    tmp_path, postgres_server
) -> None:
    env = {
        **os.environ,
        # Its own broker port and state folder, so a developer's running stack is never touched.
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "STATE_DIR": str(tmp_path / "state"),
        "TOPIC_PREFIX": "billing",
    }
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "demo", "--timeout", "240"],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "customers not in Zoho = 0, invoices not in Zoho = 0" in out
    assert "│ skipped   │      3 │" in out  # the internal_test customer and the 2 void invoices
    assert "│ customers          │    12 │" in out
    assert "│ invoices           │    18 │" in out
    assert "│ HTTP 429 responses │     0 │" in out
    assert "│ token requests     │     1 │" in out
    assert "Traceback" not in out
    # Zoho's statuses are the source's: 6 draft, 6 sent, 6 paid invoices; the 2 void ones never created
    # (no invoice is created only to be voided); the closed customer inactive, the other 11 active.
    assert "│ invoices  │ draft    │      6 │    6 │" in out
    assert "│ invoices  │ sent     │      6 │    6 │" in out
    assert "│ invoices  │ paid     │      6 │    6 │" in out
    assert "│ invoices  │ void     │      2 │    0 │" in out
    assert "│ customers │ active   │     11 │   11 │" in out
    assert "│ customers │ inactive │      1 │    1 │" in out
    assert "Zoho statuses that differ from the source: 0" in out
    # The demo stops its relay and leaves no inactive replication slot pinning WAL.
    import psycopg

    with psycopg.connect(postgres_server) as conn:
        slots = conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = 'zoho_cdc_demo'")
        assert slots.fetchall() == []


def test_demo_switchover_adopts_the_older_integrations_customers_and_duplicates_none(tmp_path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "STATE_DIR": str(tmp_path / "state"),
        "TOPIC_PREFIX": "billing",
    }
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "demo", "--switchover", "--timeout", "240"],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "│ adopted by stored id │        10 │" in out
    assert "│ zoho customers  │    13 │" in out
    assert "│ created         │     3 │" in out
    assert "│ stored ids kept │    10 │" in out
    assert "│ duplicates      │     0 │" in out
    assert "│ writes          │    13 │" in out
    assert "Traceback" not in out
