"""The Redis Cluster backend (blocking): keys grouped by hash slot, one pipeline per master.

A cluster refuses any command whose keys span slots, so every multi-key command here is
built per slot: one MGET, UNLINK or newer-wins script call per slot (at most
``KEYS_PER_CALL`` keys). ``_send`` routes each command by its slot through redis-py's slot
map and sends each master its commands as one plain pipeline, the masters in parallel
(threads: redis-py releases the GIL while it waits on a socket). redis-py's own cluster
pipeline does the same grouping but costs ~55 us per command in Python, which one marker
hash per slot (16384 commands, presence.py) cannot afford; a plain pipeline costs a tenth.

Topology changes: a reply MOVED (the slot moved) makes the next round refresh the slot map
and resend; ASK and TRYAGAIN (a slot in the middle of a move) go one by one through redis-py's
cluster client, which follows them; a master that cannot be reached refreshes the map too (a
replica may have taken over). After ``ROUNDS`` rounds, the last error leaves, through
``map_errors`` (redis_backend.py) as for one Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, SlotNotCoveredError, TryAgainError

from featurestore.errors import OnlineStoreUnavailable
from featurestore.online.backend import Backend, Key
from featurestore.online.keys import SLOTS
from featurestore.online.redis_backend import (
    CONNECT_TIMEOUT,
    KEYS_PER_CALL,
    NEWER_WINS,
    SET_IF_PRESENT,
    SOCKET_TIMEOUT,
    as_text,
    bounded_scan,
    in_batches,
    map_errors,
)
from featurestore.redis_urls import parse_cluster_url
from featurestore.secrets import mask_url

# What a node's URL says that the cluster client sets itself (TLS is passed as ``ssl``).
_NOT_NODE_OPTIONS = ("host", "port", "db", "path", "connection_class")
# Sends of the commands still unanswered (after MOVED or an unreachable master), and the
# pause before a round that follows an unreachable master (its replica may be taking over).
ROUNDS = 4
PAUSE = 0.25

Command = tuple[int, tuple[Any, ...]]  # (slot, the command's arguments)
_LOST = (redis.ConnectionError, redis.TimeoutError)


# The marker operations on every hash of one node at once (``_on_each``). A cluster refuses
# declared KEYS of several slots, so the keys come in ARGV: n, the n keys, then the single-key
# form's arguments (A(j): the j-th of those). Results per key, in order.
_EACH = """#!lua flags=allow-cross-slot-keys
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local key = ARGV[i + 1]
%s
end
return out
"""
_HMGET_EACH = _EACH % "  out[i] = redis.call('HMGET', key, unpack(ARGV, n + 2))"
_HSET_EACH = _EACH % "  out[i] = redis.call('HSET', key, ARGV[n + 2], ARGV[n + 3])"
_HDEL_EACH = _EACH % "  out[i] = redis.call('HDEL', key, ARGV[n + 2])"
_SET_IF_PRESENT_EACH = _EACH % """  if redis.call('HEXISTS', key, ARGV[n + 2]) == 0 then
    out[i] = 0
  else
    redis.call('HDEL', key, ARGV[n + 2])
    for j = n + 4, #ARGV do redis.call('HSET', key, ARGV[j], ARGV[n + 3]) end
    out[i] = 1
  end"""


def slot_of(key: Key) -> int:
    return key_slot(key.encode() if isinstance(key, str) else key)


def _by_slot(keys: Sequence[Key]) -> dict[int, list[int]]:
    """Slot -> the positions of its keys, in request order."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(slot_of(key), []).append(i)
    return groups


def _chunks(positions: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(positions), KEYS_PER_CALL):
        yield positions[start : start + KEYS_PER_CALL]


