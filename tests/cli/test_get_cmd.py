"""`featurestore get` types each --entity value as its join key is declared."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import redis

from tests.online.helpers import TZ
from tests.support.cli import one_line_error, run_cli
from tests.support.repos import make_store

DEFS = """
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource, String

account = Entity("account", join_keys=["code"])
shop = Entity("shop", join_keys=["shop_id"])
balances = FeatureView("balances", entities=[account], schema=[Field("code", String), Field("v", Int64)],
                       source=ParquetSource("b_src", path="data/b.parquet", timestamp_field="ts"))
shops = FeatureView("shops", entities=[shop], schema=[Field("w", Int64)],
                    source=ParquetSource("s_src", path="data/s.parquet", timestamp_field="ts"))
"""


def test_a_string_key_of_digits_stays_a_string(tmp_path: Path, redis_client: redis.Redis) -> None:
    now = datetime.now(UTC)
    fs = make_store(
        tmp_path / "repo",
        DEFS,
        {
            "b.parquet": pa.table({"code": ["007", "7"], "ts": pa.array([now, now], TZ), "v": [700, 7]}),
            "s.parquet": pa.table({"shop_id": [7], "ts": pa.array([now], TZ), "w": [70]}),
        },
        project="online",
    )
    fs.materialize()
    repo = str(fs.config.repo)
    got = run_cli("get", "--repo", repo, "--entity", "code=007,7", "--features", "balances:v")
    assert got.returncode == 0, got.stderr
    assert got.stdout.count("PRESENT") == 2 and "700" in got.stdout  # "007" is not the integer 7
    shops = run_cli("get", "--repo", repo, "-e", "shop_id=7", "--features", "shops:w")
    assert shops.returncode == 0 and "70" in shops.stdout and "PRESENT" in shops.stdout
    one_line_error(
        run_cli("get", "--repo", repo, "-e", "shop_id=seven", "--features", "shops:w"),
        "'seven' is not an integer (Int64)",
    )
