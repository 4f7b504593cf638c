"""A dead letter's id comes from its headers alone: every copy of one letter has it, another letter not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.pipeline.effects.dead_letter_topic import DeadLetter, letter_id, parse_headers


def _letter(partition: int, offset: int, reprocess_count: int = 0, reason: str = "r") -> DeadLetter:
    return DeadLetter(
        topic="billing.public.customers",
        partition=partition,
        offset=offset,
        key=b"k",
        value=b"v",
        reason=reason,
        kind="permanent",
        exception_class="ValidationError",
        reprocess_count=reprocess_count,
    )


@given(
    st.integers(0, 50), st.integers(0, 10**12), st.integers(0, 5), st.text(max_size=30), st.text(max_size=30)
)
def test_copies_of_one_letter_share_its_id_whatever_their_reason_or_time(partition, offset, count, one, two):
    first = parse_headers(_letter(partition, offset, count, one).headers())
    again = parse_headers(_letter(partition, offset, count, two).headers())  # published again after a crash
    assert letter_id(first) == letter_id(again) is not None


def test_another_record_or_another_reprocess_round_is_another_letter() -> None:
    ids = {
        letter_id(parse_headers(letter.headers()))
        for letter in (_letter(0, 7), _letter(1, 7), _letter(0, 8), _letter(0, 7, reprocess_count=1))
    }
    assert len(ids) == 4


def test_a_letter_without_a_source_record_has_no_id() -> None:
    assert letter_id(parse_headers(_letter(-1, -1).headers())) is None  # a parent refused for a child
    assert (
        letter_id({"__connect.errors.topic": "t", "__connect.errors.offset": "x"}) is None
    )  # another tool's
