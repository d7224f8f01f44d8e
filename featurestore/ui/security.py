"""Who may see the console, and the headers every page carries.

The console takes the server's bearer tokens (``serving/auth.py``: the same file, environment
and scopes; ``read`` is needed). A browser cannot send a bearer header, so a login form puts
the token in a cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page
sends it, which with GET-only pages makes the console CSRF-safe), Secure under TLS. With no
token configured the console answers loopback clients only, as the server takes pushes.
Every token a client presents (form, cookie or header) is checked through ``serving/auth_limit``,
which refuses checks after too many failures (429).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from featurestore.serving.auth import READ, Tokens, bearer, is_loopback
from featurestore.serving.auth_limit import LoginLimiter

COOKIE = "featurestore_ui_token"
MAX_FORM_BYTES = 4096  # a token and a page to go back to
# Everything from the console itself: no inline script or style, no other origin, no framing
# by other sites, forms post only here.
CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}
LOOPBACK_ONLY = (
    "this console has no bearer tokens configured, so it answers only on this machine (loopback); "
    "configure tokens (FEATURESTORE_AUTH_TOKENS or --auth-tokens-file) to open it to others"
)


class Access:
    """Decides each request: allowed, sent to the login page, or refused."""

    def __init__(self, tokens: Tokens | None, prefix: str = "", limiter: LoginLimiter | None = None) -> None:
        self.tokens = tokens
        self.prefix = prefix
        self.limiter = limiter if limiter is not None else LoginLimiter()  # it has a len: may be falsy

    def token_of(self, request: Request) -> str | None:
        return request.cookies.get(COOKIE) or bearer(request.headers.get("authorization"))

    def scopes(self, request: Request, token: str) -> frozenset[str] | None:
        """The scopes of a token the client presents, None if it is not one of ours; raises
        TooManyLogins, without checking the token, while the client (or every client) is
        locked out."""
        client = client_address(request)
        self.limiter.check(client)
        scopes = self.tokens.scopes(token) if self.tokens is not None else None
        if scopes is None:
            self.limiter.failed(client)
        else:
            self.limiter.succeeded(client)
        return scopes

    def verdict(self, request: Request) -> str:
        """``ok``, ``login`` (no valid token), ``scope`` (a token without read) or ``remote``
        (no tokens configured and the client is not on this machine); raises TooManyLogins
        when a token would be checked during a lockout."""
        if self.tokens is None:
            return "ok" if is_loopback(client_address(request)) else "remote"
        token = self.token_of(request)
        if not token:  # nothing guessed: straight to the login page
            return "login"
        scopes = self.scopes(request, token)
        if scopes is None:
            return "login"
        return "ok" if READ in scopes else "scope"

    def login_url(self, request: Request) -> str:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return f"{self.prefix}/login?next={quote(here, safe='')}"

    def set_cookie(self, request: Request, response: Response, token: str) -> None:
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=self.prefix or "/",
        )

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=self.prefix or "/",
        )


def client_address(request: Request) -> str:
    """The peer's address as the socket gives it (a proxy's own, behind one: see the README)."""
    return request.client.host if request.client else ""


def same_origin(request: Request) -> bool:
    """Whether a POST comes from a page of this console. Browsers say so in Sec-Fetch-Site
    (and in Origin, which some send as "null"); a client that sends neither is no browser
    tricked by another site's page (curl, a script), which could send the token anyway."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def read_form(request: Request) -> dict[str, str]:
    """A small url-encoded form's fields (first value of each); oversized bodies read as empty."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def safe_next(target: str | None, prefix: str) -> str:
    """Where to go after logging in: a path of this console only (never another site)."""
    home = f"{prefix}/"
    if not target or not target.startswith(f"{prefix}/") or target.startswith("//") or "\\" in target:
        return home
    return target


async def add_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response
