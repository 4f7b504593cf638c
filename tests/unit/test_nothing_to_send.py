"""The replay's verdict is the live policy's: over generated records, map rows, parents and settings, a
record the bulk check settles `unchanged` is one the policy decides `unchanged`, with the same sync-log
row, map row and write-back; and a memo the policy stores is matched by a replay of the same record
against the row that write leaves, which the policy, asked again, also decides `unchanged` with nothing
to write. Real `EventPolicy`, `UnchangedInBulk` and records encoded as Debezium sends them; the store and
Zoho are in-memory fakes (the applier answers as Zoho would accept the call)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.entities.registry import spec_of
from consumer.entities.spec import ParentRecord, PlanInput
from consumer.metrics import Metrics
from consumer.model.events import UNAVAILABLE_PLACEHOLDER, ChangeEvent, ColumnKind, EntityType
from consumer.model.plan import EntityState, MappingConfig, Plan
from consumer.pipeline.codec.decode import decode_event, summarize_whole
from consumer.pipeline.codec.encode import encode_event
from consumer.pipeline.decision.policy import EventPolicy, PolicyOptions
from consumer.pipeline.decision.row_images import state_digest
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.effects.apply import Applied
from consumer.pipeline.intake.scheduler import InboundRecord, Key, WorkItem
from consumer.pipeline.replay.bulk_check import UnchangedInBulk, Undecoded
from consumer.pipeline.replay.memo import row_after

PREFIX = "billing"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "debezium" / "events-plain.jsonl"
ZOHO_ID = "460000000012345"
PARENT_ZOHO_ID = "460000000054321"


def _base_row(n: int) -> tuple[str, dict[str, Any]]:
    line = json.loads(FIXTURE.read_text().splitlines()[n])
    event = decode_event(
        line["topic"],
        json.dumps(line["key"]).encode(),
        json.dumps(line["value"]).encode(),
        topic_prefix=PREFIX,
    )
    return line["topic"], dict(event.row or {})


BASES = {EntityType.CUSTOMER: _base_row(0), EntityType.INVOICE: _base_row(3)}
TWEAKS = {  # a column the mapping reads, and values it may take
    EntityType.CUSTOMER: ("phone", ["+27 21 555 0101", "+27 21 000 0000"]),
    EntityType.INVOICE: ("invoice_number", ["INV-2025-00001", "INV-2025-00099"]),
}


class _Store:
    """The entity map and source rows a decision reads, in memory."""

    def __init__(self, states: dict[Key, EntityState], rows: dict[Key, dict[str, Any]]) -> None:
        self.states, self._rows = states, rows
        self.source = self

    async def entity_state(self, entity_type: EntityType, entity_id: str) -> EntityState | None:
        return self.states.get((entity_type.value, entity_id))

    async def entity_states(self, keys: Sequence[Key]) -> dict[Key, EntityState]:
        return {key: self.states[key] for key in keys if key in self.states}

    async def source_row(self, entity_type: EntityType, entity_id: str) -> dict[str, Any] | None:
        return self._rows.get((entity_type.value, entity_id))

    async def rows(self, entity_type: EntityType, entity_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found = {i: self._rows.get((entity_type.value, i)) for i in entity_ids}
        return {i: row for i, row in found.items() if row is not None}

    async def first_child_value(self, *args: Any) -> str | None:
        return "ZAR"


class _Zoho:
    """Accepts every call, as Zoho would."""

    async def apply(
        self, entity_type: Any, entity_id: str, plan: Plan, row: Any, zoho_id: Any, **_: Any
    ) -> Any:
        return Applied(zoho_id or ZOHO_ID, plan.status or "sent", 200, 1, 1)


class _Locks:
    @contextlib.asynccontextmanager
    async def locked(self, key: Key) -> AsyncIterator[None]:
        yield


def _policy(store: _Store, mapping: MappingConfig, ignore_stale: bool) -> EventPolicy:
    options = PolicyOptions(mapping, False, ignore_stale, "zoho-cdc.dlq", PREFIX)
    recorder = OutcomeRecorder(store, "group", Metrics())  # type: ignore[arg-type]
    return EventPolicy(options, recorder, None, _Zoho(), _Locks())  # type: ignore[arg-type]


async def _bulk(policy: EventPolicy, store: _Store, entry: tuple[Key, WorkItem, Undecoded | None]) -> Any:
    """What the bulk check does with one record: the outcome it settles, or None (handed on)."""
    settled: list[Outcome] = []

    def fail(exc: BaseException) -> None:
        raise exc

    check = UnchangedInBulk(
        store,  # type: ignore[arg-type]
        policy,
        settle=lambda item, outcome: settled.append(outcome),
        work=lambda key, item: None,
        fail=fail,
        decode=lambda record: (
            decode_event(record.topic, record.key, record.value, topic_prefix=PREFIX),
            None,
        ),
    )
    await check._check([entry])
    return settled[0] if settled else None


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    entity = draw(st.sampled_from([EntityType.CUSTOMER, EntityType.INVOICE]))
    column, values = TWEAKS[entity]
    spec = spec_of(entity)
    topic, base = BASES[entity]
    echo = draw(st.booleans())  # the row already says 'synced' and the Zoho id (a write-back's echo)
    row = dict(base) | {
        column: draw(st.sampled_from(values)),
        "zoho_sync_status": "synced"
        if echo
        else draw(st.sampled_from([None, "synced", "pending", "failed"])),
        spec.write_back_id_column: ZOHO_ID if echo else draw(st.sampled_from([None, ZOHO_ID, "4600000001"])),
    }
    text = sorted(c for c, kind in spec.columns.items() if kind is ColumnKind.TEXT and c in row)
    placeholder = draw(st.sampled_from([None] * len(text) + text))  # mapped or not: a column left unavailable
    if placeholder is not None:
        row[placeholder] = UNAVAILABLE_PLACEHOLDER
    op = draw(st.sampled_from(["c", "u", "r", "u", "d"]))
    lsn = draw(st.sampled_from([100, 200, 300]))
    key, value = encode_event(
        entity, op, row, key_id=str(row["id"]), topic_prefix=PREFIX, lsn=lsn, ts_ms=1795564368864
    )
    record = InboundRecord(topic, 0, 7, key, value)
    event = decode_event(record.topic, key, value, topic_prefix=PREFIX)
    mapping = MappingConfig(default_currency=draw(st.sampled_from(["ZAR", "USD"])))
    parent = None
    if spec.parent is not None and draw(st.booleans()):
        parent = EntityState(
            zoho_id=draw(st.sampled_from([PARENT_ZOHO_ID, None])),
            payload_hash="p" * 64,
            last_lsn=50,
            status="active",
            currency_code=draw(st.sampled_from(["ZAR", "USD", None])),
        )
    state = draw(_map_rows(event, mapping, parent)) if draw(st.integers(0, 4)) else None
    return {"event": event, "record": record, "state": state, "parent": parent, "mapping": mapping,
            "ignore_stale": draw(st.booleans())}  # fmt: skip


@st.composite
def _map_rows(draw: st.DrawFn, event: ChangeEvent, mapping: MappingConfig, parent: EntityState | None) -> Any:
    """The map row Zoho would hold for this record (its payload hash and status), at some position, with
    up to two of its fields changed."""
    in_zoho = EntityState(zoho_id=ZOHO_ID, payload_hash=None, last_lsn=None, status=None)
    parent_record = ParentRecord(parent.zoho_id, parent.currency_code) if parent and parent.zoho_id else None
    try:
        plan = spec_of(event.entity_type).plan(PlanInput(event, in_zoho, mapping, parent_record, {}))
        held = EntityState(ZOHO_ID, plan.payload_hash, event.lsn, plan.status, currency_code="ZAR")
    except Exception:  # noqa: BLE001 - not mappable: any row will do
        held = EntityState(ZOHO_ID, "0" * 64, event.lsn, "sent")
    digest = state_digest(event.entity_type, event.row) if event.row is not None else "d" * 64
    changes = {
        "zoho_id": st.sampled_from([None, "460000000000001"]),
        "payload_hash": st.sampled_from([None, "0" * 64]),
        "status": st.sampled_from([None, "active", "inactive", "sent", "draft", "paid", "void"]),
        "rejected": st.sampled_from([digest, "r" * 64]),
        "currency_code": st.sampled_from([None, "USD"]),
        "pending_create": st.just(True),
        "ahead": st.sampled_from(["paid", "inactive"]),
    }
    size = draw(st.integers(0, 2))
    fields = draw(st.lists(st.sampled_from(sorted(changes)), min_size=size, max_size=size, unique=True))
    position = draw(st.sampled_from([event.lsn, None, 100, 200, 300]))  # later than the record's: stale
    return dataclasses.replace(held, last_lsn=position, **{field: draw(changes[field]) for field in fields})


def _parent_key(event: ChangeEvent) -> Key | None:
    spec = spec_of(event.entity_type)
    parent_id = spec.parent_id(event.row) if event.row is not None else None
    return (spec.parent.entity.value, parent_id) if spec.parent is not None and parent_id else None


def _stores(case: dict[str, Any], state: EntityState | None) -> _Store:
    event: ChangeEvent = case["event"]
    key = (event.entity_type.value, event.entity_id)
    states = {} if state is None else {key: state}
    parent_key = _parent_key(event)
    if parent_key is not None and case["parent"] is not None:
        states[parent_key] = case["parent"]
    rows = {} if event.row is None else {key: dict(event.row)}
    return _Store(states, rows)


async def _live(case: dict[str, Any], state: EntityState | None) -> Any:
    policy = _policy(_stores(case, state), case["mapping"], case["ignore_stale"])
    return await policy.decide(WorkItem(case["record"], case["event"], None), case["event"])


async def _replayed(case: dict[str, Any], state: EntityState | None, *, undecoded: bool) -> Any:
    store = _stores(case, state)
    policy = _policy(store, case["mapping"], case["ignore_stale"])
    event: ChangeEvent = case["event"]
    key = (event.entity_type.value, event.entity_id)
    if not undecoded:
        return await _bulk(policy, store, (key, WorkItem(case["record"], event, None), None))
    record = case["record"]
    read = summarize_whole(record.topic, record.key, record.value, topic_prefix=PREFIX)
    if read is None or not read[0].whole:
        return None  # the replay decodes such a record: no memo is looked at
    entry = (key, WorkItem(record, None, None), Undecoded(read[0], _parent_key(event)))
    return await _bulk(policy, store, entry)


def _unchanged(decision: Any) -> bool:
    return isinstance(decision, Outcome) and [row.outcome for row in decision.rows] == ["unchanged"]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_what_the_replay_settles_unchanged_the_live_policy_decides_unchanged(case: dict[str, Any]) -> None:
    state = case["state"]
    live = asyncio.run(_live(case, state))
    bulk = asyncio.run(_replayed(case, state, undecoded=False))
    if bulk is not None:
        assert _unchanged(live)
        assert (bulk.rows, bulk.entity, bulk.write_back) == (live.rows, live.entity, live.write_back)
    memo = getattr(getattr(live, "entity", None), "replay_memo", None)
    if memo is None:
        return
    # The row that write leaves, memo included: a replay of the record matches it, undecoded...
    synced = live.rows[0].outcome == "synced"
    after = dataclasses.replace(row_after(state, live.entity, intent_cleared=synced), replay_memo=memo)
    replayed = asyncio.run(_replayed(case, after, undecoded=True))
    assert replayed is not None, "a memo the policy stored is not matched by a replay of its record"
    # ...and the live policy, asked again, ends the same way with nothing to write.
    again = asyncio.run(_live(case, after))
    assert _unchanged(again) and again.entity is None and again.write_back is None
    assert replayed.rows == again.rows


def test_the_generated_cases_reach_every_verdict() -> None:
    """The property above is not vacuous: the bulk check settles some records, hands others on, and some
    live decisions leave a memo that a replay matches."""
    seen: set[str] = set()

    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(cases())
    def collect(case: dict[str, Any]) -> None:
        live = asyncio.run(_live(case, case["state"]))
        bulk = asyncio.run(_replayed(case, case["state"], undecoded=False))
        seen.add("settled" if bulk is not None else "handed on")
        if getattr(getattr(live, "entity", None), "replay_memo", None) is not None:
            seen.add(f"memo after {live.rows[0].outcome}")

    collect()
    assert {"settled", "handed on", "memo after unchanged", "memo after synced"} <= seen
