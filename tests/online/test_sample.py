"""Sampling a view's values from Redis: every key matching, or among a bounded number examined
(the console's health page: matching a pattern otherwise goes through the whole keyspace)."""

from __future__ import annotations

import os

from featurestore.online.codec import HEADER
from featurestore.online.store import OnlineStore
from tests.support.redis import RedisClient


def test_a_sample_is_bounded_by_the_keys_it_may_examine(any_redis: RedisClient) -> None:
    value = HEADER.pack(1, 1, 1, 0)
    for view, n in (("common", 3000), ("rare", 5)):
        pipe = any_redis.pipeline(transaction=False)
        for i in range(n):
            pipe.set(f"{{t:{i}}}:{view}", value)
        pipe.execute()
    with OnlineStore.connect(os.environ["FEATURESTORE_REDIS_URL"], "t") as store:
        assert len(store.sample("common", 5000)) == 3000  # unbounded: every key of the view
        assert len(store.sample("rare", 100)) == 5
        assert len(store.sample("common", 10)) == 10
        bounded = store.sample("common", 5000, examine=300)
        assert 0 < len(bounded) <= 1000  # about 300 examined (SCAN's count is a hint)
        assert len(store.sample("common", 5000, examine=100_000)) == 3000
