"""The tile group codec and the lookup's combine (tile_kernel.py): rows survive encode ->
decode byte for byte deterministic, combining many entities at once equals combining each in
plain Python (every function, every state type, random windows and ``now``), and values of
the earlier layout read NOT_FOUND while damaged ones read CORRUPT."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from featurestore.online import tile_kernel
from featurestore.online.codec import FORMAT_VERSION, ViewCodec, ViewSchema, with_header
from featurestore.online.tile_codec import TileCodec
from featurestore.online.tiles import STATES, TileGroup, tile_groups
from tests.online.agg_cases import DEFS, events
from tests.online.tile_rows import random_rows, view
from tests.support.redis import RedisClient, keys_matching
from tests.support.repos import make_store


# The per-entity combine of the earlier layout (plain Python over decoded lists): the reference.
def reference(group: TileGroup, row: list[list[Any]], now_us: int) -> list[Any]:
    tiles = row[0]
    last = group.tile_of(now_us) if group.hop_us is not None else None
    out = []
    for a, at, span in group.steps:
        states = row[at : at + len(STATES[a.function])]
        inside = [k for k, j in enumerate(tiles) if last is None or last - span < j <= last]
        flat = a.function in ("last_n", "count_distinct")  # values flattened, not one per tile
        picked = [[s[k] for k in inside] for s in states] if not flat else [[]]
        present = [v for v in picked[0] if v is not None]
        f = a.function
        if f == "count":
            out.append(sum(picked[0]))
        elif f == "sum":
            out.append(sum(present) if present else None)
        elif f == "mean":
            count = sum(picked[1])
            out.append(sum(present) / count if count else None)
        elif f in ("variance", "stddev"):
            total, mean, m2 = 0, 0.0, 0.0
            for c, m, q in zip(*picked, strict=True):
                if not c:
                    continue
                merged = total + c
                delta = m - mean
                mean += delta * c / merged
                m2 += q + delta * delta * total * c / merged
                total = merged
            variance = max(m2, 0.0) / (total - 1) if total >= 2 else None
            out.append(variance if f == "variance" or variance is None else variance**0.5)
        elif f in ("min", "max"):
            out.append((min if f == "min" else max)(present) if present else None)
        elif f == "first":
            out.append(present[0] if present else None)
        elif f == "last":
            out.append(present[-1] if present else None)
        else:
            offsets = [0]
            for c in states[1]:
                offsets.append(offsets[-1] + c)
            if f == "count_distinct":
                out.append(len({v for k in inside for v in states[0][offsets[k] : offsets[k + 1]]}))
            else:
                newest: list[Any] = []
                for k in reversed(inside):
                    newest += states[0][offsets[k] : offsets[k + 1]]
                out.append(newest[: a.n] or None)
    return out


def same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
    return type(x) is type(y) and x == y


@pytest.mark.parametrize("seed", range(6))
def test_combining_many_entities_at_once_equals_combining_each_alone(seed: int) -> None:
    rng = random.Random(seed)
    for group in tile_groups(view((timedelta(minutes=15), timedelta(hours=1), None))):
        codec = TileCodec(group)
        table = random_rows(rng, group, 40)
        values = codec.encode(table, np.arange(40), 7).to_pylist()
        rows = [codec.rows(v) for v in values]
        for now_tile in (95, 104, 110, 118, 129, 140):
            now_us = (now_tile * 300 - rng.randint(0, 299)) * 1_000_000
            out = tile_kernel.combine(codec, values, now_us)
            assert out.good == list(range(40)) and not out.corrupt and not out.other
            assert not out.damaged
            got = out.results
            for e, row in enumerate(rows):
                assert row is not None
                want = reference(group, row, now_us)
                for (a, _, _), column, w in zip(group.steps, got, want, strict=True):
                    g = column[e]
                    ok = same(g, w) if not isinstance(w, list) else len(g) == len(w) and all(map(same, g, w))
                    assert ok, (a.name, e, now_tile, g, w)


def test_rows_survive_encoding_and_the_same_rows_give_the_same_bytes() -> None:
    rng = random.Random(1)
    for group in tile_groups(view()):
        codec = TileCodec(group)
        table = random_rows(rng, group, 25)
        values = codec.encode(table, np.arange(25), 3).to_pylist()
        assert codec.encode(table, np.arange(25), 3).to_pylist() == values
        as_micros = [  # Timestamp items decode as microseconds, as the lookup combines them
            table.column(f.name).cast(pa.list_(pa.int64()))
            if f.dtype.name == "List(Timestamp)"
            else table.column(f.name)
            for f in group.fields
        ]
        expected = pa.table(as_micros, names=table.column_names).to_pylist()
        for value, row in zip(values, expected, strict=True):
            decoded = codec.rows(value)
            assert decoded is not None
            for f, column in zip(group.fields, decoded, strict=True):
                assert column == row[f.name], f.name


def test_values_of_the_earlier_layout_are_other_and_damaged_ones_corrupt() -> None:
    group = tile_groups(view())[0]
    codec = TileCodec(group)
    table = random_rows(random.Random(2), group, 6)
    values = codec.encode(table, np.arange(6), 1).to_pylist()
    # The earlier layout: a ViewCodec row of the same List columns.
    earlier = ViewCodec(ViewSchema(group.key_name, group.fields))
    from featurestore.online.codec import encode_created

    old = earlier.encode(table, np.arange(6), encode_created(None, 6), 1).to_pylist()
    mixed = [values[0], old[1], values[2], old[3][:20]]
    batch = codec.decode(mixed)
    assert (batch.good, batch.other, batch.corrupt) == ([0, 2], [1], [3])
    out = tile_kernel.combine(codec, mixed, 120 * 300 * 1_000_000)
    assert (out.good, out.other, out.corrupt) == ([0, 2], [1], [3])
    broken = [
        values[1][:-1],  # cut short
        values[1] + b"\x00",  # bytes to spare
        with_header(values[1], format_version=FORMAT_VERSION + 1),
        values[1][:24] + (2**31).to_bytes(4, "little") + values[1][28:],  # a tile count past the end
    ]
    batch = codec.decode([values[0], *broken, values[2]])
    assert (batch.good, batch.other, batch.corrupt) == ([0, 5], [], [1, 2, 3, 4])
    out = tile_kernel.combine(codec, [values[0], *broken, values[2]], 120 * 300 * 1_000_000)
    assert (out.good, out.other, out.corrupt) == ([0, 5], [], [1, 2, 3, 4])
    alone = tile_kernel.combine(codec, [values[0], values[2]], 120 * 300 * 1_000_000)
    assert out.results == alone.results


def test_a_value_of_the_earlier_layout_reads_not_found_and_a_damaged_one_corrupt(
    tmp_path: Path, any_redis: RedisClient
) -> None:
    now = datetime.now(UTC)
    table = events(random.Random(5), now, 200, timedelta(hours=3))
    fs = make_store(tmp_path / "repo", DEFS, {"txns/part-0.parquet": table})
    fs.materialize()
    group = tile_groups(fs.get_feature_view("user_txn"))[-1]  # lifetime: every user has a value
    keys = sorted(keys_matching(any_redis, f"*{group.key_name}"))
    earlier = ViewCodec(ViewSchema(group.key_name, group.fields)).layout
    any_redis.set(keys[0], with_header(any_redis.get(keys[0]), layout=earlier))
    any_redis.set(keys[1], any_redis.get(keys[1])[:-3])
    users = [int(k.decode().split("=")[1].split("}")[0]) for k in keys[:3]]
    online = fs.get_online_features(["user_txn:amount_count_lifetime"], {"user_id": users})
    assert online.statuses["amount_count_lifetime"] == ["NOT_FOUND", "CORRUPT", "PRESENT"]
    assert online.to_dict()["amount_count_lifetime"][:2] == [None, None]
    assert online.to_dict()["amount_count_lifetime"][2] > 0
