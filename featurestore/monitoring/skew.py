"""Training/serving skew: served values (from the request log) against the offline store.

For every logged (request, entity, feature) the offline store is asked, point in time at
the request's time, what the feature's value was -- exactly as a training set would see it
(``get_training_set`` with the logged join keys and request times as the entity frame).
A served value that differs, including one served where the offline store has none or the
other way round, is a mismatch. Causes: materialization behind the source (freshness), a
source rewritten after materialization, or a value changed in Redis by something else.

On-demand features are compared like any other: the log holds them as served (computed at
request time), and the training set computes them offline from the inputs point in time and
the request data logged with each entity (one entity frame column per request field).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from featurestore.errors import InvalidRequestError, NotFoundError
from featurestore.offline.request_log_format import read_log_file, value_json

# (entity frame, features) -> the training set's columns; full feature names (view__feature).
TrainingSetFn = Callable[[pa.Table, list[str]], pa.Table]
TIME_COLUMN = "request_time"
MAX_EXAMPLES = 5


@dataclass
class FeatureSkew:
    """How often one feature's served values differ from the offline store's."""

    feature: str
    compared: int = 0
    mismatches: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "compared": self.compared,
            "mismatches": self.mismatches,
            "mismatch_rate": self.mismatch_rate,
            "examples": self.examples,
        }


@dataclass
class SkewReport:
    log: Path
    files: int
    requests: int
    features: list[FeatureSkew]

    @property
    def skewed(self) -> list[FeatureSkew]:
        return [f for f in self.features if f.mismatches]

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": str(self.log),
            "files": self.files,
            "requests": self.requests,
            "features": [f.to_dict() for f in self.features],
            "skewed": [f.feature for f in self.skewed],
        }


def read_log(directory: Path) -> tuple[pa.Table, int]:
    """Every request log file under ``directory``, as one table (old files' missing columns
    null), and how many files."""
    if not directory.is_dir():
        raise NotFoundError(f"request log folder {directory} does not exist")
    files = sorted(directory.rglob("*.parquet"))
    if not files:
        raise NotFoundError(
            f"no request log files (*.parquet) in {directory}: serve with --request-log {directory}"
        )
    return pa.concat_tables([read_log_file(f) for f in files]), len(files)


def skew(
    directory: Path,
    training_set: TrainingSetFn,
    features: Sequence[str] | None = None,
) -> SkewReport:
    """Compare the logged served values of ``features`` (default: all logged) with the offline store."""
    table, files = read_log(directory)
    rows = table.select(
        ["request_id", "request_time", "entity_json", "request_json", "feature", "value_json", "status"]
    ).to_pylist()
    if features is not None:
        wanted = set(features)
        rows = [r for r in rows if r["feature"] in wanted]
        if not rows:
            raise InvalidRequestError(
                f"the request log in {directory} holds no served values of {sorted(wanted)}"
            )
    result = {ref: FeatureSkew(ref) for ref in sorted({r["feature"] for r in rows})}
    # One training set per set of join keys: requests of different services name different keys.
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        r["entity"] = json.loads(r["entity_json"])
        groups.setdefault(tuple(sorted(r["entity"])), []).append(r)
    for keys, group in groups.items():
        _compare(keys, group, training_set, result)
    return SkewReport(directory, files, len({r["request_id"] for r in rows}), list(result.values()))


def _compare(
    keys: tuple[str, ...],
    rows: list[dict[str, Any]],
    training_set: TrainingSetFn,
    result: dict[str, FeatureSkew],
) -> None:
    # An entity row per (keys, time, request data): on-demand features read the request data.
    index: dict[tuple[str, datetime, str | None], int] = {}
    for r in rows:
        index.setdefault((r["entity_json"], r["request_time"], r["request_json"]), len(index))
    entities = list(index)
    columns: dict[str, Any] = {}
    for k in keys:
        keyed = [json.loads(e)[k] for e, _, _ in entities]
        columns[k] = pa.array(keyed, pa.int64() if all(isinstance(v, int) for v in keyed) else pa.string())
    columns[TIME_COLUMN] = pa.array([t for _, t, _ in entities], pa.timestamp("us", tz="UTC"))
    _add_request_data(columns, [d for _, _, d in entities])
    refs = sorted({r["feature"] for r in rows})
    offline = training_set(pa.table(columns), refs)
    values = {ref: offline.column(ref.replace(":", "__")).to_pylist() for ref in refs}
    for r in rows:
        i = index[(r["entity_json"], r["request_time"], r["request_json"])]
        ref = r["feature"]
        expected = value_json(values[ref][i])  # the same canonical text the log holds
        skew = result[ref]
        skew.compared += 1
        if expected != r["value_json"]:
            skew.mismatches += 1
            if len(skew.examples) < MAX_EXAMPLES:
                skew.examples.append(
                    {
                        "entity": r["entity"],
                        "request_time": r["request_time"].isoformat(),
                        "status": r["status"],
                        "served": r["value_json"],
                        "offline": expected,
                    }
                )


def _add_request_data(columns: dict[str, Any], texts: list[str | None]) -> None:
    """One entity frame column per request data field (as logged: the training set casts each
    to its declared type); a field named like a join key or the time is left out."""
    data = [json.loads(t) if t is not None else {} for t in texts]
    for k in sorted({k for d in data for k in d} - set(columns)):
        values = [d.get(k) for d in data]
        try:
            columns[k] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: an on-demand view would refuse them
            columns[k] = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
