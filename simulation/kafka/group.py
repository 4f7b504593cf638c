"""Consumer groups of the in-memory Kafka: the coordinator's side and each subscribed consumer's side.

Eager protocol, as aiokafka speaks it: a join, a leave or an expiry opens a rebalance round; every member
revokes its partitions and rejoins; members not rejoined within the rebalance timeout are removed (zombies:
their commits fail). Once all have rejoined, the partitions are dealt round-robin over the members sorted by
member id and the generation moves on. A static member whose process stopped keeps its place for its
session timeout, so a restart with the same instance id takes its partitions back without a rebalance.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError

from connectors import clock

log = logging.getLogger(__name__)


class Wakeup:
    """Wakes every task waiting on the broker when anything it may wait for happened (a record appended, a
    group changed, a consumer stopped); each rechecks its own condition. There are few waiters."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            _release(waiter)

    async def until(self, deadline: float) -> None:
        """Wait for the next `notify`, at most until `deadline` (the loop's clock)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(eq=False)
class GroupMember:
    """One member as the coordinator knows it; `owner` is the consumer behind it (None: its process is gone
    and it awaits expiry, or a static restart)."""

    member_id: str
    topics: tuple[str, ...]
    instance_id: str | None
    session_timeout: float
    owner: Membership | None
    joined_round: int = 0
    expiry: object | None = None  # the token of the pending session expiry


class ConsumerGroup:
    """The coordinator's view of one group: members, rebalance round, generation, assignment, commits."""

    def __init__(
        self,
        name: str,
        *,
        partitions: Callable[[str], int],
        wake: Callable[[], None],
        rebalance_timeout: float,
    ) -> None:
        self.name = name
        self.generation = 0  # moves on each time an assignment is dealt (or the group empties)
        self.round = 0  # the rebalance round members must rejoin
        self.rebalancing = False
        self.members: dict[str, GroupMember] = {}
        self.assignment: dict[str, tuple[TopicPartition, ...]] = {}  # of the current generation
        self.committed: dict[TopicPartition, int] = {}
        self._static: dict[str, GroupMember] = {}
        self._partitions = partitions
        self._wake = wake
        self._rebalance_timeout = rebalance_timeout

    # --- what members do ----------------------------------------------------------------------
    def join(
        self,
        member_id: Callable[[], str],
        topics: tuple[str, ...],
        instance_id: str | None,
        session_timeout: float,
        owner: Membership,
    ) -> GroupMember:
        """A consumer joins; a static member's instance id takes its old place back with no new round."""
        member = self._static.get(instance_id) if instance_id else None
        if member is None:
            member = GroupMember(member_id(), topics, instance_id, session_timeout, owner)
            self.members[member.member_id] = member
            if instance_id:
                self._static[instance_id] = member
            self._open_round()
        member.owner, member.expiry = owner, None
        self.rejoin(member)
        return member

    def rejoin(self, member: GroupMember) -> None:
        member.joined_round = self.round
        self._complete_round()

    def leave(self, member: GroupMember) -> None:
        """LeaveGroup: the member's partitions are dealt again at once."""
        self._remove(member)

    def orphan(self, member: GroupMember) -> None:
        """The member's process is gone without leaving: the group notices after its session timeout."""
        member.owner = None
        token = member.expiry = object()
        asyncio.get_running_loop().call_later(member.session_timeout, self._expire, member, token)

    def may_commit(self, member: GroupMember, owner: Membership, generation: int) -> bool:
        """An offset commit is accepted from a member of the current generation (also while a round is
        open: the generation moves on only once the round completes, so revoke callbacks can commit)."""
        current = self.members.get(member.member_id) is member and member.owner is owner
        return current and generation == self.generation

    def topic_created(self, topic: str) -> None:
        if any(topic in member.topics for member in self.members.values()):
            self._open_round()
            self._wake()

    # --- the coordinator ------------------------------------------------------------------------
    def _open_round(self) -> None:
        if self.rebalancing:
            return  # a join during an open round joins that round
        self.rebalancing = True
        self.round += 1
        asyncio.get_running_loop().call_later(self._rebalance_timeout, self._round_deadline, self.round)
        self._wake()

    def _round_deadline(self, round_: int) -> None:
        """Members that have not rejoined the round in time are removed from the group."""
        if not self.rebalancing or self.round != round_:
            return
        for member in list(self.members.values()):
            if member.joined_round != round_:
                log.info("group %s: %s did not rejoin in time, removed", self.name, member.member_id)
                self._remove(member)

    def _expire(self, member: GroupMember, token: object) -> None:
        if member.expiry is token and self.members.get(member.member_id) is member:
            log.info("group %s: %s session expired", self.name, member.member_id)
            self._remove(member)

    def _remove(self, member: GroupMember) -> None:
        del self.members[member.member_id]
        if member.instance_id and self._static.get(member.instance_id) is member:
            del self._static[member.instance_id]
        if not self.members:
            self.rebalancing, self.assignment = False, {}
            self.generation += 1
            self._wake()
            return
        self._open_round()
        self._complete_round()

    def _complete_round(self) -> None:
        if not self.rebalancing or any(m.joined_round != self.round for m in self.members.values()):
            return
        self.assignment = self._deal()
        self.generation += 1
        self.rebalancing = False
        self._wake()

    def _deal(self) -> dict[str, tuple[TopicPartition, ...]]:
        """Round-robin over the members sorted by member id, each partition to the next member subscribed
        to its topic (aiokafka's RoundRobinPartitionAssignor)."""
        members = sorted(self.members.values(), key=lambda m: m.member_id)
        dealt: dict[str, list[TopicPartition]] = {m.member_id: [] for m in members}
        turn = 0
        for topic in sorted({topic for m in members for topic in m.topics}):
            for partition in range(self._partitions(topic)):
                while topic not in members[turn % len(members)].topics:
                    turn += 1
                dealt[members[turn % len(members)].member_id].append(TopicPartition(topic, partition))
                turn += 1
        return {member_id: tuple(tps) for member_id, tps in dealt.items()}


