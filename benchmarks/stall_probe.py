"""`featurestore serve` with probes, to find what stalls it: every garbage collection over
2 ms (generation, ms), every registry check (ms) and every event-loop lag over 15 ms, as JSON.

    .venv/bin/python benchmarks/stall_probe.py OUT.json serve --repo REPO --grpc-port G --http-port H
    NOFREEZE=1 .venv/bin/python benchmarks/stall_probe.py ...   # without the server's gc.freeze()

Drive it with h2load meanwhile (benchmarks/tail.py shows the commands), then SIGTERM it.
Events after the first registry check are those under traffic (startup collects too).
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import os
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

events: list[list[Any]] = []
_started = [0.0]
OUT = Path(sys.argv.pop(1))


def _gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    took = (time.perf_counter() - _started[0]) * 1000
    if took > 2:
        events.append(["gc", info["generation"], round(took, 1), info.get("collected")])


def _probe_loads() -> None:
    import featurestore.online.registry_holder as holder

    original = holder.load

    def load(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            events.append(["load", round((time.perf_counter() - started) * 1000, 1)])

    holder.load = load  # type: ignore[assignment]


def _probe_loop() -> None:
    original = asyncio.run

    def run(main: Coroutine[Any, Any, Any], **kwargs: Any) -> Any:
        async def lag() -> None:
            while True:
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                took = (time.perf_counter() - started) * 1000
                if took > 15:
                    events.append(["lag", round(took, 1)])

        async def both() -> Any:
            task = asyncio.create_task(lag())
            try:
                return await main
            finally:
                task.cancel()

        return original(both(), **kwargs)

    asyncio.run = run  # type: ignore[assignment]


def main() -> None:
    gc.callbacks.append(_gc)
    if os.environ.get("NOFREEZE"):
        gc.freeze = lambda: None
    _probe_loads()
    _probe_loop()
    atexit.register(lambda: OUT.write_text(json.dumps(events)))
    from featurestore.cli import main as cli

    sys.argv = ["featurestore", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()
