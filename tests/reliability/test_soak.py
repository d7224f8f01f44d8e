"""The soak harness (benchmarks/soak.py), run for a few seconds: it starts its processes,
loads the server while materializing, reports per window and exits 0 with zero errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.reliability.support import cli_env

SOAK = Path(__file__).parent.parent.parent / "benchmarks" / "soak.py"


def test_a_short_soak_reports_windows_with_zero_errors(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    args = [
        "--seconds",
        "3",
        "--window",
        "1",
        "--items",
        "2000",
        "--pause",
        "0.2",
        "--connections",
        "2",
        "--rps",
        "20",
        "--out",
        str(out),
        "--workdir",
        str(tmp_path / "work"),
    ]
    done = subprocess.run(
        [sys.executable, str(SOAK), *args], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    totals = result["totals"]
    assert totals["errors"] == 0 and totals["server_alive_at_end"]
    assert totals["requests"] > 0 and totals["checker_requests"] > 0
    assert totals["materializations"] >= 1 and totals["materializations_failed"] == 0
    assert totals["rss_start_mib"] > 10 and totals["rss_end_mib"] > 10
    assert [w["from_s"] for w in result["windows"]] == [0, 1, 2]
    assert "| from s | requests |" in done.stdout
