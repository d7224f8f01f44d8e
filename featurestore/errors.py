"""The one error hierarchy of featurestore.

Every error a user can cause is a ``FeatureStoreError``; each knows the gRPC status
and HTTP code it maps to, so servers and clients share this module::

    FeatureStoreError
    ├── ConfigError                 featurestore.toml or environment is wrong
    ├── DefinitionError             definitions in the repo are invalid (all problems at once)
    ├── RegistryError               the registry cannot do what was asked
    │   ├── NotAppliedError         nothing applied yet, or no such version
    │   ├── BreakingChangeError     apply refused: the plan breaks consumers
    │   └── ConcurrentApplyError    another apply won the race
    ├── StoreVersionError           the DuckDB file is newer than this code, not migrated, or not a store
    ├── StoreLockedError            another process holds the DuckDB file (push: durable, not online)
    │   └── RunInProgressError      another ingestion or materialization runs (if_idle: skipped)
    ├── NotFoundError               an unknown view, feature, service or entity
    │   └── PushTargetNotFoundError the view a push names is unknown (NOT_FOUND, 404)
    ├── InvalidRequestError         a request is malformed (entity frame, join keys, batch size)
    │   └── InvalidRowsError        rows of a pushed batch fail the view's checks (per-row errors)
    ├── SourceError                 a Parquet source is missing, unreadable or mismatched
    ├── OnlineStoreUnavailable      Redis does not answer, or answers an error
    ├── PushLogUnavailable          a push's file cannot be written (disk full): nothing written
    ├── OfflineEngineUnavailable    the Spark engine cannot start (no PySpark or Java, master unreachable)
    ├── UnauthenticatedError        a serving request lacks a valid bearer token
    ├── PermissionDeniedError       a serving request's token lacks the scope (or a push not from loopback)
    ├── ResourceExhaustedError      a server is at its bytes-in-flight budget (retry later)
    │   ├── AnswerTooLargeError     the answer would pass the message size limit
    │   └── TooManyFailedTokensError too many wrong tokens from an address (or all): locked out a while
    ├── OnDemandError               an on-demand view's function failed, returned the wrong type or
    │   │                           length, or its code changed since apply (names the view)
    │   └── OnDemandTimeoutError    an on-demand view's function did not finish within the deadline
    ├── ValidationError             source rows fail their declaration (policy "fail")
    └── ViewsFailedError            some views of a run failed alone; the others were written
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class FeatureStoreError(Exception):
    """Root of every error featurestore raises on purpose."""

    grpc_status: str = "INTERNAL"
    http_status: int = 500
    # What a server tells a remote caller instead of ``message``, when the message is for the
    # operator only (it names internal addresses); None: the message itself. The server logs
    # the message with a request id and adds the id to what the caller reads.
    client_message: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(FeatureStoreError):
    """The repo's featurestore.toml or an environment override is invalid."""

    grpc_status = "FAILED_PRECONDITION"
    http_status = 500


class DefinitionError(FeatureStoreError):
    """One or more definitions are invalid; ``problems`` lists every one."""

    grpc_status = "FAILED_PRECONDITION"
    http_status = 500

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in definitions: " + "; ".join(self.problems)
        super().__init__(message)


class RegistryError(FeatureStoreError):
    """The registry cannot do what was asked."""

    grpc_status = "FAILED_PRECONDITION"
    http_status = 409


class NotAppliedError(RegistryError):
    """Nothing has been applied yet, or the asked version does not exist."""


class BreakingChangeError(RegistryError):
    """Apply refused because the plan breaks consumers (use allow_breaking)."""


class ConcurrentApplyError(RegistryError):
    """Another apply recorded a version first; re-run plan and apply."""

    grpc_status = "ABORTED"


class StoreVersionError(FeatureStoreError):
    """The store file was written by a newer featurestore, or needs ``featurestore migrate`` first."""

    grpc_status = "FAILED_PRECONDITION"
    http_status = 500


class StoreLockedError(FeatureStoreError):
    """Another process holds the DuckDB file open for writing."""

    grpc_status = "UNAVAILABLE"
    http_status = 503


class RunInProgressError(StoreLockedError):
    """Another ingestion or materialization holds the store, and this run was asked to skip then."""


class NotFoundError(FeatureStoreError):
    """An unknown feature view, feature, service, entity or object."""

    grpc_status = "INVALID_ARGUMENT"
    http_status = 400


class PushTargetNotFoundError(NotFoundError):
    """The feature view a push names does not exist: the request's target, so NOT_FOUND."""

    grpc_status = "NOT_FOUND"
    http_status = 404


