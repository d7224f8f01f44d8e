"""Online store URLs: one Redis, or a Redis Cluster's seeds with shared credentials and TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore.config import load_config
from featurestore.errors import ConfigError
from featurestore.redis_urls import ClusterAddress, check_url, is_cluster, parse_cluster_url


def test_a_cluster_url_names_its_seeds_credentials_and_tls() -> None:
    address = parse_cluster_url("rediss+cluster://app:s%40cret@10.0.0.1:7000,[::1]:7001,db.local/?ssl_ca_certs=/ca.pem")
    assert address == ClusterAddress(
        seeds=(("10.0.0.1", 7000), ("::1", 7001), ("db.local", 6379)),
        username="app",
        password="s@cret",
        tls=True,
        options=(("ssl_ca_certs", "/ca.pem"),),
    )
    assert address.node_url("::1", 7001) == "rediss://app:s%40cret@[::1]:7001/0?ssl_ca_certs=/ca.pem"
    plain = parse_cluster_url("redis+cluster://127.0.0.1:7000")
    assert (plain.seeds, plain.password, plain.tls) == ((("127.0.0.1", 7000),), None, False)
    assert is_cluster("redis+cluster://h:1/") and not is_cluster("redis://h:1/0")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://:secret@h:1/2", "a Redis Cluster has only database 0"),
        ("redis+cluster://:secret@h:1,,h:2/", "an empty node"),
        ("redis+cluster://:secret@h:port/", "is not host:port"),
        ("redis+cluster://:secret@h:1/?db=2", "unknown option(s) ['db']"),
        ("cluster://:secret@h:1/", "redis_url must start with"),
    ],
)
def test_a_bad_url_is_one_clear_config_error_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check_url(url)
    assert says in raised.value.message
    assert "secret" not in raised.value.message


def test_the_config_takes_a_cluster_url_and_read_from_replicas(tmp_path: Path) -> None:
    (tmp_path / "featurestore.toml").write_text(
        'project = "rides"\n[online]\nredis_url = "redis+cluster://h:7000,h:7001/"\n'
        "read_from_replicas = true\n"
    )
    config = load_config(tmp_path, env={})
    assert (config.redis_url, config.read_from_replicas) == ("redis+cluster://h:7000,h:7001/", True)
    env = {"FEATURESTORE_READ_FROM_REPLICAS": "false", "FEATURESTORE_REDIS_URL": "redis+cluster://e:1/"}
    config = load_config(tmp_path, env=env)
    assert (config.redis_url, config.read_from_replicas) == ("redis+cluster://e:1/", False)
    with pytest.raises(ConfigError, match="read_from_replicas must be true or false, got 'maybe'"):
        load_config(tmp_path, env={"FEATURESTORE_READ_FROM_REPLICAS": "maybe"})
    with pytest.raises(ConfigError, match="only database 0"):
        load_config(tmp_path, env={"FEATURESTORE_REDIS_URL": "redis+cluster://:pw@e:1/3"})
