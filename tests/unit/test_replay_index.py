"""The backfill's first pass: which record of each entity the second pass applies (pure, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.model.events import ChangeEvent, ChangeSummary, EntityType, Op
from consumer.pipeline.codec.decode import summarize_change
from consumer.pipeline.replay.index import ReplayIndex, Role, Superseded
from tests.support import envelope

T = "p.public.customers"


def change(
    lsn: int | None,
    *,
    partial: bool = False,
    op: Op = Op.UPDATE,
    entity_id: str = "a",
    snapshot: bool = False,
) -> ChangeEvent:
    row = None if op is Op.DELETE else {"id": entity_id, "phone": str(lsn)}
    return ChangeEvent(
        entity_type=EntityType.CUSTOMER,
        entity_id=entity_id,
        op=op,
        row=row,
        unavailable=frozenset({"billing_address"}) if partial else frozenset(),
        lsn=lsn,
        tx_id=None,
        snapshot=snapshot,
        source_ts_ms=None,
    )


KEY = ("customer", "a")


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        # (partition, offset, event) in arrival order -> role of each record
        ([(0, 0, change(10)), (0, 1, change(20)), (0, 2, change(30))], ["superseded", "superseded", "apply"]),
        # through two partitions: the newest LSN wins, not the last arrival
        ([(0, 0, change(10)), (1, 0, change(30)), (0, 1, change(20))], ["superseded", "apply", "superseded"]),
        # a partial newest image keeps the full image before it and the partial ones in between
        (
            [
                (0, 0, change(10)),
                (0, 1, change(20)),
                (0, 2, change(30, partial=True)),
                (0, 3, change(40, partial=True)),
            ],
            ["superseded", "merge", "merge", "apply"],
        ),
        # a delete needs nothing before it
        ([(0, 0, change(10)), (0, 1, change(20, op=Op.DELETE))], ["superseded", "apply"]),
        # equal positions (a redelivery): the later arrival is applied
        ([(0, 0, change(10)), (0, 1, change(10))], ["superseded", "apply"]),
        # without LSNs, arrival order stands
        ([(0, 0, change(None)), (0, 1, change(None))], ["superseded", "apply"]),
        # a snapshot read carries the LSN its snapshot began at: a transaction open then, committed after
        # it, is streamed after the read with its own lower LSN, and is the newer state
        ([(0, 0, change(300, op=Op.READ, snapshot=True)), (0, 1, change(200))], ["superseded", "apply"]),
        # ... partial too: the read is the full image it is made whole from
        (
            [(0, 0, change(300, op=Op.READ, snapshot=True)), (0, 1, change(200, partial=True))],
            ["merge", "apply"],
        ),
        # ... and a delete
        (
            [(0, 0, change(300, op=Op.READ, snapshot=True)), (0, 1, change(200, op=Op.DELETE))],
            ["superseded", "apply"],
        ),
        # an incremental snapshot read (no LSN) after a streamed change: arrival order stands
        ([(0, 0, change(200)), (0, 1, change(None, op=Op.READ, snapshot=True))], ["superseded", "apply"]),
        # a read of a later snapshot after a streamed change: arrival order stands
        ([(0, 0, change(200)), (0, 1, change(300, op=Op.READ, snapshot=True))], ["superseded", "apply"]),
        # through two partitions with a read among them, arrival order stands, as in the live path
        # (`in_source_order`): a read's LSN cannot say whether a streamed change committed before it
        ([(0, 0, change(300, op=Op.READ, snapshot=True)), (1, 0, change(200))], ["superseded", "apply"]),
        ([(1, 0, change(200)), (0, 0, change(300, op=Op.READ, snapshot=True))], ["superseded", "apply"]),
        # streamed changes around a snapshot read: the last one wins, whatever the read's LSN
        (
            [(0, 0, change(100)), (0, 1, change(300, op=Op.READ, snapshot=True)), (0, 2, change(200))],
            ["superseded", "superseded", "apply"],
        ),
    ],
)
def test_the_second_pass_applies_only_the_newest_record_of_an_entity(records, expected):  # type: ignore[no-untyped-def]
    index = ReplayIndex()
    for partition, offset, event in records:
        index.add(ChangeSummary.of(event), T, partition, offset)
    assert len(index) == 1
    winner = next(o for (p, o, _), role in zip(records, expected, strict=True) if role == "apply")
    roles = []
    for (partition, offset, _), role in zip(records, expected, strict=True):
        if role == "apply":
            continue  # asked last: handing out the newest record forgets the key
        got, newest = index.role(KEY, T, partition, offset)
        assert newest == winner
        roles.append(got.value)
    assert roles == [r for r in expected if r != "apply"]
    p, o, _ = next(r for r, role in zip(records, expected, strict=True) if role == "apply")
    assert index.role(KEY, T, p, o) == (Role.APPLY, o)
    assert len(index) == 0


def test_memory_is_one_entry_per_entity_however_many_updates():
    index = ReplayIndex()
    for offset in range(10_000):
        index.add(ChangeSummary.of(change(offset + 1, entity_id=str(offset % 7))), T, 0, offset)
    assert len(index) == 7
    assert sum(len(v) for v in index._keys.values()) == 7


def test_a_record_is_handed_back_once_it_is_superseded_for_good_with_its_source_position():
    index = ReplayIndex()
    assert index.add(ChangeSummary.of(change(10)), T, 0, 0) == []
    assert index.add(ChangeSummary.of(change(20)), T, 0, 1) == [Superseded(T, 0, 0, 10, None, 1)]
    # partial images are kept with the full image before them: nothing is superseded yet
    assert index.add(ChangeSummary.of(change(30, partial=True)), T, 0, 2) == []
    assert index.add(ChangeSummary.of(change(40, partial=True)), T, 0, 3) == []
    # a newer full image supersedes the full one and the partials kept for it
    dropped = index.add(ChangeSummary.of(change(50)), T, 0, 4)
    assert [(d.offset, d.lsn, d.by_offset) for d in dropped] == [(1, 20, 4), (2, 30, 4), (3, 40, 4)]
    # an older image arriving late (another partition) is superseded itself, at once
    assert index.add(ChangeSummary.of(change(45)), T, 1, 0) == [Superseded(T, 1, 0, 45, None, 4)]


def test_the_second_pass_passes_over_exactly_the_records_the_first_pass_recorded():
    index = ReplayIndex()
    recorded = set()
    arrivals = [
        (0, 0, change(10)),
        (0, 1, change(20)),
        (0, 2, change(30, partial=True)),
        (1, 0, change(5, entity_id="b")),
        (1, 1, change(40, partial=True)),
        (1, 2, change(None, op=Op.TOMBSTONE, entity_id="b")),
    ]
    for partition, offset, event in arrivals:
        recorded |= {
            (d.partition, d.offset) for d in index.add(ChangeSummary.of(event), T, partition, offset)
        }
    index.read_in_full(T, 1, 3)  # e.g. a record the first pass could not read
    # the tombstone (1, 2) is not indexed: the first pass records it itself
    assert recorded == {(0, 0)}
    passed_over = {(p, o) for p, o in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3)]
                   if index.recorded_in_first_pass(T, p, o)}  # fmt: skip
    assert passed_over == recorded | {(1, 2)}
    assert not index.recorded_in_first_pass("p.public.other", 0, 0)  # a topic the first pass never read
    # handing out the newest record keeps the images before it unrecorded, even if they come after it
    assert index.role(KEY, T, 1, 1) == (Role.APPLY, 1)
    assert not index.recorded_in_first_pass(T, 0, 1)
    assert not index.recorded_in_first_pass(T, 0, 2)


def test_a_streamed_change_after_a_snapshot_read_supersedes_it_with_its_own_position():
    index = ReplayIndex()
    assert index.add(ChangeSummary.of(change(300, op=Op.READ, snapshot=True)), T, 0, 0) == []
    assert index.add(ChangeSummary.of(change(200)), T, 0, 1) == [Superseded(T, 0, 0, 300, None, 1)]
    # a later streamed change replaces it as usual
    assert index.add(ChangeSummary.of(change(250)), T, 0, 2) == [Superseded(T, 0, 1, 200, None, 2)]


@pytest.mark.parametrize("snapshot", ["true", "last", "first", "incremental"])
def test_the_summary_of_a_debezium_snapshot_read_orders_it_as_the_live_path_does(snapshot):  # type: ignore[no-untyped-def]
    """The first pass reads summaries, not events: a real snapshot read's shape must come out a read."""
    row = {"id": "a", "email": "a@example.com", "status": "active"}
    topic, key, value = envelope("p", "customers", "r", row, "a", lsn=300, snapshot=snapshot)
    read = summarize_change(topic, key, value, topic_prefix="p")
    assert read.snapshot and read.lsn == 300
    topic, key, value = envelope("p", "customers", "u", {**row, "status": "closed"}, "a", lsn=200)
    update = summarize_change(topic, key, value, topic_prefix="p")
    assert not update.snapshot
    index = ReplayIndex()
    index.add(read, topic, 0, 0)
    index.add(update, topic, 0, 1)
    assert index.role(KEY, topic, 0, 0) == (Role.SUPERSEDED, 1)
    assert index.take_whole_newest(KEY, topic, 0, 1)


