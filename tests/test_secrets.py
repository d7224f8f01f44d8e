"""featurestore.secrets: one masking rule for every URL, message and log line we print."""

from __future__ import annotations

import logging
import string
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import secrets
from featurestore.config import load_config
from featurestore.errors import ConfigError, OnlineStoreUnavailable
from featurestore.online.store import OnlineStore
from tests.support.redis import free_port


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:hunter2hunter2@10.0.0.5:6380/1", "redis://:***@10.0.0.5:6380/1"),
        ("redis://app:hunter2hunter2@cache.internal/0", "redis://app:***@cache.internal/0"),
        (
            "rediss://:p%40ss@[::1]:6379/0?ssl_ca_certs=/etc/ca.pem",
            "rediss://:***@[::1]:6379/0?ssl_ca_certs=/etc/ca.pem",
        ),
        ("redis://cache:6379/0?password=hunter2hunter2&db=2", "redis://cache:6379/0?password=***&db=2"),
        ("https://user:hunter2hunter2@lineage.example.com/api", "https://user:***@lineage.example.com/api"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),  # nothing to mask: unchanged
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert secrets.mask_url(url) == masked


_PASSWORD = st.text(string.ascii_letters + "-_~!$&'()*+,;=%@:/", min_size=8, max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    password=_PASSWORD, user=st.sampled_from(["", "app"]), port=st.integers(1, 65535), db=st.integers(0, 15)
)
def test_the_password_never_survives_and_the_rest_does(password: str, user: str, port: int, db: int) -> None:
    url = f"redis://{user}:{quote(password, safe='')}@cache-{db}.internal:{port}/{db}"
    masked = secrets.mask_url(url)
    # Checked against urllib's own reading of the masked URL, not our formatting.
    parts = urlsplit(masked)
    assert parts.password == secrets.MASK
    assert (parts.username or "", parts.hostname, parts.port, parts.path) == (
        user,
        f"cache-{db}.internal",
        port,
        f"/{db}",
    )
    # The reference: the same URL with the password's text swapped for the mask, nothing else.
    assert masked == url.replace(quote(password, safe=""), secrets.MASK, 1)


def test_mask_text_masks_urls_in_messages_and_remembered_tokens() -> None:
    secrets.remember("tok-abcdefghijklmnop")
    text = (
        "could not reach 'redis://:hunter2hunter2@h:1/0' (redis://:x@y:2/0), "
        "header Bearer tok-abcdefghijklmnop"
    )
    masked = secrets.mask_text(text)
    assert masked == "could not reach 'redis://:***@h:1/0' (redis://:***@y:2/0), header Bearer ***"


def test_log_filter_masks_records_formatted_with_arguments() -> None:
    handler = logging.StreamHandler()
    handler.addFilter(secrets.MaskingFilter())
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "store %s down", ("redis://:pw12345678@h:1/0",), None
    )
    assert handler.filter(record)
    assert record.getMessage() == "store redis://:***@h:1/0 down"


def test_config_repr_and_errors_mask_the_password(tmp_path: Path) -> None:
    (tmp_path / "featurestore.toml").write_text('project = "p"\n')
    config = load_config(tmp_path, env={"FEATURESTORE_REDIS_URL": "redis://:hunter2hunter2@h:1/0"})
    assert config.redis_url == "redis://:hunter2hunter2@h:1/0"  # the real one is still used
    assert "hunter2hunter2" not in repr(config) and "redis://:***@h:1/0" in repr(config)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"FEATURESTORE_REDIS_URL": "http://:hunter2hunter2@h:1/0"})
    assert "hunter2hunter2" not in str(info.value) and "http://:***@h:1/0" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"FEATURESTORE_OPENLINEAGE_URL": "ftp://u:hunter2hunter2@h/x"})
    assert "hunter2hunter2" not in str(info.value)


def test_unreachable_redis_error_names_the_host_not_the_password() -> None:
    port = free_port()
    with pytest.raises(OnlineStoreUnavailable) as info:
        OnlineStore.connect(f"redis://:hunter2hunter2@127.0.0.1:{port}/0", "p")
    assert f"redis://:***@127.0.0.1:{port}/0 does not answer" in info.value.message
    assert "hunter2hunter2" not in info.value.message
