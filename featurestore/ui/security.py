"""Who may see the console, and the headers every page carries.

The console takes the server's bearer tokens (``serving/auth.py``: the same file, environment
and scopes; ``read`` is needed). A browser cannot send a bearer header, so a login form puts
the token in a cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page
sends it, which with GET-only pages makes the console CSRF-safe), Secure under TLS. With no
token configured the console answers loopback clients only, as the server takes pushes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from featurestore.serving.auth import READ, Tokens, bearer, is_loopback

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

    def __init__(self, tokens: Tokens | None, prefix: str = "") -> None:
        self.tokens = tokens
        self.prefix = prefix

    def token_of(self, request: Request) -> str | None:
        return request.cookies.get(COOKIE) or bearer(request.headers.get("authorization"))

    def verdict(self, request: Request) -> str:
        """``ok``, ``login`` (no valid token), ``scope`` (a token without read) or ``remote``
        (no tokens configured and the client is not on this machine)."""
        if self.tokens is None:
            return "ok" if is_loopback(request.client.host if request.client else None) else "remote"
        scopes = self.tokens.scopes(self.token_of(request))
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
