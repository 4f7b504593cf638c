"""The replay memo: how a replay passes over an entity Zoho already holds without decoding or planning
its newest record again.

When the policy writes an entity's map row after a change (synced, or unchanged at a new position), it
also stores a digest of everything a replay of that same record would be decided from: the record's
value bytes, the mapping (its settings and the source of the code that decodes and maps), the parent's
Zoho record, and the map row as that write leaves it. It stores one only after planning the record again
against that row and finding what a replay would find: NOOP, nothing to write to the map or back to
the source. A replay whose record, mapping, parent and map row hash to the stored digest therefore
ends `unchanged`, and is recorded so without being decoded (`UnchangedInBulk`). Anything that differs
(another mapping or code version, a parent created again, a map row another write changed, a create
intent left behind) gives another digest or no memo, and the record takes the full path. Every write of
the map row sets the memo (None when it leaves none), so a memo never outlives the row it describes.
Pure, apart from reading the mapping code's source files once per process.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from consumer.entities.registry import spec_of, specs
from consumer.entities.spec import ParentRecord, PlanInput
from consumer.model.events import ChangeEvent, Op
from consumer.model.plan import Action, EntityState, MappingConfig, Plan
from consumer.pipeline.decision import entity_map
from consumer.pipeline.durability.store import EntityUpdate
from consumer.settings import Settings

#: Modules whose code decides what a record becomes, besides each spec's own (decoding included: a
#: column decoded differently is a different row).
_CORE_MODULES = (
    "consumer.pipeline.codec.decode",
    "consumer.pipeline.codec.column_values",
    "consumer.model.events",
    "consumer.model.plan",
    "consumer.pipeline.decision.entity_map",
    "consumer.pipeline.decision.row_images",
    "consumer.pipeline.replay.memo",
)

_fingerprints: dict[tuple[Any, ...], str | None] = {}


def payload_settings(settings: Settings) -> tuple[tuple[str, object], ...]:
    """The settings besides `MappingConfig` that change what is sent to Zoho, for the fingerprint: a
    memo made under other ones must not pass a record over. The organisation is one too (its map rows
    are its own already; named here so a memo never crosses organisations even by a copied row)."""
    return (
        ("organization_id", settings.zoho_organization_id),
        ("payment_mode", settings.zoho_payment_mode),
        ("default_item_id", settings.zoho_default_item_id),
        ("default_item_name", settings.zoho_default_item_name),
        ("adhoc_line_items", settings.zoho_adhoc_line_items),
        # How records made by others are matched before a create (adoption): another rule may map an
        # entity to another record, so a memo made under other rules must not pass a record over.
        ("customer_match_rules", settings.zoho_customer_match_rules),
        ("invoice_match_rules", settings.zoho_invoice_match_rules),
    )


def mapping_fingerprint(mapping: MappingConfig, settings: tuple[tuple[str, object], ...] = ()) -> str | None:
    """A digest of the mapping settings, the other settings that change payloads (`payload_settings`)
    and the source files of the code that decodes and maps (every module of the registered specs'
    package and of their plan functions); None when a source file cannot be read, which turns memos
    off."""
    registered = tuple(specs())
    cache_key = (mapping, settings, tuple(id(spec) for spec in registered))
    if cache_key not in _fingerprints:
        _fingerprints[cache_key] = _fingerprint((mapping, settings), _code_files(registered))
    return _fingerprints[cache_key]


def _code_files(registered: Iterable[Any]) -> set[Path] | None:
    """The core modules' files and every module file in the directories of the specs' functions (the
    whole `consumer/entities` package for the built-in ones): the same set in every process."""
    files: set[Path] = set()
    for name in _CORE_MODULES:
        path = getattr(importlib.import_module(name), "__file__", None)
        if path is None:
            return None
        files.add(Path(path))
    for spec in registered:
        for fn in (spec.plan, spec.plan_facts, spec.never_synced, spec.created_currency):
            path = getattr(sys.modules.get(getattr(fn, "__module__", "") or ""), "__file__", None)
            if path is None:
                return None
            files.update(Path(path).parent.glob("*.py"))
    return files


def _fingerprint(settings: Any, files: set[Path] | None) -> str | None:
    """sha256 of the settings' repr and the code files' bytes; None when the files are unknown."""
    if files is None:
        return None
    digest = hashlib.sha256(repr(settings).encode())
    try:
        for path in sorted(files):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    except OSError:
        return None
    return digest.hexdigest()


def memo_digest(fingerprint: str, value: bytes, parent: ParentRecord | None, state: EntityState) -> str:
    """The digest a replay compares with the stored memo: record, mapping, parent and map row."""
    digest = hashlib.blake2b(value, digest_size=16)
    parts = (
        fingerprint,
        parent.zoho_id if parent else None,
        parent.currency_code if parent else None,
        state.zoho_id,
        state.payload_hash,
        state.last_lsn,
        state.status,
        state.currency_code,
    )
    digest.update("\0".join(repr(part) for part in parts).encode())
    return digest.hexdigest()


def row_after(state: EntityState | None, update: EntityUpdate, *, intent_cleared: bool) -> EntityState:
    """The map row as the store's upsert leaves it (`group_writes._ENTITY_MAP_UPSERT`): the update's
    fields, with the stored ones kept where the update has none and the later source position; an update
    from an older source position than the row's only fills what the row lacks."""
    before = state or EntityState(zoho_id=None, payload_hash=None, last_lsn=None, status=None)
    positions = [p for p in (update.last_lsn, before.last_lsn) if p is not None]
    older = update.last_lsn is not None and before.last_lsn is not None and update.last_lsn < before.last_lsn

    def newer_wins(new: Any, stored: Any) -> Any:
        first, second = (stored, new) if older else (new, stored)
        return first if first is not None else second

    return EntityState(
        zoho_id=newer_wins(update.zoho_id, before.zoho_id),
        payload_hash=before.payload_hash if older else update.payload_hash,
        last_lsn=max(positions) if positions else None,
        status=newer_wins(update.zoho_status, before.status),
        rejected=before.rejected if older else update.rejected_digest,
        currency_code=newer_wins(update.currency_code, before.currency_code),
        pending_create=False if intent_cleared else before.pending_create,
        replay_memo=before.replay_memo if older else update.replay_memo,
        ahead=before.ahead if older else update.zoho_ahead,
    )


