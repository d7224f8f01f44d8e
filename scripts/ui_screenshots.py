"""Screenshots of the web console for the README (``make screenshots``): the catalog and a
view's lineage graph (its files and runs upstream; services, a training set and a
materialization downstream), taken by headless Chromium from a console over the example repo.

    .venv/bin/python scripts/ui_screenshots.py docs/

The example repo is copied with tiny generated data into a temporary folder, applied,
materialized into a private redis-server and given a training set; nothing of definitions/
is touched.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support.browser: the same Chromium the tests drive

from featurestore import FeatureStore, datagen  # noqa: E402
from featurestore.config import load_config  # noqa: E402
from featurestore.ui.server import ConsoleServer  # noqa: E402
from tests.support.browser import chromium, wait_for  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def example_store(work: Path, redis_url: str) -> Path:
    repo = work / "definitions"
    shutil.copytree(
        ROOT / "definitions",
        repo,
        ignore=shutil.ignore_patterns("data", "out", ".featurestore", "__pycache__"),
    )
    toml = repo / "featurestore.toml"
    toml.write_text(toml.read_text().replace("redis://127.0.0.1:6379/0", redis_url))
    datagen.generate(repo / "data", "tiny")
    store = FeatureStore(repo)
    store.apply()
    store.materialize()
    (repo / "out").mkdir()
    with store.get_training_set(repo / "data" / "entity_rows.parquet", "trip_model") as ts:
        ts.to_parquet(repo / "out" / "trip_model_training.parquet")
    store.close()
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="folder for ui-catalog.png and ui-lineage.png")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fs-screens-") as tmp:
        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            repo = example_store(Path(tmp), f"redis://127.0.0.1:{port}/0")
            with ConsoleServer(load_config(repo)) as server:
                browser = chromium()
                try:
                    browser.set_window_size(1280, 820)
                    browser.get(server.url)
                    wait_for(browser, "#feature_view")
                    browser.save_screenshot(str(args.out / "ui-catalog.png"))
                    browser.get(f"{server.url}lineage?node=view%3Adriver_stats")
                    wait_for(browser, "#graph svg")
                    browser.save_screenshot(str(args.out / "ui-lineage.png"))
                finally:
                    browser.quit()
        finally:
            redis.terminate()
            redis.wait(10)
    print(f"wrote {args.out / 'ui-catalog.png'} and {args.out / 'ui-lineage.png'}")


if __name__ == "__main__":
    main()
