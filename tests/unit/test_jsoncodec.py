"""JSON columns go through orjson, and through the standard library for what orjson refuses."""

from __future__ import annotations

import json
import math

from cwl_crunch.store import jsoncodec


def test_ordinary_values_round_trip_as_the_standard_library_reads_them():
    value = {"command": ["sh", "-c", "echo é"], "ram": 1 << 40, "vcpus": 1.5, "flags": [True, None, False],
             "nested": {"": [], "x": {}}}
    text = jsoncodec.dumps(value)
    assert json.loads(text) == value
    assert jsoncodec.loads(text) == value
    assert jsoncodec.loads(text.encode()) == value


def test_integers_beyond_64_bits_fall_back_to_the_standard_library():
    value = {"big": 10**30, "negative": -(10**25)}
    text = jsoncodec.dumps(value)
    assert text == json.dumps(value)
    assert jsoncodec.loads(text) == value


def test_text_the_standard_library_wrote_with_nan_still_reads():
    text = json.dumps({"x": float("nan"), "y": float("inf")})  # how rows written before look
    read = jsoncodec.loads(text)
    assert math.isnan(read["x"]) and read["y"] == float("inf")
