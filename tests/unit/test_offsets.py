"""The commit watermark never passes an offset whose outcome is not durable."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.pipeline.intake.watermark import OffsetWatermark


def test_nothing_committable_before_any_record() -> None:
    assert OffsetWatermark().committable() is None


def test_watermark_stops_at_the_lowest_pending_offset() -> None:
    wm = OffsetWatermark()
    for offset in (10, 11, 12, 13):
        wm.received(offset)
    wm.completed(11)
    wm.completed(13)
    assert wm.committable() == 10  # 10 still pending: nothing past it
    wm.completed(10)
    assert wm.committable() == 12
    wm.completed(12)
    assert wm.committable() == 14


def test_a_record_recorded_before_it_arrived_moves_the_watermark_only_past_the_pending_ones() -> None:
    wm = OffsetWatermark()
    wm.received(0)
    wm.passed(1)  # a replay's first pass recorded it: no pending state at all
    wm.passed(2)
    assert wm.committable() == 0  # 0 is still pending: nothing past it
    wm.completed(0)
    assert wm.committable() == 3
    wm.received(3)
    wm.passed(4)
    assert wm.committable() == 3


def test_already_committed_offset_is_not_offered_again() -> None:
    wm = OffsetWatermark()
    wm.received(0)
    wm.completed(0)
    assert wm.committable() == 1
    wm.mark_committed(1)
    assert wm.committable() is None


@given(st.permutations(list(range(40))), st.integers(min_value=0, max_value=40))
def test_committable_offset_is_never_past_an_incomplete_one(order: list[int], n_done: int) -> None:
    wm = OffsetWatermark()
    for offset in range(40):
        wm.received(offset)
    done = set(order[:n_done])
    for offset in order[:n_done]:
        wm.completed(offset)
    commit = wm.committable()
    assert commit is not None
    # every offset below the commit point is done, and the commit point itself is not (unless all are)
    assert all(o in done for o in range(commit))
    assert commit == 40 or commit not in done


def test_a_finished_record_reaches_the_commit_only_through_its_partitions_watermark() -> None:
    """`PartitionWatermarks.completed` is the engine's `on_done`: what the runner may commit follows it."""
    from aiokafka import TopicPartition

    from consumer.pipeline.intake.scheduler import InboundRecord
    from consumer.pipeline.intake.watermark import PartitionWatermarks

    kept, revoked = TopicPartition("t", 0), TopicPartition("t", 1)
    watermarks = PartitionWatermarks()
    for tp in (kept, revoked):
        for offset in (0, 1):
            watermarks.track(tp).received(offset)
    watermarks.completed(InboundRecord("t", 0, 1, None, None))
    assert watermarks.committable([kept, revoked], {kept, revoked}) == {kept: 0, revoked: 0}  # 0 pending
    watermarks.completed(InboundRecord("t", 0, 0, None, None))
    watermarks.completed(InboundRecord("t", 1, 0, None, None))
    assert watermarks.committable([kept, revoked], {kept}) == {kept: 2}  # only partitions still assigned
    watermarks.forget([revoked])
    watermarks.completed(InboundRecord("t", 1, 1, None, None))  # finished after its revoke: ignored
    assert watermarks.committable([kept, revoked], {kept, revoked}) == {kept: 2}
    watermarks.mark_committed({kept: 2})
    assert watermarks.committable([kept], {kept}) == {}
    assert watermarks.committed() == {kept: 2}
