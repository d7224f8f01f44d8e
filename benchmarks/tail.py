"""No stalls (issue 22): lookup latency tails over gRPC and HTTP/1.1, beside echo servers.

    .venv/bin/python benchmarks/tail.py --seconds 10 --runs 2
    .venv/bin/python benchmarks/tail.py --seconds 10 --runs 2 --no-freeze --nagle  # and fixes off

A stall shows as a tail: 1-3% of requests waiting ~40 ms for the peer's delayed ACK (Nagle's
algorithm holding a small second write) or for a timer. The target: p999 within 3x of p50 at
concurrency 1 and 8, over gRPC and HTTP.

  ours     `featurestore serve` (one process), GetOnlineFeatures and POST /v1/online-features,
           one entity of the trip_model service (16 features), h2load (`-c N -m 1`; `--h1` for
           HTTP), per-request latencies from its --log-file
  limits   driven by the same h2load command in the same rounds, interleaved: a bare grpc.aio
           server answering our exact response bytes, and a bare uvicorn app (the server and
           options we run) answering our exact JSON bytes. On a shared, loaded machine the
           scheduler makes tails of its own; the limits show how much.
  client   featurestore.Client.get_online_features in a loop, beside a bare grpc channel call
           sending the same request bytes to the same server, interleaved
  --nagle  also runs our server with asyncio's TCP_NODELAY left off (the state before it was
           set everywhere): the benchmark must see the ~40 ms signature there.
  --no-freeze  also runs our server without its gc.freeze() at startup (before the fix):
           full collections walk the whole heap while requests wait.

Results: benchmarks/results/tail.json, tail-latency.png, and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from online import (
    BIN,
    METHOD,
    ROOT,
    SERVICE,
    background,
    free_port,
    grpc_body,
    h2load_command,
    prepare,
    redis_server,
    run_cli,
    run_header,
    wait_port,
)

# Histogram bucket upper edges in ms (the last one open): log2 steps.
EDGES = [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128]

# Our server with a fix flipped off, to show what it changes (argv[1]: "nagle" and/or "freeze"):
# nagle leaves Nagle on for asyncio's sockets (HTTP; grpc's C core sets TCP_NODELAY itself),
# as uvicorn had on a socket that did not say IPPROTO_TCP before commit bd045c4; freeze makes
# gc.freeze() a no-op, so full collections walk the whole heap as before the server froze it.
FLIPPED_SERVER = """
import gc, sys
import asyncio.base_events
flips = sys.argv.pop(1)
if "nagle" in flips:
    asyncio.base_events._set_nodelay = lambda sock: None
if "freeze" in flips:
    gc.freeze = lambda: None
from featurestore.cli import main
sys.argv = ["featurestore", *sys.argv[1:]]
main()
"""

# A bare uvicorn app answering fixed bytes: the HTTP limit (same server, same options).
HTTP_ECHO = """
import sys, uvicorn
body = open(sys.argv[2], "rb").read()
headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
            lifespan="off")
"""

GRPC_ECHO = """
import asyncio, sys, grpc
response = open(sys.argv[2], "rb").read()
async def handler(request, context):
    return response
async def main():
    server = grpc.aio.server()
    method = grpc.unary_unary_rpc_method_handler(handler, request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "featurestore.serving.v1.FeatureServing", {"GetOnlineFeatures": method})])
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""


def h2load_latencies(url: str, body: bytes, concurrency: int, seconds: int, extra: list[str]) -> list[float]:
    """Per-request latencies in ms of successful requests (h2load --log-file)."""
    with tempfile.TemporaryDirectory() as tmp:
        data, log = Path(tmp) / "body", Path(tmp) / "log"
        data.write_bytes(body)
        logged = ["--warm-up-time", "1", "--log-file", str(log)]
        cmd = h2load_command(url, data, concurrency, seconds, *logged, *extra)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    ok = [float(r[2]) / 1000 for r in rows if r[1] == "200"]
    # The log may hold a request cut short by the end of the run (status -1); h2load's own
    # count says whether any failed.
    if not ok or " 0 failed, 0 errored" not in out:
        raise RuntimeError(f"h2load failed: {out}")
    return ok


