"""The batching primitive: items handed in within one pause go to one call, in order; a failed call fails
exactly the writes it held; overlapping calls are bounded and their failures are raised where waited for."""

import asyncio

import pytest

from consumer.pipeline.durability.gathered import GatheredWrites, Gathering, Waiter


async def test_items_handed_in_one_tick_go_to_one_call_in_order() -> None:
    calls: list[list[int]] = []

    async def take(batch: list[int]) -> None:
        calls.append(batch)

    gathering: Gathering[int] = Gathering(take)
    for n in range(5):
        gathering.add(n)
    assert calls == []  # nothing is taken before the pause
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert calls == [[0, 1, 2, 3, 4]]
    gathering.add(5)  # a later item starts a new gathering
    await asyncio.sleep(0.01)
    assert calls == [[0, 1, 2, 3, 4], [5]]


async def test_items_added_during_a_call_are_the_next_call_and_calls_never_overlap() -> None:
    calls: list[list[int]] = []
    running = 0
    release = asyncio.Event()
    gathering: Gathering[int]

    async def take(batch: list[int]) -> None:
        nonlocal running
        running += 1
        assert running == 1, "one call at a time"
        calls.append(batch)
        if batch == [1]:
            gathering.add(2)
            gathering.add(3)
            await release.wait()
        running -= 1

    gathering = Gathering(take)
    gathering.add(1)
    await asyncio.sleep(0.01)
    assert calls == [[1]]
    release.set()
    await asyncio.sleep(0.01)
    assert calls == [[1], [2, 3]]


async def test_a_pause_gathers_the_items_of_many_ticks_and_a_full_batch_cuts_it_short() -> None:
    calls: list[list[int]] = []

    async def take(batch: list[int]) -> None:
        calls.append(batch)

    gathering: Gathering[int] = Gathering(take, pause=0.5, full_at=10, size=lambda n: n)
    gathering.add(1)
    await asyncio.sleep(0.01)
    gathering.add(2)
    await asyncio.sleep(0.01)
    assert calls == []  # still gathering
    gathering.add(7)  # 1 + 2 + 7 = 10: full
    await asyncio.sleep(0.005)
    assert calls == [[1, 2, 7]]
    gathering.add(1, at_once=True)
    await asyncio.sleep(0.005)
    assert calls == [[1, 2, 7], [1]]


async def test_at_most_most_items_per_call_the_rest_in_the_next() -> None:
    calls: list[list[int]] = []

    async def take(batch: list[int]) -> None:
        calls.append(batch)

    gathering: Gathering[int] = Gathering(take, most=2)
    for n in range(5):
        gathering.add(n)
    await asyncio.sleep(0.01)
    assert calls == [[0, 1], [2, 3], [4]]


async def test_a_failed_call_goes_to_failed_and_stops_until_the_next_item() -> None:
    calls: list[list[str]] = []
    failures: list[str] = []

    async def take(batch: list[str]) -> None:
        calls.append(batch)
        if "bad" in batch:
            raise RuntimeError("bad batch")

    gathering: Gathering[str] = Gathering(take, most=1, failed=lambda exc: failures.append(str(exc)))
    gathering.add("bad")
    gathering.add("left")
    await asyncio.sleep(0.01)
    assert calls == [["bad"]] and failures == ["bad batch"]  # stopped: "left" waits
    gathering.add("next")
    await asyncio.sleep(0.01)
    assert calls == [["bad"], ["left"], ["next"]]


