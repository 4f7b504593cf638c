"""The replay memo: stored only when a replay of the same record would end `unchanged` with nothing to
write, and matched only by the same record, mapping, parent and map row. Real Debezium 3.6 events from
the captured fixtures; the store's upsert is checked against `row_after` in tests/consumer/test_store.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from consumer.entities.registry import spec_of, specs
from consumer.entities.spec import ParentRecord, PlanInput
from consumer.model.events import ChangeEvent, DecodeError, Op
from consumer.model.plan import EntityState, MappingConfig
from consumer.pipeline.codec import decode
from consumer.pipeline.codec.decode import decode_event, summarize_whole
from consumer.pipeline.decision import nothing_to_send, parents, policy
from consumer.pipeline.durability.rows import EntityUpdate
from consumer.pipeline.replay import bulk_check
from consumer.pipeline.replay import memo as replay_memo
from consumer.pipeline.replay.memo import memo_digest, memo_for, row_after
from consumer.settings import Settings
from tests.unit.test_change_summary import PREFIX, RECORDS

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"
MAPPING = MappingConfig()
FINGERPRINT = "f" * 64


ZOHO_ID = "460000000012345"


def _captured(stem: str, n: int) -> tuple[ChangeEvent, bytes]:
    """A captured event as the echo of its write-back: the row says 'synced' and the Zoho id."""
    line = json.loads((FIXTURES / f"{stem}.jsonl").read_text().splitlines()[n])
    value = json.dumps(line["value"]).encode()
    event = decode_event(line["topic"], json.dumps(line["key"]).encode(), value, topic_prefix=PREFIX)
    id_column = spec_of(event.entity_type).write_back_id_column
    echo = dict(event.row or {}) | {"zoho_sync_status": "synced", id_column: ZOHO_ID}
    return dataclasses.replace(event, row=echo), value


def _synced_row(event: ChangeEvent, parent: ParentRecord | None = None, **fields: Any) -> EntityState:
    """The map row an entity has once Zoho holds exactly what `event` maps to."""
    spec = spec_of(event.entity_type)
    plan = spec.plan(PlanInput(event, None, MAPPING, parent, {"currency_code": "ZAR"}))
    assert plan.payload_hash is not None
    state = EntityState(
        zoho_id=ZOHO_ID,
        payload_hash=plan.payload_hash,
        last_lsn=event.lsn,
        status=plan.status if event.entity_type.value == "customer" else "sent",
        currency_code="ZAR" if event.entity_type.value == "customer" else None,
    )
    return dataclasses.replace(state, **fields)


def _memo(event: ChangeEvent, value: bytes, state: EntityState, parent: ParentRecord | None = None) -> Any:
    return asyncio.run(memo_for(FINGERPRINT, event, value, state, parent, MAPPING))


CUSTOMER, CUSTOMER_VALUE = _captured("events-plain", 0)
PARENT = ParentRecord("460000000054321", "ZAR")


def test_a_record_replayed_against_the_row_it_left_gets_a_memo_that_its_own_digest_matches() -> None:
    state = _synced_row(CUSTOMER)
    memo = _memo(CUSTOMER, CUSTOMER_VALUE, state)
    assert memo is not None
    assert memo == memo_digest(FINGERPRINT, CUSTOMER_VALUE, None, state)


@pytest.mark.parametrize(
    "change",
    [
        {"payload_hash": "0" * 64},  # Zoho holds something else: the replay would update it
        {"zoho_id": None},  # not in Zoho: the replay would create it
        {"pending_create": True},  # a create may be in flight: the policy looks it up
        {"rejected": "digest"},  # a refused state on record: the policy compares it
        {"last_lsn": (CUSTOMER.lsn or 0) + 1},  # the row holds a later change: the record is stale
        {"last_lsn": (CUSTOMER.lsn or 0) - 1},  # the record would move the position: the map is written
        {"status": "inactive"},  # the replay would reactivate it
    ],
)
def test_no_memo_when_a_replay_would_not_end_unchanged_with_nothing_to_write(change: dict[str, Any]) -> None:
    assert _memo(CUSTOMER, CUSTOMER_VALUE, _synced_row(CUSTOMER, **change)) is None


def test_no_memo_for_an_image_with_an_unavailable_column_or_for_a_delete() -> None:
    state = _synced_row(CUSTOMER)
    partial = dataclasses.replace(CUSTOMER, unavailable=frozenset({"billing_address"}))
    assert _memo(partial, CUSTOMER_VALUE, state) is None
    deleted = dataclasses.replace(CUSTOMER, op=Op.DELETE)
    assert _memo(deleted, CUSTOMER_VALUE, state) is None


def test_no_memo_when_the_row_must_still_be_written_back() -> None:
    """A row that does not say 'synced' and the id yet: a replay would write them back."""
    for change in ({"zoho_sync_status": "pending"}, {"zoho_billing_customer_id": None}):
        row = dict(CUSTOMER.row or {}) | change
        assert _memo(dataclasses.replace(CUSTOMER, row=row), CUSTOMER_VALUE, _synced_row(CUSTOMER)) is None


def test_an_invoice_gets_a_memo_only_with_its_customer_in_zoho() -> None:
    invoice, value = _captured("events-plain", 3)
    state = _synced_row(invoice, PARENT)
    assert _memo(invoice, value, state, None) is None
    memo = _memo(invoice, value, state, PARENT)
    assert memo is not None and memo == memo_digest(FINGERPRINT, value, PARENT, state)


@pytest.mark.parametrize(
    "changed",
    ["value", "fingerprint", "parent id", "parent currency", "zoho id", "hash", "lsn", "status", "currency"],
)
def test_the_digest_changes_with_each_thing_a_replay_is_decided_from(changed: str) -> None:
    state = _synced_row(CUSTOMER)
    value, fingerprint, parent = CUSTOMER_VALUE, FINGERPRINT, PARENT
    if changed == "value":
        value = value.replace(b'"op": "r"', b'"op": "c"')
        assert value != CUSTOMER_VALUE
    elif changed == "fingerprint":
        fingerprint = "e" * 64
    elif changed == "parent id":
        parent = ParentRecord("460000000099999", "ZAR")
    elif changed == "parent currency":
        parent = ParentRecord(PARENT.zoho_id, "USD")
    else:
        field, new = {
            "zoho id": ("zoho_id", "460000000099999"),
            "hash": ("payload_hash", "1" * 64),
            "lsn": ("last_lsn", 1),
            "status": ("status", "inactive"),
            "currency": ("currency_code", "USD"),
        }[changed]
        state = dataclasses.replace(state, **{field: new})
    before = memo_digest(FINGERPRINT, CUSTOMER_VALUE, PARENT, _synced_row(CUSTOMER))
    assert memo_digest(fingerprint, value, parent, state) != before


def test_the_row_after_a_write_keeps_stored_fields_the_write_leaves_out_and_the_later_position() -> None:
    before = EntityState(zoho_id="z1", payload_hash="h0", last_lsn=500, status="active", currency_code="ZAR")
    update = EntityUpdate(CUSTOMER.entity_type, CUSTOMER.entity_id, None, "h1", None, None, None)
    after = row_after(before, update, intent_cleared=False)
    assert (after.zoho_id, after.payload_hash, after.last_lsn, after.status, after.currency_code) == (
        "z1",
        "h1",
        500,
        "active",
        "ZAR",
    )
    older = EntityUpdate(CUSTOMER.entity_type, CUSTOMER.entity_id, "z9", "h1", 400, "inactive", None)
    after = row_after(dataclasses.replace(before, zoho_id=None), older, intent_cleared=False)
    assert (after.zoho_id, after.payload_hash, after.last_lsn, after.status) == ("z9", "h0", 500, "active")
    update = EntityUpdate(CUSTOMER.entity_type, CUSTOMER.entity_id, "z2", "h2", 600, "inactive", None, None)
    after = row_after(dataclasses.replace(before, pending_create=True), update, intent_cleared=True)
    assert (after.zoho_id, after.last_lsn, after.status, after.pending_create) == (
        "z2",
        600,
        "inactive",
        False,
    )


def test_the_mapping_fingerprint_follows_the_settings_and_the_code(tmp_path: Path) -> None:
    assert replay_memo.mapping_fingerprint(MAPPING) == replay_memo.mapping_fingerprint(MappingConfig())
    other = MappingConfig(default_currency="USD")
    assert replay_memo.mapping_fingerprint(other) != replay_memo.mapping_fingerprint(MAPPING)
    code = tmp_path / "rules.py"
    code.write_text("RATE = 1\n")
    first = replay_memo._fingerprint(MAPPING, {code})
    code.write_text("RATE = 2\n")
    assert replay_memo._fingerprint(MAPPING, {code}) != first
    assert replay_memo._fingerprint(MAPPING, None) is None  # code that cannot be read turns memos off


def _read_by_the_rule() -> set[Path]:
    """The source files the rule reads, found from what its namespace holds (not from its imports' text,
    as the memo finds them): the packages of the rule and of everything it uses, of the policy and parent
    steps that ask it, of the registered specs' plans, of the decode a replay reads records with, and of
    the memo and bulk check."""
    used = {nothing_to_send, policy, parents, decode, replay_memo, bulk_check}
    for spec in specs():  # the rule plans through each registered spec: its package is read too
        used.update(sys.modules[fn.__module__] for fn in (spec.plan, spec.plan_facts, spec.never_synced))
    for value in vars(nothing_to_send).values():
        name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
        if isinstance(name, str) and name.split(".")[0] == "consumer":
            used.add(sys.modules[name])
    return {path for module in used for path in Path(str(module.__file__)).parent.glob("*.py")}


def test_editing_any_module_the_rule_reads_changes_the_memo_fingerprint(tmp_path: Path) -> None:
    """The fingerprint over a copy of the sources, with one byte changed in each module in turn."""
    root = replay_memo.SOURCE_ROOT
    shutil.copytree(root / "consumer", tmp_path / "consumer", ignore=shutil.ignore_patterns("__pycache__"))

    def fingerprint() -> str | None:
        return replay_memo._fingerprint(MAPPING, replay_memo.code_files(specs(), tmp_path))

    before = fingerprint()
    assert before is not None
    read = sorted(_read_by_the_rule())
    names = {path.relative_to(root).as_posix() for path in read}
    assert {"consumer/pipeline/decision/policy.py", "consumer/pipeline/decision/parents.py"} <= names
    assert {
        "consumer/model/plan.py",
        "consumer/entities/customers/spec.py",
        "consumer/pipeline/codec/decode.py",
    } <= names
    for path in read:
        copy = tmp_path / path.relative_to(root)
        original = copy.read_bytes()
        # One byte changed, the code still valid: the last newline made a space (or a comment begun).
        copy.write_bytes(original[:-1] + (b" " if original.endswith(b"\n") else b"\n") if original else b"#")
        assert fingerprint() != before, f"editing {path.relative_to(root)} left the fingerprint as it was"
        copy.write_bytes(original)
    assert fingerprint() == before


def test_the_memo_digest_covers_every_map_row_field_a_replay_is_decided_from() -> None:
    """A field added to `EntityState` is in the digest without anyone listing it: only the memo itself, the
    remembered image (never read for a whole image) and the row's write count (every write moves it, and
    no decision reads it) are left out."""
    state = _synced_row(CUSTOMER)
    before = memo_digest(FINGERPRINT, CUSTOMER_VALUE, None, state)
    others = {str: "other", bool: True, int: 7}
    for field in dataclasses.fields(EntityState):
        value = getattr(state, field.name)
        changed = dataclasses.replace(state, **{field.name: others.get(type(value), "other")})
        same = memo_digest(FINGERPRINT, CUSTOMER_VALUE, None, changed) == before
        assert same == (field.name in {"replay_memo", "source_row", "version"}), field.name


@pytest.mark.parametrize(
    "changed",
    [
        {"zoho_organization_id": "20468013"},
        {"zoho_payment_mode": "cash"},
        {"zoho_default_item_id": "903000000000042"},
        {"zoho_default_item_name": "Line"},
        {"zoho_adhoc_line_items": True},
        {"zoho_customer_match_rules": "email"},
        {"zoho_invoice_match_rules": ""},
    ],
)
def test_the_settings_that_change_payloads_besides_the_mapping_change_the_fingerprint(changed: dict) -> None:
    """A memo made under another payment mode, default item, ad-hoc rule, match rules or organisation never
    passes a record over."""
    base = Settings(_env_file=None, zoho_organization_id="10234695")  # type: ignore[call-arg]
    other = base.model_copy(update=changed)
    same = replay_memo.mapping_fingerprint(MAPPING, replay_memo.payload_settings(base))
    assert same == replay_memo.mapping_fingerprint(MAPPING, replay_memo.payload_settings(base.model_copy()))
    assert replay_memo.mapping_fingerprint(MAPPING, replay_memo.payload_settings(other)) != same


@pytest.mark.parametrize(("name", "topic", "key", "value"), RECORDS, ids=[r[0] for r in RECORDS])
def test_every_captured_event_read_whole_says_what_its_decode_says(
    name: str, topic: str, key: bytes | None, value: bytes | None
) -> None:
    """What a replay reads of a record it does not decode (summary, parent id) is what decoding gives;
    a delete, a placeholder or an unusual shape is left to the decode."""
    try:
        read = summarize_whole(topic, key, value, topic_prefix=PREFIX)
    except DecodeError:
        return
    try:
        event = decode_event(topic, key, value, topic_prefix=PREFIX)
    except DecodeError:
        assert read is None  # a shape the decode refuses is never read whole
        return
    if read is None:
        return
    summary, image = read
    assert event.op is not Op.DELETE and not event.unavailable
    assert (summary.entity_type, summary.entity_id, summary.op, summary.lsn) == (
        event.entity_type,
        event.entity_id,
        event.op,
        event.lsn,
    )
    spec = spec_of(event.entity_type)
    assert spec.parent_id(image) == spec.parent_id(event.row)


def test_some_captured_events_are_read_whole() -> None:
    whole = [r for r in RECORDS if summarize_whole(r[1], r[2], r[3], topic_prefix=PREFIX) is not None]
    assert len(whole) >= 4