class _NeedsReads(Exception):
    """A spec's plan needs source reads: its outcome depends on more than the record and the map row."""


class NoLookups:
    """Source lookups for a plan that must not read: any read raises."""

    async def first_child_value(self, *args: Any) -> str | None:
        raise _NeedsReads


async def memo_for(
    fingerprint: str | None,
    event: ChangeEvent,
    value: bytes | None,
    after: EntityState,
    parent: ParentRecord | None,
    mapping: MappingConfig,
) -> str | None:
    """The memo to store with the map row `after`, which `event` (decoded from `value` alone) leaves;
    None unless a replay of that record against that row would certainly end `unchanged` with nothing
    to write: a whole image of a row that exists, not older than the row's position, no refusal or
    intent on record, its parent in Zoho, a plan that needs no reads and is NOOP, and a row that
    already says everything (position, image, the write-back)."""
    if fingerprint is None or value is None or event.row is None or event.unavailable:
        return None
    if event.op in (Op.DELETE, Op.TOMBSTONE) or after.rejected is not None or after.pending_create:
        return None
    if entity_map.older_than_applied(event, after):
        return None
    spec = spec_of(event.entity_type)
    if spec.parent is not None and spec.parent_id(event.row) is not None and parent is None:
        return None
    try:
        facts = await spec.plan_facts(NoLookups(), event, after)
        plan: Plan = spec.plan(PlanInput(event, after, mapping, parent, facts))
    except Exception:  # noqa: BLE001 - not mappable, or needs reads: no memo, the full path decides
        return None
    if plan.action is not Action.NOOP:
        return None
    if entity_map.unchanged(event, after, plan) is not None:
        return None
    if entity_map.settled_write_back(event, after.zoho_id) is not None:
        return None
    return memo_digest(fingerprint, value, parent, after)
