"""Bearer-token authentication for `featurestore serve`, on gRPC and HTTP alike.

Tokens come from ``FEATURESTORE_AUTH_TOKENS`` (comma separated) and from a file, one a line
(``--auth-tokens-file``, ``FEATURESTORE_AUTH_TOKENS_FILE`` or ``[serving] auth_tokens_file``);
never from featurestore.toml itself, which tends to be committed. With no token configured
the server is open, as before, except that pushes are taken only from loopback. The file is
read again when it changes (``Tokens``).

Each token has scopes: ``read`` (lookups, listing, reflection, docs, metrics) and ``push``
(``PushFeatures``, ``POST /v1/push``). An entry is the token, then its scopes separated by
spaces (as OAuth writes scopes): ``TOKEN`` alone is ``read``, as every token was before scopes
existed, so old files keep their meaning; ``TOKEN push`` may only push; ``TOKEN read push``
both. The same in ``FEATURESTORE_AUTH_TOKENS``, whose entries are comma separated
(``"tokA, tokB read push"``). A valid token without the scope a call needs gets
PERMISSION_DENIED (HTTP 403).

The check runs before anything reads the request: a gRPC interceptor answers
UNAUTHENTICATED before the message is even parsed, an ASGI middleware answers 401 before
routing, so a caller without a token learns nothing, not even whether a feature exists.
Health checks stay open (probes carry no secrets); everything else, server reflection and
the OpenAPI docs included, needs a token: they describe the API, and clients that use them
(grpcurl -H, an HTTP client) can send a header as easily as for a lookup.

Wrong tokens are bounded (``auth_limit``: one ``TokenLimiter`` per server process, shared by
both transports): each counts against the peer's address (gRPC ``context.peer()`` without its
port, the HTTP client's host) and overall; past the limit, calls that carry a token are
refused RESOURCE_EXHAUSTED (HTTP 429 with Retry-After) without the token being checked, a
correct one included. A call without any token is not a guess: it is answered
UNAUTHENTICATED and not counted. While no check failed within the window (the usual state)
the only added cost is one clock read; afterwards a gRPC call's peer is known only inside its
handler, so the check moves there, still before the request is parsed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import grpc
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from featurestore.config import Config
from featurestore.errors import ConfigError, TooManyFailedTokensError
from featurestore.secrets import remember
from featurestore.serving.auth_limit import TokenLimiter

log = logging.getLogger("featurestore.serving")

TOKENS_ENV = "FEATURESTORE_AUTH_TOKENS"
RELOAD_SECONDS = 2.0  # how often a tokens file is checked for changes
CLIENT_TOKEN_ENV = "FEATURESTORE_AUTH_TOKEN"  # what clients (featurestore get, Client) send
MIN_TOKEN_LENGTH = 16
OPEN_GRPC_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
OPEN_HTTP_PATHS = frozenset({"/healthz"})
MESSAGE = "missing or invalid bearer token (send 'authorization: Bearer <token>')"
READ, PUSH = "read", "push"
SCOPES = (READ, PUSH)
PUSH_GRPC_METHOD = "/featurestore.serving.v1.FeatureServing/PushFeatures"
PUSH_HTTP_PATH = "/v1/push"
LOOPBACK_ONLY = (
    "pushes are taken only from loopback when the server has no bearer tokens: "
    "configure tokens with the push scope (see 'Securing the server')"
)
Grant = tuple[bytes, frozenset[str]]  # a token's digest and its scopes
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
        tokens: Iterable[str | tuple[str, Iterable[str]]],
        file: Path | None = None,
        fixed: Iterable[Grant] = (),
        check_interval: float = RELOAD_SECONDS,
    ) -> None:
        # ``tokens``: plain tokens (scope read) or (token, scopes) pairs
        self._grants = _grants((t, (READ,)) if isinstance(t, str) else t for t in tokens)
        if not self._grants:
            raise ConfigError("no bearer tokens given")
        self.file = file
        self.check_interval = check_interval
        self._fixed = tuple(fixed)  # the environment's tokens: kept across reloads
        self._file_state = _file_state(file) if file else None
        self._checked_at = time.monotonic()
        self._problem: str | None = None

    def __len__(self) -> int:
        return len(self._grants)

    def __repr__(self) -> str:
        return f"Tokens({len(self)} configured)"

    def problem(self) -> str | None:
        """Why every request is refused (the tokens file broke), None while tokens are in force."""
        if self.file is not None and time.monotonic() - self._checked_at >= self.check_interval:
            self._reload()
        return self._problem

    def accepts(self, token: str | None) -> bool:
        """Whether ``token`` is one of ours, in time independent of which token and where it differs."""
        return self.scopes(token) is not None

    def scopes(self, token: str | None) -> frozenset[str] | None:
        """The scopes of ``token``, None if it is not one of ours (compared in constant time)."""
        self.problem()  # reads the file again when it is due
        # Digests have one length, so compare_digest's time does not depend on the token's
        # length; every token is compared (no early exit), so neither does the position of a match.
        candidate = _digest(token or "")
        found: frozenset[str] | None = None
        for digest, scopes in self._grants:
            if hmac.compare_digest(digest, candidate):
                found = scopes
        return found if token else None

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
            self._grants = ()
            self._problem = f"{e.message}: every request is refused until it holds tokens again"
            log.error("%s", self._problem)
            return
        grants = _grants([*((d, s) for d, s in self._fixed), *((_digest(t), s) for t, s in tokens)])
        if grants != self._grants or self._problem:
            self._problem = None
            self._grants = grants  # one assignment: a request sees the old set or the new
            log.warning("bearer tokens reloaded from %s: %d token(s) in force", self.file, len(self))


def _grants(entries: Iterable[tuple[str | bytes, Iterable[str]]]) -> tuple[Grant, ...]:
    """Digest -> scopes, in first-seen order; a token given twice has the union of its scopes."""
    merged: dict[bytes, frozenset[str]] = {}
    for token, scopes in entries:
        digest = token if isinstance(token, bytes) else _digest(token)
        merged[digest] = merged.get(digest, frozenset()) | frozenset(scopes)
    return tuple(merged.items())


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


def parse_entry(entry: str, where: str) -> tuple[str, frozenset[str]]:
    """``TOKEN [SCOPE ...]`` (scopes separated by spaces; none: read) as (token, scopes)."""
    token, *scopes = entry.split()
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:  # most likely a token with a space in it: never echo the words
        raise ConfigError(
            f"bearer token {where} has spaces or non-ASCII characters, or is followed by "
            f"{len(unknown)} word(s) that are not scopes (a token may be followed by scopes "
            f"separated by spaces: {', '.join(SCOPES)}); generate a token with {_GENERATE}"
        )
    return _check(token, where), frozenset(scopes or (READ,))


def read_tokens_file(path: Path) -> list[tuple[str, frozenset[str]]]:
    """The tokens in ``path`` with their scopes: one ``TOKEN [SCOPE ...]`` a line; blank lines
    and lines starting with # are skipped."""
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
            tokens.append(parse_entry(line, f"on line {number} of {path}"))
    if not tokens:  # refuse rather than serve without authentication by surprise
        raise ConfigError(f"the bearer tokens file {path} holds no tokens (one a line)")
    return tokens