class Membership:
    """One subscribed consumer's side: before each round revoke, then rejoin, wait for the round to complete,
    take the new assignment; listener callbacks are awaited inside `getmany`, as aiokafka's are."""

    def __init__(
        self,
        group: ConsumerGroup,
        *,
        topics: tuple[str, ...],
        listener: ConsumerRebalanceListener | None,
        instance_id: str | None,
        session_timeout: float,
        member_id: Callable[[], str],
        install: Callable[[tuple[TopicPartition, ...]], None],
        listener_errors: list[BaseException],
    ) -> None:
        self.group = group
        self.topics = topics
        self.member: GroupMember | None = None
        self.generation = -1  # of the assignment this consumer holds
        self.closed = False
        self._listener = listener
        self._instance_id = instance_id
        self._session_timeout = session_timeout
        self._member_id = member_id
        self._install = install  # hands a new assignment to the consumer (positions from the commits)
        self._listener_errors = listener_errors
        self._unrevoked: tuple[TopicPartition, ...] = ()

    def current(self) -> bool:
        """Still the group's member (not removed, not taken over by a restart with the same instance id)."""
        member = self.member
        return (
            member is not None and self.group.members.get(member.member_id) is member and member.owner is self
        )

    def stable(self) -> bool:
        """Holding the current generation's assignment with no round open: nothing to follow."""
        group = self.group
        return not group.rebalancing and self.generation == group.generation and self.current()

    def may_commit(self) -> bool:
        return self.member is not None and self.group.may_commit(self.member, self, self.generation)

    async def settle(self, deadline: float, wakeup: Wakeup) -> bool:
        """Follow the group until this consumer holds the current generation's assignment (True), or until
        `deadline` passes while other members have still to rejoin (False)."""
        group = self.group
        while True:
            if self.closed:
                raise ConsumerStoppedError()
            if not self.current() or (group.rebalancing and self.member.joined_round != group.round):
                await self._revoke()
                self._join()
            elif group.rebalancing:
                if clock.monotonic() >= deadline:
                    return False
                await wakeup.until(deadline)
            elif self.generation != group.generation:
                await self._take()
            else:
                return True

    def close(self, *, leave: bool) -> None:
        """Stop: a dynamic member leaves the group; a static member, or a killed process, is orphaned."""
        self.closed = True
        if not self.current():
            return
        assert self.member is not None
        if leave:
            self.group.leave(self.member)
        else:
            self.group.orphan(self.member)

    async def _revoke(self) -> None:
        revoked, self._unrevoked = self._unrevoked, ()
        await self._call("on_partitions_revoked", revoked)

    def _join(self) -> None:
        if self.current():
            assert self.member is not None
            self.group.rejoin(self.member)
        else:
            group = self.group
            self.member = group.join(
                self._member_id, self.topics, self._instance_id, self._session_timeout, self
            )

    async def _take(self) -> None:
        assert self.member is not None
        assigned = self.group.assignment.get(self.member.member_id, ())
        self.generation = self.group.generation
        self._install(assigned)
        self._unrevoked = assigned
        await self._call("on_partitions_assigned", assigned)

    async def _call(self, callback: str, partitions: tuple[TopicPartition, ...]) -> None:
        """A listener callback gets a sorted list (iterating a set of TopicPartitions would depend on the
        hash seed); its exception is logged and the rebalance goes on, as aiokafka does."""
        if self._listener is None:
            return
        try:
            answer = getattr(self._listener, callback)(sorted(partitions))
            if inspect.isawaitable(answer):  # aiokafka takes plain and async callbacks alike
                await answer
        except Exception as exc:  # noqa: BLE001 - aiokafka logs a failing listener and goes on
            log.exception("group %s: listener %s failed", self.group.name, callback)
            self._listener_errors.append(exc)
