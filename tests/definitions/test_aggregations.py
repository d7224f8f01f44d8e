"""Declaring aggregations: names, types, the one error that lists every problem, the registry
spec, and what plan calls breaking."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from featurestore import (
    Aggregation,
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    Float32,
    Int32,
    List,
    ParquetSource,
    String,
    Timestamp,
)
from featurestore.errors import BreakingChangeError, DefinitionError

USER = Entity("user", join_keys=["user_id"])
TXNS = ParquetSource("txns", path="data/txns", timestamp_field="ts")
SCHEMA = [Field("amount", Float32), Field("units", Int32), Field("merchant", String), Field("at", Timestamp)]


def view(*aggregations: Aggregation, **kwargs: object) -> FeatureView:
    args: dict[str, object] = {"schema": SCHEMA, "online": False, **kwargs}
    return FeatureView("user_txn", entities=[USER], source=TXNS, aggregations=aggregations, **args)  # type: ignore[arg-type]


def test_default_names_types_and_descriptions() -> None:
    v = view(
        Aggregation("amount", "sum", window=timedelta(days=7)),
        Aggregation("units", "sum", window=timedelta(minutes=90)),
        Aggregation("amount", "count", window=timedelta(hours=1)),
        Aggregation("merchant", "last_n", window=timedelta(days=30), n=5),
        Aggregation("merchant", "count_distinct"),
        Aggregation("amount", "max", window=timedelta(seconds=45)),
        Aggregation("at", "last", window=timedelta(hours=36)),
        Aggregation("units", "mean", window=timedelta(days=1), name="avg_units"),
        Aggregation("amount", "stddev", window=timedelta(days=1)),
    )
    assert [(f.name, f.dtype.name) for f in v.features] == [
        ("amount_sum_7d", "Float64"),
        ("units_sum_90m", "Int64"),  # an integer sum stays an integer
        ("amount_count_1h", "Int64"),
        ("merchant_last5_30d", List(String).name),
        ("merchant_count_distinct_lifetime", "Int64"),
        ("amount_max_45s", "Float32"),  # one of the values: the column's type
        ("at_last_36h", "Timestamp"),
        ("avg_units", "Float64"),
        ("amount_stddev_1d", "Float64"),
    ]
    assert v.features[0].description == "sum of amount over 7d"
    assert v.features[4].description == "count_distinct of merchant over all events"
    assert [f.name for f in v.columns] == ["amount", "units", "merchant", "at"]  # what ingestion stores


def test_default_hops_divide_the_window_into_12_to_288_tiles() -> None:
    hops = {
        timedelta(seconds=45): timedelta(seconds=1),
        timedelta(hours=1): timedelta(minutes=5),
        timedelta(hours=7, seconds=1): timedelta(seconds=1),  # only whole seconds divide it
        timedelta(hours=12): timedelta(minutes=5),
        timedelta(hours=36): timedelta(hours=1),
        timedelta(days=7): timedelta(hours=1),
        timedelta(days=30): timedelta(days=1),
        timedelta(days=30, minutes=5): timedelta(minutes=5),
    }
    for window, hop in hops.items():
        assert Aggregation("amount", "sum", window=window).hop == hop, window
    assert Aggregation("amount", "sum").hop is None  # lifetime
    weekly = Aggregation("amount", "sum", window=timedelta(days=7), hop=timedelta(days=1))
    assert weekly.hop == timedelta(days=1)


def test_every_problem_in_one_error() -> None:
    with pytest.raises(DefinitionError) as e:
        Aggregation("amount", "median", window=timedelta(seconds=1.5))
    assert "function 'median' is not one of" in str(e.value)
    assert "window must be a whole number of seconds" in str(e.value)
    for bad, message in [
        (lambda: Aggregation("amount", "sum", window=timedelta(0)), "window must be a positive timedelta"),
        (lambda: Aggregation("merchant", "last_n"), "last_n needs n between 1 and 1000, got None"),
        (lambda: Aggregation("merchant", "last_n", n=1001), "got 1001"),
        (lambda: Aggregation("merchant", "last_n", n=True), "got True"),
        (lambda: Aggregation("amount", "sum", n=3), "n is for last_n only"),
        (lambda: Aggregation("amount", "sum", name="no-dash"), "is invalid"),
        (lambda: Aggregation("amount", "sum", hop=timedelta(hours=1)), "a lifetime window has no hop"),
        (
            lambda: Aggregation("amount", "sum", window=timedelta(hours=1), hop=timedelta(minutes=7)),
            "hop 0:07:00 does not divide the window 1:00:00",
        ),
        (
            lambda: Aggregation("amount", "sum", window=timedelta(hours=1), hop=timedelta(0)),
            "hop must be a positive whole number of seconds",
        ),
    ]:
        with pytest.raises(DefinitionError, match=message):
            bad()
    with pytest.raises(DefinitionError) as e:
        view(
            Aggregation("merchant", "sum"),
            Aggregation("at", "mean"),
            Aggregation("missing", "count"),
            Aggregation("amount", "min", name="x"),
            Aggregation("units", "max", name="x"),
            Aggregation("units", "max", name="amount"),
            ttl=timedelta(days=1),
            online=True,
        )
    assert e.value.problems == [
        "feature view 'user_txn': an aggregation view has windows, not a ttl",
        "feature view 'user_txn': aggregation 'merchant_sum_lifetime': sum does not take String values",
        "feature view 'user_txn': aggregation 'at_mean_lifetime': mean does not take Timestamp values",
        "feature view 'user_txn': aggregation 'missing_count_lifetime' reads 'missing', which the schema "
        "does not declare",
        "feature view 'user_txn': aggregations repeat feature name(s) ['x']: give them distinct names",
        "feature view 'user_txn': aggregation feature name(s) ['amount'] are also schema fields",
    ]


def test_the_spec_round_trips_and_plain_views_keep_their_fingerprints() -> None:
    v = view(
        Aggregation("amount", "sum", window=timedelta(days=7)),
        Aggregation("merchant", "last_n", window=timedelta(hours=2), n=3, name="recent"),
        Aggregation("units", "max"),
    )
    back = FeatureView.from_spec(v.to_spec(), TXNS)
    assert back.aggregations == v.aggregations and back.features == v.features
    assert back.fingerprint == v.fingerprint
    plain = FeatureView("plain", entities=[USER], source=TXNS, schema=SCHEMA)
    assert "aggregations" not in plain.to_spec()  # specs written before aggregations existed
    assert plain.features == plain.columns


SERVED = '''
from datetime import timedelta
from featurestore import Aggregation, Entity, FeatureService, FeatureView, Field, Float32, ParquetSource

driver = Entity("driver", join_keys=["driver_id"])
source = ParquetSource("stats", path="data/driver_stats", timestamp_field="event_timestamp")
activity = FeatureView(
    "activity", entities=[driver], source=source, online=False,
    schema=[Field("conv_rate", Float32)],
    aggregations=[Aggregation("conv_rate", "mean", window=timedelta(hours=24), name="conv_24h"),
                  Aggregation("conv_rate", "max", window=timedelta(hours=1))],
)
model = FeatureService("model", features=[activity[["conv_24h"]]])
'''


def test_a_changed_window_or_function_of_a_served_aggregation_is_breaking(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo: Path = make_repo({"defs.py": SERVED})
    fs = FeatureStore(repo)
    fs.apply()
    defs = repo / "defs.py"
    defs.write_text(SERVED.replace("timedelta(hours=24)", "timedelta(hours=12)").replace('"mean"', '"min"'))
    assert fs.plan().breaking == [
        "feature view 'activity': feature 'conv_24h' changes its function mean -> min while used by "
        "feature service 'model'",
        "feature view 'activity': feature 'conv_24h' changes its hop_seconds 3600 -> 300 while used by "
        "feature service 'model'",
        "feature view 'activity': feature 'conv_24h' changes its window_seconds 86400 -> 43200 while used "
        "by feature service 'model'",
    ]
    with pytest.raises(BreakingChangeError):
        fs.apply()
    # Adding an aggregation breaks nobody.
    defs.write_text(SERVED.replace("hours=1))],", 'hours=1)), Aggregation("conv_rate", "count")],'))
    plan = fs.plan()
    assert [d.path for c in plan.changes for d in c.fields] == ["aggregations.conv_rate_count_lifetime"]
    assert plan.breaking == []
