"""The sync log's outcomes are one enum, and it is exactly what the sync log's CHECK constraint allows."""

from __future__ import annotations

import re
from pathlib import Path

import consumer.migrations
from consumer.model.outcomes import SyncOutcome
from consumer.pipeline.durability.rows import OUTCOMES

MIGRATIONS = Path(consumer.migrations.__file__).parent


def _allowed_by_the_newest_check() -> set[str]:
    """The outcome values of the last migration that (re)defines the sync log's outcome CHECK."""
    allowed: set[str] | None = None
    for path in sorted(MIGRATIONS.glob("*.sql")):
        for found in re.finditer(r"CHECK\s*\(\s*outcome\s+IN\s*\(([^)]*)\)", path.read_text()):
            allowed = set(re.findall(r"'([a-z_]+)'", found.group(1)))
    assert allowed is not None, "no migration defines the outcome CHECK"
    return allowed


def test_every_sync_outcome_is_a_value_the_sync_log_accepts_and_no_other():
    assert {str(outcome) for outcome in SyncOutcome} == _allowed_by_the_newest_check()
    assert set(OUTCOMES) == set(SyncOutcome)


def test_an_outcome_is_its_value_wherever_it_is_written():
    """Stored, logged, labelled and compared as the plain string the sync log holds."""
    assert SyncOutcome.DEAD_LETTERED == "dead_lettered"
    assert f"{SyncOutcome.ZOHO_AHEAD}" == str(SyncOutcome.ZOHO_AHEAD) == "zoho_ahead"
    assert {"synced": 1}[SyncOutcome.SYNCED] == 1


def test_counts_keyed_by_outcome_print_as_the_sync_log_values():
    """A backfill's outcome counts are logged and printed as a dict: its keys read as the sync log's."""
    counts = {SyncOutcome.SUPERSEDED: 35000, SyncOutcome.SYNCED: 2}
    assert repr(counts) == "{'superseded': 35000, 'synced': 2}"
