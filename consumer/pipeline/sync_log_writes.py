"""The sync-log rows of one group commit: a statement per row for a few rows, COPY for many.

A replay settles thousands of records at once (`superseded`, `unchanged`). COPY sends them for a
third of the CPU of one INSERT per row, but cannot skip a row that is already logged (a redelivered
record), so many rows are copied into a per-session temporary table and moved on with
`ON CONFLICT DO NOTHING`, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import psycopg

if TYPE_CHECKING:
    from consumer.pipeline.store import OutcomeRow

_COLUMNS: Final = (
    "consumer_group, topic, kafka_partition, kafka_offset, entity_type, entity_id, outcome, operation,"
    " zoho_id, http_status, attempts, error, duration_ms, source_lsn, source_ts_ms"
)
_ON_CONFLICT: Final = " ON CONFLICT (consumer_group, topic, kafka_partition, kafka_offset) DO NOTHING"
_INSERT_ROW: Final = (
    f"INSERT INTO zoho_sync_log ({_COLUMNS}) VALUES ({', '.join(['%s'] * 15)})" + _ON_CONFLICT
)
# Only the copied columns (no defaults): a LIKE copy would tie the session's table to the log's sequence.
_INCOMING: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS zoho_sync_log_incoming (consumer_group text, topic text,"
    " kafka_partition integer, kafka_offset bigint, entity_type text, entity_id text, outcome text,"
    " operation text, zoho_id text, http_status integer, attempts integer, error text, duration_ms integer,"
    " source_lsn bigint, source_ts_ms bigint) ON COMMIT DELETE ROWS"
)
_MOVE_IN: Final = (
    f"INSERT INTO zoho_sync_log ({_COLUMNS}) SELECT {_COLUMNS} FROM zoho_sync_log_incoming" + _ON_CONFLICT
)
COPY_FROM_ROWS: Final = 64  # below this, the temporary table's statements cost more than they save


def _values(o: OutcomeRow) -> tuple[Any, ...]:
    return (
        o.consumer_group,
        o.topic,
        o.partition,
        o.offset,
        o.entity_type,
        o.entity_id,
        o.outcome,
        o.operation,
        o.zoho_id,
        o.http_status,
        o.attempts,
        (o.error or None) and o.error[:2000],
        o.duration_ms,
        o.source_lsn,
        o.source_ts_ms,
    )


async def write_outcomes(cur: psycopg.AsyncCursor[Any], outcomes: Sequence[OutcomeRow]) -> None:
    """Insert the rows inside the caller's transaction; a row already logged is left as it is."""
    rows = [_values(o) for o in outcomes]
    if len(rows) < COPY_FROM_ROWS:
        await cur.executemany(_INSERT_ROW, rows)
        return
    await cur.execute(_INCOMING)
    async with cur.copy(f"COPY zoho_sync_log_incoming ({_COLUMNS}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(row)
    await cur.execute(_MOVE_IN)
