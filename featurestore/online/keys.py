"""Redis key layout: one string key per (entity, view), namespaced by project.

``{<project>:<k1>=<v1>,<k2>=<v2>}:<view>`` -- the part in braces is the Redis Cluster hash
tag, so every view of one entity lives in the same slot (one MGET per entity even on a
cluster), keys of different projects never collide, and a view's keys can be found with
``SCAN MATCH {<project>:*}:<view>`` when it is removed. Join keys appear by name, so two
entities with the same values never share a key. String values are percent-encoded so a
value can never forge a separator; integers are written in decimal. The project's presence
markers (presence.py) are one hash, ``{<project>}:online-epoch``, never a view key; on a
Redis Cluster, one such hash per hash slot, ``{<project>/<n>}:online-epoch``.

This module is the only place keys are spelled: the online store (store.py) and lookup plans
build them here, for a batch (``encode_keys``) or a request (``request_tags``).
"""

from __future__ import annotations

import binascii
import functools
from collections.abc import Mapping, Sequence, Set
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.definitions import Field


def key_prefix(project: str, join_keys: Sequence[Field]) -> str:
    """What every key of an entity starts with, before the first join key's value."""
    return "{" + project + ":" + join_keys[0].name + "="


def encode_key_value(value: object) -> str:
    if isinstance(value, str):
        return quote(value, safe="")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"join key values are integers or strings, got {type(value).__name__}")
    return str(value)


def entity_tag(project: str, names: Sequence[str], values: Sequence[object]) -> str:
    """The braced hash tag of one entity, e.g. ``{rides:driver_id=1001}``."""
    parts = ",".join(f"{n}={encode_key_value(v)}" for n, v in zip(names, values, strict=True))
    return "{" + project + ":" + parts + "}"


def view_key(tag: str, view: str) -> str:
    return f"{tag}:{view}"


def marker_key(project: str) -> str:
    """The project's marker hash; never a view key (those hold ``project:`` inside the braces)."""
    return "{" + project + "}:online-epoch"


# Redis Cluster's hash slots: a key's slot is CRC16 (XMODEM) of its hash tag, modulo this.
SLOTS = 16384


@functools.cache
def slot_marker_keys(project: str) -> tuple[str, ...]:
    """On a Redis Cluster, one marker hash per hash slot (index = slot), for presence.py.

    A master that restarts empty takes the markers of its slots with it, whichever slots it
    serves: a marker moves with its slot when the cluster is resharded. The tags are found by
    counting up ``<project>/<n>`` until every slot has one (about 170,000 CRCs, once per
    process); ``/`` never appears in a view key's tag (``<project>:...``)."""
    keys: list[str] = [""] * SLOTS
    missing, n = SLOTS, 0
    while missing:
        tag = f"{project}/{n}"
        slot = binascii.crc_hqx(tag.encode(), 0) % SLOTS
        if not keys[slot]:
            keys[slot] = "{" + tag + "}:online-epoch"
            missing -= 1
        n += 1
    return tuple(keys)


def project_pattern(project: str) -> str:
    """SCAN pattern matching every view key of the project."""
    return "{" + project + ":*}:*"


def request_tags(
    project: str, join_keys: Sequence[str], columns: Mapping[str, Sequence[object]], int_keys: Set[str]
) -> list[str]:
    """Each entity's tag followed by ``:``, ready for a view name: one lookup's keys.

    ``int_keys`` names the join keys whose values are validated ints (decimal, nothing to
    escape): the common single-integer key costs one f-string per entity."""
    prefix = "{" + project + ":"
    if len(join_keys) == 1:
        name = join_keys[0]
        start = f"{prefix}{name}="
        if name in int_keys:
            return [f"{start}{v}}}:" for v in columns[name]]
        return [f"{start}{encode_key_value(v)}}}:" for v in columns[name]]
    cols = [columns[k] for k in join_keys]
    return [
        prefix + ",".join(f"{k}={encode_key_value(v)}" for k, v in zip(join_keys, row, strict=True)) + "}:"
        for row in zip(*cols, strict=True)
    ]


def view_pattern(project: str, view: str) -> str:
    """SCAN pattern matching every key of ``view`` (project and view names are identifiers)."""
    return "{" + project + ":*}:" + view


def encode_keys(project: str, view: str, columns: Sequence[tuple[str, pa.Array]]) -> pa.Array:
    """Vectorized ``view_key`` for a batch: one Arrow string array of keys."""
    pieces: list[pa.Array | str] = []
    for i, (name, column) in enumerate(columns):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            text = _percent_encode(column)
        else:
            text = pc.cast(column, pa.string())
        pieces.append(("{" + project + ":" if i == 0 else ",") + name + "=")
        pieces.append(text)
    pieces.append("}:" + view)
    return pc.binary_join_element_wise(*pieces, "")


def _percent_encode(column: pa.Array) -> pa.Array:
    # Most keys need no escaping; only the rows that do go through Python.
    unsafe = pc.match_substring_regex(column, r"[^A-Za-z0-9_.~-]")
    if not pc.any(unsafe).as_py():
        return pc.cast(column, pa.string())
    values = column.to_pylist()
    flags = unsafe.to_pylist()
    return pa.array([quote(v, safe="") if f else v for v, f in zip(values, flags, strict=True)], pa.string())
