"""What every simulated Billing resource shares: the reply envelope, errors, pages and field checks.

A resource operation returns `(http_status, body)` with Zoho's envelope (`code` 0 and a `message` on
success); no HTTP here, so the rules can be read and tested on their own (reference, sections 4-7).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from connectors import clock
from connectors.zoho.wire.protocol import CODE_INVALID_VALUE, CODE_NOT_FOUND
from connectors.zoho_sim.config import SimConfig
from connectors.zoho_sim.store import RecordStore

Reply = tuple[int, dict[str, Any]]

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_PER_PAGE = 200


def timestamp() -> str:
    """Now, in Zoho's timestamp format."""
    return clock.utc_now().strftime("%Y-%m-%dT%H:%M:%S+0000")


def error(status: int, code: int, message: str) -> Reply:
    return status, {"code": code, "message": message}


def success(status: int, message: str, **payload: Any) -> Reply:
    return status, {"code": 0, "message": message, **payload}


def invalid(field: str, code: int) -> Reply:
    """Zoho's answer to a field it cannot take (code 2 "invalid value" or 4 "invalid input")."""
    return error(400, code, f"Invalid value passed for {field}")


def of_status(
    records: list[dict[str, Any]], query: dict[str, str], statuses: dict[str, str | None]
) -> list[dict[str, Any]] | None:
    """The records whose status `filter_by` names (all for `Status.All`); None for an unknown filter."""
    applied = query.get("filter_by", "Status.All")
    if applied not in statuses:
        return None
    wanted = statuses[applied]
    return [r for r in records if r["status"] == wanted] if wanted else records


def paged(items: list[dict[str, Any]], key: str, query: dict[str, str], applied: str) -> Reply:
    """One page of `items` as Zoho lists them (`page`, `per_page` of at most 200, `page_context`)."""
    try:
        page = max(1, int(query.get("page", 1)))
        per_page = min(MAX_PER_PAGE, max(1, int(query.get("per_page", MAX_PER_PAGE))))
    except ValueError:
        return invalid("page", CODE_INVALID_VALUE)
    chunk = items[(page - 1) * per_page : page * per_page]
    context = {
        "page": page,
        "per_page": per_page,
        "has_more_page": page * per_page < len(items),
        "applied_filter": applied,
        "sort_column": "created_time",
        "sort_order": "A",
    }
    return success(200, "success", **{key: chunk, "page_context": context})


def merge_custom_fields(existing: list[dict[str, Any]], given: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`existing` custom fields with `given` ones set by label (others kept), numbered as Zoho does."""
    by_label = {f["label"]: dict(f) for f in existing}
    for f in given:
        by_label[f["label"]] = {"label": f["label"], "value": f.get("value"), "data_type": "string"}
    return [{**f, "index": i + 1} for i, f in enumerate(by_label.values())]


def id_order(rid: str) -> tuple[int, int, str]:
    """Lists are in id order: Zoho's numeric ids by number, ids of other shapes (records made by others)
    after them, by text."""
    return (0, int(rid), "") if rid.isdigit() else (1, 0, rid)


def is_date(value: Any) -> bool:
    return isinstance(value, str) and DATE.match(value) is not None


class Resource:
    """One Billing resource over the simulator's shared record store: read by id, saved whole."""

    kind: ClassVar[str]  # the record kind in the store, and the reply's key: "customer"
    label: ClassVar[str]  # as Zoho names it in messages: "Customer"
    missing_code: ClassVar[int] = CODE_NOT_FOUND

    def __init__(self, config: SimConfig, store: RecordStore) -> None:
        self.config = config
        self.store = store

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        return self.store.table(self.kind)

    def not_found(self) -> Reply:
        return error(self.config.not_found_status, self.missing_code, f"{self.label} does not exist.")

    def shown(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as a reply shows it (a resource may add what Zoho derives)."""
        return record

    def get(self, rid: str) -> Reply:
        record = self.records.get(rid)
        if record is None:
            return self.not_found()
        return success(200, "success", **{self.kind: self.shown(record)})

    def saved(self, status: int, message: str, rid: str, record: dict[str, Any]) -> Reply:
        """Store `record` under `rid` and answer with it."""
        self.store.put(self.kind, rid, record)
        return success(status, message, **{self.kind: self.shown(record)})
