"""Plans: which Zoho call a change event needs, as plain values, and the rules every entity shares.

Pure data and functions, no I/O. Each entity's own rules (its payload, its statuses) are in its spec
module in `consumer.entities`; here are the values they return (`Plan`, `Action`), what the entity
map knows (`EntityState`), and the payload hash that tells an echo from a change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from consumer.model.events import ChangeEvent
from consumer.settings import Settings, setting_default


class MappingError(ValueError):
    """Raised when a row cannot be mapped (e.g. a line item without a usable price); send to the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MappingConfig:
    """What the mapping reads of the settings; defaults are the settings' own."""

    account_number_field: str = setting_default("zoho_account_number_field")  # Zoho custom-field label
    default_currency: str = setting_default("zoho_default_currency")
    suspended_status: str = setting_default("zoho_suspended_customer_status")  # Zoho status when suspended

    @classmethod
    def from_settings(cls, settings: Settings) -> MappingConfig:
        return cls(
            account_number_field=settings.zoho_account_number_field,
            default_currency=settings.zoho_default_currency,
            suspended_status=settings.zoho_suspended_customer_status,
        )


# --- hashing ------------------------------------------------------------------------------


#: Fields Zoho takes on create only. An update never sends them (a customer keeps the currency it
#: was created with), so they are not part of what an update compares either.
CREATE_ONLY_FIELDS: Final = frozenset({"currency_code"})


def payload_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of canonical JSON (sorted keys, no spaces); stable under key order.

    Decimals hash by numeric value (1.0 == 1.00), dates and datetimes by ISO-8601. Create-only
    fields are left out, so a create and the updates after it hash alike.
    """
    compared = {k: v for k, v in payload.items() if k not in CREATE_ONLY_FIELDS}
    text = json.dumps(compared, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, dt.date):  # datetime too
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --- planning -----------------------------------------------------------------------------


class Action(StrEnum):
    """The Zoho call (or non-call) a change event needs."""

    CREATE_CUSTOMER = "create_customer"
    UPDATE_CUSTOMER = "update_customer"
    MARK_CUSTOMER_INACTIVE = "mark_customer_inactive"
    # Reactivation: mark active, then PUT `payload` unless its hash equals the stored one.
    MARK_CUSTOMER_ACTIVE = "mark_customer_active"
    CREATE_INVOICE = "create_invoice"
    UPDATE_INVOICE = "update_invoice"
    OPEN_INVOICE = "open_invoice"  # draft -> open (converttoopen), content unchanged
    RECORD_PAYMENT = "record_payment"  # open (or draft: opened first) -> paid, content unchanged
    VOID_INVOICE = "void_invoice"
    DELETE_INVOICE = "delete_invoice"
    SKIP = "skip"  # nothing to do by rule (tombstone, internal test, never synced, not editable)
    NOOP = "noop"  # Zoho already matches
    # Zoho moved on its own (paid in the portal, voided or made inactive by hand) and the source has not
    # caught up: what the source asks for, Zoho would refuse or zoho-cdc would undo a person's change.
    ZOHO_AHEAD = "zoho_ahead"


@dataclass(frozen=True)
class EntityState:
    """What the entity map knows about one source row's Zoho counterpart."""

    zoho_id: str | None
    payload_hash: str | None
    last_lsn: int | None
    status: str | None  # Zoho status: "active"/"inactive", "draft"/"sent"/"void"/...
    source_row: Mapping[str, Any] | None = None  # last full image of the mapped columns (decoded values)
    rejected: str | None = None  # digest of the mapped state Zoho (or the mapping) last refused
    currency_code: str | None = None  # customers: the currency the Zoho record was created with
    pending_create: bool = False  # a create intent is left: the create may have reached Zoho
    replay_memo: str | None = None  # see `consumer.pipeline.replay.memo`
    ahead: str | None = None  # Zoho's status when Zoho moved on its own, not by zoho-cdc (`ZohoAhead`)
    version: int | None = None  # the map row's write count when read (None: no row): see `write_lease`


@dataclass(frozen=True)
class Plan:
    """The decision for one event. `payload_hash` is None when the payload is partial."""

    action: Action | str  # an entity of its own may name its calls with plain strings
    payload: dict[str, Any] | None
    payload_hash: str | None
    reason: str
    needs_parent: str | None = None  # the parent's source id, when its Zoho record is required first
    status: str | None = None  # the Zoho status the record ends in (customers) / the source stage (invoices)
    from_status: str | None = None  # the Zoho status the entity map knows, when the plan was made

    @property
    def makes_call(self) -> bool:
        return self.action not in (Action.SKIP, Action.NOOP, Action.ZOHO_AHEAD)


DELETED_WHILE_CREATING: Final = "deleted in the source while its create was unresolved (may be in Zoho)"
VOIDED_WHILE_CREATING: Final = "void in the source while its create was unresolved (may be in Zoho)"
TEST_ACCOUNT_WHILE_CREATING: Final = (
    "became an internal test account while its create was unresolved (may be in Zoho)"
)


def skip(reason: str) -> Plan:
    return Plan(Action.SKIP, None, None, reason)


def is_synced(state: EntityState | None) -> bool:
    return state is not None and state.zoho_id is not None


def require_natural_key(row: Mapping[str, Any], column: str, what: str) -> None:
    """A create needs the key that finds the record in Zoho again after a lost reply (no duplicates)."""
    if not as_text(row.get(column)):
        raise MappingError(
            f"the {what} has no {column}, the key that finds it in Zoho again; it is not created"
        )


def without_create_only(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in CREATE_ONLY_FIELDS}


def row_of(event: ChangeEvent) -> Mapping[str, Any]:
    if event.row is None:  # decode guarantees a row for c/r/u
        raise MappingError(f"{event.op.value} event for {event.entity_id} has no row")
    return event.row


def as_text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())
