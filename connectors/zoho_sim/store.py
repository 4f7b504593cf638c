"""The simulator's records (customers, invoices, items, payments), in memory, optionally written to SQLite.

Ids are numeric strings like Zoho's; a restart with the same `--db` file keeps records and id counters.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

FIRST_ID = 903000000000001


class RecordStore:
    def __init__(self, db_path: str | None = None, *, first_id: int = FIRST_ID) -> None:
        self.customers: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.next_id = first_id
        self.next_invoice_number = 1
        self._db: sqlite3.Connection | None = None
        if db_path:
            self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS records (kind TEXT, id TEXT, body TEXT, PRIMARY KEY (kind, id))"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")
            for kind, rid, body in self._db.execute("SELECT kind, id, body FROM records"):
                self.table(kind)[rid] = json.loads(body)
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            self.next_id = meta.get("next_id", first_id)
            self.next_invoice_number = meta.get("next_invoice_number", 1)

    def table(self, kind: str) -> dict[str, dict[str, Any]]:
        return {
            "customer": self.customers,
            "invoice": self.invoices,
            "item": self.items,
            "payment": self.payments,
        }[kind]

    def new_id(self) -> str:
        rid = str(self.next_id)
        self.next_id += 1
        self._save_meta()
        return rid

    def take_invoice_number(self) -> int:
        number = self.next_invoice_number
        self.next_invoice_number += 1
        self._save_meta()
        return number

    def put(self, kind: str, rid: str, record: dict[str, Any]) -> None:
        self.table(kind)[rid] = record
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO records (kind, id, body) VALUES (?, ?, ?)",
                (kind, rid, json.dumps(record)),
            )

    def delete(self, kind: str, rid: str) -> None:
        self.table(kind).pop(rid, None)
        if self._db is not None:
            self._db.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, rid))

    def wipe(self) -> None:
        self.customers.clear()
        self.invoices.clear()
        self.items.clear()
        self.payments.clear()
        # Ids keep counting: Zoho never hands out an id twice, and a client holding an id from
        # before the wipe must get "does not exist", never somebody else's record.
        self.next_invoice_number = 1
        if self._db is not None:
            self._db.execute("DELETE FROM records")
        self._save_meta()

    def _save_meta(self) -> None:
        if self._db is not None:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("next_id", self.next_id), ("next_invoice_number", self.next_invoice_number)],
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
