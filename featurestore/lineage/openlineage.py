"""OpenLineage RunEvents for ingestion, materialization and training sets, so lineage tools can read them.

Each run is emitted when it ends, as a START at its start time and a COMPLETE, FAIL or ABORT
at its end, with the source files as inputs and the DuckDB table, Redis or the training set
file as outputs. Events go as JSON lines to ``.featurestore/openlineage/events.jsonl``, or to
``[lineage] openlineage_url`` when configured. Emitting never fails a run: a lineage backend
that does not answer is logged as a warning.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet, error_message_run
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.transport.transport import Transport

from featurestore.config import Config
from featurestore.redis_urls import is_cluster, parse_cluster_url

EVENTS_FILE = "openlineage/events.jsonl"
PRODUCER = "https://github.com/featurestore/featurestore"
_END_STATES = {"succeeded": RunState.COMPLETE, "failed": RunState.FAIL, "interrupted": RunState.ABORT}
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
    _client: OpenLineageClient | None = None
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
        end = _END_STATES.get(status, RunState.OTHER)
        facets: dict[str, RunFacet] = {}
        if error:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="python"
            )
        ins = [InputDataset(namespace=d.namespace, name=d.name) for d in inputs]
        outs = [OutputDataset(namespace=d.namespace, name=d.name) for d in outputs]
        name = f"{self.config.project}.{job}"
        no_facets: dict[str, RunFacet] = {}
        for state, when, run_facets in (
            (RunState.START, started_at, no_facets),
            (end, finished_at or datetime.now(UTC), facets),
        ):
            self._emit(
                RunEvent(
                    eventType=state,
                    eventTime=when.astimezone(UTC).isoformat(),
                    producer=PRODUCER,
                    run=Run(runId=run_id, facets=run_facets),
                    job=Job(namespace="featurestore", name=name),
                    inputs=ins,
                    outputs=outs,
                )
            )

    def _emit(self, event: RunEvent) -> None:
        if self._down:
            return
        try:
            if self._client is None:
                self._client = OpenLineageClient(transport=self._transport())
            self._client.emit(event)
        except Exception as e:  # lineage is a record of the run, never a reason to fail it
            self._down = True
            log.warning("OpenLineage events not emitted: %s: %s", type(e).__name__, e)

    def _transport(self) -> Transport:
        if self.config.openlineage_url:
            # Few, quick retries: a lineage backend that is down must not stall ingestion.
            retry = {"total": 2, "backoff_factor": 0.2, "allowed_methods": ["POST"]}
            return HttpTransport(HttpConfig(url=self.config.openlineage_url, timeout=2.0, retry=retry))
        path = self.config.store_dir / EVENTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileTransport(FileConfig(log_file_path=str(path), append=True))