def load_tokens(
    config: Config, tokens_file: Path | None = None, env: Mapping[str, str] | None = None
) -> Tokens | None:
    """The tokens a server accepts (``tokens_file`` overrides the config's), None if none are set."""
    env = os.environ if env is None else env
    tokens = [
        parse_entry(t.strip(), f"number {i} in {TOKENS_ENV}")
        for i, t in enumerate(env.get(TOKENS_ENV, "").split(","), 1)
        if t.strip()
    ]
    path = tokens_file or config.auth_tokens_file
    if path is None:
        return Tokens(tokens) if tokens else None
    return Tokens([*tokens, *read_tokens_file(path)], path, [(_digest(t), s) for t, s in tokens])


def needed_scope(grpc_method: str | None = None, http_path: str | None = None) -> str:
    """The scope a call needs: push for pushes, read for everything else."""
    return PUSH if grpc_method == PUSH_GRPC_METHOD or http_path == PUSH_HTTP_PATH else READ


def denied_scope(scope: str) -> str:
    return f"this bearer token does not have the {scope!r} scope (see 'Securing the server')"


def is_loopback(host: str | None) -> bool:
    """Whether a peer address (an IP, or gRPC's ``ipv4:1.2.3.4:5`` form) is on this machine."""
    if not host:
        return False
    if host.startswith(("ipv4:", "ipv6:")):  # gRPC's peer: ipv4:127.0.0.1:5000, ipv6:[::1]:5000
        host = host[5:].rsplit(":", 1)[0].strip("[]")
    elif host.startswith("unix:"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1, from a dual-stack listener
    return address.is_loopback


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


def _forbid(scope: str) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[None]]:
    async def forbid(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, denied_scope(scope))

    return forbid


