"""The replay memo: a digest, stored with an entity's map row, that lets a replay record the entity's
newest record `unchanged` without decoding it. It is stored only where the rule
(`decision.nothing_to_send`) finds nothing to send and nothing to write for that record alone, and it
hashes the record's bytes, the parent's Zoho record, every map-row field, the payload settings and the
source of the code the rule reads: anything that differs gives another digest, and the full path decides.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import consumer
from consumer.entities.registry import specs
from consumer.entities.spec import ParentRecord
from consumer.model.events import ChangeEvent, Op
from consumer.model.plan import EntityState, MappingConfig
from consumer.pipeline.codec import decode
from consumer.pipeline.decision import entity_map, nothing_to_send
from consumer.pipeline.decision.nothing_to_send import unchanged_without_reads
from consumer.pipeline.durability.rows import EntityUpdate
from consumer.settings import Settings

#: Where the code a memo stands for begins: the rule that says nothing is to be sent, the decode a
#: replay reads records with (a column decoded differently is a different row) and this module. Every
#: module of their packages and of the packages they import is hashed (`code_files`).
_ROOTS: Final = (nothing_to_send.__name__, decode.__name__, __name__)

#: The project's source tree: the directory that holds the `consumer` package.
SOURCE_ROOT: Final = Path(consumer.__file__).resolve().parent.parent

#: Map-row fields a replay is not decided from: the memo itself, and the remembered image (it only fills
#: a partial image, and memos are made and matched for whole ones only). Every other field is hashed.
_NOT_DECIDED_FROM: Final = frozenset({"replay_memo", "source_row", "version"})
_DECIDED_FROM: Final = tuple(
    f.name for f in dataclasses.fields(EntityState) if f.name not in _NOT_DECIDED_FROM
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


def mapping_fingerprint(
    mapping: MappingConfig, settings: tuple[tuple[str, object], ...] = (), source_root: Path = SOURCE_ROOT
) -> str | None:
    """A digest of the mapping settings, the other settings that change payloads (`payload_settings`)
    and the source files of the code a memo stands for (`code_files`); None when a source file cannot
    be read, which turns memos off."""
    registered = tuple(specs())
    cache_key = (mapping, settings, tuple(id(spec) for spec in registered), source_root)
    if cache_key not in _fingerprints:
        _fingerprints[cache_key] = _fingerprint((mapping, settings), code_files(registered, source_root))
    return _fingerprints[cache_key]


def code_files(registered: Iterable[Any], source_root: Path = SOURCE_ROOT) -> set[Path] | None:
    """Every module of the packages `_ROOTS` and the registered specs' function modules live in and
    import (read from their source, type-only imports included): the same set in every process. None
    when a file cannot be found."""
    roots = list(_ROOTS)
    for spec in registered:
        fns = (spec.plan, spec.plan_facts, spec.never_synced, spec.created_currency)
        roots.extend(getattr(fn, "__module__", "") or "" for fn in fns)
    packages: set[Path] = set()
    for name in roots:
        path = _source_of(source_root, name)
        if path is None:
            return None
        packages.add(path.parent)
        try:
            # a spec's folder holds its own rules; what it imports (the shared spec types, another
            # entity's rules) lives in other packages, hashed as the rule's imports are
            packages.update(_package_dirs(source_root, _imported(path)))
        except (OSError, SyntaxError, ValueError):
            return None
    return {file for package in packages for file in package.glob("*.py")}


def _source_of(source_root: Path, module: str) -> Path | None:
    """The file of a module under `source_root`; else (a spec from elsewhere) the loaded module's."""
    if module:
        base = source_root.joinpath(*module.split("."))
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
    loaded = getattr(sys.modules.get(module), "__file__", None)
    return None if loaded is None else Path(loaded)


def _imported(path: Path) -> Iterator[str]:
    """The absolute module names a source file imports (relative imports are not used here)."""
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def _package_dirs(source_root: Path, modules: Iterable[str]) -> Iterator[Path]:
    """The package directories of the project's modules among `modules` (other imports are not ours)."""
    for module in modules:
        base = source_root.joinpath(*module.split("."))
        if base.is_dir() and (base / "__init__.py").is_file():
            yield base  # `from package import module`: the package
        elif base.with_suffix(".py").is_file():
            yield base.parent


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
        *(getattr(state, name) for name in _DECIDED_FROM),
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
    moved_on = state is not None and update.planned_version not in (None, state.version)

    def newer_wins(new: Any, stored: Any) -> Any:
        first, second = (stored, new) if older else (new, stored)
        return first if first is not None else second

    return EntityState(
        zoho_id=newer_wins(update.zoho_id, before.zoho_id),
        payload_hash=None if moved_on else before.payload_hash if older else update.payload_hash,
        last_lsn=max(positions) if positions else None,
        status=newer_wins(update.zoho_status, before.status),
        rejected=before.rejected if older else update.rejected_digest,
        currency_code=newer_wins(update.currency_code, before.currency_code),
        pending_create=False if intent_cleared else before.pending_create,
        replay_memo=before.replay_memo if older else update.replay_memo,
        ahead=before.ahead if older else update.zoho_ahead,
        version=0 if state is None else (state.version or 0) + 1,  # every write is a new version
    )


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
    if fingerprint is None or value is None or event.unavailable or event.op in (Op.DELETE, Op.TOMBSTONE):
        return None  # only the record alone, a whole image of a row that exists, is read by a replay
    plan = await unchanged_without_reads(event, after, parent, mapping)
    if plan is None:
        return None
    if entity_map.unchanged(event, after, plan) is not None:
        return None
    if entity_map.missing_write_back(event, after.zoho_id) is not None:
        return None
    return memo_digest(fingerprint, value, parent, after)
