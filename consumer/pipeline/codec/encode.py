"""The inverse of `consumer.pipeline.codec.decode`: a source row as the Debezium event
Kafka Connect's JsonConverter writes (schemas off, `decimal.handling.mode=string`).

`reconcile --fix` feeds current source rows through the pipeline with it; tests and benchmarks make change
events without the JVM. One encoder, so all three agree with the decoder column by column.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from connectors import clock
from consumer.entities.registry import spec_of
from consumer.model.events import ColumnKind, EntityType

_EPOCH = dt.date(1970, 1, 1)


def wire_value(kind: ColumnKind | None, value: Any) -> Any:
    """One column value as the JSON converter writes it."""
    if value is None:
        return None
    if kind is ColumnKind.DATE and isinstance(value, dt.date):
        return (value - _EPOCH).days
    if kind is ColumnKind.JSONB:
        return value if isinstance(value, str) else json.dumps(value)
    if kind is ColumnKind.NUMERIC:
        return format(Decimal(str(value)).quantize(Decimal("0.01")), "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


def encode_event(
    entity_type: EntityType,
    op: str,
    row: Mapping[str, Any] | None,
    *,
    key_id: str,
    topic_prefix: str = "zoho-cdc",
    lsn: int | None = None,
    ts_ms: int | None = None,
    snapshot: str = "false",
) -> tuple[bytes, bytes]:
    """(key, value) bytes of one change event; `op` is c, r, u or d (a delete carries only the key)."""
    kinds = spec_of(entity_type).columns
    ts_ms = ts_ms if ts_ms is not None else clock.wall_ms()
    after = None
    if row is not None and op != "d":
        after = {column: wire_value(kinds.get(column), value) for column, value in row.items()}
    value = {
        "before": {"id": key_id} if op == "d" else None,
        "after": after,
        "source": {
            "version": "3.6.3.Final",
            "connector": "postgresql",
            "name": topic_prefix,
            "ts_ms": ts_ms,
            "snapshot": snapshot,
            "db": "source",
            "sequence": json.dumps([None, None if lsn is None else str(lsn)]),
            "schema": "public",
            "table": entity_type.table,
            "txId": None,
            "lsn": lsn,
            "xmin": None,
        },
        "transaction": None,
        "op": op,
        "ts_ms": ts_ms,
    }
    return json.dumps({"id": key_id}).encode(), json.dumps(value, default=str).encode()