def _refusal(handler: grpc.RpcMethodHandler, code: str) -> grpc.RpcMethodHandler:
    handler.refusal = code  # the status metrics records for it
    return handler


# Stream-stream handlers without a deserializer: they suit any method, never parse the
# request and do not wait for a first message before answering.
DENIED = _refusal(grpc.stream_stream_rpc_method_handler(_deny), "UNAUTHENTICATED")
FORBIDDEN = {
    scope: _refusal(grpc.stream_stream_rpc_method_handler(_forbid(scope)), "PERMISSION_DENIED")
    for scope in SCOPES
}


def peer_address(peer: str | None) -> str:
    """The address of a gRPC peer without its port: ``ipv4:1.2.3.4:5`` -> ``1.2.3.4``."""
    if not peer:
        return "unknown"
    if peer.startswith(("ipv4:", "ipv6:")):  # grpc writes ipv6:%5B::1%5D:5000 (a URI)
        return unquote(peer[5:]).rsplit(":", 1)[0].strip("[]")
    return peer.split(":", 1)[0]  # unix:/path and the like: one client


class BearerInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call but health checks unless it carries one of ``tokens`` (UNAUTHENTICATED)
    with the scope the method needs (PERMISSION_DENIED); wrong tokens are bounded by ``limiter``
    (RESOURCE_EXHAUSTED during a lockout)."""

    def __init__(self, tokens: Tokens, limiter: TokenLimiter | None = None) -> None:
        self.tokens = tokens
        self.limiter = limiter if limiter is not None else TokenLimiter()  # it has a len: may be falsy

        async def wrong(request: Any, context: grpc.aio.ServicerContext) -> None:
            self.limiter.failed(peer_address(context.peer()))
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)

        self._wrong = _refusal(grpc.stream_stream_rpc_method_handler(wrong), "UNAUTHENTICATED")

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
        token = bearer(header)
        if token is None:  # no token, no guess: not counted
            return DENIED
        scope = needed_scope(grpc_method=handler_call_details.method)
        if self.limiter.quiet():  # nobody is locked out: check here, count a failure in its handler
            scopes = self.tokens.scopes(token)
            if scopes is None:
                return self._wrong
            if scope not in scopes:
                return FORBIDDEN[scope]
            return await continuation(handler_call_details)
        # The peer is known only to a handler: the checks move into one, before any parsing.
        return self._gated(await continuation(handler_call_details), token, scope)

    async def _admit(self, token: str, scope: str, context: grpc.aio.ServicerContext) -> None:
        """Aborts the call unless ``token`` may be checked for this peer, is ours and has ``scope``."""
        client = peer_address(context.peer())
        try:
            self.limiter.check(client)
        except TooManyFailedTokensError as e:
            await context.abort(grpc.StatusCode[e.grpc_status], e.message)
        scopes = self.tokens.scopes(token)
        if scopes is None:
            self.limiter.failed(client)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)
            return
        self.limiter.succeeded(client)
        if scope not in scopes:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, denied_scope(scope))

    def _gated(self, handler: grpc.RpcMethodHandler | None, token: str, scope: str) -> grpc.RpcMethodHandler:
        """``handler`` behind ``_admit``, its request parsed only once admitted."""
        admit = self._admit
        if handler is not None and handler.unary_unary is not None:
            inner, parse = handler.unary_unary, handler.request_deserializer

            async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                await admit(token, scope, context)
                return await inner(parse(raw) if parse else raw, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, response_serializer=handler.response_serializer
            )
        if handler is not None and handler.stream_stream is not None:  # server reflection
            streams, parse = handler.stream_stream, handler.request_deserializer

            async def stream(
                raw: AsyncIterator[bytes], context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                await admit(token, scope, context)

                async def requests() -> AsyncIterator[Any]:
                    async for r in raw:
                        yield parse(r) if parse else r

                answer = streams(requests(), context)
                if hasattr(answer, "__aiter__"):
                    async for response in answer:
                        yield response
                else:  # a coroutine that writes through the context
                    await answer

            return grpc.stream_stream_rpc_method_handler(
                stream, response_serializer=handler.response_serializer
            )

        # no such method (grpc's own answer, once admitted), or a kind of method we do not serve
        async def other(raw: Any, context: grpc.aio.ServicerContext) -> None:
            await admit(token, scope, context)
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

        return grpc.stream_stream_rpc_method_handler(other)


def grpc_interceptors(
    tokens: Tokens | None, limiter: TokenLimiter | None = None
) -> list[grpc.aio.ServerInterceptor]:
    return [BearerInterceptor(tokens, limiter)] if tokens else []


# -- HTTP -------------------------------------------------------------------------------------


class BearerMiddleware:
    """ASGI middleware: 401 with ``WWW-Authenticate: Bearer`` before routing, health open;
    403 for a valid token without the scope the path needs; 429 with Retry-After during a
    lockout (``limiter``), the token unchecked."""

    def __init__(self, app: ASGIApp, tokens: Tokens, limiter: TokenLimiter | None = None) -> None:
        self.app = app
        self.tokens = tokens
        self.limiter = limiter if limiter is not None else TokenLimiter()  # it has a len: may be falsy
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
        token = bearer(header)
        if token is None:  # no token, no guess: not counted
            await self.denied(scope, receive, send)
            return
        quiet = self.limiter.quiet()  # nobody locked out, no count to clear: skip the table
        client = ""
        if not quiet:
            client = _http_client(scope)
            try:
                self.limiter.check(client)
            except TooManyFailedTokensError as e:
                refused = JSONResponse(
                    {"error": {"code": e.grpc_status, "message": e.message}},
                    status_code=e.http_status,
                    headers={"Retry-After": str(e.retry_after)},
                )
                await refused(scope, receive, send)
                return
        scopes = self.tokens.scopes(token)
        if scopes is None:
            self.limiter.failed(client or _http_client(scope))
            await self.denied(scope, receive, send)
            return
        if not quiet:
            self.limiter.succeeded(client)
        needed = needed_scope(http_path=scope["path"])
        if needed not in scopes:
            forbidden = JSONResponse(
                {"error": {"code": "PERMISSION_DENIED", "message": denied_scope(needed)}}, status_code=403
            )
            await forbidden(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _http_client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def protect_http(app: ASGIApp, tokens: Tokens | None, limiter: TokenLimiter | None = None) -> ASGIApp:
    return BearerMiddleware(app, tokens, limiter) if tokens else app
