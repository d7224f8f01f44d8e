"""The same function and the same inputs give the same values in training and in serving.

Hypothesis draws feature rows (nulls, entities with nothing, values past the TTL) and request
data (nulls too); each example is written as a new source file, ingested and materialized,
then asked of every path: a training set at the lookup time, the in-process lookup, the
server over gRPC and over HTTP. Each must equal a plain-Python reference of the functions.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from featurestore import Client, FeatureStore
from tests.on_demand.support import FEATURES, Row, latest, reference, same, write_rows
from tests.serving.support import ServeProcess

AGES_H = [1, 3, 10, 30, 60, 100]  # hours before the lookup; 60 and 100 are past the 2-day TTL
_examples = itertools.count(1)

floats = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 3)))
ints = st.one_of(st.none(), st.integers(-(10**6), 10**6))
strings = st.one_of(st.none(), st.text("abcxyz", max_size=5))
rows_of_driver = st.lists(
    st.tuples(st.sampled_from(AGES_H), floats, ints, strings), max_size=3, unique_by=lambda r: r[0]
)
entity = st.tuples(rows_of_driver, floats, st.one_of(st.none(), st.booleans()))


# Three entities with nothing, three whose newest row is past the TTL, three with a null ``a``,
# and null request values, besides present ones: drawn examples add more of each.
EDGES = [
    ([], 1.5, True),
    ([], None, False),
    ([], 2.0, None),
    ([(60, 1.0, 2, "a")], 1.0, True),
    ([(100, 1.0, 2, "a"), (60, 2.0, 3, "b")], None, True),
    ([(60, None, None, None)], 3.0, None),
    ([(1, None, 5, "z"), (30, 1.0, 1, "y")], 2.5, True),
    ([(3, None, None, None)], None, False),
    ([(10, None, 7, "")], 0.5, None),
    ([(1, 2.5, -3, "x")], -1.25, False),
    ([(3, 0.0, 0, "q"), (30, 9.0, 9, "r")], 4.0, True),
    ([(10, -7.125, 1000000, "xyz")], 1e6, False),
]


def _statuses_expected(values: dict[str, Any]) -> dict[str, str]:
    return {k: "PRESENT" if v is not None else "NULL_VALUE" for k, v in values.items() if k != "b"}


def test_training_and_serving_compute_the_same_values(od_repo: Path, od_server: ServeProcess) -> None:
    seen: Counter[str] = Counter()
    fs = FeatureStore(od_repo)
    client = Client(od_server.target)
    http = httpx.Client(base_url=od_server.http_url, timeout=10)

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(entity, min_size=1, max_size=6))
    @example(EDGES)  # every edge case three times, whatever the draws bring
    def check(entities: list[tuple[list[tuple[int, Any, Any, Any]], Any, Any]]) -> None:
        example = next(_examples)
        now = datetime.now(UTC).replace(microsecond=0)
        ids = [example * 100 + i for i in range(len(entities))]
        rows = [
            Row(driver, now - timedelta(hours=age), a, b, s)
            for driver, (drawn, _, _) in zip(ids, entities, strict=True)
            for age, a, b, s in drawn
        ]
        if rows:
            write_rows(od_repo, f"example-{example:04d}", rows)
        fs.materialize()
        xs = [x for _, x, _ in entities]
        flags = [f for _, _, f in entities]
        at = datetime.now(UTC)
        expected = [reference(latest(rows, d, at), x, f) for d, x, f in zip(ids, xs, flags, strict=True)]

        # what the draws cover, counted across examples
        for d, x, f in zip(ids, xs, flags, strict=True):
            mine = [r for r in rows if r.driver_id == d]
            found = latest(rows, d, at)
            seen["not found"] += not mine
            seen["expired"] += bool(mine) and found is None
            seen["null a"] += found is not None and found.a is None
            seen["present a"] += found is not None and found.a is not None
            seen["null x"] += x is None
            seen["null flag"] += f is None

        entities_arg = {"driver_id": ids}
        request_data = {"x": xs, "flag": flags}
        online = fs.get_online_features(FEATURES, entities_arg, request_data=request_data)
        served = client.get_online_features(
            FEATURES,
            entities_arg,
            request_data=pa.table({"x": pa.array(xs, pa.float64()), "flag": pa.array(flags, pa.bool_())}),
        )
        answer = http.post(
            "/v1/online-features",
            json={"features": FEATURES, "entities": entities_arg, "request_data": request_data},
        )
        assert answer.status_code == 200, answer.text
        over_http = {c["name"]: c for c in answer.json()["features"]}
        frame = pa.table(
            {
                "driver_id": pa.array(ids, pa.int64()),
                "event_timestamp": pa.array([at] * len(ids), pa.timestamp("us", tz="UTC")),
                "x": pa.array(xs, pa.float64()),
                "flag": pa.array(flags, pa.bool_()),
            }
        )
        with fs.get_training_set(frame, FEATURES) as ts:
            trained = ts.to_arrow().to_pydict()

        in_process, in_process_statuses = online.to_dict(), online.statuses
        for i, want in enumerate(expected):
            for name, value in want.items():
                got = {
                    "training": trained[name][i],
                    "in process": in_process[name][i],
                    "gRPC": served.columns[name][i],
                    "HTTP": over_http[name]["values"][i],
                }
                for path, v in got.items():
                    assert same(v, value), (path, name, i, v, value)
            for name, status in _statuses_expected(want).items():
                assert in_process_statuses[name][i] == status
                assert served.statuses[name][i] == status
                assert over_http[name]["statuses"][i] == status

    try:
        check()
    finally:
        client.close()
        http.close()
        fs.close()
    # every edge case was drawn at least a few times
    for case in ("not found", "expired", "null a", "present a", "null x", "null flag"):
        assert seen[case] >= 3, seen
