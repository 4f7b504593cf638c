"""Work of a revoked partition stays revoked: no later rebalance and no reassignment runs it again.

Issue 23 (b): the scheduler replaced its revoked set on each rebalance, so a batch of a partition revoked
two rebalances ago, past its first Zoho call and waiting for the rate window, was queued again and run
under a fresh guard beside the partition's new owner. The handler below stands in for the policy: it
makes one call (`before_send`), waits (the rate window), then makes its second call.
"""

from __future__ import annotations

import asyncio

import pytest

from connectors.zoho.send_guard import CURRENT_GUARD
from consumer.pipeline.intake.scheduler import InboundRecord, Key, KeyScheduler, WorkItem

P1 = ("billing.public.customer_invoices", 0)
P2 = ("billing.public.customer_invoices", 1)
P3 = ("billing.public.customers", 0)


class TwoCallHandler:
    """Sends once, waits on `window` for its second send; counts the batches it was given."""

    def __init__(self) -> None:
        self.window = asyncio.Event()
        self.first_call_made = asyncio.Event()
        self.runs: list[list[int]] = []

    async def __call__(self, key: Key, batch: list[WorkItem]) -> None:
        self.runs.append([item.record.offset for item in batch])
        guard = CURRENT_GUARD.get()
        assert guard is not None
        guard.before_send()  # the first call (e.g. converttoopen) goes out
        self.first_call_made.set()
        await self.window.wait()  # the rate window
        guard.before_send()  # the second call (e.g. the payment): raises SendRevoked when withdrawn


def _item(partition: tuple[str, int], offset: int) -> WorkItem:
    topic, number = partition
    return WorkItem(InboundRecord(topic, number, offset, b"k", b"v"), event=None, error=None)


async def _scheduled(scheduler: KeyScheduler, item: WorkItem, key: Key) -> None:
    scheduler.admit(item)
    scheduler.enqueue(key, item)


@pytest.mark.parametrize(
    "second_rebalance",
    [
        pytest.param(lambda s: s.revoke([P2]), id="another-partition-revoked"),
        pytest.param(lambda s: (s.revoke([P2]), s.assigned([P1, P2])), id="partition-assigned-back"),
        pytest.param(lambda s: s.assigned([P1]), id="assigned-back-at-once"),
    ],
)
async def test_a_batch_revoked_two_rebalances_ago_is_never_run_again(second_rebalance) -> None:
    done: list[int] = []
    handler = TwoCallHandler()
    scheduler = KeyScheduler(handler, lambda record: done.append(record.offset))
    key: Key = ("invoice", "i1")
    await _scheduled(scheduler, _item(P1, 7), key)
    await asyncio.wait_for(handler.first_call_made.wait(), 5)

    scheduler.revoke([P1])  # first rebalance: the call is on the wire, the batch keeps its worker
    second_rebalance(scheduler)  # second rebalance before the rate window opens
    handler.window.set()

    assert await scheduler.wait_idle(5)
    await asyncio.sleep(0.05)  # a re-queued batch would have started by now
    assert handler.runs == [[7]]  # run once, withdrawn at its second call, never re-queued
    assert done == []  # no outcome: the partition's next owner handles offset 7
    assert scheduler.in_flight == 0 and scheduler.fatal is None
    await scheduler.close()


async def test_records_of_a_partition_assigned_back_are_worked_on_again() -> None:
    """The old ownership's work stays revoked, but records fetched after the partition came back run."""
    done: list[int] = []
    handler = TwoCallHandler()
    handler.window.set()
    scheduler = KeyScheduler(handler, lambda record: done.append(record.offset))
    scheduler.revoke([P1])
    scheduler.assigned([P1])
    await _scheduled(scheduler, _item(P1, 7), ("invoice", "i1"))
    assert await scheduler.wait_idle(5)
    assert handler.runs == [[7]] and done == [7]
    await scheduler.close()


async def test_records_queued_behind_a_running_batch_of_a_revoked_partition_are_dropped() -> None:
    """A record of the revoked partition waiting behind its key's running batch is not run afterwards;
    a record of a kept partition queued behind the same key still is."""
    done: list[int] = []
    handler = TwoCallHandler()
    scheduler = KeyScheduler(handler, lambda record: done.append(record.offset))
    key: Key = ("customer", "c1")
    await _scheduled(scheduler, _item(P3, 1), key)
    await asyncio.wait_for(handler.first_call_made.wait(), 5)
    await _scheduled(scheduler, _item(P1, 8), key)  # queued behind the running batch
    await _scheduled(scheduler, _item(P3, 2), key)
    scheduler.revoke([P1])
    handler.window.set()
    assert await scheduler.wait_idle(5)
    assert handler.runs == [[1], [2]]
    assert done == [1, 2]
    await scheduler.close()
