"""Runs in a real browser: a refused ingestion stands out and shows its validation report, an
interrupted materialization (its process killed) stands out too; the catalog and runs pages need
no JavaScript."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.support.browser import chromium, click_link, main_text, wait_for
from tests.support.cli import run_cli
from tests.ui.support import TOKEN, Demo, held_materialization, log_in


def test_a_refused_ingestion_stands_out_with_its_validation_report(
    browser: webdriver.Chrome, demo: Demo
) -> None:
    browser.get(f"{demo.url}/runs")
    wait_for(browser, "#rejected")
    refused = browser.find_elements(By.CSS_SELECTOR, "#rejected tr.failed")
    assert refused and refused[-1].text.startswith("ingest-rejected-1 driver_stats failed")
    ingested = browser.find_elements(By.CSS_SELECTOR, "#ingest tr.succeeded")
    assert ingested and not browser.find_elements(By.CSS_SELECTOR, "#ingest tr.failed")
    # the run that went on without it stands out too, naming the view it left out
    [partial] = browser.find_elements(By.CSS_SELECTOR, "#materialize tr.failed")
    assert partial.text.startswith(
        "materialize-2 customer_profile, driver_trips, heartbeat left out: driver_stats"
    )
    browser.get(f"{demo.url}/runs/materialize-2")
    assert "driver_stats" in wait_for(browser, "main").text.split("Views left out")[1]

    browser.get(f"{demo.url}/runs")
    click_link(browser, "ingest-rejected-1")
    assert browser.find_element(By.ID, "status").text == "failed"
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#failures tr")]
    assert rows[1].endswith("zz_bad_rates.parquet conv_rate in_range(0, 1) 3")
    examples = browser.find_element(By.ID, "examples").text
    assert "conv_rate failed in_range(0, 1) in 3 row(s)" in examples
    assert " 5.0 " in examples and " 7.0 " in examples  # the failing values themselves
    click_link(browser, "driver_stats")
    assert browser.find_element(By.ID, "name").text == "driver_stats"


def test_runs_pages_are_paginated(browser: webdriver.Chrome, demo: Demo) -> None:
    def shown() -> list[int]:
        cells = browser.find_elements(By.CSS_SELECTOR, "#ingest td:first-child a")
        return [int(a.text.removeprefix("ingest-")) for a in cells]

    browser.get(f"{demo.url}/runs?kind=ingest&limit=2")
    newest = shown()
    assert len(newest) == 2 and newest[0] == newest[1] + 1  # newest first
    assert f"1–2 of {newest[0]}" in main_text(browser)
    click_link(browser, "older")
    assert shown() == [newest[1] - 1, newest[1] - 2]
    assert f"3–4 of {newest[0]}" in main_text(browser)


@pytest.fixture(scope="module")
def no_script_browser(demo: Demo) -> Iterator[webdriver.Chrome]:
    driver = chromium(javascript=False)
    try:
        log_in(driver, demo.url, TOKEN)  # a plain form: no script needed
        yield driver
    finally:
        driver.quit()


def test_catalog_and_runs_work_without_javascript(
    no_script_browser: webdriver.Chrome, browser: webdriver.Chrome, demo: Demo
) -> None:
    for driver in (browser, no_script_browser):
        driver.get(f"{demo.url}/")
        wait_for(driver, "#feature_view")
    # the console's script marks the page when it runs: it does with scripts on, not here
    assert "js" in browser.find_element(By.TAG_NAME, "html").get_attribute("class").split()
    driver = no_script_browser
    assert "js" not in (driver.find_element(By.TAG_NAME, "html").get_attribute("class") or "").split()
    click_link(driver, "driver_stats")
    assert "conv_rate" in driver.find_element(By.ID, "features").text
    driver.get(f"{demo.url}/runs")
    click_link(driver, "ingest-rejected-1")
    assert "in_range(0, 1)" in driver.find_element(By.ID, "failures").text


def test_an_interrupted_run_stands_out(browser: webdriver.Chrome, demo: Demo) -> None:
    # Killed with SIGKILL mid-run (after recording its run, before writing Redis), a
    # materialization leaves its run "running"; the next run records it interrupted (its
    # process is gone).
    with held_materialization(demo, "customer_profile") as (killed, run_id):
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    after = run_cli("materialize", "--repo", str(demo.repo), "--views", "customer_profile")
    assert after.returncode == 0, after.stderr

    browser.get(f"{demo.url}/runs?kind=materialize")
    [interrupted] = browser.find_elements(By.CSS_SELECTOR, "#materialize tr.interrupted")
    assert interrupted.text.startswith(f"materialize-{run_id} customer_profile interrupted")
    succeeded = browser.find_elements(By.CSS_SELECTOR, "#materialize tr.succeeded")
    assert succeeded and succeeded[0].text.startswith(f"materialize-{run_id + 1} customer_profile succeeded")

    def background(row: WebElement) -> str:
        return str(row.find_element(By.TAG_NAME, "td").value_of_css_property("background-color"))

    failed = browser.find_element(By.CSS_SELECTOR, "#materialize tr.failed")
    assert background(interrupted) not in {background(r) for r in succeeded} | {background(failed)}
    click_link(browser, f"materialize-{run_id}")
    assert browser.find_element(By.ID, "status").text == "interrupted"
    assert "the process ended before the run finished" in main_text(browser)
