"""The console's FastAPI app: access control, error pages, and the routes of each page group."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from featurestore.config import Config
from featurestore.errors import FeatureStoreError, NotAppliedError, NotFoundError
from featurestore.serving.auth import Tokens
from featurestore.serving.auth_limit import Limits, LoginLimiter, TooManyLogins
from featurestore.ui import filters, security
from featurestore.ui.lookups import LookupRates
from featurestore.ui.reader import StoreReader

if TYPE_CHECKING:
    from featurestore.serving.metrics import ServingMetrics

HERE = Path(__file__).parent
# Paths open without a token: the login page itself and the stylesheet it uses.
OPEN_PATHS = ("/login", "/static/")


@dataclass
class Console:
    """What every page needs: the store, its reader, the templates and where the console lives."""

    config: Config
    reader: StoreReader
    templates: jinja2.Environment
    prefix: str = ""
    metrics: ServingMetrics | None = None
    nav: list[tuple[str, str]] = field(default_factory=list)
    logout: bool = False  # tokens are configured: a login to leave
    lookups: LookupRates | None = None  # mounted in serve: its lookup rate and latency

    def url(self, path: str) -> str:
        return f"{self.prefix}{path}"

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            base=self.prefix,
            nav=self.nav,
            project=self.config.project,
            path=request.url.path,
            logout=self.logout,
            **context,
        )
        return HTMLResponse(html, status_code=status)


def templates() -> jinja2.Environment:
    # Autoescape everything: names, descriptions and tags come from users' code.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters.install(env)
    return env


def build_app(
    config: Config,
    tokens: Tokens | None,
    prefix: str = "",
    metrics: ServingMetrics | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    """The console for the repo of ``config``; ``prefix`` is where it is mounted ("" or e.g. "/ui");
    ``limits`` bound failed logins (auth_limit's defaults when None)."""
    from featurestore.ui import routes_catalog, routes_lineage, routes_monitoring, routes_runs

    # pyarrow's first compute call in a process imports pandas (~0.2 s): paid here, at start,
    # rather than by the first page that encodes keys (the health page).
    pc.add(pa.array([0]), 0)
    console = Console(config, StoreReader(config), templates(), prefix.rstrip("/"), metrics)
    console.logout = tokens is not None
    if metrics is not None:
        console.lookups = LookupRates(metrics)
    console.nav = [
        ("Catalog", console.url("/")),
        ("Versions", console.url("/versions")),
        ("Lineage", console.url("/lineage")),
        ("Runs", console.url("/runs")),
        ("Health", console.url("/health")),
        ("Statistics", console.url("/statistics")),
    ]
    access = security.Access(tokens, console.prefix, LoginLimiter(limits))

    def too_many(
        request: Request, e: TooManyLogins, template: str = "error.html", **context: Any
    ) -> Response:
        response = console.page(request, template, 429, title=_title(429), message=e.message, **context)
        response.headers["Retry-After"] = str(e.retry_after)
        return response

    app = FastAPI(title="featurestore console", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount(console.url("/static"), StaticFiles(directory=HERE / "static"), name="static")
    if console.prefix:  # mounted under a path: its bare path leads to the catalog

        @app.get(console.prefix, include_in_schema=False)
        def home() -> Response:
            return RedirectResponse(console.url("/"), status_code=307)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if not any(path.startswith(console.url(p)) for p in OPEN_PATHS):
            try:
                verdict = access.verdict(request)
            except TooManyLogins as e:
                return too_many(request, e)
            if verdict == "login":
                return RedirectResponse(access.login_url(request), status_code=303)
            if verdict != "ok":
                message = LOOPBACK_MESSAGE if verdict == "remote" else SCOPE_MESSAGE
                return console.page(request, "error.html", 403, title="Not allowed", message=message)
        response: Response = await call_next(request)
        return response

    app.middleware("http")(security.add_headers)  # error pages and redirects get them too

    @app.middleware("http")
    async def timed(request: Request, call_next: Any) -> Response:
        # The server's own time per page, for the browser's developer tools and benchmarks/ui.py.
        started = time.perf_counter()
        response: Response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    @app.exception_handler(FeatureStoreError)
    async def store_error(request: Request, e: FeatureStoreError) -> Response:
        if isinstance(e, NotAppliedError):
            return console.page(request, "error.html", 200, title="Nothing applied", message=e.message)
        status = 404 if isinstance(e, NotFoundError) else e.http_status
        return console.page(request, "error.html", status, title=_title(status), message=e.message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> Response:
        return console.page(
            request, "error.html", e.status_code, title=_title(e.status_code), message=e.detail
        )

    @app.get(console.url("/login"), response_class=HTMLResponse)
    def login_page(request: Request) -> Response:
        return console.page(
            request,
            "login.html",
            next=security.safe_next(request.query_params.get("next"), console.prefix),
            tokens=tokens is not None,
            refused=False,
        )

    @app.post(console.url("/login"), response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        # The one POST: it only sets the cookie, and only from a page of this console.
        if not security.same_origin(request):
            return console.page(request, "error.html", 403, title="Not allowed", message=CROSS_SITE)
        form = await security.read_form(request)
        target = security.safe_next(form.get("next"), console.prefix)
        token = form.get("token", "").strip()
        try:
            scopes = access.scopes(request, token) if tokens is not None else None
        except TooManyLogins as e:
            return too_many(request, e, "login.html", next=target, tokens=True, refused=False)
        if scopes is None:
            return console.page(
                request, "login.html", 401, next=target, tokens=tokens is not None, refused=True
            )
        response = RedirectResponse(target, status_code=303)
        access.set_cookie(request, response, token)
        return response

    @app.post(console.url("/logout"))
    async def logout(request: Request) -> Response:
        if not security.same_origin(request):
            return console.page(request, "error.html", 403, title="Not allowed", message=CROSS_SITE)
        response = RedirectResponse(console.url("/login"), status_code=303)
        access.clear_cookie(request, response)
        return response

    for group in (routes_catalog, routes_lineage, routes_runs, routes_monitoring):
        group.register(app, console)
    return app


LOOPBACK_MESSAGE = security.LOOPBACK_ONLY
SCOPE_MESSAGE = "this bearer token does not have the 'read' scope the console needs"
CROSS_SITE = "this form may only be sent from the console's own pages"


def _title(status: int) -> str:
    return {
        400: "Bad request",
        401: "Not logged in",
        403: "Not allowed",
        404: "Not found",
        429: "Too many failed logins",
        503: "Busy",
    }.get(status, "Error")


MOUNT = "/ui"  # where ``featurestore serve --ui`` serves the console


def mounted(config: Config, tokens: Tokens | None, metrics: ServingMetrics) -> FastAPI:
    """The console as ``serve --ui`` mounts it at MOUNT, with the server's tokens and metrics."""
    return build_app(config, tokens, MOUNT, metrics)
