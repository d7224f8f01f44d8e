"""Registry history in a real browser: versions with author and time, and a diff between two."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.support.browser import click_link, submit, wait_for
from tests.ui.support import SCRIPT_DESCRIPTION, Demo


def test_open_a_version_diff_with_its_breaking_change(browser: webdriver.Chrome, demo: Demo) -> None:
    browser.get(f"{demo.url}/versions")
    rows = browser.find_elements(By.CSS_SELECTOR, "#versions tr")[1:]
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in rows] == ["2", "1"]
    assert rows[0].get_attribute("class") == "breaking" and rows[1].get_attribute("class") == ""
    assert "feature 'is_active' removed while online" in rows[0].text

    click_link(browser, "diff with 1")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Version 1 → 2"
    assert (
        "feature view 'driver_stats': feature 'is_active' removed while online"
        in browser.find_element(By.ID, "breaking").text
    )
    changed = browser.find_elements(By.CSS_SELECTOR, "section.change.breaking")
    view = next(s for s in changed if "driver_stats" in s.find_element(By.TAG_NAME, "h2").text)
    cells = [r.text for r in view.find_elements(By.CSS_SELECTOR, "table.fields tr")]
    assert f"description Hourly driver activity and quality statistics {SCRIPT_DESCRIPTION}" in cells
    assert "features.is_active (present) (none)" in cells

    # Any two versions: from nothing to version 2 is every object added.
    browser.get(f"{demo.url}/versions")
    wait_for(browser, "#old").send_keys("0")
    browser.find_element(By.ID, "new").send_keys("2")
    submit(browser, "#compare")
    actions = {
        s.find_element(By.CSS_SELECTOR, ".action").text
        for s in browser.find_elements(By.CSS_SELECTOR, "section.change")
    }
    assert actions == {"ADD"}
