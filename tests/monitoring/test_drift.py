"""Drift flags exactly the shifted features; PSI and the tests agree with numpy on the raw rows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from featurestore.errors import InvalidRequestError, NotFoundError
from featurestore.monitoring.drift import EPSILON, NO_TEST, FeatureDrift, Skipped, Thresholds, compare
from featurestore.profiling import FeatureStats
from featurestore.runs.training_set_records import RECORD, folder
from tests.monitoring.drift_repo import (
    SHIFTED,
    SHIFTED_NULLS,
    SHIFTED_VALUES,
    DriftRepo,
)

# The summaries keep 101 quantiles (exact here: fewer rows than the reservoir sample), so a
# CDF read off them is within one level (0.01) of the empirical CDF: D is within 2 levels of
# the exact D, and each bin share within 0.02 of the exact share. For PSI that bounds the
# error of each bin's term by about 0.02 * (|ln(c/b)| + |c - b| / min(b, c)).
D_TOLERANCE = 0.02


def exact_ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    points = np.union1d(a, b)
    fa = np.searchsorted(a, points, side="right") / len(a)
    fb = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def exact_psi(edges: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """PSI of the raw values on the same bins: (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    k = len(edges) + 1
    sa = np.bincount(np.searchsorted(edges, a, side="left"), minlength=k) / len(a)
    sb = np.bincount(np.searchsorted(edges, b, side="left"), minlength=k) / len(b)
    pa_, pb_ = np.maximum(sa, EPSILON), np.maximum(sb, EPSILON)
    return float(np.sum((pb_ - pa_) * np.log(pb_ / pa_))), sa, sb


def exact_chi2(a: pd.Series, b: pd.Series) -> float:
    values = sorted(set(a.dropna()) | set(b.dropna()))
    table = np.array([[int((s == v).sum()) for v in values] for s in (a, b)], dtype=float)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    return float(np.sum((table - expected) ** 2 / expected))


@pytest.mark.parametrize("baseline", ["run", "training set"])
def test_drift_flags_exactly_the_shifted_features(drift_repo: DriftRepo, baseline: str) -> None:  # noqa: F811
    base = drift_repo.baseline_run if baseline == "run" else drift_repo.training_set
    shifted = drift_repo.store.drift("driver_stats", base, drift_repo.shifted_run)
    assert len(shifted.features) == 13 and not shifted.skipped
    assert [f.feature for f in shifted.features if f.values_drifted] == SHIFTED_VALUES
    if baseline == "run":  # the new nulls drift too, by their share alone
        assert [f.feature for f in shifted.drifted] == SHIFTED
        assert [f.feature for f in shifted.features if f.missing_drifted] == SHIFTED_NULLS
    else:  # a training set's nulls are not the source's: not compared
        assert [f.feature for f in shifted.drifted] == SHIFTED_VALUES
        assert all(f.missing_psi is None and f.missing_p_value is None for f in shifted.features)
    # The control file has the baseline's distributions: nothing drifts.
    control = drift_repo.store.drift("driver_stats", base, drift_repo.control_run)
    assert control.drifted == [] and len(control.features) == 13


def exact_missing(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """PSI and chi-square statistic of the missing/present shares, from the raw rows."""
    table = np.array([[int(s.isna().sum()), int(s.notna().sum())] for s in (a, b)], dtype=float)
    shares = np.maximum(table / table.sum(axis=1, keepdims=True), EPSILON)
    psi = float(np.sum((shares[1] - shares[0]) * np.log(shares[1] / shares[0])))
    table = table[:, table.sum(axis=0) > 0]
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    return psi, float(np.sum((table - expected) ** 2 / expected))


def test_the_share_of_missing_values_agrees_with_the_raw_rows(drift_repo: DriftRepo) -> None:  # noqa: F811
    report = drift_repo.store.drift("driver_stats", drift_repo.baseline_run, drift_repo.shifted_run)
    for name, f in by_name(report.features).items():
        a, b = drift_repo.baseline_rows[name], drift_repo.shifted_rows[name]
        psi, statistic = exact_missing(a, b)
        assert f.missing_psi == pytest.approx(psi, abs=1e-9), name
        if f"driver_stats:{name}" in SHIFTED_NULLS:
            assert b.isna().mean() == pytest.approx(0.1, abs=0.02) and a.isna().sum() == 0
            assert psi > 0.5 and statistic > 100 and f.missing_p_value < 1e-6, name
            assert f.missing_drifted and not f.values_drifted and f.test in ("ks", "chi2")
        else:
            assert psi == 0 and f.missing_p_value == 1.0 and not f.missing_drifted, name


def test_a_feature_that_turns_all_null_drifts_and_nan_counts_as_missing() -> None:
    def numeric(count: int, nulls: int, non_finite: int = 0) -> FeatureStats:
        qs = tuple(float(i) for i in range(101)) if count > nulls + non_finite else ()
        return FeatureStats("x", "DOUBLE", "numeric", count, nulls, quantiles=qs, non_finite=non_finite)

    thresholds = Thresholds()
    gone = compare("v:x", numeric(1000, 0), numeric(1000, 1000), thresholds)
    assert isinstance(gone, FeatureDrift) and gone.drifted and gone.missing_drifted
    assert (gone.test, gone.bins, gone.values_drifted) == (NO_TEST, (), False)
    # NaN and infinities are missing values too: 300 of 1000 where there were none.
    nan = compare("v:x", numeric(1000, 0), numeric(1000, 0, non_finite=300), thresholds)
    assert isinstance(nan, FeatureDrift) and nan.missing_drifted and nan.test == "ks"
    assert nan.missing_psi == pytest.approx(exact_missing(
        pd.Series([1.0] * 1000), pd.Series([np.nan] * 300 + [1.0] * 700))[0])
    # Without the missing comparison (run against training set) an all-null side is skipped.
    skipped = compare("v:x", numeric(1000, 0), numeric(1000, 1000), thresholds, compare_missing=False)
    assert skipped == Skipped("v:x", "no values in the current")
    assert compare("v:x", numeric(10, 10), numeric(10, 10), thresholds) == Skipped(
        "v:x", "no values in the baseline")


def test_a_service_compares_every_view_with_latest(drift_repo: DriftRepo) -> None:  # noqa: F811
    report = drift_repo.store.drift("trip_model", drift_repo.training_set, "latest")
    assert [f.feature for f in report.drifted] == SHIFTED_VALUES
    assert len(report.features) == 16  # 13 driver and 3 customer features
    assert report.baseline == f"training set {drift_repo.training_set}"
    assert report.current.startswith("latest (") and drift_repo.shifted_run in report.current


def by_name(features: tuple[FeatureDrift, ...]) -> dict[str, FeatureDrift]:
    return {f.feature.split(":")[1]: f for f in features}


@pytest.mark.parametrize("current", ["shifted", "control"])
def test_numeric_psi_and_ks_agree_with_numpy_on_the_raw_rows(
    drift_repo: DriftRepo, current: str  # noqa: F811
) -> None:
    run, rows = (
        (drift_repo.shifted_run, drift_repo.shifted_rows)
        if current == "shifted"
        else (drift_repo.control_run, drift_repo.control_rows)
    )
    report = drift_repo.store.drift("driver_stats", drift_repo.baseline_run, run)
    numeric = {n: f for n, f in by_name(report.features).items() if f.kind == "numeric"}
    assert len(numeric) == 10
    for name, f in numeric.items():
        a = drift_repo.baseline_rows[name].dropna().to_numpy(float)
        b = rows[name].dropna().to_numpy(float)
        assert f.statistic == pytest.approx(exact_ks(a, b), abs=D_TOLERANCE), name
        edges = np.unique(np.asarray(f.baseline.quantiles)[10:100:10])
        psi, sa, sb = exact_psi(edges, a, b)
        assert len(f.bins) == len(edges) + 1
        assert np.allclose(f.baseline_shares, sa, atol=0.02) and np.allclose(f.current_shares, sb, atol=0.02)
        bound = np.sum(0.02 * (np.abs(np.log(np.maximum(sb, EPSILON) / np.maximum(sa, EPSILON)))
                               + np.abs(sb - sa) / np.maximum(np.minimum(sa, sb), EPSILON)))
        assert abs(f.psi - psi) <= max(bound, 0.005), (name, f.psi, psi, bound)
        # The reference agrees on what drifted: the shifted features are far apart, the others close.
        shifted = current == "shifted" and f"driver_stats:{name}" in SHIFTED_VALUES
        assert (psi > 0.3) if shifted else (psi < 0.05), (name, psi)


def as_labels(values: pd.Series) -> pd.Series:
    """Values as the statistics name them: booleans are 'true' and 'false'."""
    return values.dropna().map(lambda v: str(v).lower() if isinstance(v, bool | np.bool_) else str(v))


def test_categorical_chi_square_is_exact(drift_repo: DriftRepo) -> None:  # noqa: F811
    report = drift_repo.store.drift("driver_stats", drift_repo.baseline_run, drift_repo.shifted_run)
    for name in ("city", "vehicle_type", "is_active"):
        f = by_name(report.features)[name]
        a, b = as_labels(drift_repo.baseline_rows[name]), as_labels(drift_repo.shifted_rows[name])
        assert f.test == "chi2" and sorted(f.bins) == sorted(set(a))
        # Every value is among the top values, so the counts and the statistic are exact.
        assert f.statistic == pytest.approx(exact_chi2(a, b), rel=1e-9), name
        sa, sb = a.value_counts(normalize=True), b.value_counts(normalize=True)
        assert np.allclose(f.baseline_shares, [sa[v] for v in f.bins])
        assert np.allclose(f.current_shares, [sb[v] for v in f.bins])
        bins = list(f.bins)
        psi = float(np.sum((sb[bins] - sa[bins]) * np.log(sb[bins] / sa[bins])))
        assert f.psi == pytest.approx(psi)


def test_thresholds_decide_and_can_be_used_alone(drift_repo: DriftRepo) -> None:  # noqa: F811
    store, base, cur = drift_repo.store, drift_repo.baseline_run, drift_repo.shifted_run
    # PSI alone (p-value threshold 1): the same three; an impossible PSI: none.
    psi_alone = store.drift("driver_stats", base, cur, p_value_threshold=1.0)
    assert [f.feature for f in psi_alone.drifted] == SHIFTED
    assert store.drift("driver_stats", base, cur, psi_threshold=50).drifted == []
    report = store.drift("driver_stats", base, cur, psi_threshold=0.1, p_value_threshold=0.01)
    assert report.thresholds == Thresholds(0.1, 0.01)
    for f in report.features:
        assert f.values_drifted == (f.psi >= 0.1 and f.p_value < 0.01)
        assert f.missing_psi is not None and f.missing_p_value is not None
        assert f.missing_drifted == (f.missing_psi >= 0.1 and f.missing_p_value < 0.01)
        assert f.drifted == (f.values_drifted or f.missing_drifted)
    with pytest.raises(InvalidRequestError, match="p-value threshold"):
        store.drift("driver_stats", base, cur, p_value_threshold=2)


def test_thresholds_come_from_the_config(drift_repo: DriftRepo) -> None:  # noqa: F811
    from featurestore import FeatureStore
    from featurestore.errors import ConfigError

    toml = drift_repo.store.config.repo / "featurestore.toml"
    original = toml.read_text()
    try:
        toml.write_text(original + "\n[monitoring]\npsi_threshold = 5\np_value_threshold = 0.5\n")
        store = FeatureStore(drift_repo.store.config.repo)
        report = store.drift("driver_stats", drift_repo.baseline_run, drift_repo.shifted_run)
        assert report.thresholds == Thresholds(5.0, 0.5) and report.drifted == []
        toml.write_text(original + "\n[monitoring]\npsi_threshold = 'high'\n")
        with pytest.raises(ConfigError, match="psi_threshold must be a number"):
            FeatureStore(drift_repo.store.config.repo)
    finally:
        toml.write_text(original)


def test_bad_arguments_name_the_problem(drift_repo: DriftRepo) -> None:  # noqa: F811
    store = drift_repo.store
    with pytest.raises(NotFoundError, match="no ingestion run 'ingest-99'"):
        store.drift("driver_stats", "ingest-99")
    with pytest.raises(NotFoundError, match="'nope' is not an ingestion run"):
        store.drift("driver_stats", "nope")
    with pytest.raises(NotFoundError, match="no feature view or feature service named 'drivers'"):
        store.drift("drivers", drift_repo.baseline_run)
    with pytest.raises(InvalidRequestError, match="ingested feature view 'driver_stats', which is not in"):
        store.drift("customer_profile", drift_repo.baseline_run)
    with pytest.raises(InvalidRequestError, match="also has features of 'customer_profile'"):
        store.drift("trip_model", drift_repo.baseline_run)


def test_a_training_set_whose_id_is_all_digits_is_not_taken_for_a_run(drift_repo: DriftRepo) -> None:  # noqa: F811
    # One id in ~280 is 12 decimal digits, which also reads as a bare run number.
    store_dir = drift_repo.store.config.store_dir
    digits = "578783192741"
    record = json.loads((folder(store_dir, drift_repo.training_set) / RECORD).read_text())
    record["id"] = record["manifest"]["id"] = digits
    (folder(store_dir, digits)).mkdir()
    (folder(store_dir, digits) / RECORD).write_text(json.dumps(record))
    try:
        report = drift_repo.store.drift("trip_model", digits, "latest")
        assert report.baseline == f"training set {digits}"
        assert [f.feature for f in report.drifted] == SHIFTED_VALUES
        # ingest-N still names the run, whatever training sets exist
        with pytest.raises(NotFoundError, match="no ingestion run 'ingest-578783192741'"):
            drift_repo.store.drift("trip_model", f"ingest-{digits}", "latest")
    finally:
        shutil.rmtree(folder(store_dir, digits))