class RedisClusterBackend(Backend):
    """A Redis Cluster (``redis+cluster://``), connected on first use."""

    CLUSTER = True

    def __init__(
        self, url: str, socket_timeout: float = SOCKET_TIMEOUT, client_name: str | None = None
    ) -> None:
        self.url = url
        address = parse_cluster_url(url)
        host, port = address.seeds[0]
        options: dict[str, Any] = dict(parse_url(address.node_url(host, port)))
        for name in _NOT_NODE_OPTIONS:
            options.pop(name, None)
        self._options = {
            **options,
            "ssl": address.tls,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": socket_timeout,
            "health_check_interval": 0,
            "client_name": client_name,
        }
        self._seeds = [ClusterNode(h, p) for h, p in address.seeds]
        self._cluster: RedisCluster | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._sha: str | None = None  # NEWER_WINS, loaded on every master by the first write

    @property
    def _client(self) -> RedisCluster:
        # Built on first use: building asks a seed for the slot map, and connect(check=False)
        # (the metrics thread) must not fail before its first command is in ``map_errors``.
        if self._cluster is None:
            with map_errors(self.url):
                self._cluster = RedisCluster(startup_nodes=self._seeds, **self._options)
        return self._cluster

    def _send(self, commands: Sequence[Command]) -> list[Any]:
        """Each command's reply, in order (an error reply in place: the caller judges it)."""
        out: list[Any] = [None] * len(commands)
        pending = list(range(len(commands)))
        with map_errors(self.url):
            client = self._client
            for round_ in range(ROUNDS):
                if round_:
                    client.nodes_manager.initialize()  # the slot map as the cluster has it now
                slots = client.nodes_manager.slots_cache  # slot -> [master, replicas...]
                by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
                for i in pending:
                    serving = slots.get(commands[i][0])
                    if not serving:
                        raise SlotNotCoveredError(f"slot {commands[i][0]} has no master")
                    by_node.setdefault(serving[0].name, (serving[0], []))[1].append(i)
                failures = self._pipelines(list(by_node.values()), commands, out)
                redirected = [i for i in pending if isinstance(out[i], (AskError, TryAgainError))]
                for i in redirected:
                    error = out[i]
                    try:
                        if isinstance(error, MovedError):
                            # Sent where the redirect says: while a resharding spreads, the node
                            # asked for the slot map next round may not know the move yet.
                            node = client.get_node(host=error.host, port=error.port) or ClusterNode(
                                error.host, error.port
                            )
                            out[i] = client.get_redis_connection(node).execute_command(*commands[i][1])
                        else:  # ASK, TRYAGAIN: the cluster client follows them, one command at a time
                            out[i] = client.execute_command(*commands[i][1])
                    except redis.ResponseError as e:
                        out[i] = e
                moved = [i for i in pending if isinstance(out[i], MovedError)]
                pending = moved + failures
                if not pending:
                    return out
                if failures or moved:
                    time.sleep(PAUSE * (round_ + 1))
            raise out[pending[0]]

    def _pipelines(
        self, groups: list[tuple[ClusterNode, list[int]]], commands: Sequence[Command], out: list[Any]
    ) -> list[int]:
        """One pipeline per master, in parallel; fills ``out``. The positions whose master
        could not be reached (their ``out`` holds the error)."""

        def run(node: ClusterNode, positions: list[int]) -> list[int]:
            pipe = self._client.get_redis_connection(node).pipeline(transaction=False)
            for i in positions:
                pipe.execute_command(*commands[i][1])
            try:
                replies = pipe.execute(raise_on_error=False)
            except _LOST as e:
                for i in positions:
                    out[i] = e
                return positions
            for i, reply in zip(positions, replies, strict=True):
                out[i] = reply
            return []

        if len(groups) == 1:
            return run(*groups[0])
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="redis-cluster")
        futures = [self._pool.submit(run, node, positions) for node, positions in groups]
        return [i for future in futures for i in future.result()]

    @staticmethod
    def _raise_errors(replies: list[Any]) -> list[Any]:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    # -- values --------------------------------------------------------------------------

    def read(self, keys: Sequence[Key]) -> list[bytes | None]:
        groups = list(_by_slot(keys).items())
        replies = self._send([(slot, ("MGET", *[keys[i] for i in positions])) for slot, positions in groups])
        out: list[bytes | None] = [None] * len(keys)
        with map_errors(self.url):
            for (_, positions), values in zip(groups, self._raise_errors(replies), strict=True):
                for i, value in zip(positions, values, strict=True):
                    out[i] = value
        return out

    def read_prefixes(self, keys: Sequence[Key], size: int) -> list[bytes | None]:
        replies = self._send([(slot_of(key), ("GETRANGE", key, 0, size - 1)) for key in keys])
        # A key of another type answers an error (WRONGTYPE), which is not ours.
        return [r if isinstance(r, bytes) and r else None for r in replies]

    def write(
        self, keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int], newer_wins: bool
    ) -> int:
        if not keys:
            return 0
        if not newer_wins:
            sets: list[Command] = [
                (slot_of(key), ("SET", key, value, "PXAT", expire_at) if expire_at else ("SET", key, value))
                for key, value, expire_at in zip(keys, values, expire_at_ms, strict=True)
            ]
            with map_errors(self.url):
                self._raise_errors(self._send(sets))
            return len(keys)
        calls: list[Command] = []
        for slot, positions in _by_slot(keys).items():
            for chunk in _chunks(positions):
                part = [keys[i] for i in chunk]
                args = (*part, *[values[i] for i in chunk], *[expire_at_ms[i] for i in chunk])
                calls.append((slot, (len(part), *args)))
        with map_errors(self.url):
            if self._sha is None:
                self._sha = str(self._client.script_load(NEWER_WINS))  # on every master
            replies = self._send([(slot, ("EVALSHA", self._sha, *args)) for slot, args in calls])
            if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                # A promoted replica or a restarted master lacks the script (SCRIPT LOAD is not
                # replicated): load it on every master and send the calls it refused again.
                self._sha = str(self._client.script_load(NEWER_WINS))
                again = [i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
                for i, reply in zip(
                    again,
                    self._send([(calls[i][0], ("EVALSHA", self._sha, *calls[i][1])) for i in again]),
                    strict=True,
                ):
                    replies[i] = reply
            return sum(int(r) for r in self._raise_errors(replies))

    def delete(self, keys: Sequence[Key]) -> int:
        calls = [
            (slot, ("UNLINK", *[keys[i] for i in chunk]))
            for slot, positions in _by_slot(keys).items()
            for chunk in _chunks(positions)
        ]
        with map_errors(self.url):
            return sum(int(n) for n in self._raise_errors(self._send(calls)))

    def scan(self, pattern: str, batch: int, examine: int | None = None) -> Iterator[list[bytes]]:
        """Every master in turn (the slot map as it stands when the scan starts). A key whose
        slot moves meanwhile may be missed: removing a view during a resharding may need a rerun.
        ``examine`` is shared evenly among the masters."""
        with map_errors(self.url):
            client = self._client
            primaries = client.get_primaries()
            share = None if examine is None else max(1, examine // max(1, len(primaries)))
            every = (
                key
                for node in primaries
                for key in (
                    client.get_redis_connection(node).scan_iter(match=pattern, count=batch)
                    if share is None
                    else bounded_scan(client.get_redis_connection(node), pattern, batch, share)
                )
            )
            yield from in_batches(every, batch)

    # -- marker hashes ---------------------------------------------------------------------

    def _on_each(self, keys: Sequence[str], script: str, args: Sequence[Any], one: Any) -> list[Any]:
        """A marker operation on each of ``keys`` (one hash per slot: thousands of keys): one
        script call per master for all of its keys (Redis 7's allow-cross-slot-keys), each
        reply a list with one result per key. Redis still checks every key the script touches
        against the slots the node serves: a call refused (a slot moved or migrating, or a
        Redis before 7) is done key by key instead with ``one(key)``, a command of one slot.
        Replies in order."""
        client = self._client
        by_node: dict[str, list[int]] = {}
        with map_errors(self.url):
            slots = client.nodes_manager.slots_cache
            for i, key in enumerate(keys):
                serving = slots.get(slot_of(key))
                by_node.setdefault(serving[0].name if serving else "", []).append(i)
        groups = list(by_node.values())
        calls: list[Command] = [
            (slot_of(keys[g[0]]), ("EVAL", script, 0, len(g), *[keys[i] for i in g], *args)) for g in groups
        ]
        out: list[Any] = [None] * len(keys)
        alone: list[int] = []
        for positions, reply in zip(groups, self._send(calls), strict=True):
            if isinstance(reply, list) and len(reply) == len(positions):
                for i, value in zip(positions, reply, strict=True):
                    out[i] = value
            else:
                alone.extend(positions)
        if alone:
            replies = self._send([(slot_of(keys[i]), one(keys[i])) for i in alone])
            for i, reply in zip(alone, replies, strict=True):
                out[i] = reply
        with map_errors(self.url):
            return self._raise_errors(out)

    def get_fields(self, keys: Sequence[str], fields: Sequence[str]) -> list[list[str | None]]:
        replies = self._on_each(keys, _HMGET_EACH, fields, lambda key: ("HMGET", key, *fields))
        return [[as_text(v) for v in reply] for reply in replies]

    def set_field(self, keys: Sequence[str], field: str, value: str) -> None:
        self._on_each(keys, _HSET_EACH, (field, value), lambda key: ("HSET", key, field, value))

    def delete_field(self, keys: Sequence[str], field: str) -> None:
        self._on_each(keys, _HDEL_EACH, (field,), lambda key: ("HDEL", key, field))

    def set_fields_if_present(
        self, keys: Sequence[str], guard: str, fields: Sequence[str], value: str
    ) -> bool:
        args = (guard, value, *fields)
        replies = self._on_each(
            keys, _SET_IF_PRESENT_EACH, args, lambda key: ("EVAL", SET_IF_PRESENT, 1, key, *args)
        )
        return all(replies)

    # -- the cluster ---------------------------------------------------------------------

    def ping(self) -> None:
        """Every master answers and calls the cluster ok, and the masters serve all 16384 slots."""
        with map_errors(self.url):
            client = self._client
            client.nodes_manager.initialize()  # the slot map as the cluster has it now
            covered = sum(1 for nodes in client.nodes_manager.slots_cache.values() if nodes)
            if covered < SLOTS:
                raise OnlineStoreUnavailable(
                    f"online store {mask_url(self.url)} cannot answer now: "
                    f"{SLOTS - covered} of {SLOTS} hash slots have no master"
                )
            for node in client.get_primaries():
                info = client.get_redis_connection(node).execute_command("CLUSTER INFO")
                if info.get("cluster_state") != "ok":
                    raise OnlineStoreUnavailable(
                        f"online store {mask_url(self.url)} cannot answer now: master {node.name} "
                        f"says cluster_state:{info.get('cluster_state')} (a master down, not yet replaced?)"
                    )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
