"""The console never waits on a writer: while another process holds the store's write lock,
or a materialization runs, pages load (showing their last read, marked, when the file is held)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By

from featurestore.config import load_config
from tests.support.browser import wait_for
from tests.support.cli import FEATURESTORE
from tests.ui.support import TOKEN, Demo

HOLD = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])  # the write lock, held by this process
    con.execute("BEGIN TRANSACTION")
    con.execute("SELECT count(*) FROM information_schema.tables").fetchall()
    print("holding", flush=True)
    sys.stdin.readline()
    """
)


def test_pages_load_while_another_process_holds_a_write_transaction(
    browser: webdriver.Chrome, demo: Demo
) -> None:
    browser.get(f"{demo.url}/runs")
    wait_for(browser, "#ingest")
    assert browser.find_elements(By.ID, "busy") == []
    path = str(load_config(demo.repo).duckdb_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        browser.get(f"{demo.url}/runs")
        assert "being written by a run" in wait_for(browser, "#busy").text
        assert browser.find_elements(By.CSS_SELECTOR, "#ingest td a")  # the last read, in full
        # a page never read before cannot be shown: a clear 503, not a hang
        with httpx.Client(base_url=demo.url, headers={"authorization": f"Bearer {TOKEN}"}) as http:
            never = http.get("/runs?kind=ingest&limit=3&offset=1")
        assert never.status_code == 503 and "is busy" in never.text
    finally:
        holder.communicate("\n", timeout=30)
    browser.get(f"{demo.url}/runs")
    wait_for(browser, "#ingest")
    assert browser.find_elements(By.ID, "busy") == []


def test_pages_load_while_a_materialization_runs(demo: Demo) -> None:
    pages = ("/", "/runs", "/health", "/lineage?node=view:driver_trips")
    with httpx.Client(base_url=demo.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        for page in pages:  # read once, so a held file has something to show
            assert http.get(page).status_code == 200
        run = subprocess.Popen(
            [
                FEATURESTORE,
                "materialize",
                "--repo",
                str(demo.repo),
                "--views",
                "driver_trips",
                "--views",
                "customer_profile",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        during = []
        while run.poll() is None:
            for page in pages:
                response = http.get(page)
                if run.poll() is None:
                    during.append((page, response.status_code))
        assert run.returncode == 0, run.stderr.read() if run.stderr else ""
    assert during, "no page was asked for while the run ran"
    assert {status for _, status in during} == {200}, during
