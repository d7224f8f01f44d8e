"""A quick pass on Arrow that clears a batch pandera would clear, for pushes of a few rows.

pandera costs ~5 ms per batch whatever its size (a pandas frame, then each column's checks in
Python), twenty times a one-entity lookup. ``certainly_valid`` answers True only when every
row surely passes the view's schema, from Arrow kernels; any doubt answers False and the
caller validates with pandera, which then also names the failing cells. So an answer of True
must never hide a failure, and it is True only when:

- the view has no view-level checks, every check is one of the built-in ``ge``, ``le``,
  ``in_range`` with both ends included, on a number column, or ``isin`` on a string
  column, with its default options (nulls ignored, no groupby);
- no join key or event time is null, no non-nullable field holds a null;
- ``validate._arrow_checks`` finds nothing (no NaN in a float column at all, no string
  that is not UTF-8): NaN semantics stay pandera's;
- each check holds on every non-null value.

Why inclusive bounds only: Arrow compares a Float32 column in double, exactly, while pandas
may compare it in float32 after rounding the bound. Rounding is monotonic, so ``x >= bound``
exactly implies ``x >= round(bound)``; a strict ``x > bound`` does not (``x`` may equal the
rounded bound). The same holds for Int64 values pandas turns into doubles beside a null.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.definitions import FeatureView

_NUMBER_CHECKS = ("greater_than_or_equal_to", "less_than_or_equal_to", "in_range")
_STRING_CHECKS = ("isin",)


def certainly_valid(view: FeatureView, batch: pa.RecordBatch) -> bool:
    """True only if every row of ``batch`` (the push's typed columns) passes the view's
    pandera schema; False when it may not, or when the checks are not ones this reads."""
    from featurestore.validation.validate import _arrow_checks

    if view.checks:
        return False
    src = view.source
    required = [k.name for k in view.join_keys] + [src.timestamp_field]
    if any(batch.column(name).null_count for name in required):
        return False
    _, judged = _arrow_checks(view, batch, np.arange(batch.num_rows))
    if judged.failing or judged.not_null:
        return False
    for f in view.columns:
        column = batch.column(f.name)
        if column.null_count and not f.nullable:
            return False
        for check in f.checks:
            passed = _holds(check, column)
            if passed is not True:
                return False
    return True


def _holds(check: Any, column: pa.Array) -> bool | None:
    """Whether ``check`` holds on every non-null value; None for a check this does not read."""
    name, stats = check.name, dict(check.statistics or {})
    if not _builtin(check, name, stats):
        return None
    kind = column.type
    if name in _NUMBER_CHECKS:
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            return None
        bounds = [v for k, v in stats.items() if k in ("min_value", "max_value")]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bounds):
            return None
        if name == "in_range" and not (stats.get("include_min") and stats.get("include_max")):
            return None
        # In double (exact for Float32 values and Int32), or in Int64 for whole bounds.
        exact = (
            pa.int64()
            if pa.types.is_integer(kind) and all(isinstance(v, int) for v in bounds)
            else pa.float64()
        )
        values = column.cast(exact)
        ok = pa.scalar(True)
        if "min_value" in stats:
            ok = pc.and_(ok, pc.greater_equal(values, pa.scalar(stats["min_value"], exact)))
        if "max_value" in stats:
            ok = pc.and_(ok, pc.less_equal(values, pa.scalar(stats["max_value"], exact)))
    elif name in _STRING_CHECKS:
        allowed = stats.get("allowed_values")
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            return None
        if not isinstance(allowed, list | tuple) or not all(isinstance(v, str) for v in allowed):
            return None
        ok = pc.is_in(column, value_set=pa.array(list(allowed), kind))
    else:
        return None
    return bool(pc.all(pc.fill_null(ok, True)).as_py())


def _builtin(check: Any, name: str, stats: dict[str, Any]) -> bool:
    """The check is pandera's own ``name`` (not a function named alike), called with ``stats``
    and the default options."""
    from pandera.pandas import Check

    factory = getattr(Check, name, None) if name in (*_NUMBER_CHECKS, *_STRING_CHECKS) else None
    if factory is None:
        return False
    try:
        reference = factory(**stats)
    except TypeError:
        return False
    return bool(
        check._check_fn is reference._check_fn
        and check.ignore_na
        and not check.element_wise
        and check.groupby is None
        and check._check_kwargs == reference._check_kwargs
    )
