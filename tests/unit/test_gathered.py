"""Questions asked together are answered by one call per kind; a failed call fails only its questions."""

import asyncio
from collections.abc import Sequence

import pytest

from consumer.pipeline.durability.gathered import Gathered


async def test_questions_asked_together_are_answered_by_one_call_per_kind() -> None:
    calls: list[tuple[str, list[str]]] = []

    async def answer(kind: str, keys: Sequence[str]) -> dict[str, str]:
        calls.append((kind, sorted(keys)))
        if kind == "broken":
            raise RuntimeError("the query failed")
        return {k: f"{kind}:{k}" for k in keys if k != "missing"}

    gathered: Gathered[str, str] = Gathered(answer)
    results = await asyncio.gather(
        gathered.ask("customers", "a"),
        gathered.ask("customers", "b"),
        gathered.ask("customers", "a"),  # the same question twice: one key in the query
        gathered.ask("customers", "missing"),
        gathered.ask("invoices", "a"),
        gathered.ask("broken", "x"),
        return_exceptions=True,
    )
    assert results[:5] == ["customers:a", "customers:b", "customers:a", None, "invoices:a"]
    assert isinstance(results[5], RuntimeError)
    assert sorted(calls) == [("broken", ["x"]), ("customers", ["a", "b", "missing"]), ("invoices", ["a"])]
    # a later question starts a new gathering
    assert await gathered.ask("customers", "c") == "customers:c"
    assert calls[-1] == ("customers", ["c"])


async def test_a_cancelled_asker_does_not_cancel_the_others() -> None:
    release = asyncio.Event()

    async def answer(kind: str, keys: Sequence[str]) -> dict[str, str]:
        await release.wait()
        return {k: k.upper() for k in keys}

    gathered: Gathered[str, str] = Gathered(answer)
    first = asyncio.create_task(gathered.ask("t", "a"))
    second = asyncio.create_task(gathered.ask("t", "a"))
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert await second == "A"
    with pytest.raises(asyncio.CancelledError):
        await first
