"""Redis keys: materialization (vectorized) and lookups (per entity) build the same key, and
no two entities share one, whatever characters their string keys hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from featurestore import FeatureStore
from featurestore.online.keys import encode_keys
from tests.online.helpers import TZ, lookup
from tests.support.repos import make_store

DEFS = """
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

pair = Entity("pair", join_keys=["name", "id"])
named = Entity("named", join_keys=["name"])
pairs = FeatureView("pairs", entities=[pair], schema=[Field("v", Int64)],
                    source=ParquetSource("pairs_src", path="data/pairs.parquet", timestamp_field="ts"))
names = FeatureView("names", entities=[named], schema=[Field("w", Int64)],
                    source=ParquetSource("names_src", path="data/names.parquet", timestamp_field="ts"))
"""
# Separators of the key layout, the escape character itself, and non-ASCII text.
TRICKY = ":{},=%é\u0301 _.~-aA0"


def tables(names: list[str], ids: list[int]) -> dict[str, pa.Table]:
    at = pa.array([datetime.now(UTC) - timedelta(hours=1)] * len(names), TZ)
    v = pa.array(range(len(names)), pa.int64())
    return {
        "pairs.parquet": pa.table(
            {"name": pa.array(names, pa.string()), "id": pa.array(ids, pa.int64()), "ts": at, "v": v}
        ),
        "names.parquet": pa.table({"name": pa.array(names, pa.string()), "ts": at, "w": v}),
    }


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    return make_store(tmp_path_factory.mktemp("keys") / "repo", DEFS, tables(["a"], [1]), project="keys")


names_st = st.text(alphabet=TRICKY, max_size=6) | st.text(max_size=6)
entities_st = st.lists(
    st.tuples(names_st, st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 3)), min_size=1, max_size=20
)


@settings(max_examples=100, deadline=None)
@given(entities=entities_st)
def test_materialization_and_lookup_build_the_same_unique_keys(
    applied: FeatureStore, entities: list[tuple[str, int]]
) -> None:
    names, ids = [e[0] for e in entities], [e[1] for e in entities]
    plan = applied.online_registry().plan(("pairs:v", "names:w"), False)
    n, columns = plan.entity_columns({"name": names, "id": ids})
    looked_up = plan.keys(n, columns)  # view-major: pairs, then names
    assert (
        looked_up[:n]
        == encode_keys(
            "keys", "pairs", [("name", pa.array(names, pa.string())), ("id", pa.array(ids, pa.int64()))]
        ).to_pylist()
    )
    assert looked_up[n:] == encode_keys("keys", "names", [("name", pa.array(names, pa.string()))]).to_pylist()
    # One key per distinct entity and view, never shared.
    assert len(set(looked_up[:n])) == len(set(entities))
    assert len(set(looked_up[n:])) == len(set(names))
    assert not set(looked_up[:n]) & set(looked_up[n:])


def test_key_layout() -> None:
    columns = [("name", pa.array(["a:b", "ok", "é"], pa.string())), ("id", pa.array([-1, 2, 3], pa.int64()))]
    assert encode_keys("p", "v", columns).to_pylist() == [
        "{p:name=a%3Ab,id=-1}:v",
        "{p:name=ok,id=2}:v",
        "{p:name=%C3%A9,id=3}:v",
    ]


def test_look_alike_entities_get_their_own_values(tmp_path: Path, redis_client: redis.Redis) -> None:
    # Unescaped, ("x,id=1", 2) and ("x", 1) would both read name=x,id=1,... and so on.
    names = ["x,id=1", "x", "x%2Cid%3D1", "{keys:name=x}", "e\u0301", "é", ""]
    ids = [2, 1, 2, 1, 1, 1, 1]
    fs = make_store(tmp_path / "repo", DEFS, tables(names, ids), project="keys")
    fs.materialize()
    assert redis_client.dbsize() == 2 * len(names) + 1  # and the project's marker
    got = lookup(fs, ["pairs:v", "names:w"], {"name": names, "id": ids})[0]
    assert got["v"] == got["w"] == list(range(len(names)))


@settings(max_examples=50, deadline=None)
@given(name=st.text(TRICKY, max_size=6), id_=st.integers(-(2**63), 2**63 - 1))
def test_every_view_of_one_entity_hashes_to_one_cluster_slot(name: str, id_: int) -> None:
    # Redis Cluster hashes only the part between the first "{" and the next "}": one slot
    # per entity, whichever view, so one entity's lookup never crosses slots.
    columns = [("name", pa.array([name], pa.string())), ("id", pa.array([id_], pa.int64()))]
    keys = [encode_keys("keys", view, columns)[0].as_py() for view in ("pairs", "names", "a_third")]
    tag = keys[0][keys[0].index("{") + 1 : keys[0].index("}")]
    assert tag == f"keys:name={quote(name, safe='')},id={id_}"  # braces in a value never end the tag early
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert key_slot(keys[0].encode()) == key_slot(("{" + tag + "}").encode())
