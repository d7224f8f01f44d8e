"""The catalog in a real browser: from the list to a view, to what it uses and what uses it."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.support.browser import click_link, main_text, submit, wait_for
from tests.ui.support import Demo


def test_click_through_the_catalog(browser: webdriver.Chrome, demo: Demo) -> None:
    browser.get(f"{demo.url}/")
    assert "Catalog" in wait_for(browser, "h1").text
    views = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#feature_view td:first-child a")]
    assert views == ["customer_profile", "driver_stats", "driver_trips", "heartbeat"]

    click_link(browser, "driver_stats")
    assert browser.find_element(By.ID, "name").text == "driver_stats"
    features = browser.find_element(By.ID, "features").text
    assert "conv_rate Float32 Share of offers accepted in_range(0, 1)" in features
    assert "is_active" not in features  # removed in version 2
    facts = main_text(browser)
    assert "TTL 2.0 d" in facts and "marketplace-ml@example.com" in facts and "team=marketplace" in facts

    # What it uses (its entity and source) and what uses it (the services), each a link.
    assert browser.find_element(By.ID, "uses").text.split("\n") == [
        "entity driver",
        "source driver_stats_source",
    ]
    assert browser.find_element(By.ID, "used-by").text.split("\n") == [
        "on demand view trip_fit",
        "feature service dispatch_model",
        "feature service pricing_model",
        "feature service trip_model",
    ]
    click_link(browser, "driver")
    assert browser.find_element(By.ID, "name").text == "driver"
    assert "join keys driver_id" in main_text(browser)
    assert "driver_trips" in browser.find_element(By.ID, "used-by").text
    click_link(browser, "driver_trips")
    assert "trips_1h" in main_text(browser)  # its aggregations
    click_link(browser, "dispatch_model")
    assert "driver_stats:online_hours" in browser.find_element(By.ID, "features").text


def test_search_by_name_tag_and_owner(browser: webdriver.Chrome, demo: Demo) -> None:
    browser.get(f"{demo.url}/")
    wait_for(browser, "#q").send_keys("trips_1")  # a feature's name finds its view
    submit(browser, "#search")
    shown = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "main td:first-child a")]
    assert shown == ["driver_trips"]

    browser.get(f"{demo.url}/?tag=team%3Dmarketplace")
    shown = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "main td:first-child a")]
    assert shown == ["driver_stats", "driver_trips"]

    browser.get(f"{demo.url}/catalog/feature_view/customer_profile")
    click_link(browser, "growth-ml@example.com")  # the owner links to a search by owner
    shown = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "main td:first-child a")]
    assert shown == ["customer_profile"]


def test_catalog_lists_are_paginated(browser: webdriver.Chrome, demo: Demo) -> None:
    def shown(kind: str) -> list[str]:
        return [a.text for a in browser.find_elements(By.CSS_SELECTOR, f"#{kind} td:first-child a")]

    browser.get(f"{demo.url}/?kind=feature_view&limit=2")
    assert shown("feature_view") == ["customer_profile", "driver_stats"]
    assert "1–2 of 4" in main_text(browser)
    assert browser.find_elements(By.ID, "entity") == []  # one kind asked for: only its list
    click_link(browser, "next")
    assert shown("feature_view") == ["driver_trips", "heartbeat"]
    assert "3–4 of 4" in main_text(browser)
    assert browser.find_elements(By.LINK_TEXT, "next") == []
    click_link(browser, "previous")
    assert shown("feature_view") == ["customer_profile", "driver_stats"]

    # a search is kept from page to page
    browser.get(f"{demo.url}/?kind=feature_view&limit=1&tag=team%3Dmarketplace")
    assert shown("feature_view") == ["driver_stats"] and "1–1 of 2" in main_text(browser)
    click_link(browser, "next")
    assert shown("feature_view") == ["driver_trips"]

    # every kind a page at a time, each with its own link to the rest
    browser.get(f"{demo.url}/?limit=1")
    kinds = ("entity", "source", "feature_view", "on_demand_view", "feature_service")
    assert [len(shown(kind)) for kind in kinds] == [1, 1, 1, 1, 1]
    click_link(browser, "Services")
    assert shown("feature_service") == ["dispatch_model", "pricing_model", "trip_model"]
    assert browser.find_elements(By.ID, "feature_view") == []


def test_a_views_features_are_paginated(browser: webdriver.Chrome, demo: Demo) -> None:
    def features() -> list[str]:
        return [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#features td:first-child")]

    browser.get(f"{demo.url}/catalog/feature_view/driver_stats?limit=500")
    every = features()
    assert len(every) > 10 and every[0] == "conv_rate"
    assert browser.find_elements(By.CSS_SELECTOR, ".pager") == []  # one page: no pager
    browser.get(f"{demo.url}/catalog/feature_view/driver_stats?limit=5")
    assert features() == every[:5]
    assert f"1–5 of {len(every)}" in main_text(browser)
    click_link(browser, "next")
    assert features() == every[5:10]
    assert "Share of offers accepted" not in main_text(browser)


def test_an_on_demand_view_is_in_the_catalog_with_its_inputs(browser: webdriver.Chrome, demo: Demo) -> None:
    browser.get(f"{demo.url}/")
    wait_for(browser, "h1")
    listed = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#on_demand_view td:first-child a")]
    assert listed == ["trip_fit"]
    click_link(browser, "trip_fit")
    assert browser.find_element(By.ID, "name").text == "trip_fit"
    assert "driver_stats:last_trip_km" in browser.find_element(By.ID, "inputs").text
    assert browser.find_element(By.ID, "request-fields").text == "trip_request.trip_km Float64"
    assert "km_over_last_trip Float64" in browser.find_element(By.ID, "features").text
    # Computed from driver_stats, used by the pricing service: links both ways.
    assert browser.find_element(By.ID, "uses").text.split("\n") == ["feature view driver_stats"]
    assert browser.find_element(By.ID, "used-by").text.split("\n") == ["feature service pricing_model"]
    click_link(browser, "pricing_model")
    assert "on demand view trip_fit" in browser.find_element(By.ID, "uses").text
