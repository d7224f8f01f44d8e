"""CLI start (issue 22, target 5): `featurestore --help` beside the floor of any typer + rich CLI.

    .venv/bin/python benchmarks/cli_start.py [--rounds 15]

Interleaved rounds of three fresh processes: ``python -c pass``, ``python -c "import typer,
rich.console, rich.table, rich.progress"`` (the floor) and ``featurestore --help``; medians
(and the p90 of --help) and the ratio to the floor. Import-time guards are in
tests/test_imports.py; this measures the time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

PYTHON = sys.executable
FEATURESTORE = str(Path(sys.executable).parent / "featurestore")
FLOOR = "import typer, rich.console, rich.table, rich.progress"


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    bare: list[float] = []
    floor: list[float] = []
    helps: list[float] = []
    for _ in range(rounds):
        bare.append(seconds([PYTHON, "-c", "pass"]))
        floor.append(seconds([PYTHON, "-c", FLOOR]))
        helps.append(seconds([FEATURESTORE, "--help"]))
    p90 = sorted(helps)[int(0.9 * (rounds - 1))]
    help_s, floor_s = statistics.median(helps), statistics.median(floor)
    print(f"python -c pass {statistics.median(bare):.3f} s; typer+rich imports {floor_s:.3f} s")
    print(
        f"featurestore --help {help_s:.3f} s (p90 {p90:.3f}); {help_s / floor_s:.2f}x the floor; target 0.3 s"
    )


if __name__ == "__main__":
    main()
