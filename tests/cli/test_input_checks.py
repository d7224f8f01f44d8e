"""Input checks that used to fail wrongly, through the real CLI: an out-of-range number taken as
another, a definitions file that exits, a store path that is not a DuckDB file, a string that
is not UTF-8, an encrypted TLS key."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.certs import make_certs
from tests.support.cli import FEATURESTORE, one_line_error, run_cli
from tests.support.repos import copy_of


def _usage_error(result: subprocess.CompletedProcess[str], option: str, *texts: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert f"Invalid value for '{option}'" in result.stderr, result.stderr
    for text in texts:
        assert text in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "option", "shown"),
    [
        (("serve", "--grpc-port", "72102"), "--grpc-port", "65535"),  # was served on 72102 - 65536
        (("serve", "--http-port", "-1"), "--http-port", "0"),
        (("serve", "--redis-timeout", "nan"), "--redis-timeout", "nan"),
        (("serve", "--redis-timeout", "0"), "--redis-timeout", "> 0"),
        (("serve", "--max-connection-age", "-1"), "--max-connection-age", ">= 0"),
        (("serve", "--max-connection-age", "inf"), "--max-connection-age", "inf"),
        (("get", "-e", "driver_id=1", "-f", "driver_stats:city", "--server", "127.0.0.1:72102"), "--server",
         "65535"),  # was sent to port 6566
    ],
)
def test_numbers_out_of_range_are_refused_before_anything_runs(
    applied: Path, args: tuple[str, ...], option: str, shown: str
) -> None:
    result = subprocess.run(
        [FEATURESTORE, *args, "--repo", str(applied)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    _usage_error(result, option, shown)


def test_a_definitions_file_that_exits_is_a_problem_with_its_line(tmp_path: Path, applied: Path) -> None:
    repo = copy_of(applied, tmp_path)
    (repo / "zz_script.py").write_text("import sys\n\n\nsys.exit(0)\n")
    for command in ("plan", "apply", "validate"):
        one_line_error(run_cli(command, "--repo", str(repo)), "zz_script.py:4", "sys.exit(0)")


@pytest.mark.parametrize("kind", ["text file", "folder"])
def test_offline_path_that_is_not_a_duckdb_file(tmp_path: Path, applied: Path, kind: str) -> None:
    repo = copy_of(applied, tmp_path)
    target = repo / "notes.txt"
    if kind == "folder":
        target.mkdir()
    else:
        target.write_text("not a database\n")
    (repo / "featurestore.toml").write_text('project = "rides"\n[offline]\npath = "notes.txt"\n')
    for command in (("apply",), ("materialize", "--offline"), ("list",)):
        text = "is a folder" if kind == "folder" else "not a valid DuckDB database file"
        one_line_error(run_cli(*command, "--repo", str(repo)), str(target), "[offline] path", text)


def _invalid_utf8_file(path: Path) -> None:
    """Three valid driver_stats rows, but row 1's city is not UTF-8 (Parquet writers need not check)."""
    rows = pq.read_table(next(path.parent.glob("*.parquet"))).slice(0, 3)
    cities = pa.array([b"Paris", b"Lyon \xff\xfe", b"Nice"], pa.binary()).view(pa.string())
    pq.write_table(rows.set_column(rows.schema.get_field_index("city"), "city", cities), path)


def test_a_string_that_is_not_utf8_fails_validation_and_is_quarantined(
    tmp_path: Path, applied: Path
) -> None:
    repo = copy_of(applied, tmp_path)
    bad = repo / "data" / "driver_stats" / "zz-latin.parquet"
    _invalid_utf8_file(bad)
    done = run_cli("materialize", "--repo", str(repo), "--offline")
    one_line_error(done, "city", "valid_utf8", summary=True)
    assert "valid_utf8" in run_cli("validate", "--repo", str(repo)).stdout

    defs = repo / "drivers.py"
    quarantine = '"driver_stats", on_invalid="quarantine",'
    defs.write_text(defs.read_text().replace('"driver_stats",', quarantine, 1))
    assert run_cli("apply", "--repo", str(repo)).returncode == 0
    done = run_cli("materialize", "--repo", str(repo), "--offline")
    assert done.returncode == 0, done.stderr
    [where] = (repo / ".featurestore" / "quarantine" / "driver_stats").glob("zz-latin-*.parquet")
    [row] = pq.read_table(where).to_pylist()
    assert row["__row"] == 1 and row["__reason"] == "city: valid_utf8" and row["city"] is None


def test_an_encrypted_tls_key_fails_serve_instead_of_prompting(tmp_path: Path, applied: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    key = serialization.load_pem_private_key(certs.key.read_bytes(), None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret passphrase"),
        )
    )
    # A terminal, as an operator has: OpenSSL asks for the passphrase on it unless told not to.
    master, slave = os.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [FEATURESTORE, "serve", "--repo", str(applied), "--grpc-port", "0", "--http-port", "0",
         "--tls-cert", str(certs.cert), "--tls-key", str(locked)],
        stdin=slave, stdout=slave, stderr=slave, preexec_fn=own_terminal,
        env={**os.environ, "COLUMNS": "300"},
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and b"pass phrase" not in output.lower():
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the process ended and closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
    finally:
        if process.poll() is None:
            process.kill()
        code = process.wait(10)
        os.close(master)
    text = output.decode(errors="replace")
    assert "pass phrase" not in text.lower(), text
    assert code == 1, text
    assert text.startswith("error: TLS key") and "is encrypted" in text and text.count("\n") == 1, text
