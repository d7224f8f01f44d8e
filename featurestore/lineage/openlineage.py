"""OpenLineage RunEvents for ingestion, materialization and training sets, so lineage tools can read them.

Each run is emitted when it ends, as a START at its start time and a COMPLETE, FAIL or ABORT
at its end, with the source files as inputs and the DuckDB table, Redis or the training set
file as outputs. Events go as JSON lines to ``.featurestore/openlineage/events.jsonl``, or to
``[lineage] openlineage_url`` when configured. Emitting never fails a run: a lineage backend
that does not answer is logged as a warning.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from featurestore.config import Config
from featurestore.redis_urls import is_cluster, parse_cluster_url

if TYPE_CHECKING:
    from openlineage.client.transport.http import HttpTransport

EVENTS_FILE = "openlineage/events.jsonl"
PRODUCER = "https://github.com/featurestore/featurestore"
# The event and facet schemas these events follow (OpenLineage spec 2-0-2).
EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
ERROR_FACET_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
)
_END_STATES = {"succeeded": "COMPLETE", "failed": "FAIL", "interrupted": "ABORT"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """An OpenLineage dataset: ``file`` + path, ``duckdb://FILE`` + table, ``redis://HOST`` + key prefix."""

    namespace: str
    name: str


@dataclass
class LineageEvents:
    """Emits a repo's runs as OpenLineage events (see the module docstring)."""

    config: Config
    _transport: HttpTransport | None = None
    _down: bool = False  # one failure: the rest of this operation's events are skipped

    def file(self, path: str) -> Dataset:
        return Dataset("file", path)

    def offline_table(self, view: str) -> Dataset:
        return Dataset(f"duckdb://{self.config.duckdb_path}", f"{self.config.project}.offline_{view}")

    def online_view(self, view: str) -> Dataset:
        url = self.config.redis_url
        if is_cluster(url):  # the seeds, without credentials (urlsplit cannot read host:port,host:port)
            seeds = parse_cluster_url(url).seeds
            hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in seeds)
            return Dataset(f"{url.split('://', 1)[0]}://{hosts}", f"{self.config.project}:{view}")
        parts = urlsplit(url)
        host = parts.hostname or parts.path  # unix:// sockets have a path; credentials stay out
        netloc = f"{host}:{parts.port}" if parts.port else host
        return Dataset(urlunsplit((parts.scheme, netloc, "", "", "")), f"{self.config.project}:{view}")

    def run(
        self,
        job: str,
        run: str,
        started_at: datetime,
        finished_at: datetime | None,
        status: str,
        inputs: Sequence[Dataset] = (),
        outputs: Sequence[Dataset] = (),
        error: str | None = None,
    ) -> None:
        """A START and the run's end state; the OpenLineage run id is derived from the run's name."""
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"featurestore:{self.config.project}:{run}"))
        end = _END_STATES.get(status, "OTHER")
        facets: dict[str, Any] = {}
        if error:
            facets["errorMessage"] = {
                "_producer": PRODUCER,
                "_schemaURL": ERROR_FACET_SCHEMA,
                "message": error,
                "programmingLanguage": "python",
            }
        ins = [{"facets": {}, "inputFacets": {}, "name": d.name, "namespace": d.namespace} for d in inputs]
        outs = [{"facets": {}, "name": d.name, "namespace": d.namespace, "outputFacets": {}} for d in outputs]
        job_spec = {"facets": {}, "name": f"{self.config.project}.{job}", "namespace": "featurestore"}
        for state, when, run_facets in (
            ("START", started_at, {}),
            (end, finished_at or datetime.now(UTC), facets),
        ):
            self._emit(
                {
                    "eventTime": when.astimezone(UTC).isoformat(),
                    "eventType": state,
                    "inputs": ins,
                    "job": job_spec,
                    "outputs": outs,
                    "producer": PRODUCER,
                    "run": {"facets": run_facets, "runId": run_id},
                    "schemaURL": EVENT_SCHEMA,
                }
            )

    def _emit(self, event: dict[str, Any]) -> None:
        if self._down:
            return
        try:
            if self.config.openlineage_url:
                self._http(self.config.openlineage_url).emit(event)  # type: ignore[arg-type]  # its Serde takes a dict as is
            else:
                path = self.config.store_dir / EVENTS_FILE
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(event, sort_keys=True) + "\n")
        except Exception as e:  # lineage is a record of the run, never a reason to fail it
            self._down = True
            log.warning("OpenLineage events not emitted: %s: %s", type(e).__name__, e)

    def _http(self, url: str) -> HttpTransport:
        # The client library (~0.2 s of imports, every transport) loads only for a backend URL;
        # the events file is plain JSON lines, written here in the library's own format.
        if self._transport is None:
            from openlineage.client.transport.http import HttpConfig, HttpTransport

            # Few, quick retries: a lineage backend that is down must not stall ingestion.
            retry = {"total": 2, "backoff_factor": 0.2, "allowed_methods": ["POST"]}
            self._transport = HttpTransport(HttpConfig(url=url, timeout=2.0, retry=retry))
        return self._transport
