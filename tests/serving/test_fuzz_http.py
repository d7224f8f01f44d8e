"""Schemathesis against the live HTTP server's own OpenAPI spec (/openapi.json).

Bodies that fit the schema and bodies that break it (wrong types, missing or extra fields)
go to a real `featurestore serve` on loopback. Every answer must be documented in the spec
(status code, content type, body schema), never a 5xx; schema-valid bodies may still name
unknown features (400), schema-invalid ones must be refused (4xx). Bounded: a fixed number
of derandomized examples per mode.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.serving.support import ServeProcess

CONFIG = {
    "checks": {
        # A body can fit the schema and still ask for a feature that does not exist.
        "positive_data_acceptance": {"expected-statuses": ["200", "400"]},
    }
}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_http_answers_conform_to_the_openapi_spec(server: ServeProcess, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(
        f"{server.http_url}/openapi.json", config=schemathesis.Config.from_dict(CONFIG), timeout=10
    )
    statuses: list[int] = []

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=schema.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        response = case.call_and_validate(base_url=server.http_url, timeout=10)
        statuses.append(response.status_code)

    check()
    assert all(s < 500 for s in statuses)
    assert server.process is not None and server.process.poll() is None
