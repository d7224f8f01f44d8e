"""Schemathesis against the live HTTP server's own OpenAPI spec (/openapi.json).

Bodies that fit the schema and bodies that break it (wrong types, missing or extra fields)
go to a real `featurestore serve` on loopback. Every answer must be documented in the spec
(status code, content type, body schema), never a 5xx; schema-valid bodies may still name
unknown features (400), schema-invalid ones must be refused (4xx). Bounded: a fixed number
of derandomized examples per mode.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.serving.fuzzing import Column, Reference, Req, micros, requests
from tests.serving.support import ServeProcess

CONFIG = {
    "checks": {
        # A body can fit the schema and still ask for a feature that does not exist.
        "positive_data_acceptance": {"expected-statuses": ["200", "400"]},
    },
    "operations": [
        {
            # A push can fit the schema and still name a view that does not exist (404), or
            # columns it does not take (400): no generated body is a whole valid batch.
            "include-path": "/v1/push",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["200", "400", "404"]}},
        }
    ],
}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_http_answers_conform_to_the_openapi_spec(
    server: ServeProcess, served_repo: Path, mode: GenerationMode
) -> None:
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
    assert not (served_repo / ".featurestore" / "push").exists()  # no generated push was a valid batch


def http_columns(body: dict[str, Any]) -> tuple[list[Column], dict[str, list[int | None]]]:
    out = []
    for col in body["features"]:
        values = [float(v) if v in ("NaN", "Infinity", "-Infinity") else v for v in col["values"]]
        stamps = [None if t is None else micros(datetime.fromisoformat(t)) for t in col["event_timestamps"]]
        out.append(Column(col["name"], col["reference"], values, col["statuses"], stamps))
    return out, body.get("runs") or {}


def test_generated_bodies_get_a_precise_status_and_consistent_values(
    server: ServeProcess, served_repo: Path
) -> None:
    """The gRPC fuzz test's requests, as JSON: 200 with the sources' values, or 400/422."""
    reference = Reference(served_repo)
    seen: dict[int, int] = {}

    with httpx.Client(base_url=server.http_url, timeout=10) as client:

        @settings(max_examples=150, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(req=requests(reference))
        def check(req: Req) -> None:
            before = datetime.now(UTC)
            answer = client.post("/v1/online-features", json=req.to_json())
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            if answer.status_code != 200:
                assert answer.status_code in (400, 422), answer.text[:300]
                assert not req.valid, answer.text[:300]
                assert answer.json()["error"]["message"]
                return
            found, runs = http_columns(answer.json())
            reference.check(req, found, runs, before, datetime.now(UTC))

        check()
    assert seen.get(200, 0) > 20 and seen.get(400, 0) > 20, seen
