"""jsonb parameters are written by orjson, and by json for what orjson refuses."""

import json

from consumer.pipeline.durability.store import _json_dumps


def test_a_remembered_image_is_written_as_the_same_json() -> None:
    image = {"name": ["json", "Zoë"], "total": ["decimal", "115.00"], "lines": ["json", [{"qty": 2}]]}
    assert json.loads(_json_dumps(image)) == image


def test_an_integer_beyond_64_bits_is_still_written_exactly() -> None:
    image = {"line_items": ["json", [{"code": 2**70}]]}
    assert json.loads(_json_dumps(image)) == image
