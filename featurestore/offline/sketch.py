"""The k-minimum-values sketch of ``approx_count_distinct``, one formula for both paths.

A value's hash is the top 63 bits of the MD5 of its text form (timestamps as epoch
microseconds, -0.0 as 0.0), a non-negative BIGINT: MD5 does not change between DuckDB
versions as its ``hash()`` may, and tiles written by one version are combined by the next.
A window's sketch is its k smallest distinct hashes; the estimate is exact below k
distinct values, else ``floor((k - 1) * 2^63 / kth + 0.5)``, computed in doubles the same
way in SQL (training sets) and NumPy (lookups), so both give the same integer.
"""

from __future__ import annotations

import numpy as np

from featurestore.definitions.types import FLOATS, DType

_TOP = 2.0**63


def hash_sql(column: str, dtype: DType) -> str:
    """SQL for the hash of ``column`` (NULL stays NULL, so aggregates skip it)."""
    if dtype.name in FLOATS:
        text = f"(CASE WHEN {column} = 0 THEN 0 ELSE {column} END)::DOUBLE::VARCHAR"
    elif dtype.name == "Timestamp":
        text = f"epoch_us({column})::VARCHAR"
    else:
        text = f"{column}::VARCHAR"
    return f"(md5_number({text}) >> 65)::BIGINT"


def estimate_sql(distinct: str, kth: str, k: int) -> str:
    """SQL for the estimate from the window's count of distinct hashes and its kth smallest."""
    scaled = f"floor({k - 1} * {_TOP!r} / {kth}::DOUBLE + 0.5)::BIGINT"
    return f"CASE WHEN {distinct} < {k} THEN {distinct} ELSE {scaled} END"


def estimate(distinct: np.ndarray, kth: np.ndarray, k: int) -> np.ndarray:
    """The estimates, given per entity its distinct hashes' count and its kth smallest hash
    (any value where the count is below k)."""
    safe = np.where(distinct >= k, kth, 2**63 - 1).astype(np.float64)  # unused: any that fits
    scaled = np.floor((k - 1) * _TOP / safe + 0.5).astype(np.int64)
    return np.where(distinct >= k, scaled, distinct)
