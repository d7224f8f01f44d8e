"""Writing encoded values to Redis: newer wins, atomically per key, pipelined per batch."""

from __future__ import annotations

from collections.abc import Sequence

import redis

# For each key: compares the (event time, created time) header of the stored value with the
# new one and writes only if the new one is not older: an older range materialized after a
# newer one, or two overlapping runs, can never replace a newer value. Ties rewrite the same
# row, which keeps reruns idempotent. PXAT (absolute expiry) makes a retried write expire at
# the same moment as the first. KEYS = k1..kn, ARGV = v1..vn then expiry1..expiryn (ms, or
# 0 for none). Returns how many keys were written; each key's check-and-set is atomic.
NEWER_WINS = """
local n = #KEYS
local written = 0
for i = 1, n do
  local new = ARGV[i]
  local cur = redis.call('GET', KEYS[i])
  local older = false
  if cur and string.len(cur) >= 16 then
    local ce, cc = struct.unpack('<i8<i8', cur)
    local ne, nc = struct.unpack('<i8<i8', new)
    older = ce > ne or (ce == ne and cc > nc)
  end
  if not older then
    if ARGV[n + i] == '0' then
      redis.call('SET', KEYS[i], new)
    else
      redis.call('SET', KEYS[i], new, 'PXAT', ARGV[n + i])
    end
    written = written + 1
  end
end
return written
"""
# Keys per script call: amortizes the client's per-command cost, while one call blocks Redis
# only for a fraction of a millisecond. On a Redis Cluster every key of a call must share a
# slot, so a cluster writer has to group keys by slot (or call once per key).
KEYS_PER_CALL = 128


class NewerWinsWriter:
    """Pipelines newer-wins writes, many keys per script call; one round trip per ``write``."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.sha = str(client.script_load(NEWER_WINS))

    def write(self, keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int]) -> int:
        """Write each key unless Redis holds a newer value; returns how many were written."""
        if not (len(keys) == len(values) == len(expire_at_ms)):
            raise ValueError("keys, values and expiries differ in length")
        pipe = self.client.pipeline(transaction=False)
        for i in range(0, len(keys), KEYS_PER_CALL):
            chunk = slice(i, i + KEYS_PER_CALL)
            part = keys[chunk]
            pipe.evalsha(self.sha, len(part), *part, *values[chunk], *expire_at_ms[chunk])
        try:
            results = pipe.execute()
        except redis.exceptions.NoScriptError:  # Redis restarted and lost its script cache
            self.sha = str(self.client.script_load(NEWER_WINS))
            return self.write(keys, values, expire_at_ms)
        return sum(int(r) for r in results)

    def replace(self, keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int]) -> None:
        """Write each key whatever Redis holds: for values whose newer source rows were taken away."""
        pipe = self.client.pipeline(transaction=False)
        for key, value, expire_at in zip(keys, values, expire_at_ms, strict=True):
            if expire_at:
                pipe.set(key, value, pxat=expire_at)
            else:
                pipe.set(key, value)
        pipe.execute()

    def delete(self, keys: Sequence[str]) -> int:
        """Remove the keys (entities with no row left); returns how many existed."""
        return int(self.client.unlink(*keys)) if keys else 0


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
