"""Writing encoded values to Redis: newer wins, atomically per key, pipelined per batch."""

from __future__ import annotations

from collections.abc import Sequence

import redis

# Compares the (event time, created time) header of the stored value with the new one and
# writes only if the new one is not older: an older range materialized after a newer one,
# or two overlapping runs, can never replace a newer value. Ties rewrite the same row, which
# keeps reruns idempotent. PXAT (absolute expiry) makes a retried write expire at the same
# moment as the first. Returns 1 if written, 0 if a newer value was kept.
NEWER_WINS = """
local cur = redis.call('GET', KEYS[1])
if cur and string.len(cur) >= 16 then
  local ce, cc = struct.unpack('<i8<i8', cur)
  local ne, nc = struct.unpack('<i8<i8', ARGV[1])
  if ce > ne or (ce == ne and cc > nc) then return 0 end
end
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
end
return 1
"""


class NewerWinsWriter:
    """Pipelines newer-wins writes; one round trip per ``write`` call."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.sha = str(client.script_load(NEWER_WINS))

    def write(self, keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int]) -> int:
        """Write each key unless Redis holds a newer value; returns how many were written."""
        pipe = self.client.pipeline(transaction=False)
        for key, value, at in zip(keys, values, expire_at_ms, strict=True):
            pipe.evalsha(self.sha, 1, key, value, at)
        try:
            results = pipe.execute()
        except redis.exceptions.NoScriptError:  # Redis restarted and lost its script cache
            self.sha = str(self.client.script_load(NEWER_WINS))
            return self.write(keys, values, expire_at_ms)
        return sum(int(r) for r in results)


def delete_view(client: redis.Redis, pattern: str, batch: int = 1000) -> int:
    """Remove every key matching ``pattern`` (a removed view's data); returns how many."""
    removed = 0
    keys: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=batch):
        keys.append(key)
        if len(keys) >= batch:
            removed += int(client.unlink(*keys))
            keys = []
    if keys:
        removed += int(client.unlink(*keys))
    return removed
