"""Range checks for the CLI's numeric options.

click's ranges let NaN through (every comparison with NaN is false) and typer's int options
take any integer, so ``--grpc-port 72102`` reached the socket layer, which kept its low 16
bits (6566). Every numeric option states its range: typer's ``min``/``max`` for integers,
``number_in`` for floats (or the library checks it with a one-line error, as for
``--request-log-sample`` and the drift thresholds).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import typer

PORT_MAX = 65535


def number_in(
    lo: float, hi: float = math.inf, lo_open: bool = False
) -> Callable[[float | None], float | None]:
    """A typer callback refusing NaN, infinities and values outside [lo, hi] ((lo, hi] with ``lo_open``)."""
    if hi == math.inf:
        shown = f"a finite number {'>' if lo_open else '>='} {lo:g}"
    else:
        shown = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def check(value: float | None) -> float | None:
        if value is None:
            return None
        if not (math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi):
            raise typer.BadParameter(f"{value} must be {shown}")
        return value

    return check


def server_target(value: str | None) -> str | None:
    """A typer callback for ``host:port``: gRPC's resolver would keep a too-large port's low 16 bits."""
    if value is None:
        return None
    _, sep, port = value.rpartition(":")
    if sep and port.isdigit() and not 0 < int(port) <= PORT_MAX:
        raise typer.BadParameter(f"port {port} of {value!r} must be from 1 to {PORT_MAX}")
    return value
