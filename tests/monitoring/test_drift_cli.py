"""``featurestore drift`` through the real entry point: table, --json, --html, exit codes, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.monitoring.drift_repo import (
    SHIFTED,
    SHIFTED_NULLS,
    SHIFTED_VALUES,
    DriftRepo,
)
from tests.support.cli import run_cli


def drift(repo: DriftRepo, *args: str):  # type: ignore[no-untyped-def]
    return run_cli("drift", "--repo", str(repo.store.config.repo), *args)


def test_the_table_names_the_drifting_features(drift_repo: DriftRepo) -> None:  # noqa: F811
    done = drift(drift_repo, "driver_stats", "--baseline", drift_repo.baseline_run,
                 "--current", drift_repo.shifted_run)
    assert done.returncode == 0, done.stderr
    flagged = [line.split()[1] for line in done.stdout.splitlines() if "DRIFT" in line]
    assert flagged == SHIFTED
    assert f"5 of 13 features drifted: {', '.join(SHIFTED)}" in " ".join(done.stdout.split())
    why = {line.split()[1]: line.split("DRIFT")[1] for line in done.stdout.splitlines() if "DRIFT" in line}
    assert all(("missing" in why[f]) == (f in SHIFTED_NULLS) for f in SHIFTED), why


def test_json_and_html_reports(drift_repo: DriftRepo, tmp_path: Path) -> None:  # noqa: F811
    html = tmp_path / "out" / "drift.html"
    done = drift(drift_repo, "trip_model", "-b", drift_repo.training_set, "--json", "--html", str(html))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # stdout is the JSON alone
    assert report["drifted"] == SHIFTED_VALUES and len(report["features"]) == 16, report["drifted"]
    assert report["baseline"] == f"training set {drift_repo.training_set}"
    assert str(html) in done.stderr, done.stderr
    page = html.read_text()
    # Self-contained: no scripts, no links to fetch.
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "src=" not in page
    charts = re.findall(r'<h2 id="([^"]+)">', page)
    assert charts == SHIFTED_VALUES and page.count("<svg") == 3, charts  # a chart per drifting feature
    assert "driver_stats:acc_rate" in page  # in the summary table


def test_html_charts_the_share_of_missing_values(drift_repo: DriftRepo, tmp_path: Path) -> None:  # noqa: F811
    html = tmp_path / "drift.html"
    done = drift(drift_repo, "driver_stats", "-b", drift_repo.baseline_run, "-c", drift_repo.shifted_run,
                 "--html", str(html))
    assert done.returncode == 0, done.stderr
    page = html.read_text()
    section = r'<h2 id="([^"]+)">[^<]*</h2>\n(.*?)(?=<h2|<p class="muted">Written)'
    sections = dict(re.findall(section, page, re.S))
    assert list(sections) == SHIFTED
    for feature, section in sections.items():
        # A chart of the values' bins where they drifted, of missing/present where that did.
        assert section.count("<svg") == (feature in SHIFTED_VALUES) + (feature in SHIFTED_NULLS), feature
        assert ("Missing values (null, NaN, inf): 0.0% of" in section) == (feature in SHIFTED_NULLS)


def test_fail_on_drift_gates_ci(drift_repo: DriftRepo) -> None:  # noqa: F811
    args = ["driver_stats", "--baseline", drift_repo.baseline_run, "--current", drift_repo.shifted_run]
    assert drift(drift_repo, *args, "--fail-on-drift").returncode == 1
    # Thresholds from the command line: past an impossible PSI nothing drifts, the gate opens.
    assert drift(drift_repo, *args, "--fail-on-drift", "--psi-threshold", "50").returncode == 0


def test_bad_arguments_are_one_line(drift_repo: DriftRepo) -> None:  # noqa: F811
    # Each process costs seconds: two cases here, the others through the API (test_drift.py).
    cases = {
        ("driver_stats", "--baseline", "0123456789ab"): "'0123456789ab' is not an ingestion run",
        ("customer_profile", "--baseline", drift_repo.baseline_run): "which is not in feature view",
    }
    for args, message in cases.items():
        done = drift(drift_repo, *args)
        assert done.returncode == 1 and done.stdout == "", args
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr, done.stderr
