"""Bearer-token authentication for `featurestore serve`, on gRPC and HTTP alike.

Tokens come from ``FEATURESTORE_AUTH_TOKENS`` (comma separated) and from a file, one a line
(``--auth-tokens-file``, ``FEATURESTORE_AUTH_TOKENS_FILE`` or ``[serving] auth_tokens_file``);
never from featurestore.toml itself, which tends to be committed. With no token configured
the server is open, as before. The file is read again when it changes (``Tokens``).

The check runs before anything reads the request: a gRPC interceptor answers
UNAUTHENTICATED before the message is even parsed, an ASGI middleware answers 401 before
routing, so a caller without a token learns nothing, not even whether a feature exists.
Health checks stay open (probes carry no secrets); everything else, server reflection and
the OpenAPI docs included, needs a token: they describe the API, and clients that use them
(grpcurl -H, an HTTP client) can send a header as easily as for a lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from featurestore.config import Config
from featurestore.errors import ConfigError
from featurestore.secrets import remember

log = logging.getLogger("featurestore.serving")

TOKENS_ENV = "FEATURESTORE_AUTH_TOKENS"
RELOAD_SECONDS = 2.0  # how often a tokens file is checked for changes
CLIENT_TOKEN_ENV = "FEATURESTORE_AUTH_TOKEN"  # what clients (featurestore get, Client) send
MIN_TOKEN_LENGTH = 16
OPEN_GRPC_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
OPEN_HTTP_PATHS = frozenset({"/healthz"})
MESSAGE = "missing or invalid bearer token (send 'authorization: Bearer <token>')"
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: valid in an HTTP header and gRPC metadata
_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class Tokens:
    """The accepted tokens, kept only as SHA-256 digests: a repr, log or pickle shows none.

    With a ``file``, its tokens are read again when it changes (checked at most every
    ``check_interval`` seconds, on a request or a health check), so tokens rotate without a
    restart: write the new token beside the old, move clients over, remove the old. A file
    that becomes unreadable or holds no token fails closed: every request is refused (the
    environment's tokens too) and ``problem`` says why, until the file holds tokens again.
    Keeping the old tokens instead would keep a token someone meant to revoke valid.
    """

    def __init__(
        self,
        tokens: Iterable[str],
        file: Path | None = None,
        fixed: Iterable[bytes] = (),
        check_interval: float = RELOAD_SECONDS,
    ) -> None:
        self._digests = tuple(_digest(t) for t in dict.fromkeys(tokens))
        if not self._digests:
            raise ConfigError("no bearer tokens given")
        self.file = file
        self.check_interval = check_interval
        self._fixed = tuple(fixed)  # digests of the environment's tokens: kept across reloads
        self._file_state = _file_state(file) if file else None
        self._checked_at = time.monotonic()
        self._problem: str | None = None

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"Tokens({len(self)} configured)"

    def problem(self) -> str | None:
        """Why every request is refused (the tokens file broke), None while tokens are in force."""
        if self.file is not None and time.monotonic() - self._checked_at >= self.check_interval:
            self._reload()
        return self._problem

    def accepts(self, token: str | None) -> bool:
        """Whether ``token`` is one of ours, in time independent of which token and where it differs."""
        self.problem()  # reads the file again when it is due
        # Digests have one length, so compare_digest's time does not depend on the token's
        # length; every token is compared (no early exit), so neither does the position of a match.
        candidate = _digest(token or "")
        ok = False
        for digest in self._digests:
            ok |= hmac.compare_digest(digest, candidate)
        return ok and bool(token)

    def _reload(self) -> None:
        assert self.file is not None
        self._checked_at = time.monotonic()
        state = _file_state(self.file)
        if state == self._file_state:
            return
        self._file_state = state
        try:
            tokens = read_tokens_file(self.file)
        except ConfigError as e:
            self._digests = ()
            self._problem = f"{e.message}: every request is refused until it holds tokens again"
            log.error("%s", self._problem)
            return
        digests = tuple(dict.fromkeys((*self._fixed, *(_digest(t) for t in tokens))))
        if digests != self._digests or self._problem:
            self._problem = None
            self._digests = digests  # one assignment: a request sees the old set or the new
            log.warning("bearer tokens reloaded from %s: %d token(s) in force", self.file, len(self))


def _file_state(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a changed file (a rewrite or a new file moved over it, as Kubernetes does)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _check(token: str, where: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise ConfigError(
            f"bearer token {where} has spaces or non-ASCII characters; generate one with {_GENERATE}"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"bearer token {where} is {len(token)} characters; use at least {MIN_TOKEN_LENGTH}, "
            f"e.g. from {_GENERATE}"
        )
    remember(token)
    return token


def read_tokens_file(path: Path) -> list[str]:
    """The tokens in ``path``: one a line; blank lines and lines starting with # are skipped."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"cannot read the bearer tokens file {path}: {getattr(e, 'strerror', None) or e}"
        ) from None
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            tokens.append(_check(line, f"on line {number} of {path}"))
    if not tokens:  # refuse rather than serve without authentication by surprise
        raise ConfigError(f"the bearer tokens file {path} holds no tokens (one a line)")
    return tokens


def load_tokens(
    config: Config, tokens_file: Path | None = None, env: Mapping[str, str] | None = None
) -> Tokens | None:
    """The tokens a server accepts (``tokens_file`` overrides the config's), None if none are set."""
    env = os.environ if env is None else env
    tokens = [
        _check(t.strip(), f"number {i} in {TOKENS_ENV}")
        for i, t in enumerate(env.get(TOKENS_ENV, "").split(","), 1)
        if t.strip()
    ]
    path = tokens_file or config.auth_tokens_file
    if path is None:
        return Tokens(tokens) if tokens else None
    return Tokens([*tokens, *read_tokens_file(path)], path, [_digest(t) for t in tokens])


def bearer(header: str | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` value, None if it is not one."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def client_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that carries ``token`` (or FEATURESTORE_AUTH_TOKEN when None)."""
    token = token if token is not None else os.environ.get(CLIENT_TOKEN_ENV) or None
    return (("authorization", f"Bearer {token}"),) if token else ()


# -- gRPC -------------------------------------------------------------------------------------


async def _deny(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)


# A stream-stream handler without a deserializer: it suits any method, never parses the
# request and does not wait for a first message before answering.
DENIED = grpc.stream_stream_rpc_method_handler(_deny)


class BearerInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call but health checks unless it carries one of ``tokens``."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if handler_call_details.method in OPEN_GRPC_METHODS:
            return await continuation(handler_call_details)
        header = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                header = value if isinstance(value, str) else None
                break
        if self.tokens.accepts(bearer(header)):
            return await continuation(handler_call_details)
        return DENIED


def grpc_interceptors(tokens: Tokens | None) -> list[grpc.aio.ServerInterceptor]:
    return [BearerInterceptor(tokens)] if tokens else []


# -- HTTP -------------------------------------------------------------------------------------


class BearerMiddleware:
    """ASGI middleware: 401 with ``WWW-Authenticate: Bearer`` before routing, health open."""

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens
        self.denied = JSONResponse(
            {"error": {"code": "UNAUTHENTICATED", "message": MESSAGE}},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="featurestore"'},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_HTTP_PATHS:
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value.decode("latin-1")
                break
        if self.tokens.accepts(bearer(header)):
            await self.app(scope, receive, send)
        else:
            await self.denied(scope, receive, send)


def protect_http(app: ASGIApp, tokens: Tokens | None) -> ASGIApp:
    return BearerMiddleware(app, tokens) if tokens else app