_record = st.tuples(
    st.sampled_from(["streamed", "snapshot", "incremental"]),
    st.booleans(),  # partial image
    st.integers(min_value=0, max_value=50),  # LSN step of a streamed change; a read's LSN
)


@given(st.lists(_record, min_size=1, max_size=30))
def test_within_one_partition_the_last_record_read_is_the_newest_whatever_the_reads_lsns(records):  # type: ignore[no-untyped-def]
    """One partition is in Debezium's order: snapshot reads (any LSN, or none) and streamed changes (their
    LSNs rising) of one row. The index applies the last record, merges the images from the last full one
    before it, and hands back every other record exactly once."""
    index = ReplayIndex()
    lsn = 1000
    handed_back: list[int] = []
    wholes = []
    for offset, (kind, partial, step) in enumerate(records):
        if kind == "streamed":
            lsn += step
            event = change(lsn, partial=partial)
        else:
            read_lsn = None if kind == "incremental" else 1000 + 40 * step
            event = change(read_lsn, op=Op.READ, snapshot=True, partial=partial)
        wholes.append(not partial)
        handed_back += [d.offset for d in index.add(ChangeSummary.of(event), T, 0, offset)]
    last = len(records) - 1
    first_kept = max((i for i in range(last + 1) if wholes[i]), default=0)
    assert sorted(handed_back) == list(range(first_kept))
    for offset in range(last):
        expected = Role.MERGE if offset >= first_kept else Role.SUPERSEDED
        assert index.role(KEY, T, 0, offset) == (expected, last)
    assert index.role(KEY, T, 0, last) == (Role.APPLY, last)
