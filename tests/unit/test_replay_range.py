"""A replay's reading decides which fetched records are work, which it passes, and which it leaves."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from consumer.model.events import ChangeSummary, EntityType, Op
from consumer.pipeline.intake.reading import LiveReading, Read
from consumer.pipeline.replay.index import ReplayIndex
from consumer.pipeline.replay.range import ReplayRange

T = "p.public.customers"


class _Record:
    def __init__(self, offset: int, partition: int = 0, headers: Any = ()) -> None:
        self.topic, self.partition, self.offset, self.headers = T, partition, offset, headers


def test_a_replay_reads_only_up_to_the_end_offsets_captured_at_its_start() -> None:
    replay = ReplayRange()
    replay.ends = {TopicPartition(T, 0): 2}
    records: list[Any] = [_Record(o) for o in range(4)]
    assert [m.offset for m in replay.within(TopicPartition(T, 0), records)] == [0, 1]
    assert replay.within(TopicPartition(T, 1), records) == []  # a partition with no range reads nothing
    assert LiveReading().within(TopicPartition(T, 0), records) == records  # the live sync has no end


def test_a_replay_passes_what_was_handled_before_and_leaves_what_it_does_not_accept() -> None:
    replay = ReplayRange(handled_before=lambda m: m.offset == 1, accept=lambda m: m.offset != 2)
    verdicts = [replay.read(_Record(o)) for o in range(4)]  # type: ignore[arg-type]
    assert verdicts == [Read.WORK, Read.PASSED, Read.LEFT, Read.WORK]
    assert LiveReading().read(_Record(2)) is Read.WORK  # type: ignore[arg-type]


def test_a_backfill_replay_passes_the_records_its_first_pass_recorded() -> None:
    index = ReplayIndex()
    for offset, lsn in ((0, 10), (1, 20)):  # the newer whole image supersedes offset 0 for good
        change = ChangeSummary(EntityType.CUSTOMER, "c1", Op.UPDATE, lsn, None, whole=True, snapshot=False)
        index.add(change, T, 0, offset)
    replay = ReplayRange(first_pass=index)
    assert replay.read(_Record(0)) is Read.PASSED  # type: ignore[arg-type]
    assert replay.read(_Record(1)) is Read.WORK  # type: ignore[arg-type]


def test_a_replay_resumes_paused_partitions_sooner_than_the_live_sync() -> None:
    assert (ReplayRange().resume_at(1000), LiveReading().resume_at(1000)) == (750, 500)