def summary(ms: list[float]) -> dict[str, Any]:
    xs = sorted(ms)

    def at(q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    counts = [0] * (len(EDGES) + 1)
    for x in xs:
        counts[next((i for i, e in enumerate(EDGES) if x <= e), len(EDGES))] += 1
    p50, p99, p999 = at(0.5), at(0.99), at(0.999)
    return {
        "requests": len(xs),
        "p50_ms": p50,
        "p99_ms": p99,
        "p999_ms": p999,
        "max_ms": xs[-1],
        "p999_over_p50": p999 / p50,
        "over_30ms": sum(x > 30 for x in xs),
        "histogram": counts,
    }


def client_loop(port: int, entities: dict[str, list[int]], body: bytes, calls: int) -> dict[str, list[float]]:
    """featurestore.Client against a bare channel call of the same bytes, interleaved (ms)."""
    import grpc

    from featurestore import Client

    ours: list[float] = []
    bare: list[float] = []
    with Client(f"127.0.0.1:{port}") as client, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        for i in range(calls + 200):  # the first 200 of each warm up
            t = time.perf_counter()
            client.get_online_features(SERVICE, entities)
            a = time.perf_counter() - t
            t = time.perf_counter()
            call(body[5:], timeout=5)
            b = time.perf_counter() - t
            if i >= 200:
                ours.append(a * 1000)
                bare.append(b * 1000)
    return {"client": ours, "bare channel": bare}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="per h2load point")
    parser.add_argument("--runs", type=int, default=2, help="rounds, every series in each")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--calls", type=int, default=3000, help="Client calls per round")
    parser.add_argument("--nagle", action="store_true", help="also our server with Nagle on (HTTP)")
    parser.add_argument("--no-freeze", action="store_true", help="also our server without gc.freeze()")
    parser.add_argument("--name", default="tail", help="results/NAME.json and NAME-latency.png")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    repo = prepare("demo")
    load_before = os.getloadavg()
    samples: dict[str, list[float]] = {}

    with redis_server() as redis_port, ExitStack() as stack:
        os.environ["FEATURESTORE_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        env = dict(os.environ)
        run_cli(env, "apply", "--repo", str(repo))
        run_cli(env, "materialize", "--repo", str(repo))
        import pyarrow.parquet as pq

        rows = pq.read_table(repo / "data" / "entity_rows.parquet", columns=["driver_id", "customer_id"])
        entities = {
            "driver_id": rows.column("driver_id").to_pylist()[:1],
            "customer_id": rows.column("customer_id").to_pylist()[:1],
        }
        body = grpc_body(entities["driver_id"], entities["customer_id"])
        json_body = json.dumps({"feature_service": SERVICE, "entities": entities}).encode()

        servers: dict[str, tuple[int, int]] = {}  # name -> (grpc port, http port)
        variants = {"ours": [str(BIN / "featurestore")]}
        if args.no_freeze:
            variants["ours, no gc.freeze"] = [str(BIN / "python"), "-c", FLIPPED_SERVER, "freeze"]
        if args.nagle:
            variants["ours, Nagle on"] = [str(BIN / "python"), "-c", FLIPPED_SERVER, "nagle"]
        for name, cmd in variants.items():
            g, h = free_port(), free_port()
            stack.enter_context(
                background(
                    [*cmd, "serve", "--repo", str(repo), "--grpc-port", str(g), "--http-port", str(h)], g, env
                )
            )
            wait_port(h)
            servers[name] = (g, h)
        g, h = servers["ours"]
        response = grpc_response(g, body)
        json_response = http_response(h, json_body)
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        (Path(tmp) / "grpc").write_bytes(response)
        (Path(tmp) / "http").write_bytes(json_response)
        ge, he = free_port(), free_port()
        stack.enter_context(background([str(BIN / "python"), "-c", GRPC_ECHO, str(ge), f"{tmp}/grpc"], ge))
        stack.enter_context(background([str(BIN / "python"), "-c", HTTP_ECHO, str(he), f"{tmp}/http"], he))

        grpc_headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        http_headers = ["--h1", "-H", "content-type: application/json"]
        targets = {**{n: p for n, p in servers.items()}, "echo": (ge, he)}
        for run in range(args.runs):
            for c in concurrencies:
                for name, (gp, hp) in targets.items():  # interleaved: ours, (fixes off), echo
                    key = f"grpc c={c} {name}"
                    url = f"http://127.0.0.1:{gp}{METHOD}"
                    samples.setdefault(key, []).extend(
                        h2load_latencies(url, body, c, args.seconds, grpc_headers)
                    )
                    key = f"http c={c} {name}"
                    url = f"http://127.0.0.1:{hp}/v1/online-features"
                    samples.setdefault(key, []).extend(
                        h2load_latencies(url, json_body, c, args.seconds, http_headers)
                    )
                    print(f"  run {run + 1} c={c} {name}: done", file=sys.stderr)
            for key, ms in client_loop(g, entities, body, args.calls).items():
                samples.setdefault(f"python c=1 {key}", []).extend(ms)

    result = {
        **run_header("tail.py", load_before),
        "histogram_edges_ms": EDGES,
        "series": {k: summary(v) for k, v in samples.items()},
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    chart(samples, out / f"{args.name}-latency.png")
    print(markdown(result))


def grpc_response(port: int, body: bytes) -> bytes:
    """Our server's GetOnlineFeatures answer to ``body`` (a gRPC frame): what the echo servers
    answer (here and in cpu.py)."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        return bytes(call(body[5:], timeout=5))


def http_response(port: int, body: bytes) -> bytes:
    """Our server's JSON answer to ``body``: what the HTTP echo answers."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/online-features", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return bytes(answer.read())


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['when']}, load average {result['load_average_before']} -> {result['load_average_after']}",
        "",
        "| series | requests | p50 ms | p99 ms | p999 ms | max ms | p999/p50 | > 30 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, s in result["series"].items():
        lines.append(
            f"| {key} | {s['requests']:,} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['p999_ms']:.2f} "
            f"| {s['max_ms']:.1f} | **{s['p999_over_p50']:.1f}** | {s['over_30ms']} |"
        )
    edges = result["histogram_edges_ms"]
    heads = [f"≤{e:g}" for e in edges] + [f">{edges[-1]:g}"]
    lines += [
        "",
        "Histogram (requests per latency bucket, ms):",
        "",
        "| series | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]
    for key, s in result["series"].items():
        lines.append(f"| {key} | " + " | ".join(str(n) for n in s["histogram"]) + " |")
    return "\n".join(lines)


def chart(samples: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({" ".join(k.split(" ")[:2]) for k in samples})  # transport and concurrency
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    bins = [0.05 * 1.25**i for i in range(40)]
    for ax, panel in zip(axes[0], panels, strict=True):
        for key, ms in samples.items():
            if key.startswith(panel + " "):
                ax.hist(ms, bins=bins, histtype="step", label=key[len(panel) + 1 :], linewidth=1.3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axvline(40, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(panel)
        ax.set_xlabel("latency, ms (log)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("requests (log)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
