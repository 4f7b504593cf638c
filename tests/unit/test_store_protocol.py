"""The pipeline reads and writes through one `Store` protocol; the real store and the dry run implement it."""

from __future__ import annotations

import inspect

import pytest

from consumer.jobs.dry_run import DryRunStore
from consumer.pipeline.durability.recording import Store
from consumer.pipeline.durability.store import SyncStore

MEMBERS = sorted(
    name for name, _ in inspect.getmembers(Store, inspect.isfunction) if not name.startswith("_")
)


@pytest.mark.parametrize("implementation", [SyncStore, DryRunStore], ids=lambda c: c.__name__)
def test_every_store_implements_every_member_of_the_protocol_as_a_coroutine(implementation: type) -> None:
    assert MEMBERS, "the protocol names what the pipeline uses"
    for name in MEMBERS:
        member = getattr(implementation, name, None)
        assert member is not None, f"{implementation.__name__} lacks {name}"
        assert inspect.iscoroutinefunction(member), f"{implementation.__name__}.{name} is not async"
        got = inspect.signature(member).parameters
        kinds = {p.kind for p in got.values()}
        for wanted in inspect.signature(getattr(Store, name)).parameters.values():
            covered = wanted.name in got or (
                inspect.Parameter.VAR_KEYWORD in kinds
                if wanted.kind is wanted.KEYWORD_ONLY
                else inspect.Parameter.VAR_POSITIONAL in kinds
            )
            assert covered, f"{implementation.__name__}.{name} does not take {wanted.name}"
