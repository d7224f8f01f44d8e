"""The lookup's compiled kernel (tile_kernel.py, _tiles.c) against its NumPy reference
(numpy_combine.py, the lookup's combine before the kernel): the same bits for every function
and state type at many ``now``, and the same verdict on damaged values (cut short at every
length, bytes flipped, String items that are not UTF-8), whose reads stay inside the value."""

from __future__ import annotations

import math
import random
import struct
from collections import Counter
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from featurestore import Aggregation, Entity, FeatureView, Field, Int64, ParquetSource, String
from featurestore.online import tile_kernel
from featurestore.online.tile_codec import TileCodec
from featurestore.online.tiles import tile_groups
from tests.online.numpy_combine import combine
from tests.online.tile_rows import random_rows, view

WINDOWS = (timedelta(minutes=15), timedelta(hours=1), None)
NOW_TILES = (95, 104, 110, 118, 129, 140)  # the rows' tiles are 100..129


def bits(x: Any, signed_zero: bool = True) -> Any:
    """A value compared bit for bit: floats by their bytes (NaNs as one), lists item by item.
    ``signed_zero`` False: -0.0 as 0.0 (which of the two a NumPy min returns is not defined)."""
    if isinstance(x, float):
        return "nan" if math.isnan(x) else struct.pack("<d", x if signed_zero or x else 0.0)
    if isinstance(x, list):
        return [bits(v, signed_zero) for v in x]
    return (type(x), x)


def reference(codec: TileCodec, values: list[bytes], now_us: int) -> tuple[Any, ...]:
    batch = codec.decode(values)
    if not batch.good:  # (the reference fails on an empty batch: the lookup never gave it one)
        return [], batch.other, batch.corrupt, [], [], [[] for _ in codec.group.aggregations], set()
    results, damaged = combine(codec.group, codec, batch, now_us)
    return batch.good, batch.other, batch.corrupt, batch.event_ts_us, batch.run_ids, results, damaged


def compare(codec: TileCodec, values: list[bytes], now_us: int) -> tuple[int, int, int, int]:
    """Asserts the kernel equals the reference; how many values were good, other, corrupt,
    damaged."""
    good, other, corrupt, stamps, runs, results, damaged = reference(codec, values, now_us)
    out = tile_kernel.combine(codec, values, now_us)
    assert (out.good, out.other, out.corrupt) == (good, other, corrupt)
    assert (out.event_ts_us, out.run_ids, out.damaged) == (stamps, runs, damaged)
    for a, want, got in zip(codec.group.aggregations, results, out.results, strict=True):
        for e, (w, g) in enumerate(zip(want, got, strict=True)):
            if e in damaged:  # the damaged item reads None, the others as they are
                continue
            zero = a.function not in ("min", "max")
            assert bits(g, zero) == bits(w, zero), (a.name, e, g, w)
    return len(good), len(other), len(corrupt), len(damaged)


def verdicts(codec: TileCodec, values: list[bytes], now_us: int) -> tuple[int, int, int]:
    """Asserts the kernel's verdict on damaged values is the reference decode's, but for a
    count made negative, which the kernel alone refuses (the reference's combine fails on it);
    how many were good, other, corrupt."""
    batch = codec.decode(values)
    out = tile_kernel.combine(codec, values, now_us)
    assert out.other == batch.other
    assert set(batch.corrupt) <= set(out.corrupt)
    for i in set(out.corrupt) - set(batch.corrupt):
        counts = [s for s in codec.states if codec.fields[s.position].name.endswith(("__count", "__counts"))]
        records = codec.decode([values[i]]).records
        assert any((records[f"s{s.position}"] < 0).any() for s in counts), i
    assert out.good == [i for i in batch.good if i not in out.corrupt]
    return len(out.good), len(out.other), len(out.corrupt)


@pytest.mark.parametrize("seed", range(8))
def test_the_kernel_gives_the_bits_of_the_numpy_reference(seed: int) -> None:
    rng = random.Random(seed)
    for group in tile_groups(view(WINDOWS)):
        codec = TileCodec(group)
        values = codec.encode(random_rows(rng, group, 60), np.arange(60) * 7, seed).to_pylist()
        for now_tile in NOW_TILES:
            now_us = (now_tile * 300 - rng.randint(0, 299)) * 1_000_000
            assert compare(codec, values, now_us) == (60, 0, 0, 0)


def damaged(rng: random.Random, value: bytes) -> bytes:
    """``value`` with one to three bytes set at random, its end cut or grown, or its layout
    hash changed."""
    how = rng.random()
    if how < 0.2:
        return value[: rng.randrange(len(value))]
    if how < 0.3:
        return value + bytes(rng.randrange(1, 9))
    if how < 0.35:  # another layout's hash: NOT_FOUND, not corrupt
        return value[:20] + rng.randbytes(4) + value[24:]
    out = bytearray(value)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(out))
        out[at] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    return bytes(out)


