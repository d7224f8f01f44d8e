"""The console never waits on a writer: while another process holds the store's write lock,
pages load showing their last read, marked; while a materialization writes Redis, they load
fresh and show the run running. Both held at a known point, so neither depends on timing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By

from featurestore.config import load_config
from tests.support.browser import wait_for
from tests.ui.support import RECORD_WAIT, TOKEN, Demo, held_materialization

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


def test_pages_load_while_a_materialization_runs(browser: webdriver.Chrome, demo: Demo) -> None:
    # The run is held at a known point: recorded (running) and writing Redis, the file let go
    # (its write-lock phases are the holder's case above: a write transaction of another process).
    pages = ("/", "/runs", "/health", "/lineage?node=view:driver_trips")
    with httpx.Client(base_url=demo.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        with held_materialization(demo, "driver_trips", "customer_profile") as (run, run_id):
            for page in pages:  # fresh reads, not an earlier one: the run does not hold the file
                response = http.get(page)
                assert response.status_code == 200 and 'id="busy"' not in response.text, page
            browser.get(f"{demo.url}/runs?kind=materialize")
            [running] = browser.find_elements(By.CSS_SELECTOR, "#materialize tr.running")
            assert running.text.startswith(f"materialize-{run_id} ")
            assert run.poll() is None  # still held
        assert run.wait(RECORD_WAIT) == 0, run.stderr.read() if run.stderr else ""
        for page in pages:
            assert http.get(page).status_code == 200, page
    browser.get(f"{demo.url}/runs?kind=materialize")
    assert browser.find_elements(By.CSS_SELECTOR, "#materialize tr.running") == []
