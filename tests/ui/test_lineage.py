"""Lineage in a real browser: a training set's graph, followed to a source file it read."""

from __future__ import annotations

import html
import re

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.support.browser import click_link, follow, wait_for
from tests.ui.support import TOKEN, Demo


def test_a_training_sets_graph_followed_to_a_source_file(browser: webdriver.Chrome, demo: Demo) -> None:
    browser.get(f"{demo.url}/lineage")
    click_link(browser, demo.training_set)
    assert browser.find_element(By.ID, "root").text == demo.training_set
    graph = wait_for(browser, "#graph svg")
    nodes = {a.get_attribute("data-node") for a in graph.find_elements(By.CSS_SELECTOR, "a.node")}
    files = sorted(n.removeprefix("file:") for n in nodes if n.startswith("file:"))
    assert [f.split("/data/")[1] for f in files] == [
        "customer_profile/part-00000.parquet",
        "driver_stats/part-00000.parquet",
        "driver_stats/zz_bad_rates.parquet",  # seen in driver_stats' lineage, never read by the set
    ]
    assert {"view:driver_stats", "view:customer_profile", f"training_set:{demo.training_set}"} <= nodes
    edges = {
        (e.get_attribute("data-from"), e.get_attribute("data-to"))
        for e in graph.find_elements(By.CSS_SELECTOR, "path.edge")
    }
    read = "file:" + files[1]
    assert (read, f"training_set:{demo.training_set}") in edges  # the set read the file
    assert ("view:driver_stats", f"training_set:{demo.training_set}") in edges
    assert (read, "run:ingest-2") in edges or (read, "view:driver_stats") in edges

    # Follow the edge: click the file's node in the drawing.
    follow(browser, f'#graph a.node[data-node="{read}"]')
    assert browser.find_element(By.TAG_NAME, "h1").text == f"source file {files[1]}"
    details = browser.find_element(By.ID, "details").text
    assert "status unchanged" in details and "rows 5000" in details
    downstream = browser.find_element(By.ID, "downstream").text
    assert demo.training_set in downstream and "driver_stats" in downstream


def test_a_view_graph_shows_its_runs_and_consumers(browser: webdriver.Chrome, demo: Demo) -> None:
    browser.get(f"{demo.url}/catalog/feature_view/driver_stats")
    follow(browser, "#lineage")
    upstream = browser.find_element(By.ID, "upstream").text
    assert "ingest-2 wrote" in upstream and "ingest-rejected-1 rejected" in upstream
    downstream = browser.find_element(By.ID, "downstream").text.split("\n")
    assert "trip_model 12 features" in downstream and "dispatch_model 2 features" in downstream
    # the refused run stands out in the drawing, and leads to its page
    refused = browser.find_element(By.CSS_SELECTOR, 'a.node[data-node="run:ingest-rejected-1"] rect')
    assert refused.get_attribute("stroke") == "#b42318"
    click_link(browser, "ingest-rejected-1")
    click_link(browser, "Run details")
    assert browser.find_element(By.ID, "status").text == "failed"


def test_the_start_page_lists_come_a_page_at_a_time(demo: Demo) -> None:
    def get(query: str) -> tuple[dict[str, list[str]], str]:
        """The start page's node links by section, and its text."""
        with httpx.Client(base_url=demo.url, headers={"authorization": f"Bearer {TOKEN}"}) as http:
            page = http.get(f"/lineage{query}")
        assert page.status_code == 200, page.text
        text = html.unescape(page.text)
        sections = re.findall(r'<section id="(\w+)">(.*?)</section>', text, re.S)
        return {k: re.findall(r"\?node=[^\"]+\">([^<]+)</a>", body) for k, body in sections}, text

    shown, text = get("?kind=feature_view&limit=2")
    assert shown == {"feature_view": ["customer_profile", "driver_stats"]}  # one list asked for: only it
    assert "1–2 of 4" in text and 'href="?kind=feature_view&limit=2&offset=2"' in text
    shown, text = get("?kind=feature_view&limit=2&offset=2")
    assert shown == {"feature_view": ["driver_trips", "heartbeat"]} and "3–4 of 4" in text
    assert 'href="?kind=feature_view&limit=2&offset=0"' in text and "offset=4" not in text

    shown, text = get("?limit=1")  # every list a page at a time, each with its own link on
    assert shown == {
        "training_set": [demo.training_set],
        "feature_view": ["customer_profile"],
        "feature_service": ["dispatch_model"],
    }
    assert 'href="?kind=feature_service&limit=1&offset=1"' in text and "1–1 of 3" in text
    shown, _ = get("?kind=feature_service")
    assert shown == {"feature_service": ["dispatch_model", "pricing_model", "trip_model"]}
