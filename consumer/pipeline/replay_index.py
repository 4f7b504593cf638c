"""A backfill's first pass: which records of each entity the replay must apply.

The first pass reads the whole range once and keeps, per entity, only the positions of its newest
record and of the images that record needs to be made whole (the newest full image before it and
the partial ones in between). The second pass applies those records and records every other one
`superseded` without a Zoho call, so a backlog costs one call per entity whatever its size or how
far apart its updates lie, and memory grows with the number of distinct entities, never with the
number of events. Records are ordered per entity by source LSN (arrival order when one has none),
as `consumer.pipeline.policy.in_source_order` does. The second pass reads a superseded record by its
key alone; the first pass keeps the positions of the few records that must be read in full (those it
could not read, which are dead-lettered, and tombstones that have a value). Pure data, no I/O.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from consumer.pipeline.events import ChangeSummary, Op


class Role(Enum):
    """What the second pass does with one record."""

    APPLY = "apply"  # the entity's newest record: goes through the pipeline
    MERGE = "merge"  # an image the newest one is made whole from: folded into it, recorded superseded
    SUPERSEDED = "superseded"  # anything older: recorded superseded, no call


class _Position(NamedTuple):
    lsn: int | None
    seq: int  # arrival order in the first pass
    topic: int
    partition: int
    offset: int
    whole: bool  # a full image, or a delete: nothing before it is needed


def _newest_last(entries: list[_Position]) -> list[_Position]:
    if any(e.lsn is None for e in entries):
        return sorted(entries, key=lambda e: e.seq)
    return sorted(entries, key=lambda e: (e.lsn, e.seq))


class ReplayIndex:
    """Per entity key, the records a replay must apply (see the module docstring)."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], list[_Position]] = {}
        self._topics: dict[str, int] = {}
        self._full_reads: set[tuple[int, int, int]] = set()  # (topic, partition, offset)
        self._seq = 0
        self.records = 0

    def __len__(self) -> int:
        return len(self._keys)

    def _topic(self, topic: str) -> int:
        return self._topics.setdefault(topic, len(self._topics))

    def add(self, change: ChangeSummary, topic: str, partition: int, offset: int) -> None:
        """Index one change, read by `summarize_change` (tombstones carry no state and are not indexed)."""
        if change.op is Op.TOMBSTONE:
            return
        self.records += 1
        self._seq += 1
        whole = change.whole
        new = _Position(change.lsn, self._seq, self._topic(topic), partition, offset, whole)
        key = (change.entity_type.value, change.entity_id)
        entries = self._keys.get(key)
        if entries is None:
            self._keys[key] = [new]
            return
        last = entries[-1]
        if whole and new.lsn is not None and last.lsn is not None and new.lsn >= last.lsn:
            entries[:] = [new]  # the common case: a newer full image replaces everything kept
            return
        entries.append(new)
        ordered = _newest_last(entries)
        start = max((i for i, e in enumerate(ordered) if e.whole), default=0)
        entries[:] = ordered[start:]

    def read_in_full(self, topic: str, partition: int, offset: int) -> None:
        """Mark a record whose key alone does not tell what the second pass must record for it."""
        self._full_reads.add((self._topic(topic), partition, offset))

    def needs_full_read(self, topic: str, partition: int, offset: int) -> bool:
        topic_id = self._topics.get(topic)
        return topic_id is None or (topic_id, partition, offset) in self._full_reads

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
            del self._keys[key]
            return Role.APPLY, offset
        for e in entries[:-1]:
            if (e.topic, e.partition, e.offset) == (topic_id, partition, offset):
                return Role.MERGE, newest.offset
        return Role.SUPERSEDED, newest.offset
