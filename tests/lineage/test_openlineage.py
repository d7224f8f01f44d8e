"""OpenLineage events: each ingestion, materialization and training set, to a file or an HTTP endpoint."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.errors import ConfigError, ViewsFailedError
from tests.lineage.support import entity_frame, write_stats


def events(fs: FeatureStore) -> list[dict[str, Any]]:
    path = fs.config.store_dir / "openlineage" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_job(evs: list[dict[str, Any]], job: str) -> list[dict[str, Any]]:
    return [e for e in evs if e["job"]["name"] == job]


def test_ingestion_and_training_set_events_go_to_the_file(store: FeatureStore, tmp_path: Path) -> None:
    with store.get_training_set(entity_frame(tmp_path / "entities.parquet"), "svc") as ts:
        ts.to_parquet(tmp_path / "train.parquet")
    evs = events(store)
    start, complete = by_job(evs, "lin.ingest.stats")
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"] and uuid.UUID(start["run"]["runId"])
    assert sorted(Path(i["name"]).name for i in complete["inputs"]) == ["a.parquet", "b.parquet"]
    assert {i["namespace"] for i in complete["inputs"]} == {"file"}
    [out] = complete["outputs"]
    assert (out["namespace"], out["name"]) == (f"duckdb://{store.config.duckdb_path}", "lin.offline_stats")
    _, made = by_job(evs, "lin.training_set")
    assert made["eventType"] == "COMPLETE"
    assert [o["name"] for o in made["outputs"]] == [str((tmp_path / "train.parquet").resolve())]
    names = sorted(Path(i["name"]).name for i in made["inputs"])
    assert names == ["a.parquet", "b.parquet", "entities.parquet", "zones.parquet"]


def test_a_failed_ingestion_is_a_fail_event(store: FeatureStore) -> None:
    write_stats(store.config.repo / "data" / "stats" / "b.parquet", [0.5, -1.0], drivers=(2,))
    with pytest.raises(ViewsFailedError):
        store.ingest(["stats"])
    fail = by_job(events(store), "lin.ingest.stats")[-1]
    assert fail["eventType"] == "FAIL"
    assert "score" in fail["run"]["facets"]["errorMessage"]["message"]


def test_a_materialization_reads_files_and_writes_redis(redis_url: str, store: FeatureStore) -> None:
    result = store.materialize()
    start, complete = by_job(events(store), "lin.materialize")
    assert complete["eventType"] == "COMPLETE" and start["run"]["runId"] == complete["run"]["runId"]
    assert [o["name"] for o in complete["outputs"]] == ["lin:stats"]
    assert complete["outputs"][0]["namespace"].startswith("redis://127.0.0.1:")
    inputs = sorted(Path(i["name"]).name for i in complete["inputs"] if i["namespace"] == "file")
    assert inputs == ["a.parquet", "b.parquet"] and result.run_id


class _Collector(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Collector.received.append({"path": self.path, "event": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lineage_server() -> Iterator[str]:
    """A real HTTP server on a free port that keeps every event posted to it."""
    _Collector.received = []
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_events_go_to_the_configured_endpoint(repo: Path, lineage_server: str) -> None:
    config = f'project = "lin"\n\n[lineage]\nopenlineage_url = "{lineage_server}"\n'
    (repo / "featurestore.toml").write_text(config)
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest(["zones"])
    assert [(r["path"], r["event"]["eventType"]) for r in _Collector.received] == [
        ("/api/v1/lineage", "START"), ("/api/v1/lineage", "COMPLETE")]
    assert not (fs.config.store_dir / "openlineage").exists()


def test_an_endpoint_that_does_not_answer_never_fails_a_run(repo: Path) -> None:
    (repo / "featurestore.toml").write_text('project = "lin"\n\n[lineage]\nopenlineage_url = "http://127.0.0.1:9"\n')
    fs = FeatureStore(repo)
    fs.apply()
    assert fs.ingest(["zones"])[0].rows_inserted == 2


def test_lineage_config_keys_are_checked(repo: Path) -> None:
    (repo / "featurestore.toml").write_text('project = "lin"\n[lineage]\nopenlineage = "http://x"\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['openlineage'\] in \[lineage\]"):
        load_config(repo)
    (repo / "featurestore.toml").write_text('project = "lin"\n[lineage]\nopenlineage_url = "x"\n')
    with pytest.raises(ConfigError, match="must start with http"):
        load_config(repo)
    env = {"FEATURESTORE_OPENLINEAGE_URL": "https://lineage.example.com"}
    assert load_config(repo, env=env).openlineage_url == "https://lineage.example.com"


def test_file_events_are_what_the_openlineage_client_writes(store: FeatureStore) -> None:
    # The events file is written without the client library (its imports cost a CLI ~0.2 s):
    # each line must still be exactly the client's own serialization of the same RunEvent.
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run
    from openlineage.client.serde import Serde

    write_stats(store.config.repo / "data" / "stats" / "b.parquet", [0.5, -1.0], drivers=(2,))
    with pytest.raises(ViewsFailedError):
        store.ingest(["stats"])
    evs = by_job(events(store), "lin.ingest.stats")
    assert [e["eventType"] for e in evs][-2:] == ["START", "FAIL"]
    for ev in evs:
        facets = {}
        if "errorMessage" in ev["run"]["facets"]:
            facet = ev["run"]["facets"]["errorMessage"]
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=facet["message"], programmingLanguage="python", producer=facet["_producer"]
            )
        expected = RunEvent(
            eventType=RunState(ev["eventType"]),
            eventTime=ev["eventTime"],
            producer=ev["producer"],
            run=Run(runId=ev["run"]["runId"], facets=facets),
            job=Job(namespace="featurestore", name=ev["job"]["name"]),
            inputs=[InputDataset(namespace=i["namespace"], name=i["name"]) for i in ev["inputs"]],
            outputs=[OutputDataset(namespace=o["namespace"], name=o["name"]) for o in ev["outputs"]],
        )
        assert ev == json.loads(Serde.to_json(expected))
