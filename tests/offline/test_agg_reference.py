"""The aggregation reference itself, on hand-computed examples: the property test trusts it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.offline.agg_reference import FUNCTIONS, Spec, aggregate, feature_name, latest_versions
from tests.offline.reference import SourceRow
from tests.support.clock import minutes_after

T0 = datetime(2026, 3, 1, tzinfo=UTC)
at = minutes_after(T0)
HOUR, HALF = timedelta(hours=1), timedelta(minutes=30)


def event(
    minute: float, amount: float | None = None, units: int | None = None, merchant: str | None = None,
    created: int | None = None, seq: tuple[int, int] = (0, 0), user: int = 1,
) -> SourceRow:
    """A source row of user ``user`` at ``minute`` (created at minute ``created``)."""
    values = {"amount": amount, "units": units, "merchant": merchant}
    return SourceRow((user,), at(minute), None if created is None else at(created), seq, values)


def features(
    rows: list[SourceRow], specs: list[Spec], minute: float | None, user: int | None = 1
) -> dict[str, Any]:
    """The features of one entity row (``user`` at ``minute``)."""
    return aggregate([(user,)], [None if minute is None else at(minute)], rows, specs)[0]


def every(column: str, window: timedelta | None) -> list[Spec]:
    """Every function over one column and window (last_n with n=3)."""
    return [(column, f, window, 3 if f == "last_n" else None) for f in FUNCTIONS]


@pytest.mark.parametrize(
    ("function", "window", "n", "name"),
    [
        ("sum", timedelta(minutes=30), None, "amount_sum_30m"),
        ("sum", timedelta(days=7), None, "amount_sum_7d"),
        ("mean", timedelta(minutes=90), None, "amount_mean_90m"),
        ("max", timedelta(hours=1), None, "amount_max_1h"),
        ("min", timedelta(seconds=45), None, "amount_min_45s"),
        ("count", timedelta(days=1, seconds=1), None, "amount_count_86401s"),
        ("stddev", None, None, "amount_stddev_lifetime"),
        ("last_n", timedelta(hours=1), 3, "amount_last3_1h"),
    ],
)
def test_default_names(function: str, window: timedelta | None, n: int | None, name: str) -> None:
    assert feature_name("amount", function, window, n) == name


@pytest.mark.parametrize("window", [timedelta(0), timedelta(seconds=-60), timedelta(milliseconds=1500)])
def test_a_window_is_a_positive_whole_number_of_seconds(window: timedelta) -> None:
    with pytest.raises(ValueError, match="positive whole number of seconds"):
        feature_name("amount", "sum", window)


def test_a_window_is_open_on_the_left_and_closed_on_the_right() -> None:
    rows = [event(0, 1.0, seq=(0, 0)), event(30, 2.0, seq=(0, 1)), event(60, 4.0, seq=(0, 2))]
    specs: list[Spec] = [("amount", "sum", w, None) for w in (HALF, HOUR, None)]
    # At 60 the event at 30 is exactly 30 minutes old (out of 30m), the one at 0 an hour old.
    sums = [features(rows, specs, m) for m in (60, 59)]
    assert [list(s.values()) for s in sums] == [[4.0, 6.0, 7.0], [2.0, 3.0, 3.0]]
    assert list(sums[0]) == ["amount_sum_30m", "amount_sum_1h", "amount_sum_lifetime"]
    assert features(rows, specs, 60 + 1 / 60)["amount_sum_1h"] == 6.0  # a second past: 0 still out
    assert features(rows, specs, 30 - 1 / 60)["amount_sum_1h"] == 1.0  # a second before 30
    assert features(rows, [("amount", "count", timedelta(minutes=1), None)], 30) == {"amount_count_1m": 1}


def test_a_later_created_version_replaces_the_event_even_with_a_null_value() -> None:
    rows = [
        event(10, 1.0, 1, "a", created=11, seq=(0, 0)),
        event(10, 5.0, 5, "e", created=None, seq=(1, 0)),  # ingested later, but no created time
        event(20, 2.0, 2, "b", created=21, seq=(0, 1)),
        event(20, None, 3, None, created=22, seq=(0, 2)),  # a correction erasing amount and merchant
        event(30, 3.0, 7, "c", created=30, seq=(1, 1)),
        event(30, 4.0, 8, "d", created=30, seq=(0, 3)),  # same created time, ingested first: loses
    ]
    assert [(r.event_ts, r.values["amount"]) for r in latest_versions(rows)] == [
        (at(10), 1.0), (at(20), None), (at(30), 3.0)
    ]
    specs: list[Spec] = [
        ("amount", "count", None, None), ("amount", "sum", None, None), ("units", "sum", None, None),
        ("merchant", "last_n", None, 3), ("merchant", "count", None, None),
    ]
    assert features(rows, specs, 30) == {
        "amount_count_lifetime": 2, "amount_sum_lifetime": 4.0, "units_sum_lifetime": 11,
        "merchant_last3_lifetime": ["c", "a"], "merchant_count_lifetime": 2,
    }


def test_nan_is_skipped_like_a_null() -> None:
    rows = [event(0, 1.0, seq=(0, 0)), event(1, math.nan, seq=(0, 1)), event(2, 3.0, seq=(0, 2)),
            event(3, math.nan, seq=(0, 3))]
    got = features(rows, every("amount", None), 3)
    assert got == {
        "amount_count_lifetime": 2, "amount_count_distinct_lifetime": 2, "amount_sum_lifetime": 4.0,
        "amount_mean_lifetime": 2.0, "amount_min_lifetime": 1.0, "amount_max_lifetime": 3.0,
        "amount_variance_lifetime": 2.0, "amount_stddev_lifetime": math.sqrt(2),
        "amount_first_lifetime": 1.0, "amount_last_lifetime": 3.0, "amount_last3_lifetime": [3.0, 1.0],
    }


EMPTY = {
    "units_count_30m": 0, "units_count_distinct_30m": 0, "units_sum_30m": None, "units_mean_30m": None,
    "units_min_30m": None, "units_max_30m": None, "units_variance_30m": None, "units_stddev_30m": None,
    "units_first_30m": None, "units_last_30m": None, "units_last3_30m": None,
}


@pytest.mark.parametrize(
    ("minute", "user"),
    [
        (100, 1),  # the events are all older than the window
        (-1, 1),  # before any event
        (20, 2),  # a key never seen
        (20, None),  # a null key
        (None, 1),  # a null time
        (45, 1),  # events in the window, but their units are all null
    ],
)
def test_an_empty_window_counts_zero_and_has_no_other_value(minute: int | None, user: int | None) -> None:
    rows = [event(0, units=1, seq=(0, 0)), event(20, 1.0, seq=(0, 1)), event(40, 2.0, seq=(0, 2))]
    assert features(rows, every("units", HALF), minute, user) == EMPTY


def test_variance_needs_two_values_and_int_columns_keep_int_sums() -> None:
    rows = [event(m, units=u, seq=(0, m)) for m, u in [(0, 1), (10, 2), (20, 3), (30, 4), (40, None)]]
    one = features(rows, every("units", timedelta(minutes=10)), 30)
    assert (one["units_count_10m"], one["units_variance_10m"], one["units_stddev_10m"]) == (1, None, None)
    assert (one["units_sum_10m"], one["units_mean_10m"], one["units_last3_10m"]) == (4, 4.0, [4])
    four = features(rows, every("units", None), 40)
    assert four["units_sum_lifetime"] == 10 and isinstance(four["units_sum_lifetime"], int)
    assert isinstance(four["units_mean_lifetime"], float) and four["units_mean_lifetime"] == 2.5
    assert four["units_variance_lifetime"] == pytest.approx(5 / 3, rel=1e-15)
    assert four["units_stddev_lifetime"] == pytest.approx(math.sqrt(5 / 3), rel=1e-15)
    assert (four["units_min_lifetime"], four["units_max_lifetime"]) == (1, 4)
    assert (four["units_first_lifetime"], four["units_last_lifetime"]) == (1, 4)
    equal = features([event(0, 2.5, seq=(0, 0)), event(1, 2.5, seq=(0, 1))], every("amount", None), 1)
    assert (equal["amount_variance_lifetime"], equal["amount_stddev_lifetime"]) == (0.0, 0.0)


def test_last_n_is_newest_first_and_at_most_n() -> None:
    names = ["b", "a", None, "c", "b", "d"]
    rows = [event(m, merchant=name, seq=(0, m)) for m, name in enumerate(names)]
    spec: list[Spec] = [("merchant", "last_n", None, 3)]
    assert features(rows, spec, 5) == {"merchant_last3_lifetime": ["d", "b", "c"]}
    assert features(rows, spec, 2) == {"merchant_last3_lifetime": ["a", "b"]}  # the null skipped
    counts: list[Spec] = [("merchant", f, None, None) for f in ("count", "count_distinct", "first", "last")]
    got = features(rows, counts, 5)
    assert (got["merchant_count_lifetime"], got["merchant_count_distinct_lifetime"]) == (5, 4)
    assert (got["merchant_first_lifetime"], got["merchant_last_lifetime"]) == ("b", "d")


def test_strings_compare_by_code_point() -> None:
    rows = [event(m, merchant=name, seq=(0, m)) for m, name in enumerate(["b", "B", "é", "", "z"])]
    got = features(rows, [("merchant", "min", None, None), ("merchant", "max", None, None)], 4)
    assert got == {"merchant_min_lifetime": "", "merchant_max_lifetime": "é"}


def test_windows_are_per_key_and_per_entity_row() -> None:
    rows = [event(0, 1.0, seq=(0, 0)), event(0, 10.0, user=2, seq=(0, 1)), event(5, 2.0, seq=(0, 2))]
    got = aggregate([(1,), (2,), (1,)], [at(5), at(5), at(4)], rows, [("amount", "sum", HOUR, None)])
    assert got == [{"amount_sum_1h": 3.0}, {"amount_sum_1h": 10.0}, {"amount_sum_1h": 1.0}]


def test_the_sketch_is_exact_below_k_and_close_above() -> None:
    names = [f"m{i}" for i in range(20_000)]
    rows = [event(i / 100, merchant=name, seq=(0, i)) for i, name in enumerate(names + names[:50])]
    few: list[Spec] = [("merchant", "approx_count_distinct", timedelta(minutes=3), 1024)]
    assert features(rows, few, 2.99) == {"merchant_approx_count_distinct_3m": 300}  # exact: 300 < k
    many: list[Spec] = [("merchant", "approx_count_distinct", None, 1024)]
    estimate = features(rows, many, 200)["merchant_approx_count_distinct_lifetime"]
    # relative standard error 1 / sqrt(k - 2) = 3.1%; the hashes are fixed, so this is not a
    # matter of luck between runs: 20,000 distinct names, estimated within 4 standard errors
    assert estimate != 20_000 and abs(estimate - 20_000) / 20_000 < 4 / math.sqrt(1022)
