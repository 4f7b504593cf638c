"""A backfill's first pass: which records of each entity the replay must apply.

Per entity, only the positions of its newest record and of the images it is made whole from are kept, so
memory grows with the number of distinct entities, never with the number of events. A record that falls
out of that set is superseded for good: `add` hands it back at once. Pure data, no I/O.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from consumer.model.events import ChangeSummary, Op


class Role(Enum):
    """What the second pass does with one record."""

    APPLY = "apply"  # the entity's newest record: goes through the pipeline
    MERGE = "merge"  # an image the newest one is made whole from: folded into it, recorded superseded
    SUPERSEDED = "superseded"  # anything older: recorded superseded, no call


class _Position(NamedTuple):
    position: int | None  # what orders it (`order_position`): None for a snapshot read
    lsn: int | None  # as the record carries it, for its sync-log row
    seq: int  # arrival order in the first pass
    topic: int
    partition: int
    offset: int
    whole: bool  # a full image, or a delete: nothing before it is needed
    source_ts_ms: int | None


class Superseded(NamedTuple):
    """A record the first pass has seen superseded for good, and the newer record that did it."""

    topic: str
    partition: int
    offset: int
    lsn: int | None
    source_ts_ms: int | None
    by_offset: int


def _newest_last(entries: list[_Position]) -> list[_Position]:
    if any(e.position is None for e in entries):
        return sorted(entries, key=lambda e: e.seq)
    return sorted(entries, key=lambda e: (e.position, e.seq))


class ReplayIndex:
    """Per entity key, the records a replay must apply: the newest, and the newest full image before it with
    the partial ones in between. Whatever is kept after a record falls out is at least as new as the full
    image that pushed it out, so the first pass records it `superseded` (with its source position) and the
    second pass passes over it unread. Records are ordered as the live path orders them
    (`decision.policy.in_source_order`, by `consumer.model.events.order_position`): a snapshot read has no
    position, so a streamed change after it in the topic is newer whatever its LSN. Also kept: the few
    records left to the second pass to read in full (unreadable ones, dead-lettered; tombstones with a
    value)."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], list[_Position]] = {}
        self._topics: dict[str, int] = {}
        self._topic_names: list[str] = []
        self._kept: set[tuple[int, int, int]] = set()  # (topic, partition, offset) of every kept entry
        self._full_reads: set[tuple[int, int, int]] = set()
        self._seq = 0
        self.records = 0

    def __len__(self) -> int:
        return len(self._keys)

    def _topic(self, topic: str) -> int:
        topic_id = self._topics.get(topic)
        if topic_id is None:
            topic_id = self._topics[topic] = len(self._topic_names)
            self._topic_names.append(topic)
        return topic_id

    def add(self, change: ChangeSummary, topic: str, partition: int, offset: int) -> list[Superseded]:
        """Index one change, read by `summarize_change`; returns the records it supersedes for good.

        A tombstone carries no state: it is not indexed, and its record is the caller's to settle."""
        if change.op is Op.TOMBSTONE:
            self._topic(topic)
            return []
        self.records += 1
        self._seq += 1
        whole, lsn = change.whole, change.lsn
        position = None if change.snapshot else lsn  # `order_position`, inline: once per record read
        new = _Position(
            position, lsn, self._seq, self._topic(topic), partition, offset, whole, change.source_ts_ms
        )
        key = (change.entity_type.value, change.entity_id)
        self._kept.add((new.topic, partition, offset))
        entries = self._keys.get(key)
        if entries is None:
            self._keys[key] = [new]
            return []
        last = entries[-1]
        if whole and position is not None and last.position is not None and position >= last.position:
            dropped = entries  # the common case: a newer full image replaces everything kept
            self._keys[key] = [new]
        else:
            ordered = _newest_last([*entries, new])
            start = max((i for i, e in enumerate(ordered) if e.whole), default=0)
            dropped, entries[:] = ordered[:start], ordered[start:]
        if not dropped:
            return []
        by = self._keys[key][0].offset  # the full image every dropped record is older than
        name = self._topic_names
        for e in dropped:
            self._kept.discard((e.topic, e.partition, e.offset))
        return [Superseded(name[e.topic], e.partition, e.offset, e.lsn, e.source_ts_ms, by) for e in dropped]

    def unapplied(self) -> list[tuple[str, str]]:
        """The entities whose newest record the second pass has not handed out yet: after a whole second
        pass, those whose records were removed between the passes (retention, compaction)."""
        return list(self._keys)

    def read_in_full(self, topic: str, partition: int, offset: int) -> None:
        """Mark a record whose key alone does not tell what the second pass must record for it."""
        self._full_reads.add((self._topic(topic), partition, offset))

    def recorded_in_first_pass(self, topic: str, partition: int, offset: int) -> bool:
        """True for a record the first pass saw and recorded itself (superseded, or a tombstone): neither
        kept for the second pass nor left to it to read in full."""
        topic_id = self._topics.get(topic)
        if topic_id is None:
            return False
        position = (topic_id, partition, offset)
        return position not in self._kept and position not in self._full_reads

    def take_whole_newest(self, key: tuple[str, str], topic: str, partition: int, offset: int) -> bool:
        """True for the entity's newest record when nothing is kept before it (a whole image): `role` would
        say APPLY, and no image is folded into it. The key is then handed out and forgotten, as `role`
        forgets it."""
        entries = self._keys.get(key)
        topic_id = self._topics.get(topic)
        if entries is None or topic_id is None or len(entries) != 1:
            return False
        newest = entries[0]
        if (newest.topic, newest.partition, newest.offset) != (topic_id, partition, offset):
            return False
        del self._keys[key]
        return True

    def role(self, key: tuple[str, str], topic: str, partition: int, offset: int) -> tuple[Role, int | None]:
        """The role of a record in the second pass, with the offset of the entity's newest record.

        A record the first pass never saw (none should be) is applied: the pipeline's own stale
        check still keeps it from rolling Zoho back. The key is forgotten once its newest record is
        handed out, so memory shrinks as the second pass goes."""
        entries = self._keys.get(key)
        topic_id = self._topics.get(topic)
        if entries is None or topic_id is None:
            return Role.APPLY, None
        newest = entries[-1]
        if (newest.topic, newest.partition, newest.offset) == (topic_id, partition, offset):
            del self._keys[key]  # its positions stay kept: a merge image may still come, on another partition
            return Role.APPLY, offset
        for e in entries[:-1]:
            if (e.topic, e.partition, e.offset) == (topic_id, partition, offset):
                return Role.MERGE, newest.offset
        return Role.SUPERSEDED, newest.offset
