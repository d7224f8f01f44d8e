"""Bad input to the real CLI: wrong paths, files that are not Parquet, a Redis that does not answer.

Each must print exactly one line, "error: ..." naming the problem, and exit 1: never a
traceback, never "internal error" (exit 2), never a blank line or a progress bar in a log.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests.support.cli import one_line_error, run_cli
from tests.support.redis import RedisServer, free_port
from tests.support.repos import copy_of

SERVICE = ("--service", "trip_model")


def test_repo_that_does_not_exist_or_is_a_file(tmp_path: Path, applied: Path) -> None:
    one_line_error(run_cli("plan", "--repo", str(tmp_path / "missing")), "does not exist")
    one_line_error(run_cli("plan", "--repo", str(applied / "featurestore.toml")),
                   "featurestore.toml is a file", "folder")


def test_entity_file_missing_a_directory_or_not_parquet(tmp_path: Path, applied: Path) -> None:
    out = str(tmp_path / "train.parquet")
    missing = tmp_path / "missing.parquet"
    one_line_error(run_cli("training-set", "--repo", str(applied), "--entities", str(missing), *SERVICE,
                           "--out", out), f"entity file {missing} does not exist")
    one_line_error(run_cli("training-set", "--repo", str(applied), "--entities", str(tmp_path), *SERVICE,
                           "--out", out), f"entity file {tmp_path} is a directory")
    csv = tmp_path / "entities.csv"
    csv.write_text("driver_id,event_timestamp\n1001,2026-01-01\n")
    one_line_error(run_cli("training-set", "--repo", str(applied), "--entities", str(csv), *SERVICE,
                           "--out", out), "cannot read the entity frame", str(csv))
    assert not Path(out).exists()


def test_training_set_output_that_is_a_directory(tmp_path: Path, applied: Path) -> None:
    entities = str(applied / "data" / "entity_rows.parquet")
    one_line_error(run_cli("training-set", "--repo", str(applied), "--entities", entities, *SERVICE,
                           "--out", str(tmp_path)), f"output {tmp_path} is a directory")
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_source_file_that_is_not_parquet_stops_only_its_view(tmp_path: Path, applied: Path) -> None:
    repo = copy_of(applied, tmp_path)
    bad = repo / "data" / "driver_stats" / "zz-notes.parquet"
    bad.write_text("these are notes, not Parquet\n")
    assert run_cli("apply", "--repo", str(repo)).returncode == 0  # data, not a definition
    error = one_line_error(run_cli("materialize", "--repo", str(repo), "--offline"),
                           "feature view 'driver_stats'", str(bad), "is not a readable Parquet file",
                           summary=True)
    assert error.startswith("error: feature view failed, the others were written: 'driver_stats': ")


def test_corrupted_parquet_pages_stop_ingestion_and_validation(tmp_path: Path, applied: Path) -> None:
    # The footer stays readable (so apply passes); the column data is garbage.
    repo = copy_of(applied, tmp_path)
    path = next((repo / "data" / "driver_stats").glob("*.parquet"))
    data = bytearray(path.read_bytes())
    footer = struct.unpack("<I", data[-8:-4])[0]
    for i in range(8, len(data) - 8 - footer, 13):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    one_line_error(run_cli("materialize", "--repo", str(repo), "--offline"),
                   str(path), "is not a readable Parquet file (after row 0: ", summary=True)


def test_redis_that_does_not_answer(applied: Path, redis_server: RedisServer) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    env = {"FEATURESTORE_REDIS_URL": closed}
    materialize = run_cli("materialize", "--repo", str(applied), env=env)
    one_line_error(materialize, f"online store {closed} does not answer")
    get = ("get", "--repo", str(applied), "--entity", "driver_id=1001", "--features", "driver_stats:city")
    one_line_error(run_cli(*get, env=env), f"online store {closed} does not answer")
    one_line_error(run_cli(*get, "--server", f"127.0.0.1:{free_port()}"), "UNAVAILABLE")