async def test_a_failed_write_fails_exactly_its_writers_and_the_others_are_written() -> None:
    groups: list[list[str]] = []

    async def write(batch: list[Waiter[str]]) -> None:
        items = [w.item for w in batch]
        groups.append(items)
        if "lost" in items:
            raise ConnectionError("database gone")  # the whole group fails
        for waiter in batch:
            if waiter.item == "refused":
                waiter.fail(ValueError("refused"))  # this one alone
        # the rest are done when the call returns

    writes: GatheredWrites[str] = GatheredWrites(write)
    first = await asyncio.gather(
        writes.write("a"), writes.write("refused"), writes.write("b"), return_exceptions=True
    )
    assert first[0] is None and first[2] is None
    assert isinstance(first[1], ValueError)
    second = await asyncio.gather(writes.write("c"), writes.write("lost"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in second)
    assert await writes.write("d") is None
    assert groups == [["a", "refused", "b"], ["c", "lost"], ["d"]]


async def test_writers_are_woken_in_the_order_they_handed_in() -> None:
    woken: list[int] = []

    async def write(batch: list[Waiter[int]]) -> None:
        pass

    writes: GatheredWrites[int] = GatheredWrites(write)

    async def writer(n: int) -> None:
        await writes.write(n)
        woken.append(n)

    await asyncio.gather(*(writer(n) for n in range(6)))
    assert woken == list(range(6))


async def test_a_cancelled_writer_does_not_cancel_its_write() -> None:
    written: list[str] = []
    release = asyncio.Event()

    async def write(batch: list[Waiter[str]]) -> None:
        await release.wait()
        written.extend(w.item for w in batch)

    writes: GatheredWrites[str] = GatheredWrites(write)
    cancelled = asyncio.create_task(writes.write("x"))
    other = asyncio.create_task(writes.write("y"))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    release.set()
    await other
    assert written == ["x", "y"]
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_overlapping_calls_are_bounded_and_a_failure_is_raised_where_waited_for() -> None:
    releases: list[asyncio.Event] = []
    batches: list[list[int]] = []

    async def take(batch: list[int]) -> None:
        release = asyncio.Event()
        releases.append(release)
        batches.append(batch)
        await release.wait()
        if batch == [9]:
            raise RuntimeError("write failed")

    gathering: Gathering[int] = Gathering(take, pause=None, overlap=True)
    gathering.add(1)
    gathering.add(2)
    gathering.hand_over()
    gathering.add(3)
    gathering.hand_over()
    await asyncio.sleep(0)
    assert batches == [[1, 2], [3]]  # the second is written while the first is still writing
    waiting = asyncio.create_task(gathering.below(1))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # three items not yet written: more than one
    releases[0].set()
    await asyncio.sleep(0.01)
    assert waiting.done()  # one left
    gathering.add(9)
    gathering.hand_over()
    await asyncio.sleep(0)
    releases[1].set()
    releases[2].set()
    with pytest.raises(RuntimeError, match="write failed"):
        await gathering.finish()


async def test_overlapping_calls_gather_a_tick_and_report_failures_to_failed() -> None:
    batches: list[list[int]] = []
    failures: list[Exception] = []

    async def take(batch: list[int]) -> None:
        batches.append(batch)
        await asyncio.sleep(0.05)
        if 0 in batch:
            raise RuntimeError("write failed")

    gathering: Gathering[int] = Gathering(take, overlap=True, failed=failures.append)
    gathering.add(0)
    gathering.add(1)
    await asyncio.sleep(0.001)
    gathering.add(2)  # the first batch is still writing: this one is gathered and written beside it
    await asyncio.sleep(0.001)
    assert batches == [[0, 1], [2]]
    assert len(gathering.tasks) == 2
    await asyncio.sleep(0.1)
    assert [str(f) for f in failures] == ["write failed"]
    assert gathering.tasks == []
    await gathering.finish()  # the failure went to `failed`: nothing left to raise


async def test_a_timer_calls_with_nothing_gathered_until_closed() -> None:
    calls: list[list[None]] = []

    async def take(batch: list[None]) -> None:
        calls.append(batch)

    gathering: Gathering[None] = Gathering(take, pause=0.001, every=0.02)
    gathering.add(None)
    gathering.add(None)
    await asyncio.sleep(0.01)
    assert calls == [[None, None]]
    await asyncio.sleep(0.05)
    assert len(calls) >= 2 and calls[1] == []  # nothing arrived: the timer still calls
    await gathering.close()
    count = len(calls)
    gathering.add(None)
    await asyncio.sleep(0.03)
    assert len(calls) == count  # closed: nothing more
