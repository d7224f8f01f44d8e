"""Statistics and drift in a real browser: histograms per feature, and the drift report embedded."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.support.browser import click_link, submit, wait_for
from tests.ui.support import Demo


def test_statistics_with_histograms_and_a_drift_report(browser: webdriver.Chrome, demo: Demo) -> None:
    browser.get(f"{demo.url}/statistics")
    click_link(browser, "driver_stats")
    rate = wait_for(browser, '#stats tr[data-feature="conv_rate"]')
    assert rate.text.startswith("conv_rate FLOAT 5,000 0")
    bars = rate.find_elements(By.CSS_SELECTOR, "svg.bars rect.bar")
    assert len(bars) == 20  # a histogram of the rates between their min and max
    city = browser.find_element(By.CSS_SELECTOR, '#stats tr[data-feature="city"]')
    assert city.find_elements(By.CSS_SELECTOR, "svg.bars rect.bar")  # its most frequent values

    # A training set against what is served now: the report of `featurestore drift`, in a frame.
    Select(browser.find_element(By.ID, "baseline")).select_by_value(demo.training_set)
    Select(browser.find_element(By.ID, "current")).select_by_value("latest")
    submit(browser, "#compare")
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert heading == f"Drift of driver_stats training set {demo.training_set} → latest (ingest-2)"
    assert "features" in browser.find_element(By.ID, "verdict").text
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe.report"))
    try:
        assert wait_for(browser, "h1").text == "Drift of driver_stats"
        assert "conv_rate" in browser.find_element(By.TAG_NAME, "table").text
    finally:
        browser.switch_to.default_content()
