"""Per-feature statistics computed by DuckDB over a relation (one run's ingested rows, a training set).

Every feature gets its row count, nulls and a distinct estimate (HyperLogLog). Numeric
features (integers, floats) also get min, max, mean, standard deviation and 101 quantiles
(0%, 1%, ..., 100%): a summary fine enough to compare distributions later without the raw
rows (see ``monitoring/drift.py``). NaN and infinite values are counted (``non_finite``) and left out
of those: one NaN would make the mean, the standard deviation and the top quantiles NaN.
Categorical features (strings, booleans) get their ``TOP_K`` most frequent values with
counts; a boolean's mean is its share of true. Other types (timestamps, bytes, lists) get
counts only.

All of it is one aggregate query over every feature, plus one GROUPING SETS query for the
top values of the categorical ones: DuckDB does the work, Python only reads one row back.
Quantiles come from a reservoir sample of ``SAMPLE_ROWS`` values per feature
(``reservoir_quantile``): exact quantiles sort every column, which costs more than the rest
of an ingestion and grows in memory with the rows (a t-digest cost several times more).
Up to ``SAMPLE_ROWS`` values they are exact; beyond, a quantile's rank is off by about
sqrt(p(1-p)/SAMPLE_ROWS) <= 0.35%, well below the 1% spacing of the summary, and the drift
tests use the sample size as their sample size. The 0% and 100% points are the exact min and max.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from featurestore.storage import quote

NUMERIC = "numeric"
CATEGORICAL = "categorical"
OTHER = "other"

QUANTILE_LEVELS = tuple(i / 100 for i in range(101))
SAMPLE_ROWS = 20_000  # values per feature behind the quantiles
TOP_K = 50  # categorical values kept with their counts; the rest are counted together
_NUMERIC_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE"}
_NUMERIC_TYPES |= {"U" + t for t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")}
FLOAT_TYPES = {"FLOAT", "DOUBLE"}  # the numeric types that can hold NaN or infinities
_CATEGORICAL_TYPES = {"VARCHAR", "BOOLEAN"}


def kind_of(duckdb_type: str) -> str:
    """``numeric``, ``categorical`` or ``other`` for a DuckDB column type."""
    if duckdb_type in _NUMERIC_TYPES or duckdb_type.startswith("DECIMAL"):
        return NUMERIC
    if duckdb_type in _CATEGORICAL_TYPES:
        return CATEGORICAL
    return OTHER


@dataclass(frozen=True)
class FeatureStats:
    """The statistics of one feature (column) over a set of rows."""

    name: str
    dtype: str  # the DuckDB type
    kind: str  # numeric, categorical or other
    count: int  # rows, nulls included
    nulls: int
    distinct: int | None = None  # an estimate (HyperLogLog)
    min: float | None = None  # numeric only
    max: float | None = None
    mean: float | None = None  # numeric; for booleans the share of true
    std: float | None = None  # sample standard deviation
    quantiles: tuple[float, ...] = ()  # numeric: at QUANTILE_LEVELS, () if no values
    top: tuple[tuple[str, int], ...] = ()  # categorical: (value as text, count), most frequent first
    non_finite: int = 0  # numeric: NaN, inf and -inf values, left out of min ... quantiles

    @property
    def values(self) -> int:
        """Rows with a value (not null)."""
        return self.count - self.nulls

    @property
    def finite(self) -> int:
        """Values behind min, max, mean, std and the quantiles (not null, NaN or infinite)."""
        return self.values - self.non_finite

    @property
    def missing(self) -> int:
        """Rows without a usable value: nulls, and NaN or infinite numbers."""
        return self.nulls + self.non_finite

    @property
    def other(self) -> int:
        """Categorical values not among ``top`` (0 when ``top`` holds every value)."""
        return self.values - sum(n for _, n in self.top)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["quantiles"] = list(self.quantiles)
        out["top"] = [[v, n] for v, n in self.top]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureStats:
        return cls(
            **{
                **data,
                "quantiles": tuple(float(q) for q in data.get("quantiles") or ()),
                "top": tuple((str(v), int(n)) for v, n in data.get("top") or ()),
            }
        )


def compute_statistics(
    con: duckdb.DuckDBPyConnection, relation: str, columns: Sequence[str], params: Sequence[object] = ()
) -> list[FeatureStats]:
    """The statistics of ``columns`` over ``relation`` (a SELECT or table function, with ``params``)."""
    if not columns:
        return []
    source = f"(SELECT {', '.join(quote(c) for c in columns)} FROM ({relation}))"
    types = {row[0]: str(row[1]) for row in con.execute(f"DESCRIBE {source}", list(params)).fetchall()}
    kinds = {c: kind_of(types[c]) for c in columns}
    levels = "[" + ", ".join(repr(q) for q in QUANTILE_LEVELS) + "]"
    parts = ["count(*)"]
    # Floats may hold NaN or infinities: each gets a finite copy (NULL where not finite), which
    # aggregates skip; one projection per column is cheaper than a FILTER on every aggregate.
    finite: list[str] = []
    for c in columns:
        q, kind = quote(c), kinds[c]
        parts.append(f"count({q})")
        if kind == NUMERIC:
            x = f"CAST({q} AS DOUBLE)"
            if types[c] in FLOAT_TYPES:
                x = quote(f"__finite_{c}")
                finite.append(f"CASE WHEN isfinite({q}) THEN CAST({q} AS DOUBLE) END AS {x}")
            parts += [
                f"approx_count_distinct({q})",
                f"min({x})",
                f"max({x})",
                f"avg({x})",
                f"stddev_samp({x})",
                f"reservoir_quantile({x}, {levels}, {SAMPLE_ROWS})",
                f"count({q}) - count({x})",
            ]
        elif types[c] == "BOOLEAN":
            x = f"CAST({q} AS INTEGER)"
            parts += [f"approx_count_distinct({q})", f"avg({x})", f"stddev_samp({x})"]
        elif kind == CATEGORICAL:
            parts.append(f"approx_count_distinct({q})")
    scanned = f"(SELECT *, {', '.join(finite)} FROM {source})" if finite else source
    row = con.execute(f"SELECT {', '.join(parts)} FROM {scanned}", list(params)).fetchall()[0]
    tops = _top_values(con, source, [c for c in columns if kinds[c] == CATEGORICAL], params)

    rows, values = int(row[0]), iter(row[1:])
    out = []
    for c in columns:
        kind, present = kinds[c], int(next(values))
        stats: dict[str, Any] = {}
        if kind == NUMERIC:
            distinct, lo, hi, mean, std, quantiles, non_finite = (next(values) for _ in range(7))
            qs = tuple(float(v) for v in quantiles or ())
            if qs:  # the ends exact (the sample may miss them)
                qs = (float(lo), *(min(max(v, lo), hi) for v in qs[1:-1]), float(hi))
            distinct = _at_most(distinct, present)
            stats = dict(
                distinct=distinct, min=lo, max=hi, mean=mean, std=std, quantiles=qs,
                non_finite=int(non_finite),
            )
        elif types[c] == "BOOLEAN":
            distinct, mean, std = (next(values) for _ in range(3))
            stats = dict(distinct=_at_most(distinct, present), mean=mean, std=std, top=tops.get(c, ()))
        elif kind == CATEGORICAL:
            stats = dict(distinct=_at_most(next(values), present), top=tops.get(c, ()))
        out.append(FeatureStats(c, types[c], kind, rows, rows - present, **stats))
    return out


def _at_most(estimate: Any, values: int) -> int | None:
    """HyperLogLog can overshoot a little; never more distinct values than values."""
    return None if estimate is None else min(int(estimate), values)


# Columns per GROUPING SETS query: DuckDB's grouping_id takes at most 64 (a view may have more
# string features), and its bits must fit a signed BIGINT.
_TOP_COLUMNS = 32


def _top_values(
    con: duckdb.DuckDBPyConnection, source: str, columns: list[str], params: Sequence[object]
) -> dict[str, tuple[tuple[str, int], ...]]:
    """The TOP_K most frequent values of each categorical column, one GROUPING SETS query per
    ``_TOP_COLUMNS`` of them."""
    out: dict[str, tuple[tuple[str, int], ...]] = {}
    for i in range(0, len(columns), _TOP_COLUMNS):
        out.update(_top_values_of(con, source, columns[i : i + _TOP_COLUMNS], params))
    return out


def _top_values_of(
    con: duckdb.DuckDBPyConnection, source: str, columns: list[str], params: Sequence[object]
) -> dict[str, tuple[tuple[str, int], ...]]:
    if not columns:
        return {}
    names = [f"v{i}" for i in range(len(columns))]
    select = ", ".join(f"CAST({quote(c)} AS VARCHAR) AS {n}" for c, n in zip(columns, names, strict=True))
    sets = ", ".join(f"({n})" for n in names)
    rows = con.execute(
        f"""WITH src AS (SELECT {select} FROM {source}),
        grouped AS (
            SELECT grouping_id({", ".join(names)}) AS g, coalesce({", ".join(names)}) AS value,
                   count(*) AS n
            FROM src GROUP BY GROUPING SETS ({sets}))
        SELECT g, value, n FROM grouped WHERE value IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY g ORDER BY n DESC, value) <= {TOP_K}
        ORDER BY g, n DESC, value""",
        list(params),
    ).fetchall()
    # grouping_id sets the bit of every column not grouped by: all bits but the column's own.
    m = len(columns)
    column_of = {(1 << m) - 1 - (1 << (m - 1 - i)): c for i, c in enumerate(columns)}
    out: dict[str, list[tuple[str, int]]] = {}
    for g, value, n in rows:
        out.setdefault(column_of[g], []).append((str(value), int(n)))
    return {c: tuple(v) for c, v in out.items()}


def output_statistics(path: Path, columns: Sequence[str]) -> list[FeatureStats]:
    """The statistics of ``columns`` of a Parquet file or dataset folder (a training set), in a
    DuckDB of its own."""
    con = duckdb.connect()
    where = str(path / "*.parquet") if path.is_dir() else str(path)
    try:
        return compute_statistics(con, "SELECT * FROM read_parquet(?)", columns, [where])
    finally:
        con.close()