class InvalidRequestError(FeatureStoreError):
    """A request is malformed: missing or mistyped columns, bad sizes."""

    grpc_status = "INVALID_ARGUMENT"
    http_status = 400


class InvalidRowsError(InvalidRequestError):
    """Rows of a pushed batch fail their view's declaration: the whole batch is refused.

    ``rows`` lists each failure as ``(row index in the batch, column or None for a view-level
    check, check name)``, in row order.
    """

    def __init__(self, message: str, rows: Sequence[tuple[int, str | None, str]]) -> None:
        super().__init__(message)
        self.rows = list(rows)


class SourceError(FeatureStoreError):
    """A Parquet source is missing, unreadable or does not match its declaration."""

    grpc_status = "FAILED_PRECONDITION"
    http_status = 500


class OnlineStoreUnavailable(FeatureStoreError):
    """The online store (Redis) does not answer, or answers an error (busy, loading, no auth).

    ``config_problem`` is set when retrying cannot help: Redis refused the credentials or
    wants a password that ``redis_url`` does not give.
    """

    grpc_status = "UNAVAILABLE"
    http_status = 503
    client_message = "the online store is unavailable; retry later"

    def __init__(self, message: str, config_problem: bool = False) -> None:
        super().__init__(message)
        self.config_problem = config_problem


class PushLogUnavailable(FeatureStoreError):
    """A pushed batch's file cannot be written (disk full, permissions): nothing of it was
    written, offline or online, so pushing it again is safe."""

    grpc_status = "UNAVAILABLE"
    http_status = 503
    client_message = "the push log cannot be written, nothing of the batch was written; retry later"


class OfflineEngineUnavailable(FeatureStoreError):
    """The configured offline engine cannot run: PySpark or Java is missing, the master or
    Spark Connect endpoint does not answer in time, or a Spark job failed."""

    grpc_status = "UNAVAILABLE"
    http_status = 503
    client_message = "the offline engine is unavailable; retry later"


class ValidationError(FeatureStoreError):
    """Source rows fail their view's declaration and the view's policy is "fail"."""

    grpc_status = "FAILED_PRECONDITION"
    http_status = 422

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report  # a featurestore.validation.ViewReport


class UnauthenticatedError(FeatureStoreError):
    """A request to a server that requires a bearer token had none, or a wrong one."""

    grpc_status = "UNAUTHENTICATED"
    http_status = 401


class PermissionDeniedError(FeatureStoreError):
    """A serving request's bearer token lacks the scope it needs (push), or a push reached a
    server without tokens from beyond loopback."""

    grpc_status = "PERMISSION_DENIED"
    http_status = 403


class ResourceExhaustedError(FeatureStoreError):
    """The server is answering as many bytes as its budget allows: retry shortly."""

    grpc_status = "RESOURCE_EXHAUSTED"
    http_status = 429


class AnswerTooLargeError(ResourceExhaustedError):
    """The answer would pass the message size limit: ask for fewer entities or features."""

    http_status = 413


class TooManyFailedTokensError(ResourceExhaustedError):
    """Too many wrong bearer tokens from the caller's address (or from all addresses) within a
    window: no token is checked, a correct one included, for ``retry_after`` seconds
    (RESOURCE_EXHAUSTED, HTTP 429 with Retry-After)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OnDemandError(FeatureStoreError):
    """An on-demand view cannot compute this request's values: its function raised, returned
    the wrong type or length, or the repo's code differs from the applied one. The message
    names the view (never a traceback: the server logs that)."""

    grpc_status = "FAILED_PRECONDITION"
    http_status = 422


class OnDemandTimeoutError(OnDemandError):
    """An on-demand view's function did not finish within the request's deadline."""

    grpc_status = "DEADLINE_EXCEEDED"
    http_status = 504


class ViewsFailedError(FeatureStoreError):
    """Some views of an ingestion or materialization failed (each alone); the others were written.

    ``errors`` maps each failed view to its own error (a ValidationError, a SourceError);
    ``failed`` to its message; ``result`` is what the run did for the others.
    """

    grpc_status = "FAILED_PRECONDITION"
    http_status = 422

    def __init__(self, errors: Mapping[str, FeatureStoreError], result: Any) -> None:
        self.errors = dict(errors)
        self.failed = {view: e.message for view, e in self.errors.items()}
        self.result = result
        noun = "feature view" if len(self.failed) == 1 else f"{len(self.failed)} feature views"
        reasons = "; ".join(f"{view!r}: {why}" for view, why in self.failed.items())
        super().__init__(f"{noun} failed, the others were written: {reasons}")