@pytest.mark.parametrize("seed", range(4))
def test_damaged_values_get_the_verdict_of_the_numpy_reference(seed: int) -> None:
    rng = random.Random(100 + seed)
    seen: Counter[str] = Counter()
    for group in tile_groups(view(WINDOWS)):
        codec = TileCodec(group)
        values = codec.encode(random_rows(rng, group, 30), np.arange(30), 5).to_pylist()
        now_us = 120 * 300 * 1_000_000
        # every length of two values: each part of the layout cut short
        for v in values[:2]:
            cut = [v[:k] for k in range(len(v))]
            good, other, corrupt = verdicts(codec, cut, now_us)
            assert (good, other) == (0, 0)
            seen["cut"] += corrupt
        for _ in range(40):
            batch = [damaged(rng, v) if rng.random() < 0.7 else v for v in values]
            good, other, corrupt = verdicts(codec, batch, now_us)
            seen["good"] += good
            seen["other"] += other
            seen["corrupt"] += corrupt
            # the values left intact combine as the reference does, beside damaged ones
            intact = [b for b, v in zip(batch, values, strict=True) if b == v]
            seen["intact"] += compare(codec, intact, now_us)[0]
    assert seen["good"] >= 1000 and seen["other"] >= 50 and seen["corrupt"] >= 500, seen
    assert seen["cut"] >= 5000 and seen["intact"] >= 500, seen  # (seen: other 91-103, cut 10,601+)


def test_a_string_item_that_is_not_utf8_damages_only_its_entity() -> None:
    user = Entity("user", join_keys=["user_id"])
    source = ParquetSource("events", path="data/events", timestamp_field="ts")
    functions = ("last_n", "max", "count_distinct")
    aggregations = [Aggregation("s", f, n=3 if f == "last_n" else None) for f in functions]
    v = FeatureView(
        "v", entities=[user], source=source, schema=[Field("s", String)], aggregations=aggregations
    )
    (group,) = tile_groups(v)
    codec = TileCodec(group)
    states = [  # per field of the group: the three entities' lists
        [[0]] * 3,  # tiles
        [["é", "b"]] * 3, [[2]] * 3,  # last_n: values, counts
        [["é"], ["é"], ["a"]],  # max
        [["é"]] * 3, [[1]] * 3,  # count_distinct: values, counts
    ]  # fmt: skip
    table = pa.table({f.name: pa.array(x, f.dtype.arrow) for f, x in zip(group.fields, states, strict=True)})
    values = codec.encode(table, np.arange(3), 1).to_pylist()
    values[1] = values[1].replace("é".encode(), b"\xc3\xc3")  # every é of entity 1: not UTF-8
    out = tile_kernel.combine(codec, values, 0)
    assert out.good == [0, 1, 2] and out.damaged == {1}
    assert out.results == [[["é", "b"], [None, "b"], ["é", "b"]], ["é", None, "a"], [1, 1, 1]]
    assert compare(codec, values, 0) == (3, 0, 0, 1)


def test_a_negative_count_is_corrupt_though_the_counts_add_up() -> None:
    # Counts (4, -1) add up to the 3 items stored as (2, 1) do: read as they say, the first
    # tile's items would run past the state's bytes. The NumPy decode took them (and its
    # combine then failed); the kernel refuses the value.
    user = Entity("user", join_keys=["user_id"])
    source = ParquetSource("events", path="data/events", timestamp_field="ts")
    v = FeatureView(
        "v",
        entities=[user],
        source=source,
        schema=[Field("i", Int64)],
        aggregations=[Aggregation("i", "last_n", n=5, window=timedelta(hours=1), hop=timedelta(minutes=5))],
    )
    (group,) = tile_groups(v)
    codec = TileCodec(group)
    lists = [[[1, 2]], [[7, 8, 9]], [[2, 1]]]  # tiles, last_n's values (newest first per tile), counts
    table = pa.table({f.name: pa.array(x, f.dtype.arrow) for f, x in zip(group.fields, lists, strict=True)})
    (value,) = codec.encode(table, np.arange(1), 1).to_pylist()
    fields = codec.record.fields
    assert fields is not None
    at = fields["s2"][1]  # the counts' offset in a record
    records = 28  # header and T
    size = codec.record.itemsize
    patched = bytearray(value)
    patched[records + at : records + at + 8] = (4).to_bytes(8, "little", signed=True)
    patched[records + size + at : records + size + at + 8] = (-1).to_bytes(8, "little", signed=True)
    now_us = 2 * 300 * 1_000_000
    assert tile_kernel.combine(codec, [value], now_us).results == [[[9, 7, 8]]]  # tile 2, then 1
    out = tile_kernel.combine(codec, [bytes(patched)], now_us)
    assert (out.good, out.corrupt) == ([], [0])
