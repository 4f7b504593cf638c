"""The source database in memory, and Debezium's stream of it.

`MemorySource` holds the `customers` and `customer_invoices` rows and enforces the constraints the
pipeline meets (unique account and invoice numbers, NOT NULL, CHECK lists, the invoice's customer).
Every committed change is appended to the broker at once, as the event Debezium 3.6 writes
(`encode_event`, the encoder the tests use), with a rising LSN and `ts_ms` from the virtual wall clock;
an UPDATE leaving a toasted column alone carries `__debezium_unavailable_value` for it, and a delete is
followed by its tombstone. A change that raises leaves the table and the stream as they were.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any, Final, Protocol

import orjson
from psycopg import errors

from connectors import clock
from consumer.model.events import UNAVAILABLE_PLACEHOLDER, ColumnKind, EntityType
from consumer.pipeline.codec.encode import encode_event
from simulation.database.source_tables import TABLES, TableRules, is_toasted, stored_row, stored_value

FIRST_LSN: Final = 33_554_432  # where the simulated WAL starts (any rising sequence does)
LSN_STEP: Final = 328  # about one small row change's WAL record


class Broker(Protocol):
    """What the source needs of `simulation.kafka.MemoryBroker`."""

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Sequence[tuple[str, bytes]] = (),
        timestamp_ms: int,
    ) -> tuple[int, int]: ...


class WriteBackRefused(Exception):
    """The source table refused a write-back (the harness's stand-in for a CHECK or a trigger)."""


class MemorySource:
    """The application's tables: changed by the scenario (`insert`, `update`, `delete`) and by write-backs.

    Fault hooks the harness may set: `refusing[row id] = error` makes write-backs to that row fail
    (as a CHECK would); `holding[row id] = True` makes the row held by an application transaction, so a
    write-back skips it and tries again later (`FOR NO KEY UPDATE SKIP LOCKED`)."""

    def __init__(self, broker: Broker, rng: random.Random, topic_prefix: str = "zoho-cdc") -> None:
        self._broker = broker
        self._rng = rng
        self.topic_prefix = topic_prefix
        self._tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in TABLES}
        self._lsn = FIRST_LSN
        self.refusing: dict[str, str] = {}
        self.holding: dict[str, bool] = {}

    # --- the application's writes ---------------------------------------------------------------------
    def new_id(self) -> str:
        """A fresh uuid (v4) drawn from the seeded generator, as `gen_random_uuid()` would give."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def insert(self, table: str, row: dict[str, Any]) -> str:
        """INSERT one row (defaults filled, `id` drawn if absent); returns its id. Emits op "c"."""
        rules = _rules(table)
        stored = stored_row(rules, {"id": self.new_id(), **row})
        rows = self._tables[table]
        if stored["id"] in rows:
            raise errors.UniqueViolation(f'duplicate key value violates unique constraint "{table}_pkey"')
        self._check_unique(rules, stored)
        self._check_references(rules, stored)
        rows[stored["id"]] = stored
        self._emit(rules, "c", stored, unchanged=())
        return str(stored["id"])

    def update(self, table: str, row_id: str, **changes: Any) -> bool:
        """UPDATE one row's columns; False (and no event) when no row has this id. Emits op "u".

        A toasted column the UPDATE does not name is streamed as the placeholder, as PostgreSQL logs
        no value for it; naming a column (even with its old value) streams the value."""
        rules = _rules(table)
        old = self._tables[table].get(row_id)
        if old is None:
            return False
        new = {**old, **{c: stored_value(rules, c, v) for c, v in _known(rules, changes).items()}}
        self._check_unique(rules, new, row_id)
        self._check_references(rules, new)
        self._tables[table][row_id] = new
        unchanged = [c for c in rules.toastable if c not in changes and is_toasted(rules, c, old[c])]
        self._emit(rules, "u", new, unchanged=unchanged)
        return True

    def delete(self, table: str, row_id: str) -> bool:
        """DELETE one row; False when none has this id. Emits op "d", then the tombstone."""
        rules = _rules(table)
        if row_id not in self._tables[table]:
            return False
        for child_name, child in TABLES.items():
            for column, parent in child.references.items():
                if parent == table and any(r[column] == row_id for r in self._tables[child_name].values()):
                    raise errors.ForeignKeyViolation(
                        f'update or delete on table "{table}" violates foreign key constraint'
                        f' on table "{child_name}"'
                    )
        del self._tables[table][row_id]
        lsn = self._next_lsn()
        key, value = encode_event(
            rules.entity,
            "d",
            None,
            key_id=row_id,
            topic_prefix=self.topic_prefix,
            lsn=lsn,
            ts_ms=clock.wall_ms(),
        )
        self._append(rules, key, value)
        self._append(rules, key, None)
        return True

    def snapshot(self, table: str) -> int:
        """Debezium's initial snapshot: op "r" of every row, at the current LSN; returns the count."""
        rules = _rules(table)
        rows = list(self._tables[table].values())
        for n, row in enumerate(rows):
            marker = "first" if n == 0 else "last" if n == len(rows) - 1 else "true"
            key, value = encode_event(
                rules.entity,
                "r",
                row,
                key_id=row["id"],
                topic_prefix=self.topic_prefix,
                lsn=self._lsn,
                ts_ms=clock.wall_ms(),
                snapshot=marker,
            )
            self._append(rules, key, value)
        return len(rows)

    # --- reads --------------------------------------------------------------------------------------------
    def row(self, table: str, row_id: str) -> dict[str, Any] | None:
        """A copy of the row (jsonb values too), or None."""
        rules = _rules(table)
        found = self._tables[table].get(row_id)
        return None if found is None else _copy(rules, found)

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Copies of every row, oldest insert first."""
        rules = _rules(table)
        return [_copy(rules, r) for r in self._tables[table].values()]

    def first_child_value(self, table: str, parent_column: str, value_column: str, parent_id: str) -> Any:
        """`value_column` of the oldest row (by `created_at`) whose `parent_column` is `parent_id`."""
        children = [r for r in self._tables[table].values() if r[parent_column] == parent_id]
        if not children:
            return None
        return min(children, key=lambda r: r["created_at"])[value_column]

    # --- write-backs (applied by `simulation.database.store`) ------------------------------
    def write_back(
        self,
        entity_type: EntityType,
        row_id: str,
        id_column: str,
        zoho_id: str | None,
        status: str,
        called: bool,
    ) -> bool:
        """The write-back UPDATE (`consumer.pipeline.effects.write_back._update_sql`) of one row: the id
        (kept when none is given), the status, and `zoho_last_synced_at` only when Zoho was called; no
        UPDATE at all unless a value changes or Zoho was called. True when the row was updated (and the
        echo streamed). Raises `WriteBackRefused` for a row in `refusing`."""
        table = entity_type.table
        old = self._tables[table].get(row_id)
        if old is None:
            return False
        if row_id in self.refusing:
            raise WriteBackRefused(self.refusing[row_id])
        new_id_differs = zoho_id is not None and old[id_column] != zoho_id
        if not (called or old["zoho_sync_status"] != status or new_id_differs):
            return False
        changes: dict[str, Any] = {id_column: zoho_id or old[id_column], "zoho_sync_status": status}
        if called:
            changes["zoho_last_synced_at"] = clock.utc_now()
        return self.update(table, row_id, **changes)

    def holds(self, row_id: str) -> bool:
        return self.holding.get(row_id, False)

    # --- the stream -----------------------------------------------------------------------------------------
    def _next_lsn(self) -> int:
        self._lsn += LSN_STEP
        return self._lsn

    def _emit(self, rules: TableRules, op: str, row: dict[str, Any], *, unchanged: Sequence[str]) -> None:
        image = {**row, **{c: UNAVAILABLE_PLACEHOLDER for c in unchanged}} if unchanged else row
        key, value = encode_event(
            rules.entity,
            op,
            image,
            key_id=row["id"],
            topic_prefix=self.topic_prefix,
            lsn=self._next_lsn(),
            ts_ms=clock.wall_ms(),
        )
        self._append(rules, key, value)

    def _append(self, rules: TableRules, key: bytes, value: bytes | None) -> None:
        self._broker.append(rules.entity.topic(self.topic_prefix), key, value, timestamp_ms=clock.wall_ms())

    def _check_unique(self, rules: TableRules, row: dict[str, Any], row_id: str | None = None) -> None:
        for column in rules.unique:
            if any(r[column] == row[column] and rid != row_id for rid, r in self._tables[rules.name].items()):
                raise errors.UniqueViolation(
                    f'duplicate key value violates unique constraint "{rules.name}_{column}_key"'
                )

    def _check_references(self, rules: TableRules, row: dict[str, Any]) -> None:
        for column, parent in rules.references.items():
            if row[column] is not None and row[column] not in self._tables[parent]:
                raise errors.ForeignKeyViolation(
                    f'insert or update on table "{rules.name}" violates foreign key constraint on {column}'
                )


def _rules(table: str) -> TableRules:
    rules = TABLES.get(table)
    if rules is None:
        raise errors.UndefinedTable(f'relation "{table}" does not exist')
    return rules


def _known(rules: TableRules, changes: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(changes) - set(rules.kinds))
    if unknown:
        raise errors.UndefinedColumn(f'column "{unknown[0]}" of relation "{rules.name}" does not exist')
    if "id" in changes:
        raise errors.FeatureNotSupported("the simulation never changes a primary key")
    return changes


def _copy(rules: TableRules, row: dict[str, Any]) -> dict[str, Any]:
    """Each reader its own copy: a jsonb value (a dict or list) is copied, not shared."""
    return {
        c: orjson.loads(orjson.dumps(v)) if rules.kinds[c] is ColumnKind.JSONB and v is not None else v
        for c, v in row.items()
    }
