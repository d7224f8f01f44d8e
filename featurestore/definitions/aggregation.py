"""Aggregation: a feature computed over a sliding window of a view's events.

The window at time t holds the events with event time in (t - window, t]: left-open, so
consecutive windows of one length never share an event, and right-closed, as a training set
sees a row stamped exactly at its entity time. ``window=None`` is the lifetime window.

Online, a window hops: the value served at time ``now`` is the window ending at the next
multiple of ``hop`` (epoch-aligned), i.e. the training-set value at entity time
``ceil(now / hop) * hop``. Materialization keeps, per entity, one partial aggregate per hop
interval ("tile") of the last window; a lookup combines the tiles its window covers.

``approx_count_distinct`` is a k-minimum-values sketch: each value is hashed (the top 63 bits
of the MD5 of its text form), and the count is estimated from the k smallest distinct hashes
in the window, ``(k - 1) / (kth smallest / 2^63)``, rounded; below k distinct values it is
exact. Relative standard error about ``1 / sqrt(k - 2)`` (3.1% at the default k = 1024).
The sketch of a union is the k smallest of the parts' sketches, so a tile keeps at most k
hashes however many distinct values it saw, and online equals offline exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from featurestore.definitions.base import check_name
from featurestore.definitions.types import FLOATS, DType, Float64, Int64, List
from featurestore.errors import DefinitionError

# function -> what it takes: "numeric" columns, "ordered" ones (numbers, strings,
# timestamps) or "any" scalar.
FUNCTIONS: dict[str, str] = {
    "count": "any",
    "count_distinct": "any",
    "approx_count_distinct": "any",
    "sum": "numeric",
    "mean": "numeric",
    "min": "ordered",
    "max": "ordered",
    "variance": "numeric",
    "stddev": "numeric",
    "first": "any",
    "last": "any",
    "last_n": "any",
}
NUMERIC = frozenset({"Int32", "Int64", "Float32", "Float64"})
ORDERED = NUMERIC | {"String", "Timestamp"}
_SECOND = timedelta(seconds=1)
LAST_N_MAX = 1000  # a list per entity row and per online value: keep it bounded
SKETCH_K = 1024  # approx_count_distinct's default k: about 3.1% relative standard error
SKETCH_K_RANGE = (16, 65536)  # 25% .. 0.4% error; k hashes per tile and per entity row
_UNITS = (
    ("d", timedelta(days=1)),
    ("h", timedelta(hours=1)),
    ("m", timedelta(minutes=1)),
    ("s", timedelta(seconds=1)),
)


@dataclass(frozen=True)
class Aggregation:
    """``function`` of ``column`` over the events in the window ending at each time.

    ``window=None`` covers every event up to the time (lifetime). ``n`` is for ``last_n``
    only, ``k`` (the sketch size) for ``approx_count_distinct`` only. ``name`` defaults to
    e.g. ``amount_sum_7d``, ``merchant_last5_30d``.
    """

    column: str
    function: str
    window: timedelta | None = None
    n: int | None = None
    name: str = ""
    # Online only: the step the served window moves by; None: a default from the window's size.
    hop: timedelta | None = None
    k: int | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.column, str) or not self.column:
            problems.append(f"column must be a column name, got {self.column!r}")
        if self.function not in FUNCTIONS:
            problems.append(f"function {self.function!r} is not one of {sorted(FUNCTIONS)}")
        if self.window is not None:
            if not isinstance(self.window, timedelta) or self.window <= timedelta(0):
                problems.append(f"window must be a positive timedelta or None, got {self.window!r}")
            elif self.window % timedelta(seconds=1):
                problems.append(f"window must be a whole number of seconds, got {self.window}")
        if self.function == "last_n":
            if not isinstance(self.n, int) or isinstance(self.n, bool) or not 1 <= self.n <= LAST_N_MAX:
                problems.append(f"last_n needs n between 1 and {LAST_N_MAX}, got {self.n!r}")
        elif self.n is not None:
            problems.append(f"n is for last_n only, not {self.function!r}")
        if self.function == "approx_count_distinct":
            low, high = SKETCH_K_RANGE
            k = self.k
            if k is not None and (not isinstance(k, int) or isinstance(k, bool) or not low <= k <= high):
                problems.append(f"approx_count_distinct needs k between {low} and {high}, got {self.k!r}")
        elif self.k is not None:
            problems.append(f"k is for approx_count_distinct only, not {self.function!r}")
        if self.hop is not None:
            if self.window is None:
                problems.append("a lifetime window has no hop")
            elif not isinstance(self.hop, timedelta) or self.hop <= timedelta(0) or self.hop % _SECOND:
                problems.append(f"hop must be a positive whole number of seconds, got {self.hop!r}")
            elif isinstance(self.window, timedelta) and self.window % self.hop:
                problems.append(f"hop {self.hop} does not divide the window {self.window}")
        if problems:
            raise DefinitionError([f"aggregation of {self.column!r}: {p}" for p in problems])
        if not self.name:
            object.__setattr__(self, "name", self.default_name())
        if self.hop is None and self.window is not None:
            object.__setattr__(self, "hop", default_hop(self.window))
        if self.function == "approx_count_distinct" and self.k is None:
            object.__setattr__(self, "k", SKETCH_K)
        check_name("aggregation feature", self.name)

    def default_name(self) -> str:
        function = f"last{self.n}" if self.function == "last_n" else self.function
        return f"{self.column}_{function}_{window_label(self.window)}"

    def describe(self) -> str:
        """``sum of amount over 7d``: the feature's default description."""
        what = f"last {self.n} values" if self.function == "last_n" else self.function
        if self.function == "approx_count_distinct":
            what = f"approximate count_distinct (k = {self.k})"
        over = "all events" if self.window is None else window_label(self.window)
        return f"{what} of {self.column} over {over}"

    def output_dtype(self, column: DType) -> DType:
        """The feature's type, given the aggregated column's."""
        if self.function in ("count", "count_distinct", "approx_count_distinct"):
            return Int64
        if self.function == "sum":
            return Float64 if column.name in FLOATS else Int64
        if self.function in ("mean", "variance", "stddev"):
            return Float64
        if self.function == "last_n":
            return List(column)
        return column  # min, max, first, last: one of the values

    def accepts(self, column: DType) -> bool:
        takes = FUNCTIONS[self.function]
        if column.name.startswith("List("):
            return False
        return takes == "any" or column.name in (NUMERIC if takes == "numeric" else ORDERED)

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "column": self.column,
            "function": self.function,
            "window_seconds": None if self.window is None else int(self.window.total_seconds()),
            **({"n": self.n} if self.n is not None else {}),
            **({"k": self.k} if self.k is not None else {}),
            "hop_seconds": None if self.hop is None else int(self.hop.total_seconds()),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Aggregation:
        seconds, hop = spec.get("window_seconds"), spec.get("hop_seconds")
        return cls(
            column=spec["column"],
            function=spec["function"],
            window=None if seconds is None else timedelta(seconds=seconds),
            n=spec.get("n"),
            k=spec.get("k"),
            name=spec["name"],
            hop=None if hop is None else timedelta(seconds=hop),
        )


def window_label(window: timedelta | None) -> str:
    """``7d``, ``90m``, ``45s``: the largest unit that divides the window; ``lifetime``."""
    if window is None:
        return "lifetime"
    for label, unit in _UNITS:
        if not window % unit:
            return f"{window // unit}{label}"
    raise ValueError(f"window {window} is not a whole number of seconds")


# (windows up to, hop): about 12 to 288 tiles per window, as Chronon's defaults.
_HOPS = (
    (timedelta(hours=12), timedelta(minutes=5)),
    (timedelta(days=12), timedelta(hours=1)),
)


def default_hop(window: timedelta) -> timedelta:
    """5 minutes up to 12 h windows, 1 hour up to 12 days, else 1 day; the largest of those,
    1 minute and 1 second that divides the window (windows are whole seconds)."""
    preferred = next((hop for limit, hop in _HOPS if window <= limit), timedelta(days=1))
    for hop in (preferred, timedelta(hours=1), timedelta(minutes=5), timedelta(minutes=1)):
        if hop <= preferred and not window % hop:
            return hop
    return timedelta(seconds=1)
