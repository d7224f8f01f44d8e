"""Materialization's time and peak RSS under DuckDB memory limits (issue 22, target 6).

    .venv/bin/python benchmarks/materialize_memlimit.py --scales small,medium --runs 3 --reuse

For each scale (the example repo of benchmarks/scale_curves.py, generated unless --reuse finds
one), each round runs, interleaved and in a rotated order: the whole `featurestore materialize
--views driver_stats,customer_profile` process once per --limits value (each sets
FEATURESTORE_DUCKDB_MEMORY_LIMIT for that process; an empty value leaves it unset, i.e.
featurestore's own default), and the raw MSET limit of scale_curves.py (same query, same bytes,
pipelined MSETs, no memory limit), each with Redis flushed and watermarks wiped before.
Reports seconds and peak RSS (ru_maxrss: VmHWM, DuckDB runs inside the process) per limit,
its ratio to the unset run and to the raw MSET limit of the same rounds.
With --tiles VIEW (an aggregation view, e.g. the example's driver_trips), each round also runs
`featurestore materialize --views VIEW` once per --tile-limits value, and with --before BIN the
same with another checkout's `featurestore` executable (the code before a change), in the same
rotation; a run that fails (e.g. DuckDB out of memory) is recorded with its exit status.

    .venv/bin/python benchmarks/materialize_memlimit.py --scales medium --runs 3 --reuse \
        --tiles driver_trips --tile-limits ,1GB,512MB,128MB,64MB --before /work/main/.venv/bin/featurestore

Results: benchmarks/results/OUT.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from online import BIN, ROOT, redis_server, wipe_online_state
from scale_curves import PLAIN_VIEWS, RAW_CHILD, flush_online, prepared_repo

LIMIT_MODE = "raw-mset"


def timed(cmd: list[str], env: dict[str, str], check: bool = True) -> tuple[float, float, bytes]:
    """(seconds, peak RSS MiB, stdout) of ``cmd``, started by GNU time: a child forked from this
    process starts with this process's pages, which ru_maxrss counts (a /bin/true forked from a
    parent of 1.7 GiB reports 1.7 GiB), so time's own small process forks it instead."""
    with tempfile.NamedTemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-o", out.name, "-f", "%M", *cmd], env=env, capture_output=True
        )
        seconds = time.perf_counter() - started
        if proc.returncode != 0 and check:
            raise RuntimeError(f"{cmd} failed: {proc.stderr.decode()}")
        rss = int(Path(out.name).read_text().split()[-1]) / 1024
        if proc.returncode != 0:  # the last line of the CLI's one-line error
            error = [x for x in proc.stderr.decode().splitlines() if x.strip()]
            return seconds, rss, f"exit {proc.returncode}: {error[0] if error else ''}".encode()
        return seconds, rss, proc.stdout


TILES, BEFORE = "tiles:", "tiles-before:"  # mode prefixes: an aggregation view, this code / before


def label(limit: str) -> str:
    for prefix, name in ((TILES, "tiles"), (BEFORE, "tiles, before")):
        if limit.startswith(prefix):
            rest = limit.removeprefix(prefix)
            return f"{name}, memory_limit {rest or 'unset'}"
    return f"cli, memory_limit {limit}" if limit else "cli, memory_limit unset"


def bench(
    scale: str,
    limits: list[str],
    runs: int,
    env: dict[str, str],
    reuse: bool,
    tiles: str = "",
    tile_limits: list[str] | None = None,
    before: str = "",
) -> dict[str, Any]:
    repo, generate_s, ingest_s = prepared_repo(scale, env, reuse)
    cmd = [str(BIN / "featurestore"), "materialize", "--views", PLAIN_VIEWS, "--repo", str(repo)]
    modes = [*limits, LIMIT_MODE]
    if tiles:
        modes += [TILES + x for x in tile_limits or limits]
        modes += [BEFORE + x for x in tile_limits or limits] if before else []
    runs_of: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for i in range(runs):
        for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:  # rotated: no fixed position
            flush_online(env["FEATURESTORE_REDIS_URL"])
            wipe_online_state(repo)
            loadavg = float(Path("/proc/loadavg").read_text().split()[0])
            if mode == LIMIT_MODE:
                raw = [str(BIN / "python"), "-c", RAW_CHILD, str(repo), PLAIN_VIEWS, "mset"]
                seconds, rss, out = timed(raw, env)
                parts = json.loads(next(x for x in out.splitlines() if x.startswith(b'{"query_s"')))
                row = {"seconds": seconds, "peak_rss_mib": rss, **parts}
            else:
                limit, run_cmd = mode, cmd
                if mode.startswith((TILES, BEFORE)):
                    exe = before if mode.startswith(BEFORE) else str(BIN / "featurestore")
                    limit = mode.split(":", 1)[1]
                    run_cmd = [exe, "materialize", "--views", tiles, "--repo", str(repo)]
                child = {k: v for k, v in env.items() if k != "FEATURESTORE_DUCKDB_MEMORY_LIMIT"}
                if limit:
                    child["FEATURESTORE_DUCKDB_MEMORY_LIMIT"] = limit
                seconds, rss, out = timed(run_cmd, child, check=run_cmd is cmd)
                row = {"seconds": seconds, "peak_rss_mib": rss}
                if out.startswith(b"exit "):
                    row["failed"] = out.decode()
            runs_of[mode].append({**row, "loadavg": loadavg})
            print(
                f"  {scale} round {i + 1}/{runs} {label(mode) if mode != LIMIT_MODE else mode}: "
                f"{row['seconds']:.2f} s, peak RSS {row['peak_rss_mib']:.0f} MiB (load {loadavg})"
                f"{' FAILED ' + row['failed'] if 'failed' in row else ''}",
                file=sys.stderr,
            )
    summary: dict[str, Any] = {
        "scale": scale,
        "repo": str(repo),
        "generate_s": generate_s,
        "ingest_s": ingest_s,
        "runs": runs_of,
    }
    for mode, rs in runs_of.items():
        failed = [r for r in rs if "failed" in r]
        rs = [r for r in rs if "failed" not in r]
        if not rs:
            summary[mode or "unset"] = {"failed": len(failed), "error": failed[0]["failed"]}
            continue
        summary[mode or "unset"] = {
            "failed": len(failed),
            "seconds_median": statistics.median(r["seconds"] for r in rs),
            "seconds_min": min(r["seconds"] for r in rs),
            "seconds_max": max(r["seconds"] for r in rs),
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in rs),
            "peak_rss_mib_min": min(r["peak_rss_mib"] for r in rs),
        }
    return summary


