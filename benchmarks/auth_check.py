"""What the failed-token limit costs a request whose token is good: the bearer check timed in
process, this tree's auth.py beside main's (the check before the limit), interleaved.

    .venv/bin/python benchmarks/auth_check.py            # --calls 50000 --rounds 7

Times BearerInterceptor.intercept_service (gRPC) and BearerMiddleware.__call__ (HTTP) with a
valid token, the continuation and the app doing nothing, so the figure is the check's own
CPU time: for this tree while no check failed within the window (the usual state: one clock
read added) and after a failure from another address (the gated path: the check moves into a
handler that knows the peer; timed with that handler's gate, given a context that only has a
peer), and for main's auth.py loaded from ``git show main:...`` as a
separate module. Each round times every variant once; the median round is reported, and the
ratio to main's check measured in the same run. No servers, no sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from featurestore.serving import auth
from featurestore.serving.auth_limit import TokenLimiter

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef"
METHOD = "/featurestore.serving.v1.FeatureServing/GetOnlineFeatures"


def main_auth(ref: str) -> ModuleType:
    """main's featurestore/serving/auth.py as a module of its own (its imports are this tree's)."""
    source = subprocess.run(
        ["git", "show", f"{ref}:featurestore/serving/auth.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("auth_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["auth_before"] = module
    exec(compile(source, f"{ref}:featurestore/serving/auth.py", "exec"), module.__dict__)  # noqa: S102
    return module


class Details:
    method = METHOD
    invocation_metadata = (("authorization", f"Bearer {TOKEN}"), ("x-request-id", "abc"))


HANDLER = grpc.unary_unary_rpc_method_handler(lambda request, context: None)


async def continuation(details: Any) -> Any:
    return HANDLER


class Context:
    """What the gate asks of a call's context: its peer."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"


async def grpc_loop(interceptor: Any, calls: int) -> float:
    details = Details()
    started = time.perf_counter()
    for _ in range(calls):
        await interceptor.intercept_service(continuation, details)
    return (time.perf_counter() - started) / calls * 1e9


async def gated_loop(interceptor: Any, calls: int) -> float:
    """The interceptor, then the gate its handler runs first (lockout, token, success)."""
    details, context, scope = Details(), Context(), auth.READ
    started = time.perf_counter()
    for _ in range(calls):
        await interceptor.intercept_service(continuation, details)
        await interceptor._admit(TOKEN, scope, context)
    return (time.perf_counter() - started) / calls * 1e9


async def app(scope: Any, receive: Any, send: Any) -> None:
    return None


async def http_loop(middleware: Any, calls: int) -> float:
    scope = {
        "type": "http",
        "path": "/v1/online-features",
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"x"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
        ],
    }
    started = time.perf_counter()
    for _ in range(calls):
        await middleware(scope, None, None)
    return (time.perf_counter() - started) / calls * 1e9


def run(calls: int, rounds: int, ref: str) -> None:
    before = main_auth(ref)
    tokens_now = auth.Tokens([TOKEN])
    tokens_before = before.Tokens([TOKEN])
    quiet, gated = TokenLimiter(), TokenLimiter()
    gated.failed("10.0.0.9")  # another address failed just now: this tree takes the gated path
    variants = {
        "grpc main": lambda: grpc_loop(before.BearerInterceptor(tokens_before), calls),
        "grpc quiet": lambda: grpc_loop(auth.BearerInterceptor(tokens_now, quiet), calls),
        "grpc after a failure": lambda: gated_loop(auth.BearerInterceptor(tokens_now, gated), calls),
        "http main": lambda: http_loop(before.BearerMiddleware(app, tokens_before), calls),
        "http quiet": lambda: http_loop(auth.BearerMiddleware(app, tokens_now, quiet), calls),
        "http after a failure": lambda: http_loop(auth.BearerMiddleware(app, tokens_now, gated), calls),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}

    async def all_rounds() -> None:
        for _ in range(rounds):
            for name, loop in variants.items():
                times[name].append(await loop())

    asyncio.run(all_rounds())
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().strip()}")
    print(f"{calls} calls x {rounds} rounds; ns per check: median round, fastest round; ratios to main's")
    for name, values in times.items():
        base = times[f"{name.split()[0]} main"]
        median, fastest = statistics.median(values), min(values)
        print(
            f"  {name:22} median {median:6.0f} ns {median / statistics.median(base):5.2f}x"
            f"   fastest {fastest:6.0f} ns {fastest / min(base):5.2f}x  (+{fastest - min(base):.0f} ns)"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ref", default="main", help="the git ref whose auth.py is the baseline")
    args = parser.parse_args()
    run(args.calls, args.rounds, args.ref)


if __name__ == "__main__":
    cli()
