"""The installed ``featurestore`` console script, run as a user would run it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Literal

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    """Run the installed ``featurestore`` console script, as a user would."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("FEATURESTORE_DEBUG", None)
    return subprocess.run([FEATURESTORE, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str], *texts: str, summary: bool = False) -> str:
    """The single ``error: ...`` line a failed command printed (exit 1), holding every text, after
    checking that nothing else was printed (``summary``: but for what the run did for the views
    that did not fail, on stdout) and no traceback."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert summary or result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in texts:
        assert text in result.stderr, result.stderr
    return result.stderr.rstrip("\n")


def on_terminal(
    *args: str, columns: int, stream: Literal["stdout", "stderr"] = "stdout", timeout: float = 60
) -> tuple[int, bytes, str]:
    """Run the console script with ``stream`` on a pseudo-terminal ``columns`` wide:
    (exit code, the bytes the terminal received, the other stream's text)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [FEATURESTORE, *args],
        stdout=terminal if stream == "stdout" else subprocess.PIPE,
        stderr=terminal if stream == "stderr" else subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": str(columns)},
    )
    os.close(terminal)
    seen = b""
    while select.select([controller], [], [], timeout)[0]:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out, err = process.communicate(timeout=timeout)
    os.close(controller)
    return process.returncode, seen, err if stream == "stdout" else out


def spawn_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the installed console script and return at once (its pid is the driver's, for a
    test that tells the command's own process from those it made work)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("FEATURESTORE_DEBUG", None)
    return subprocess.Popen(
        [FEATURESTORE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    )