def _done(x: dict[str, Any] | None) -> bool:
    return x is not None and "seconds_median" in x


def _ratio(a: dict[str, Any], b: dict[str, Any] | None, key: str) -> str:
    return f"{a[key] / b[key]:.2f}" if _done(a) and b is not None and _done(b) else ""


def _figure(x: dict[str, Any] | None, median: str, low: str, high: str, fmt: str) -> str:
    """``median (low–high)``, the failed runs counted; "" for no such mode."""
    if x is None:
        return ""
    if not _done(x):
        return f"**failed** ({x['failed']} of {x['failed']})"
    failed = f", {x['failed']} failed" if x["failed"] else ""
    return f"{x[median]:{fmt}} ({x[low]:{fmt}}–{x[high]:{fmt}}){failed}"


def tiles_markdown(points: list[dict[str, Any]], tile_limits: list[str]) -> str:
    """The aggregation view's rows: each beside the unset run of the same code, the code before
    at the same limit, and the plain views' run at the same limit (when there is one)."""
    lines = [
        "| scale | memory_limit | tiles s, median (min–max) | / tiles unset | / before | / plain views "
        "| peak RSS MiB (min–max) | / before | before: s | before: peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        base = p.get(TILES)
        for limit in tile_limits:
            m, b, plain = p[TILES + limit], p.get(BEFORE + limit), p.get(limit or "unset")
            s = ("seconds_median", "seconds_min", "seconds_max")
            rss = ("peak_rss_mib_max", "peak_rss_mib_min")
            cells = [
                p["scale"],
                limit or "unset",
                _figure(m, *s, ".2f"),
                _ratio(m, base, s[0]),
                _ratio(m, b, s[0]),
                _ratio(m, plain, s[0]),
                _figure(m, rss[0], rss[1], rss[0], ",.0f"),
                _ratio(m, b, rss[0]),
                _figure(b, *s, ".2f"),
                _figure(b, rss[0], rss[1], rss[0], ",.0f"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(points: list[dict[str, Any]], limits: list[str]) -> str:
    lines = [
        "| scale | mode | s (median, min–max) | / unset | / raw MSET | peak RSS MiB (min–max) | / unset |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        base = p.get("unset")
        raw = p[LIMIT_MODE]
        for mode in [*limits, LIMIT_MODE]:
            m = p[mode or "unset"]
            name = label(mode) if mode != LIMIT_MODE else "limit: raw MSET"
            vs_unset = f"{m['seconds_median'] / base['seconds_median']:.2f}" if base else ""
            rss_unset = f"{m['peak_rss_mib_max'] / base['peak_rss_mib_max']:.2f}" if base else ""
            lines.append(
                f"| {p['scale']} | {name} | {m['seconds_median']:.2f} ({m['seconds_min']:.2f}–"
                f"{m['seconds_max']:.2f}) | {vs_unset} | {m['seconds_median'] / raw['seconds_median']:.2f} | "
                f"{m['peak_rss_mib_max']:,.0f} ({m['peak_rss_mib_min']:,.0f}–{m['peak_rss_mib_max']:,.0f}) | "
                f"{rss_unset} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", default="small,medium", help="of small,medium,large")
    parser.add_argument("--limits", default=",1GB,512MB", help="memory_limit values; empty = unset")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds per scale")
    parser.add_argument("--reuse", action="store_true", help="use an earlier prepared repo if there is one")
    parser.add_argument(
        "--out", default="materialize-memlimit", help="name of the JSON in benchmarks/results"
    )
    parser.add_argument("--tiles", default="", help="an aggregation view to materialize too")
    parser.add_argument("--tile-limits", default=None, help="its memory_limit values (default: --limits)")
    parser.add_argument("--before", default="", help="a featurestore executable of the code before")
    args = parser.parse_args()
    limits = args.limits.split(",")
    tile_limits = limits if args.tile_limits is None else args.tile_limits.split(",")
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "benchmarks/materialize_memlimit.py", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_start": Path("/proc/loadavg").read_text().strip(),
        "points": [],
    }
    with redis_server() as port:
        os.environ["FEATURESTORE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        env = dict(os.environ)
        for scale in [s for s in args.scales.split(",") if s]:
            print(f"materialization at {scale} ...", file=sys.stderr)
            result["points"].append(
                bench(scale, limits, args.runs, env, args.reuse, args.tiles, tile_limits, args.before)
            )
    result["loadavg_end"] = Path("/proc/loadavg").read_text().strip()
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result["points"], limits))
    if args.tiles:
        print(f"\n{args.tiles}:\n" + tiles_markdown(result["points"], tile_limits))
    print(f"\nload average: start {result['loadavg_start']}, end {result['loadavg_end']}")


if __name__ == "__main__":
    main()
